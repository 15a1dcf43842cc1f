"""`stoker tail -f` and SIGPIPE, with real processes: a pipe whose reader closes it ends the
command quietly, 0 (docs/contract.md §9), and so it did; `kill -PIPE` was ignored (Python
starts with SIGPIPE ignored), where it ends GNU `tail -f` by its default action. Now it ends
`stoker tail` so too: 141 to a shell, nothing on stderr."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)


def _follow(tmp_path: Path, stdout) -> subprocess.Popen:
    run = tmp_path / "sb" / ".logs" / "web" / "0"
    run.mkdir(parents=True)
    (run / "stdout").write_bytes(b"one\ntwo\n")
    env = dict(os.environ, STOKER_ROOT=str(tmp_path / "root"))
    return subprocess.Popen([sys.executable, "-m", "executor", "tail", "-f", str(tmp_path / "sb"), "web"],
                            stdout=stdout, stderr=subprocess.PIPE, env=env)


def test_a_reader_that_closes_the_pipe_ends_following_quietly_with_status_0(tmp_path):
    proc = _follow(tmp_path, subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"one\n"
        proc.stdout.close()
        assert proc.wait(10) == 0
        assert proc.stderr.read() == b""
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("to", ["pipe", "file"])
def test_kill_pipe_ends_following_by_its_default_action_as_it_ends_gnu_tail(tmp_path, to):
    out = open(tmp_path / "out", "wb") if to == "file" else subprocess.PIPE
    proc = _follow(tmp_path, out)
    try:
        if to == "pipe":
            assert proc.stdout.readline() == b"one\n"
        else:
            wait_for(lambda: (tmp_path / "out").read_bytes() == b"one\ntwo\n", 10)
        proc.send_signal(signal.SIGPIPE)
        assert proc.wait(10) == -signal.SIGPIPE
        assert proc.stderr.read() == b""
    finally:
        proc.kill()
        proc.wait()
        if to == "file":
            out.close()


# `_ended_by_kill_pipe` with a stdout that is no file (a program that calls `main` with its
# own stream in place): `kill -PIPE` still ends the process by the signal, not by the stream's
# refusal to name a descriptor raised from the handler (a traceback, exit 1)
NOT_A_FILE = {
    "no fileno at all": "sys.stdout = object()",
    "closed": "sys.stdout = open(os.devnull, 'w'); sys.stdout.close()",
    "in memory": "import io; sys.stdout = io.StringIO()",
}


@pytest.mark.parametrize("stdout", NOT_A_FILE.values(), ids=NOT_A_FILE.keys())
def test_kill_pipe_ends_the_command_by_the_signal_whatever_stdout_is(stdout):
    code = ("import os, signal, sys; from executor.cli.main import _ended_by_kill_pipe; " + stdout + "; "
            "_ended_by_kill_pipe(lambda: os.kill(os.getpid(), signal.SIGPIPE) or signal.pause()); "
            "print('not ended', file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert (done.returncode, done.stderr) == (-signal.SIGPIPE, "")
