"""The health loop: runs one attempt after another on its own thread and hands each result on.

Owns the schedule (docs/contract.md §5): the first attempt right away, each next one
`interval_secs` after the previous one ENDED, so attempts never overlap and a slow check
never causes a burst of catch-up checks; and the snooze file, looked for before every
attempt: only a regular file snoozes, not a directory, a FIFO or a symlink (it is lstat'ed,
never opened or followed, so nothing a task plants there can block the loop or make it
look outside the sandbox). It never judges results (that is
`healthcheck.policy`, run by whoever receives them), never changes task state, and never
imports `executor/`: results go to the `on_result` callback it is given.
"""
from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from config.logline import log_event
from config.spec import health_problems
from healthcheck.policy import Attempt

if TYPE_CHECKING:
    from healthcheck.base import Checker

logger = logging.getLogger(__name__)

# An attempt that could not be made for want of memory, made before any is short: it fails,
# as an attempt whose check raised does; while the snooze file is there, it is a snoozed one.
_NO_MEMORY = Attempt.failed("internal health check error: MemoryError (no memory could be had)")
_SNOOZED = Attempt.snoozed()


class HealthLoop:
    """One daemon thread: attempt, deliver, wait `interval_secs`, repeat until stopped."""

    def __init__(
        self,
        checker: Checker,
        interval_secs: float,
        snooze_path: Path,
        on_result: Callable[[Attempt, float], None],
        clock: Callable[[], float] = time.monotonic,
        *,
        start_thread: Callable[[threading.Thread], None],
        task: str = "",
    ) -> None:
        """`start_thread`: how its thread is started (`executor.logs.start_thread`, which
        refuses a start the address-space limit has no room for rather than hang)."""
        problems = health_problems(interval_secs=interval_secs)
        if problems:
            raise ValueError("invalid health loop: " + "; ".join(problems))
        self._checker = checker
        self._interval_secs = interval_secs
        self._snooze_path = Path(snooze_path)
        self._on_result = on_result
        self._clock = clock
        self._task = task
        self._start_thread = start_thread
        self._stopping = threading.Event()
        # Held while a result is delivered; stop() takes it, so no result is delivered after
        # stop() returns. Re-entrant so that on_result may itself call stop().
        self._delivering = threading.RLock()
        self._thread: threading.Thread | None = None
        self._snoozed = False
        self._looked: bool | None = None  # this attempt's look for the snooze file (None: not made)

    def start(self) -> None:
        """Start the thread; the first attempt runs at once."""
        if self._thread is not None:
            raise RuntimeError("HealthLoop.start() called twice")
        self._thread = threading.Thread(
            target=self._run, name=f"health-loop {self._task}".strip(), daemon=True
        )
        self._start_thread(self._thread)

    def stop_async(self) -> None:
        """Ask the loop to stop without waiting: no attempt starts after this call, and the
        result of one in progress is still delivered (the owner drops it once the task is
        stopping)."""
        self._stopping.set()

    def stop(self, timeout_secs: float = 2.0) -> bool:
        """Stop the loop; True when its thread ended within `timeout_secs`.

        Wakes the wait between attempts at once. An attempt still running past the timeout
        (a check is bounded by its own timeout) finishes on its own, and its result is
        dropped: no result is delivered once stop() has returned.
        """
        self._stopping.set()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return thread is None
        with self._delivering:
            pass  # wait for a delivery in progress; later ones see _stopping and drop out
        thread.join(timeout_secs)
        if thread.is_alive():
            log_event(logger, logging.WARNING, "health_loop_stop_slow", task=self._task,
                      check=self._checker.describe(), waited_secs=timeout_secs,
                      reason="the check is still running; its result will be dropped")
            return False
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ---- the thread ----

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                attempt, latency_secs = self._attempt()
            except MemoryError:  # even the attempt's words could not be had (ulimit -v)
                attempt, latency_secs = self._cut_short(), 0.0  # (was: the thread ended, and a
                # task STARTING until its first passed check stayed STARTING for good)
            with self._delivering:
                if self._stopping.is_set():
                    return
                self._deliver(attempt, latency_secs)
            # The next attempt starts interval_secs after this one ended, never sooner.
            if self._stopping.wait(self._interval_secs):
                return

    def _attempt(self) -> tuple[Attempt, float]:
        self._looked = None
        if self._is_snoozed():
            return Attempt.snoozed(), 0.0
        started_at = self._clock()
        try:
            attempt = self._checker.check()
        except Exception as exc:
            log_event(logger, logging.ERROR, "health_check_internal_error", task=self._task,
                      check=self._checker.describe(), error=f"{type(exc).__name__}: {exc}",
                      exc_info=True)
            attempt = Attempt.failed(f"internal health check error: {type(exc).__name__}: {exc}")
        latency_secs = max(0.0, self._clock() - started_at)
        return attempt, latency_secs  # logged once, by the task's journal (`health_check`)

    def _cut_short(self) -> Attempt:
        """The attempt a MemoryError cut short: snoozed when its own look, made before its check,
        found the snooze file (looked for again when that look itself found no memory), as any
        attempt then is (was: a failure, counted); else failed. A check that was run stays its
        attempt's even when the file came meanwhile, and a look that cannot be made is no pass:
        not the last attempt's answer, which kept a removed file's snooze while memory was short."""
        looked = self._looked
        if looked is None:
            try:
                looked = stat.S_ISREG(os.lstat(self._snooze_path).st_mode)
            except (OSError, MemoryError):
                looked = False
        return _SNOOZED if looked else _NO_MEMORY

    def _is_snoozed(self) -> bool:
        try:
            snoozed = stat.S_ISREG(os.lstat(self._snooze_path).st_mode)
        except OSError:
            snoozed = False
        self._looked = snoozed
        if snoozed != self._snoozed:
            self._snoozed = snoozed
            log_event(logger, logging.INFO, "health_snooze", task=self._task,
                      path=self._snooze_path, snoozed=snoozed,
                      reason="health checks are not run while the file exists and count as passed"
                      if snoozed else "the snooze file is gone, health checks run again")
        return snoozed

    def _deliver(self, attempt: Attempt, latency_secs: float) -> None:
        """Hand the result on; what the callback raised is logged, and the loop goes on."""
        try:
            self._on_result(attempt, latency_secs)
        except Exception as exc:
            try:
                log_event(logger, logging.ERROR, "health_result_callback_failed", task=self._task,
                          error=f"{type(exc).__name__}: {exc}", exc_info=True)
            except MemoryError:  # the line too found none (ulimit -v; was: the thread ended,
                return  # and a task STARTING until its first passed check stayed STARTING)
