"""Runs the task SIGTERMed whose top process exited while others of their tree still run.

A stop (a kill, a failed check, the task's own end, an operator's restart) SIGTERMs every
process of a run and SIGKILLs them after the grace. Often the top exits first: `bash -c
"server; ..."` dies of SIGTERM at once while the server it did not exec still drains. Such
a run *drains*: what is left keeps the rest of its grace instead of being SIGKILLed with
the top, stays claimed by the run (`Child.draining`, read by `containment.py`), and the run's
exit (the top's status) is posted once the last of them is gone, or they are SIGKILLed
when the grace ends (the planner's SIGKILL reaches them by the run's marker and group). The
last of them to die is a child of this process (a subreaper), so the reaper's orphan hook
(`check`) sees it: no polling. A run that was not SIGTERMed ends at once: what it left is
SIGKILLed, or, when its top exited 0 on its own, becomes the task's daemons
(`containment.run_ended`).

Called on the reaper thread, for each run's exit (`top_exited`) and reap (`reaped`), and as
the task signals its runs (`signalled`); `runs` and `lock` are the supervisor's. The end of
that path, the run's exit posted to the owner as `ProcessExited`, is `ExitPost`'s.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import cast

from executor.events import ExitStatus, ProcessExited
from executor.logs import log_event
from executor.procs import oomcount
from executor.procs.containment import Containment
from executor.procs.spawn import RunChild

logger = logging.getLogger(__name__)
supervisor_logger = logging.getLogger("executor.procs.supervisor")  # a run's exit reads as the supervisor's


class ExitPost:
    """A run's exit as the owner hears it, on the reaper thread (`Drains`, and `EarlyRuns` for
    an early run's exit that came before its adoption): its wait status as an `ExitStatus`, a
    SIGKILL nobody in the task sent named the OOM killer's when the memory cgroup's count grew
    (`oomcount.named`, with `oom`: the supervisor's counter, set as it starts), one DEBUG line,
    and `ProcessExited` posted; nothing posted once the supervisor is `closed`."""

    def __init__(self, post: Callable[[object], None], label: str, closed: Callable[[], bool]) -> None:
        self._post = post
        self._label = label
        self._closed = closed
        self.oom: oomcount.OomCounter | None = None  # the memory cgroup's OOM kills (the supervisor's)

    def __call__(self, child: RunChild, status: int) -> None:
        exit_status = ExitStatus.from_wait_status(status)
        exit_status = oomcount.named(exit_status, self.oom, child.oom_kills, child.signalled)
        if supervisor_logger.isEnabledFor(logging.DEBUG):  # describe() only for a line that is written
            log_event(supervisor_logger, logging.DEBUG, "process_exited", task=self._label,
                      process=child.process, run=child.run, pid=child.pid, status=exit_status.describe())
        if self._closed():
            return
        try:  # last: the owner wakes as this thread goes back to waitid, not into the GIL
            self._post(ProcessExited(process=child.process, run=child.run,
                                     pid=child.pid, status=exit_status, at=time.monotonic()))
        except Exception as e:
            log_event(supervisor_logger, logging.ERROR, "post_failed", task=self._label,
                      process=child.process, run=child.run, pid=child.pid, error=f"{type(e).__name__}: {e}")


class Drains:
    def __init__(self, containment: Containment, runs: dict[tuple[str, int], RunChild],
                 lock: threading.Lock, post_exit: Callable[[RunChild, int], None], label: str) -> None:
        self._containment = containment
        self._label = label
        self._runs = runs
        self._lock = lock
        self._post_exit = post_exit

    def signalled(self, keys: list[tuple[str, int]], sig: int) -> list[RunChild]:
        """The runs of `keys` (process, run) that `sig` is about to reach, marked so: one
        SIGTERMed drains when its top exits first (its processes keep the rest of their grace)
        until a SIGKILL; either is the task's signal (`RunChild.signalled`)."""
        with self._lock:
            children = [c for c in (self._runs.get(key) for key in keys) if c is not None]
            for c in children:
                c.termed = sig == signal.SIGTERM or (c.termed and sig != signal.SIGKILL)
                c.signalled = c.signalled or sig in (signal.SIGTERM, signal.SIGKILL)
        return children

    def top_exited(self, child: RunChild, exit_code: int | None) -> None:
        """The top of `child` exited (its zombie unreaped; `exit_code` None: a signal ended
        it): the run drains, or what it left is SIGKILLed now (or kept: it exited 0)."""
        killed = self._containment.top_exited(child, drain=child.termed, succeeded=exit_code == 0)
        if killed is None:
            with self._lock:
                child.draining = True
            return
        self._killed(child, killed)

    def _killed(self, child: RunChild, killed: int) -> None:
        if killed:
            log_event(logger, logging.DEBUG, "leftovers_killed", task=self._label,
                      process=child.process, run=child.run, pid=child.pid, processes=killed)

    def reaped(self, child: RunChild, status: int) -> None:
        """The top of `child` is reaped: the run is over and its exit posted (an early start's
        run not adopted yet: at its adoption), unless it drains (then `check`)."""
        with self._lock:
            if self._runs.get((child.process, child.run)) is child and not child.draining:
                del self._runs[(child.process, child.run)]
            child.reaped(status)
            report = child.adopted and not child.draining
        if report:
            self._post_exit(child, status)
        elif child.draining:
            self.check()

    def check(self) -> None:
        """A process was reaped: post the exit of each draining run whose top is reaped and
        whose processes are all gone, or that the task SIGKILLed; first, what is left unclaimed
        is killed the way an exit's leftovers are: what the SIGKILL missed (a fork-hopper's
        next generation), an orphaned escape (`setsid env -i`; was: alive after the exit, one
        more at each `stoker restart`)."""
        with self._lock:
            runs = [c for c in self._runs.values() if c.draining and c.status is not None]
        for child in runs:
            if child.termed and self._containment.has_leftovers(child):
                continue
            with self._lock:
                if self._runs.get((child.process, child.run)) is child:
                    del self._runs[(child.process, child.run)]
                child.draining, status = False, child.status
            self._killed(child, self._containment.end_drain(child, sigkilled=not child.termed))
            if child.adopted and status is not None:
                self._post_exit(child, status)


class DrainsWhenMade:
    """A task's drains, for its runs' watchers (`RunWatcher`), made by the supervisor's start()
    (`hold`) and given once its containment's `prepare` walked (`ready`): the reaper may reap
    an early run first, and its watcher then waits for them (10 s at most)."""

    __slots__ = ("_drains", "_made")

    def __init__(self) -> None:
        self._drains: Drains | None = None
        self._made = threading.Event()

    def hold(self, drains: Drains) -> None:
        self._drains = drains

    def ready(self) -> None:
        """The containment's `prepare` walked: the watchers take the drains from now. Or the
        start failed before it made them: none will be, and the watchers wait for none."""
        self._made.set()

    def made(self) -> Drains | None:
        """The drains, once ready; None where the start failed before it made them (its
        early runs, given up by the close: their exits are nobody's to report)."""
        if not self._made.is_set():  # (is_set takes no lock: each exit asks twice)
            self._made.wait(10)
        return self._drains

    def __call__(self) -> Drains:
        return cast(Drains, self.made())


class RunWatcher:
    """A run's watcher (`reaper.ChildWatcher`): its exit and its reap go to the drains,
    which `drains()` gives (made right after the reaper, which may reap an early run first).
    Two slots a run, where a `Watcher` of two closures was 0.47 KiB of each of them."""

    __slots__ = ("drains", "child")

    def __init__(self, drains: DrainsWhenMade, child: RunChild) -> None:
        self.drains = drains
        self.child = child

    def before_reap(self, pid: int, exit_code: int | None) -> None:
        if (drains := self.drains.made()) is not None:
            drains.top_exited(self.child, exit_code)

    def reaped(self, pid: int, status: int) -> None:
        if (drains := self.drains.made()) is not None:
            drains.reaped(self.child, status)
