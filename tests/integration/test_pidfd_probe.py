"""The process's one probe of the pidfd calls (`pidsignal.probe_pidfds`): pidfd_open of itself,
then signal 0 through it, shared by the reaper's `check_pidfds` (its `pidfds_unavailable`
warning) and `send_denied` (where pidfd_send_signal answers EPERM, whose refusal it is),
under a real seccomp filter (`tests/support/seccomp.py`).

- A process where only pidfd_send_signal is denied asked the kernel twice, once for each
  (a `stoker run` whose stop signals a process by its pidfd: 2 pidfd_open and 2
  pidfd_send_signal of its own pid), and now once; the warning is still said once.
- The answer is kept by pid: a child forked after its parent probed, which installed a
  filter of its own, probes again (before, it took its parent's answer, that nothing is
  denied, and an EPERM of the filter's was taken for its target's refusal).
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import seccomp
from tests.support.stoker_proc import REPO


@pytest.fixture(autouse=True)
def _filter() -> None:
    seccomp.require()  # skips where no filter can be installed (another arch, no seccomp)


# Counts the probes (a call of pidfd_open with the process's own pid: no pid of the task is
# its own) around the real call, then starts the reaper and signals a child by its pidfd.
PROBED_ONCE = """
import logging, os, signal, subprocess, sys
logging.basicConfig(stream=sys.stdout, format="%(message)s", level=logging.INFO)
real, probes = os.pidfd_open, []
def counted(pid, *args):
    probes.extend([pid] if pid == os.getpid() else [])
    return real(pid, *args)
os.pidfd_open = counted
from executor.procs import proctree
from executor.procs.reaper import Reaper
reaper = Reaper.acquire()
child = subprocess.Popen(["sleep", "30"])
sent = proctree.send_checked([child.pid], signal.SIGKILL, lambda info, ours: True)  # the reaper reaps it
print("sent" if sent == [child.pid] else "not sent", "probes:", len(probes))
"""


def test_the_pidfd_calls_are_probed_once_per_process():
    result = subprocess.run([*seccomp.launcher(["pidfd_send_signal=EPERM"]), sys.executable, "-c", PROBED_ONCE],
                            capture_output=True, text=True, timeout=20, cwd=REPO)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line for line in lines if "pidfds_unavailable" in line][0].count("PermissionError") == 1, lines
    assert sum("pidfds_unavailable" in line for line in lines) == 1, lines
    assert lines[-1] == "sent probes: 1", result.stdout  # before: 2 (the reaper's, then send_denied's)


FORKED = """
import os, sys
from executor.procs import pidsignal
from tests.support import seccomp
print("parent denied:", pidsignal.send_denied())
child = os.fork()
if child == 0:
    try:
        seccomp.install(seccomp.parse(["pidfd_send_signal=EPERM"]))
        print("child denied:", pidsignal.send_denied(), flush=True)
    finally:
        os._exit(0)
os.waitpid(child, 0)
print("parent denied:", pidsignal.send_denied())
"""


def test_a_forked_child_under_a_filter_of_its_own_probes_again():
    result = subprocess.run([sys.executable, "-c", FORKED], capture_output=True, text=True, timeout=20, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["parent denied: False", "child denied: True", "parent denied: False"], \
        result.stdout  # before: the child said False, its parent's answer


# Every descriptor taken (a low RLIMIT_NOFILE filled with /dev/null): the probe answers EMFILE,
# which says nothing of the host, and is not kept: once one is free, it asks the kernel again.
EXHAUSTED = """
import errno, os, resource
from executor.procs import pidsignal
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
held = []
try:
    while True:
        held.append(os.open("/dev/null", os.O_RDONLY))
except OSError as e:
    assert e.errno == errno.EMFILE, e
print("full:", errno.errorcode.get(pidsignal.probe_pidfds()[0]), pidsignal.send_denied())
os.close(held.pop())
print("one free:", pidsignal.probe_pidfds())
for fd in held:
    os.close(fd)
"""


def test_an_emfile_answer_is_not_kept():
    result = subprocess.run([sys.executable, "-c", EXHAUSTED], capture_output=True, text=True, timeout=20, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["full: EMFILE False", "one free: (0, '')"], result.stdout
