"""What an early start hands the supervisor: the sandbox it made and locked, the lease on the
kept plan, the task id and marker it chose, its watchdog and the runs it forked.

The early start (`executor/cli/launch.py`) forks a kept plan's first runs in the first
milliseconds of `stoker run`, before the rest of Stoker is loaded; `LocalRun` then checks
that everything it decides itself is what the early start assumed (the plan, its lease, the
sandbox) and hands the runs to the supervisor, which adopts each one whose command and
environment are exactly those it would have started (`executor/procs/supervisor.py`).
Whatever does not match is given up: `abandon` kills the runs' sessions and lets the early
watchdog make its pass over the task's marker (which kills whatever they forked), reaps
them, and gives back the sandbox and the lease, so the run goes on as if there had been no
early start. Standard library only; one owner at a time (`take_*` hand a part over).

From the first early run's fork until `stoker run` relays its stop signals itself
(`executor/host/signals.py`), a stop signal (Ctrl-C, SIGTERM, SIGHUP, Ctrl-\\, Ctrl-Z) is
recorded (`defer_stop_signals`), not acted on: `LocalRun` takes them (`deferred_signals`)
once its relay is up and stops as for any signal, so that the runs already running get their
graceful stop (SIGTERM first, the final processes) instead of the watchdog's SIGKILL as the
command dies or raises KeyboardInterrupt while it loads. So is a stray signal (`STRAYS`:
an early run's `kill -USR1 $PPID` or `kill -RTMIN+3 $PPID` as it starts, its parent still loading), which the relay
then ignores with its line: its default would end the command there. An early start
abandoned before its runs are handed over puts the handlers back and raises the stops that
came meanwhile (`undefer_stop_signals`); the strays, its runs' and ignored once loaded, are
dropped.
"""
from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # CPython's: `signal` adds enums (1.3 ms) for nothing here
import os

from executor.procs.earlyfork import EarlyRun
from executor.procs.earlyfork import die_with as die_with  # for executor.local's planning child

TYPE_CHECKING = False  # not `typing`'s: the early start loads this module
if TYPE_CHECKING:
    from collections.abc import Callable

STOPS = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT, _signal.SIGTSTP)  # `stoker run`'s
# `executor.host.signals.STRAY_SIGNALS` (a test checks), without the `signal` module's enums
STRAYS = (_signal.SIGUSR1, _signal.SIGUSR2, _signal.SIGALRM, _signal.SIGVTALRM, _signal.SIGPROF,
          _signal.SIGIO, _signal.SIGPWR, _signal.SIGTRAP, _signal.SIGSYS, _signal.SIGSTKFLT,
          _signal.SIGXCPU, *range(_signal.SIGRTMIN, _signal.SIGRTMAX + 1))
_DEFERRED = STOPS + STRAYS
_deferred: list[int] = []
_replaced: dict[int, object] = {}  # the handlers `defer_stop_signals` replaced


def defer_stop_signals() -> None:
    """Record the stop signals from now on instead of acting on them (one ignored, as
    nohup's SIGHUP, stays ignored). Main thread only."""
    for signum in _DEFERRED:
        previous = _signal.getsignal(signum)
        if previous != _signal.SIG_IGN and signum not in _replaced:
            _replaced[signum] = previous
            _signal.signal(signum, _record)


def _record(signum: int, frame: object) -> None:
    _deferred.append(signum)


def stop_pending() -> bool:
    """Whether a stop signal was recorded and not taken yet (as a container's main process,
    one that came while Stoker loaded): a run asked to stop starts nothing early."""
    return any(signum not in STRAYS for signum in _deferred)


def deferred_signals() -> list[int]:
    """The stop signals recorded since `defer_stop_signals`, in order, once."""
    taken = list(_deferred)
    del _deferred[:len(taken)]
    return taken


def replaced_stop_handlers() -> dict[int, object]:
    """`stoker run` relays the stop signals now: the handlers `defer_stop_signals` replaced,
    for the relay to put back as it closes (not the recorder it found: a Ctrl-C as the run
    ends would be recorded, never acted on). The relay takes the ones recorded meanwhile
    (`deferred_signals`) once its handlers are up."""
    replaced = dict(_replaced)
    _replaced.clear()
    return replaced


def undefer_stop_signals() -> None:
    """Put back the handlers `defer_stop_signals` replaced, and raise the stop signals
    recorded meanwhile, as they would have come (Ctrl-C: KeyboardInterrupt); the strays are
    dropped (the abandoned runs sent them, and once loaded they are ignored). Not in a PID namespace's
    init (`stoker run` as a container's main process): the kernel drops a signal it has no
    handler for, raised too, so they stay recorded for the relay (`deferred_signals`)."""
    if os.getpid() == 1:
        return
    for signum, previous in _replaced.items():
        _signal.signal(signum, previous)
    _replaced.clear()
    for signum in deferred_signals():
        if signum not in STRAYS:
            _signal.raise_signal(signum)


class EarlyStart:
    __slots__ = ("entry", "sandbox", "made_sandbox", "task_id", "marker", "runs", "planned_ahead",
                 "_lock_fd", "_lease_fd", "watchdog_pid", "_watchdog_fd", "inherited", "before_abandon",
                 "until_moved")

    def __init__(self, *, entry: str, sandbox: str, lease_fd: int, task_id: str, marker: str,
                 planned_ahead: bool = False) -> None:
        self.entry = entry  # the plan cache entry (path without suffix) whose lease is held
        self.planned_ahead = planned_ahead  # a first run's: its runs are the plan made ahead's, not the kept one's
        self.sandbox = sandbox  # absolute, resolved; made by the early start
        self.made_sandbox = True  # until a supervisor took it: `abandon` removes it
        self.task_id = task_id
        self.marker = marker
        self.runs: list[EarlyRun] = []
        self.watchdog_pid = -1
        self._lease_fd = lease_fd  # the entry's .lock, flocked
        self._lock_fd = -1  # SANDBOX/.stoker/supervisor.lock, flocked
        self._watchdog_fd = -1
        # made before the first fork: every child now was inherited (`sleep 1000 & exec stoker
        # run`), not Stoker's to kill, nor the supervisor's to take into the task's cgroup
        # (`Containment.prepare`); one that ends stays a zombie, its pid not reused, as
        # nothing here reaps before `abandon`
        self.inherited = _inherited_now()
        self.before_abandon: Callable[[], None] | None = None  # the task's cgroup made early goes first
        self.until_moved: Callable[[], None] | None = None  # waits for that cgroup's move, on a thread

    def watchdog_fd(self) -> int:
        """The write end of the early watchdog's pipe (-1 once taken): `cgrouplife.begin`
        names the task's cgroup on it."""
        return self._watchdog_fd

    def hold_lock(self, fd: int) -> None:
        self._lock_fd = fd

    def hold_watchdog(self, pid: int, fd: int) -> None:
        self.watchdog_pid, self._watchdog_fd = pid, fd

    def take_lock(self) -> int:
        """The sandbox's lock, for the session that takes the sandbox over."""
        fd, self._lock_fd = self._lock_fd, -1
        self.made_sandbox = False  # its session's now
        return fd

    def take_lease(self) -> int:
        fd, self._lease_fd = self._lease_fd, -1
        return fd

    def take_runs(self) -> list[EarlyRun]:
        """The runs, for the supervisor that adopts them (it keeps each only until then)."""
        runs, self.runs = self.runs, []
        return runs

    def take_watchdog(self) -> tuple[int, int]:
        """The early watchdog's pid and pipe: its new owner retires it."""
        fd, self._watchdog_fd = self._watchdog_fd, -1
        return self.watchdog_pid, fd

    def one_thread(self) -> None:
        """Wait until this process runs no thread of the early start's (the move into the
        task's cgroup made as `stoker run` loaded: `until_moved`), for what may happen only
        while it has one (`healthcheck/plainhttp.py`: a move that waited for the kernel's
        grace period under load was still running as the plan came, and `ssl` loaded)."""
        if self.until_moved is not None:
            self.until_moved()

    def abandon(self) -> None:
        """Kill the runs and whatever they started, reap them and the watchdog, give back
        what is still held here (the sandbox when it was made here goes too). Only before
        the runs were handed to a supervisor (its reaper would take their statuses), in the
        process that ran the early start, which forks nothing else before its supervisor:
        every child it has then but those it had before (inherited through `exec`, left
        alone) is the early start's, a daemon that re-parented to it (the subreaper)
        included, whatever it did to its marker and session. First this process leaves the
        task's cgroup made as `stoker run` loaded (`before_abandon`), which the watchdog
        kills as its pipe closes."""
        if self.before_abandon is not None:
            self.before_abandon()
            self.before_abandon = None
        for run in self.runs:
            try:
                os.killpg(run.pid, _signal.SIGKILL)
            except OSError:
                continue  # gone, with its group
        if self._watchdog_fd >= 0:  # at EOF it kills every process carrying the marker
            os.close(self._watchdog_fd)
            self._watchdog_fd = -1
        for pid in [run.pid for run in self.runs] + ([self.watchdog_pid] if self.watchdog_pid > 0 else []):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                continue
        self.runs = []
        _kill_children(frozenset(pid for pid, _ in self.inherited))
        for fd in (self._lock_fd, self._lease_fd):
            if fd >= 0:
                os.close(fd)
        self._lock_fd = self._lease_fd = -1
        if self.made_sandbox:
            import shutil  # only when giving up

            try:
                shutil.rmtree(self.sandbox, ignore_errors=True)
            except RecursionError:  # a run nested directories deeper than rmtree recurses
                pass  # what is left stays: the run goes on without the early start, as ever


def _children() -> list[int]:
    """This process's children, every thread's."""
    children: list[int] = []
    try:
        threads = os.listdir(f"/proc/{os.getpid()}/task")
    except OSError:  # no /proc: no child is known, none killed
        return children
    for tid in threads:
        try:
            with open(f"/proc/{os.getpid()}/task/{tid}/children", "rb") as f:
                children.extend(int(pid) for pid in f.read().split())
        except OSError:
            continue  # the thread ended meanwhile
    return children


def _inherited_now() -> frozenset[tuple[int, int]]:
    """This process's children, each with its start (clock ticks after boot, the 22nd field
    of /proc/PID/stat; 0 where it cannot be read), as `executor.procs.proctree` reads them."""
    found = set()
    for pid in _children():
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                start = int(f.read().rpartition(b")")[2].split()[19])
        except (OSError, ValueError, IndexError):  # gone, or hidden (hidepid): its pid alone
            start = 0
        found.add((pid, start))
    return frozenset(found)


def _kill_children(inherited: frozenset[int], passes: int = 20) -> None:
    """SIGKILL and reap every child of this process but the `inherited` ones, until a pass
    finds none (a killed daemon's own children re-parent here for the next)."""
    for _ in range(passes):
        children = [pid for pid in _children() if pid not in inherited]
        if not children:
            return
        for pid in children:
            try:
                os.kill(pid, _signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                continue
