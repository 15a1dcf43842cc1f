"""When this process must be gone: `stoker executor` after SHUTDOWN or a stop signal (the
agent destroys the container once its shutdown grace is over), never under `stoker run`.

Set by the front end from its own thread, at any time: before a task's close, or while
the close waits (a task a KILL ended, its cgroup left to the watchdog, then SHUTDOWN). So
the close asks at each step (`within`), and a wait through `wait` ends at it once set,
whenever that was: no wait of the close outlasts it. A wait on file descriptors (the
close's kill, `pidsignal.Exits`) is woken by `waking`'s eventfd instead. Times are
`time.monotonic()`.

The supervisor's close itself, the steps this bounds, is here too (`close_task`: the task
killed, its cgroup left and removed, the watchdog let go and waited for, the reaper's thread
joined), each step run whatever an earlier one raised (`close_step`: the close raises the
first error once every step is done).
"""
from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from executor.procs.containment import Containment
    from executor.procs.reaper import Reaper
    from executor.procs.runlogs import RunLogs
    from executor.procs.watchdog import WatchdogKeeper


def within(secs: float, exit_by: float | None) -> float:
    """`secs`, or what is left until `exit_by` (None: no bound) when that is sooner."""
    return secs if exit_by is None else max(0.0, min(secs, exit_by - time.monotonic()))


def _empty(eventfd: int) -> None:
    """Set `eventfd`'s count back to 0 (not readable), from whatever it was, 0 included."""
    try:
        os.eventfd_read(eventfd)
    except BlockingIOError:
        return  # 0 already: nothing set since the last read


class ExitBy:
    """The time this process must be gone by: None (no bound) until `set`; the soonest of
    those set (a second SHUTDOWN, or a signal after one, moves it no later)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._at: float | None = None
        self.kill_at: float | None = None  # when what still runs is SIGKILLed (`set`), before `_at`
        self.reason: str | None = None  # why, as the first `set` said it (a wait it ended says so)
        self._wake_fds: set[int] = set()  # those of the waits under way (`waking`)

    def __call__(self) -> float | None:
        with self._cond:
            return self._at

    def waking(self) -> Waking:
        """For a wait on file descriptors that this must end (`with exit_by.waking() as fd`):
        an eventfd of its own, readable once an exit time is set (now, if one is) until
        `bound` is read with it, closed as the `with` ends: each waiter wakes, and none is
        left open (was: one an ExitBy, kept: each `stoker run` attempt's). -1 when none can
        be had (out of descriptors): the wait then ends at the bound read as it began."""
        with self._cond:
            try:
                fd = os.eventfd(int(self._at is not None), os.EFD_CLOEXEC | os.EFD_NONBLOCK)
            except OSError:
                fd = -1
            else:
                self._wake_fds.add(fd)
        return Waking(self, fd)

    def _drop(self, wake_fd: int) -> None:
        """`wake_fd`'s wait is over: no longer written, and closed."""
        with self._cond:
            self._wake_fds.discard(wake_fd)
        os.close(wake_fd)

    def bound(self, end_at: float, wake_fd: int = -1) -> float:
        """`end_at`, or the exit time when that is sooner; `wake_fd` (`waking`'s; -1: none) is
        quiet until the next `set`."""
        with self._cond:
            if wake_fd >= 0:
                _empty(wake_fd)
            return end_at if self._at is None else min(end_at, self._at)

    def set(self, at: float, kill_at: float | None = None, reason: str | None = None) -> None:
        """This process must be gone by `at`; every `wait` ends by then. `kill_at`: when
        whatever still runs is SIGKILLed (a SHUTDOWN's grace end), what a leave's share is of;
        `reason`: why (the task's kill reason, `executor shutting down (SIGTERM, ...)`), the first kept."""
        with self._cond:
            self.reason = self.reason or reason
            self._at = at if self._at is None else min(self._at, at)
            if kill_at is not None:
                self.kill_at = kill_at if self.kill_at is None else min(self.kill_at, kill_at)
            self._cond.notify_all()
            for fd in self._wake_fds:
                os.eventfd_write(fd, 1)

    def wake(self) -> None:
        """What a `wait` waits for may be done: it looks again (whoever makes it so calls this)."""
        with self._cond:
            self._cond.notify_all()

    def wait(self, done: Callable[[], bool], secs: float, share: float | None = None, *, to_kill: bool = False,
             noted: tuple[float, Callable[[float], None]] | None = None) -> bool:
        """Until `done()` (True), `secs` or this process's exit time, set before or during the
        wait, whichever comes first (False). `done` is made true by another thread, which
        then calls `wake`. `share` (None: all of it): the wait takes at most that share of
        what is left until the exit time, counted when it learns of it, at its start or as it is set
        (was: a wait begun before SHUTDOWN, a task's leave of its ServerSet after a KILL,
        ran on to the exit time, past the SIGKILL at the end of the processes' grace);
        `to_kill`: of what is left until `kill_at`, once set (a leave, which the processes'
        SIGTERM waits for: a share of the exit time's ran past it under ~1.17 s of grace).
        `noted` (after, say): a wait not over `after` seconds in is said, once, by `say(the
        seconds left)` on the waiting thread (a wait over at once says nothing)."""
        end = time.monotonic() + secs
        note_at = None if noted is None else end - secs + noted[0]
        with self._cond:
            while not done():
                now = time.monotonic()
                cut_for = self.kill_at if to_kill and self.kill_at is not None else self._at
                if share is not None and cut_for is not None:  # (at each look: a later look cuts no sooner)
                    end = min(end, now + share * max(0.0, cut_for - now))
                left = within(end - now, self._at)
                if left <= 0:
                    return False
                if noted is not None and note_at is not None and now >= note_at:
                    note_at = None
                    noted[1](left)  # (which took time: looked at again before any wait)
                    continue
                self._cond.wait(left if note_at is None else min(left, note_at - now))
        return True


class Waking:
    """`ExitBy.waking`'s eventfd (`fd`, -1: none), its for the length of a `with`."""

    __slots__ = ("exit_by", "fd")

    def __init__(self, exit_by: ExitBy, fd: int) -> None:
        self.exit_by, self.fd = exit_by, fd

    def __enter__(self) -> int:
        return self.fd

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            self.exit_by._drop(self.fd)


# ---- the supervisor's close, step by step (`Supervisor.close`) ----


def close_task(reaper: Reaper, containment: Containment, contained: Callable[[], Containment],
               watchdog: WatchdogKeeper | None, logs: RunLogs, kill_secs: float, exit_by: ExitBy,
               orphans: Callable[[], None], errors: list[BaseException], held: frozenset[int] = frozenset()) -> None:
    """Kill the task (for `kill_secs` at most, not waiting for `held` alone), leave and remove its cgroup, let the watchdog
    go, hand the reaper and the watchdog over (`_hand_over`), and retire the containment: a
    run that dies later kills nothing (what this process forks next). `contained`: the
    containment, settled; `orphans`: the reaper's orphan hook, taken off (a no-op when the
    start raised before it put it)."""
    let_go = _kill_and_let_go(containment, contained, watchdog, kill_secs, exit_by, errors, held)
    close_step(errors, logs.stop_pump, exit_by)
    close_step(errors, reaper.on_orphans, orphans, remove=True)
    _hand_over(reaper, containment, watchdog, let_go, exit_by, errors)
    containment.retire()


def _kill_and_let_go(containment: Containment, contained: Callable[[], Containment], watchdog: WatchdogKeeper | None,
                     kill_secs: float, exit_by: ExitBy, errors: list[BaseException], held: frozenset[int]) -> bool:
    """Kill the task, leave and remove its cgroup; let the watchdog go when this process is
    out of the cgroup (at its pipe's end the watchdog kills the cgroup's members); whether
    it was let go."""
    # bound by the exit time, even one set meanwhile
    stuck = close_step(errors, containment.kill_all, kill_secs, exit_by, held, default=frozenset())
    dog = watchdog.running() if watchdog is not None else None
    let_go = close_step(errors, lambda: contained().close(dog, within(math.inf, exit_by()), stuck))
    if let_go is None:  # it raised, out of the cgroup or not
        let_go = containment.closed.left
    if watchdog is not None and let_go:
        close_step(errors, watchdog.let_go)
    return let_go


def _hand_over(reaper: Reaper, containment: Containment, watchdog: WatchdogKeeper | None, let_go: bool,
               exit_by: ExitBy, errors: list[BaseException]) -> None:
    """Release the reaper (the last user's: its thread ends after the watchdog, let go), and
    wait for both, within the exit time."""
    from executor.procs.watchdog import WATCHDOG_EXIT_SECS  # (loaded already: the supervisor's)

    reaper.release()
    waits = 0.0 if (closed := containment.closed).stuck_at_close else WATCHDOG_EXIT_SECS  # none dies sooner
    if watchdog is not None and let_go:
        close_step(errors, watchdog.wait_gone, waits, cut=closed.cut_at_close, busy=closed.busy_at_close)
    if let_go:  # the last user's: the thread ends after the watchdog
        close_step(errors, reaper.join_unused, within(waits, exit_by()))


def close_step(errors: list[BaseException], fn: Callable[..., Any], *args: Any, default: Any = None,
               **kwargs: Any) -> Any:
    """A step of a close: `fn(*args, **kwargs)`, or `default` when it raised (into `errors`,
    raised by the close once every other step is done)."""
    try:
        return fn(*args, **kwargs)
    except BaseException as e:
        errors.append(e)
        return default
