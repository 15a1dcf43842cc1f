"""`planahead.collect`: the answer of a child forked with its stop signals blocked (`stoker
run`'s planning child, `stoker inspect`'s) and its wait status, the signal mask put back
first; anything raised meanwhile (a Ctrl-C held since the fork) kills and reaps the child
and is raised again; the pipe's read end closed either way. Real forked children, each
ended by the test too should `collect` not (mutmut's forced failure)."""
from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator

import pytest

from executor.local import planahead
from executor.local.planahead import collect
from tests.support.limits import closed

pytestmark = pytest.mark.timeout(30)


@contextlib.contextmanager
def forked(answer: bytes, code: int, then_sleep: bool = False) -> Iterator[tuple[int, int]]:
    """A child that writes `answer` and exits `code` (or sleeps first: `then_sleep`): its
    pid and the pipe's read end; killed and reaped on the way out if it is still there."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            os.write(write_end, answer)
            if then_sleep:
                time.sleep(60)
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        yield pid, read_end
    finally:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        with contextlib.suppress(OSError):
            os.close(read_end)


def test_the_answer_and_the_wait_status_with_the_mask_put_back_and_the_pipe_closed():
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    try:
        with forked(b"the answer", 3) as (pid, read_end):
            data, status = collect(pid, read_end, before)
            assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == before  # SIGUSR1 no longer blocked
            assert (data, os.waitstatus_to_exitcode(status)) == (b"the answer", 3)
            assert closed(read_end)
            with pytest.raises(ChildProcessError):  # reaped
                os.waitpid(pid, os.WNOHANG)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


class Interrupted(Exception):
    """What the test's SIGUSR1 handler raises into `collect`'s read."""


def interrupt(_signum, _frame):
    raise Interrupted


def test_a_signal_held_since_the_fork_lands_in_collect_which_kills_and_reaps_the_child():
    """The stop signal blocked for the fork and sent before the parent waits is delivered as
    `collect` puts the mask back: raised there, the child (asleep) killed and reaped first."""
    handler = signal.signal(signal.SIGUSR1, interrupt)
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    try:
        with forked(b"partial", 0, then_sleep=True) as (pid, read_end):
            signal.raise_signal(signal.SIGUSR1)  # held: blocked
            with pytest.raises(Interrupted):
                collect(pid, read_end, before)
            assert closed(read_end)
            with pytest.raises(ChildProcessError):  # killed and reaped, not left asleep
                os.waitpid(pid, os.WNOHANG)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
        signal.signal(signal.SIGUSR1, handler)


def test_a_failed_read_kills_and_reaps_the_child_and_is_raised_again(monkeypatch):
    def fails(read_end: int, pid: int, size: int = -1, slow: object = None) -> bytes:
        raise KeyboardInterrupt

    monkeypatch.setattr(planahead, "read_answer", fails)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    with forked(b"", 0, then_sleep=True) as (pid, read_end):
        with pytest.raises(KeyboardInterrupt):
            collect(pid, read_end, mask)
        assert closed(read_end)
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
