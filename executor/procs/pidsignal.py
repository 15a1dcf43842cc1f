"""One signal to one process: through its pidfd, or by kill() where none can carry it.

Owns `pidfd_signal` (the signal through a pidfd, by kill() where a seccomp profile denies
pidfd_send_signal: `send_denied`, from the process's one probe of the pidfd calls,
`probe_pidfds`, which the reaper's `check_pidfds` shares; `kill_by_pid`), `kill_checked`
(kill() with the judged process's exit asked just before, a SIGSTOP that may have hit a
reused pid undone),
`wakes` (which signals a stopped process needs SIGCONT after) and `signal_group` (killpg,
then SIGCONT). Which pids are ours to signal is `proctree.py`'s (`send`, `send_checked`),
which uses these; the cgroup's kill fallback (`cgroups.py`) too. Out of `proctree.py`,
which was past its size limit; loaded with it (not on demand: a pidfd_open that failed
with EMFILE, every descriptor taken, is when kill() is needed, and an import then could
not open its file). No logging.
"""
from __future__ import annotations

import contextlib
import errno
import os
import select as _select
import signal
from collections.abc import Callable


def pidfd_signal(pidfd: int, pid: int, sig: int) -> None:
    """`sig` through `pidfd` (of `pid`), or by kill() where a seccomp profile denies the
    call itself (`send_denied`). Raises as kill() does: PermissionError when the process
    refuses (a setuid program's), not asked of kill() again (a reused pid would obey it)."""
    try:
        signal.pidfd_send_signal(pidfd, sig)
    except ProcessLookupError:
        raise
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOSYS) or not send_denied():
            raise
        kill_by_pid(pidfd, pid, sig)


def kill_by_pid(pidfd: int, pid: int, sig: int) -> None:
    """`sig` to `pid` by kill(), where no pidfd may carry it, its process's exit asked of
    `pidfd` (readable once it exited) just before: ProcessLookupError when it had exited."""
    if not kill_checked(pid, sig, lambda: bool(_select.select([pidfd], [], [], 0)[0])):
        raise ProcessLookupError(errno.ESRCH, os.strerror(errno.ESRCH))


def kill_checked(pid: int, sig: int, gone: Callable[[], bool]) -> bool:
    """kill() where no pidfd carries the signal, `gone()` (the judged process exited) asked
    just before: only a pid reused in the microseconds between could be hit, and a SIGSTOP
    that may have been (`gone()` after it) is undone by SIGCONT. False when it was gone."""
    if gone():
        return False
    os.kill(pid, sig)
    if sig == signal.SIGSTOP and gone():
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGCONT)
    return True


# This process's own probe of the pidfd calls, by its pid (a forked child, which may have
# installed a seccomp filter of its own since, probes again): (errno, error), (0, "") when
# both calls work. No lock (a fork while another thread held it would leave the child one it
# can never take): two threads that ask at once may both probe, and find the same.
_PROBED: dict[int, tuple[int, str]] = {}
_TOLD: set[int] = set()  # the pids whose `check_pidfds` said what the probe found
_BUSY = (errno.EMFILE, errno.ENFILE)  # no descriptor to spare now: asked again next time


def probe_pidfds() -> tuple[int, str]:
    """Whether this process can have pidfds and signal through them: pidfd_open of itself,
    then signal 0 through it (`pidfd_send_signal`). (errno, error): 0 and "" when both
    work. Asked once per process (`check_pidfds` and `send_denied` share it), except after
    an EMFILE or ENFILE, which says nothing of the host and is asked again."""
    pid = os.getpid()
    known = _PROBED.get(pid)
    if known is not None:
        return known
    try:
        pidfd = os.pidfd_open(pid)
        try:
            signal.pidfd_send_signal(pidfd, 0)
        finally:
            os.close(pidfd)
    except OSError as e:
        found = (e.errno or 0, f"{type(e).__name__}: {e}")
        if e.errno in _BUSY:
            return found
    else:
        found = (0, "")
    _PROBED.clear()  # another pid's answer (a parent's, before a fork) is not this one's
    _PROBED[pid] = found
    return found


def first_told() -> bool:
    """True the first time this process asks (`check_pidfds`: its warning, once)."""
    pid = os.getpid()
    if pid in _TOLD:
        return False
    _TOLD.clear()
    _TOLD.add(pid)
    return True


def forget_probe() -> None:
    """Forget the probe and that it was told (tests: the next `probe_pidfds` asks the
    kernel again)."""
    _PROBED.clear()
    _TOLD.clear()


def send_denied() -> bool:
    """Whether a seccomp profile denies the pidfd calls to this process (its probe,
    `probe_pidfds`, answered EPERM or ENOSYS), asked once; where it does not, an EPERM of
    pidfd_send_signal is the target's."""
    return probe_pidfds()[0] in (errno.EPERM, errno.ENOSYS)


def wakes(sig: int) -> bool:
    """Whether `sig` is followed by SIGCONT: a stopped process (`kill -STOP $$`, a job
    control stop, an operator's pause) acts on no signal but SIGKILL until continued, so a
    SIGTERM alone would sit pending for the whole grace and end in SIGKILL, its handler
    never run. SIGCONT to a running process changes nothing (systemd does the same)."""
    return sig not in _NO_WAKE


_NO_WAKE = frozenset({signal.SIGKILL, signal.SIGCONT, signal.SIGSTOP, signal.SIGTSTP,
                      signal.SIGTTIN, signal.SIGTTOU})


def signal_group(pgid: int, sig: int) -> bool:
    """killpg (and SIGCONT after it, `wakes`), for a group whose leader the caller knows is
    unreaped; False if none left."""
    try:
        os.killpg(pgid, sig)
        if wakes(sig):
            os.killpg(pgid, signal.SIGCONT)
        return True
    except (ProcessLookupError, PermissionError):
        return False
