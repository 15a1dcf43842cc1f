"""`executor.host.turnlock.take`: a file's exclusive `flock`, waited for within a bound. Another
open file of the same path stands for another process: `flock` locks belong to an open file,
so two opens in one process take turns as two processes do (real locks on a real file)."""
from __future__ import annotations

import contextlib
import fcntl
import os
import resource
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.host import turnlock

pytestmark = pytest.mark.timeout(60)


@contextlib.contextmanager
def opened(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDWR)
    try:
        yield fd
    finally:
        with contextlib.suppress(OSError):  # (one `take` gave up is the waiting thread's to close)
            os.close(fd)


def free(path: Path) -> bool:
    """Whether a third open file of `path` can take the lock at once (and lets it go)."""
    with opened(path) as fd:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def waiting_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "turnlock"]


@pytest.fixture
def lock(tmp_path: Path) -> Path:
    path = tmp_path / "attrs-run.lock"
    path.write_bytes(b"")
    return path


def test_a_lock_no_one_holds_is_taken_at_once(lock):
    with opened(lock) as fd:
        assert turnlock.take(fd, 0.0) is True
        assert not free(lock)
    assert free(lock)


def test_a_lock_let_go_within_the_bound_is_this_one_s_turn_and_its_descriptor_stays_the_caller_s(lock):
    with opened(lock) as holder, opened(lock) as fd:
        fcntl.flock(holder, fcntl.LOCK_EX)
        release = threading.Timer(0.05, fcntl.flock, (holder, fcntl.LOCK_UN))
        release.start()
        try:
            assert turnlock.take(fd, 30.0) is True
        finally:
            release.join()
        os.fstat(fd)  # still open
        assert not free(lock)
    for waiting in waiting_threads():  # (ending: it set the turn)
        waiting.join(30)


def test_past_the_bound_the_turn_is_given_up_and_the_waiting_thread_closes_the_descriptor_once_it_has_the_lock(lock):
    """The thread is a daemon (a process that ends does not wait for it), named `turnlock`;
    once the holder lets go it takes the lock and closes the descriptor, letting go at once."""
    with opened(lock) as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        fd = os.open(lock, os.O_RDWR)
        try:
            assert turnlock.take(fd, 0.05) is False
            (waiting,) = waiting_threads()
            assert waiting.daemon
            assert waiting.is_alive()  # still blocked in flock: the holder has not let go
        finally:
            fcntl.flock(holder, fcntl.LOCK_UN)
        waiting.join(30)
        assert not waiting.is_alive()
        with pytest.raises(OSError):
            os.fstat(fd)  # closed by the thread
        assert free(lock)


def test_a_lock_the_kernel_refuses_for_another_reason_than_another_s_turn_counts_as_held():
    """ENOLCK (a file system without locks) lets the write go on as before; a descriptor
    past the descriptor limit, never open (EBADF), is the refusal this test can make happen."""
    assert turnlock.take(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 0.0) is True
