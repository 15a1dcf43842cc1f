"""The terminal's modes kept and put back (`executor/host/terminalmodes.py`), in a child of
a session of its own whose controlling terminal is a real pseudo-terminal: which of the
standard descriptors is the terminal, a run in the background, nothing changed."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(30)

# argv: the repository, which of 0, 1 and 2 are the controlling terminal ("012", "0", ...; the
# others /dev/null, or "other": another terminal), what happens ("raw": the modes changed
# between keep and put_back; "same": not; "background": another process group made the
# foreground one after keep, "started-background": before it, then the modes changed), whether
# keep runs, and the descriptor the answer is written to.
CHILD = r"""
import fcntl, os, signal, subprocess, sys, termios
sys.path.insert(0, sys.argv[1])
from executor.host import terminalmodes

on_terminal, between, kept, said = sys.argv[2], sys.argv[3], sys.argv[4] == "keep", int(sys.argv[5])
spare = [os.open(os.devnull, os.O_RDONLY) for _ in range(4)]  # the lowest free descriptors past 2: no terminal at 3
master, slave = os.openpty()
other_master, other_slave = os.openpty()  # a terminal, but not this session's
fcntl.ioctl(slave, termios.TIOCSCTTY, 0)  # the session's controlling terminal: this process in its foreground
for fd in (0, 1, 2):
    os.dup2(slave if str(fd) in on_terminal else other_slave if between == "other" else os.open(os.devnull, os.O_RDWR), fd)
signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # (a background write to the terminal's modes goes through)
before = termios.tcgetattr(slave)
held = None


def to_the_background():
    global held
    # (reads a pipe only this process holds: it ends with this process, however that ends)
    held = subprocess.Popen(["cat"], process_group=0, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    os.tcsetpgrp(slave, held.pid)


if between == "started-background":
    to_the_background()
if kept:
    terminalmodes.keep()
if between == "background":
    to_the_background()
if between != "same":
    raw = termios.tcgetattr(slave)
    raw[3] &= ~(termios.ECHO | termios.ICANON)
    termios.tcsetattr(slave, termios.TCSANOW, raw)
answer = terminalmodes.put_back()
if held is not None:
    held.stdin.close()
    held.wait()
os.write(said, f"{answer} {termios.tcgetattr(slave) == before}".encode())
"""


def modes(on_terminal: str, between: str, keep: str = "keep") -> list[str]:
    """What `put_back` answered in the child, and whether the terminal's modes are as before."""
    read, write = os.pipe()
    try:
        done = subprocess.run([sys.executable, "-c", CHILD, str(REPO), on_terminal, between, keep, str(write)],
                              pass_fds=(write,), start_new_session=True,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=20)
        os.close(write)
        write = -1
        with os.fdopen(read, "r") as said:
            read = -1
            answer = said.read().split()
    finally:
        for fd in (read, write):
            if fd >= 0:
                os.close(fd)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return answer


@pytest.mark.parametrize("on_terminal", ["012", "0", "1", "2"])
def test_modes_a_task_changed_are_put_back_whichever_standard_descriptor_is_the_terminal(on_terminal):
    assert modes(on_terminal, "raw") == ["True", "True"]


def test_the_controlling_terminal_is_found_past_a_terminal_that_is_not_it():
    """stdin another terminal (not the session's: `tcgetpgrp` fails), stdout the controlling one."""
    assert modes("1", "other") == ["True", "True"]


def test_modes_unchanged_are_not_put_back():
    assert modes("012", "same") == ["False", "True"]


def test_nothing_kept_is_nothing_put_back():
    assert modes("012", "raw", keep="none") == ["False", "False"]


def test_a_run_in_the_background_keeps_nothing_and_leaves_the_foreground_job_s_modes():
    """Kept as a foreground job, put back once another is the foreground one: not, the modes are its."""
    assert modes("012", "background") == ["False", "False"]


def test_a_run_started_in_the_background_keeps_nothing():
    assert modes("012", "started-background") == ["False", "False"]
