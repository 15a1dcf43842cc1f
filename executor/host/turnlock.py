"""An `flock` waited for only up to a bound: for a file two processes write in turns (the
attrs code cache's, `executor/codecache.py`), where a process that never lets go (stopped by
SIGSTOP or a debugger as it held it, or on a hung network file system) must not keep another
from ending. Standard library only (`executor.logs` for the rare wait): a start loads it as it
ends, only when it writes."""
from __future__ import annotations

import contextlib
import fcntl
import os


def take(fd: int, bound_secs: float) -> bool:
    """Whether this process holds the exclusive `flock` of the open file `fd` within
    `bound_secs`: at once when no one else does, else when the holder lets go. No locks here
    (ENOLCK, some network file systems) counts as held: the write goes on as before. When it
    gives up (False), `fd` is no longer the caller's: the thread that waits for the lock
    closes it once the kernel gives it the lock, letting go at once (or the process ends);
    with no thread to wait with, it is closed here and the turn given up at once."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # another's turn
        return _waited(fd, bound_secs)
    except OSError:
        return True
    return True


def _waited(fd: int, bound_secs: float) -> bool:
    """The wait is a thread's blocking `flock` (woken by the kernel at the holder's release,
    no polling) that the caller waits for up to the bound."""
    import threading

    from executor.logs import start_thread  # only when another process holds the lock

    turn, given_up, gate = threading.Event(), threading.Event(), threading.Lock()

    def wait() -> None:
        with contextlib.suppress(OSError):  # (ENOLCK: as no locks at all)
            fcntl.flock(fd, fcntl.LOCK_EX)
        with gate:
            if given_up.is_set():  # given up meanwhile: not held for nothing
                os.close(fd)
            turn.set()

    try:
        start_thread(threading.Thread(target=wait, name="turnlock", daemon=True))
    except RuntimeError:  # no thread to wait with (a full pids cgroup, no room below ulimit -v):
        os.close(fd)  # not this one's turn, as past the bound (a next start compiles again)
        return False
    if turn.wait(bound_secs):
        return True
    with gate:
        if turn.is_set():  # as the bound ran out
            return True
        given_up.set()
        return False
