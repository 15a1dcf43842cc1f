"""One process by its pid: whether it lives, one signal to it, waiting for its exit.

Owns the one judgement of a live process (`live_fields`), which every reader of
/proc/PID/stat uses (the walks of `proctree.py`, the host's identities, the observer's
usage): gone, dead (X), unreadable or a zombie is not alive. A zombie is state Z with one
thread; a process whose first thread exited (`pthread_exit` in `main`) while others run reads
Z too, with more than one thread, and is alive (taken for a zombie, the close's kill never
signalled it, and the observer and the host's checks called it gone). Also `read_stat` and
`alive_as` on it, and the waits for exits by pidfd: `wait_exited` (every one of some pids)
and `Exits` (the close's kill: any one of those SIGKILLed, each pidfd checked against the
start time the walk read, so a pid reused before its pidfd was opened is not waited for).

Owns `pidfd_signal` (the signal through a pidfd, by kill() where a seccomp profile denies
pidfd_send_signal: `send_denied`, from the process's one probe of the pidfd calls,
`probe_pidfds`, which the reaper's `check_pidfds` shares; `kill_by_pid`), `kill_checked`
(kill() with the judged process's exit asked just before, a SIGSTOP that may have hit a
reused pid undone),
`wakes` (which signals a stopped process needs SIGCONT after) and `signal_group` (killpg,
then SIGCONT). Which pids are ours to signal is `proctree.py`'s (`send`, `send_checked`),
which uses these; the cgroup's kill fallback (`cgroups.py`) too. Out of `proctree.py`,
which was past its size limit (the judgement and the waits too); loaded with it (not on
demand: a pidfd_open that failed with EMFILE, every descriptor taken, is when kill() is
needed, and an import then could not open its file), and by the host's identities (one
module: `stoker run`'s budget). Never raises for a process that vanished or a file that
cannot be read. No logging.
"""
from __future__ import annotations

import contextlib
import errno
import os
import select as _select
import signal
import time
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


POLL_SECS = 0.001  # how often a wait looks at /proc where there are no pidfds


def read_small(path: str, limit: int, strict: bool = False) -> bytes:
    """A whole small /proc file (os-level: no Python file objects), b"" when unreadable
    (with `strict`, a file that cannot be opened raises the OSError)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        if strict:
            raise
        return b""
    try:
        chunks = []
        while True:
            chunk = os.read(fd, limit)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return b""
    finally:
        os.close(fd)


EXEC_SETTLE_SECS = 0.05  # the longest an environ read waits for a process's exec to place its new one
SETTLED_READS = 2  # reads again once the arguments are placed: the environment is copied after them
PF_KTHREAD = 0x00200000  # /proc/PID/stat's flags: a kernel thread (no arguments, no environment, ever)


def read_environ(pid: int, limit: int) -> bytes:
    """`/proc/PID/environ` (`read_small`, strict), read again while it is empty and its
    process is in the middle of an exec (`_placed`), for at most EXEC_SETTLE_SECS: from the
    switch to the new image until its arguments are placed, both read as empty, and its
    environment is copied after them (microseconds). A task's process read then carried no
    marker: a daemon caught so as its launcher exited 0 was killed as unclaimed instead of
    kept. An environment empty for good (`env -i`) costs SETTLED_READS reads more, no wait."""
    path = f"/proc/{pid}/environ"
    environ = read_small(path, limit, strict=True)
    give_up_at, again = None, SETTLED_READS
    while not environ and (placed := _placed(pid)) is not None and (not placed or again > 0):
        again -= placed
        now = time.monotonic()
        give_up_at = now + EXEC_SETTLE_SECS if give_up_at is None else give_up_at
        if now >= give_up_at:
            break
        if not placed:  # the exec's to go on: an environment empty for good costs no wait
            os.sched_yield()
        environ = read_small(path, limit, strict=True)
    return environ


def settled_environ(pid: int, limit: int) -> bytes:
    """`read_environ`'s, b"" when unreadable (gone, another user's)."""
    try:
        return read_environ(pid, limit)
    except OSError:
        return b""


def _placed(pid: int) -> bool | None:
    """Whether the arguments of `pid`'s image are placed (its cmdline not empty: execve
    places at least an empty argv[0] since Linux 5.18), False in the middle of an exec;
    None when it has none to place (gone, a zombie, a kernel thread)."""
    fields = live_fields(read_small(f"/proc/{pid}/stat", 4096))
    if fields is None or not fields[6].isdigit() or int(fields[6]) & PF_KTHREAD:
        return None
    try:
        fd = os.open(f"/proc/{pid}/cmdline", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, 1) != b""
    except OSError:
        return None
    finally:
        os.close(fd)


def live_fields(data: bytes) -> list[bytes] | None:
    """The fields of a /proc/PID/stat (`data`) after the command name, the state first
    (`fields[17]`: threads, `fields[19]`: start time), when its process is alive; None when
    it is unreadable, cut short, dead (X) or a zombie (Z with one thread: a process whose
    first thread exited while others run reads Z too, with more, and lives)."""
    close = data.rfind(b")")  # the command name may itself hold ") ": split after the last
    fields = data[close + 2:].split()
    if close < 0 or len(fields) < 20 or fields[0] in (b"X", b"x"):
        return None
    if fields[0] == b"Z" and not (fields[17].isdigit() and int(fields[17]) > 1):
        return None
    return fields


def read_stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, pgrp, start time) of a live process (`live_fields`); None when gone, a zombie
    or unreadable."""
    fields = live_fields(read_small(f"/proc/{pid}/stat", 4096))
    if fields is None or not (fields[1].isdigit() and fields[2].isdigit() and fields[19].isdigit()):
        return None
    return int(fields[1]), int(fields[2]), int(fields[19])


def alive_as(pid: int, start: int) -> bool:
    """Whether `pid` is still the process that started at `start` (not a zombie): a pid
    the kernel handed to another process since has another start time."""
    stat = read_stat(pid)
    return stat is not None and stat[2] == start


def wait_exited(started: dict[int, int], deadline_at: float, wake_fd: int = -1) -> bool:
    """Block until each pid of `started` has exited (a zombie counts: its children have been
    re-parented by then), by polling their pidfds; False when `deadline_at` (monotonic)
    passed first, or `wake_fd` (-1: none) turned readable. A pid that is gone already, or
    that is another process than the one that started at its start time (0: not known), is
    not waited for (`Exits.add`: a killed grandchild reaped by its own parent, its pid handed
    on, would otherwise be waited for to the deadline). Without pidfds (a kernel before 5.3, a container whose seccomp profile
    denies pidfd_open) /proc is looked at every millisecond instead: returning at once would
    let a killed process's children re-parent after the caller's last look (a fork-hopper
    outliving its leftover kill). `poll`, not `select`: a task of 1,000 processes has pidfds
    past 1024."""
    with Exits() as exits:
        exits.add(started)
        while exits:
            if not exits.wait(deadline_at, wake_fd):
                return False
        return True


class Exits:
    """Processes waited for by pidfd until they exit (`wait`: until any one does), each added
    with the start time the walk that found it read: a pid reaped and handed to another
    process before its pidfd was opened is not waited for (was: the close's kill waited its
    whole bound for the stranger, then named it as not gone). True while any is left."""

    def __init__(self) -> None:
        self._poller = _select.poll()
        self._fds: dict[int, int] = {}  # pidfd: pid
        self._pids: set[int] = set()  # those pids
        self._polled: dict[int, int] = {}  # pid: start (0: unknown), where no pidfd can be had

    def __enter__(self) -> Exits:
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()
        self._pids.clear()

    def __bool__(self) -> bool:
        return bool(self._fds or self._polled)

    def __contains__(self, pid: object) -> bool:
        return pid in self._pids or pid in self._polled

    def left(self) -> set[int]:
        """The pids added that have not been seen to exit."""
        return self._pids | set(self._polled)

    def add(self, started: dict[int, int]) -> None:
        """Wait for each pid of `started` too, if it is still the process that started at its
        start time once its pidfd is open: the pidfd then names that process (0: not known,
        one /proc hides; the pidfd alone)."""
        for pid, start in started.items():
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            except OSError:
                self._polled[pid] = start
                continue
            if start and not alive_as(pid, start):
                os.close(fd)  # exited (a zombie), or its pid is another process's now
                continue
            self._fds[fd] = pid
            self._pids.add(pid)
            self._poller.register(fd, _select.POLLIN)

    def wait(self, deadline_at: float, wake_fd: int = -1) -> bool:
        """Block until at least one of the processes exited (True; at once when none is
        left), `deadline_at` (monotonic) passed, or `wake_fd` (-1: none) turned readable
        (False). Those that exited are no longer waited for."""
        if wake_fd >= 0:
            self._poller.register(wake_fd, _select.POLLIN)
        try:
            while True:
                before = len(self._polled)
                self._polled = {pid: start for pid, start in self._polled.items()
                                if (alive_as(pid, start) if start else read_stat(pid) is not None)}
                if not self or len(self._polled) < before:
                    return True
                left = deadline_at - time.monotonic()
                if left <= 0:  # the exits that came meanwhile are taken: `left()` names what lives
                    self._take(self._poller.poll(0), wake_fd)
                    return False
                ready = self._poller.poll(1000 * (min(left, POLL_SECS) if self._polled else left))
                woken = any(fd == wake_fd for fd, _ in ready)
                if self._take(ready, wake_fd) or woken:
                    return not woken
        finally:
            if wake_fd >= 0:
                self._poller.unregister(wake_fd)

    def _take(self, ready: list[tuple[int, int]], wake_fd: int) -> bool:
        """Stop waiting for the processes whose pidfds are in `ready` (exited); whether any."""
        exited = [fd for fd, _ in ready if fd != wake_fd]
        for fd in exited:
            self._poller.unregister(fd)
            self._pids.discard(self._fds.pop(fd))
            os.close(fd)
        return bool(exited)
