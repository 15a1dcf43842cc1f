"""How `stoker tail -f` ends, the real command against a sandbox changed under it.

A sandbox removed under it (the agent's garbage collection of an
ended task's sandbox, an operator's `rm -rf`): nothing can be appended to a log whose run
directory is gone, so the real command ends, once what was written is printed, with one
`stoker: error:` line naming the log and exit 1. Before, it polled the deleted file for
ever without a word."""
from __future__ import annotations

import os
import shutil
import signal

import pytest

from tests.support.stoker_proc import StokerProcess

pytestmark = pytest.mark.timeout(30)


def test_tail_f_ends_once_the_sandbox_it_follows_is_removed(tmp_path):
    sandbox = tmp_path / "sandbox"
    run_dir = sandbox / ".logs" / "web" / "0"
    run_dir.mkdir(parents=True)
    (run_dir / "stdout").write_bytes(b"first\n")
    tail = StokerProcess(["tail", "-f", str(sandbox), "web"], tmp_path)
    try:
        tail.wait_output("first", 10)
        with open(run_dir / "stdout", "ab") as log:
            log.write(b"last words\n")
        tail.wait_output("last words", 5)
        shutil.rmtree(sandbox)
        assert tail.wait(5) == 1, tail.stderr()
        assert tail.stdout() == "first\nlast words\n"
        assert tail.stderr() == (f"stoker: error: stopped following {sandbox}/.logs/web/0/stdout: its sandbox "
                                 "was removed (the agent's garbage collection, an rm -rf): nothing more can be "
                                 "written to it\n")
    finally:
        tail.close()


def _following(tmp_path):
    """A sandbox whose process web's run 0 wrote `first`, and `stoker tail -f` of it that printed it."""
    run_dir = tmp_path / "sandbox" / ".logs" / "web" / "0"
    run_dir.mkdir(parents=True)
    (run_dir / "stdout").write_bytes(b"first\n")
    tail = StokerProcess(["tail", "-f", str(tmp_path / "sandbox"), "web"], tmp_path)
    tail.wait_output("first", 10)
    return run_dir, tail


def test_tail_f_that_meets_a_planted_fifo_names_the_log_by_its_path(tmp_path):
    """The task rotated its log into a FIFO (a reader would block on it for ever): it stops,
    and the line names the log's whole path, its sandbox too (was: `.logs/web/0/stdout`)."""
    run_dir, tail = _following(tmp_path)
    try:
        os.replace(run_dir / "stdout", run_dir / "stdout.1")
        os.mkfifo(run_dir / "stdout")
        assert tail.wait(5) == 1, tail.stderr()
        assert tail.stderr() == (f"stoker: error: stopped following {run_dir}/stdout: stdout: it is a FIFO, "
                                 "not a regular file\n")
    finally:
        tail.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_tail_f_ends_at_sigterm_or_sighup_as_gnu_tail_does(tmp_path, signum):
    """A reader with nothing left to say (no sandbox it holds, no last line): SIGHUP (its
    terminal closed) and SIGTERM end it by their default action, 129 / 143 to a shell, as
    they end GNU `tail -f`; what it printed stays, no traceback. (`stoker observe`, which
    has a last line to log, takes both as one stop: exit 0.)"""
    _, tail = _following(tmp_path)
    try:
        tail.signal(signum)
        assert tail.wait(5) == -signum
        assert tail.stdout() == "first\n" and tail.stderr() == ""
    finally:
        tail.close()
