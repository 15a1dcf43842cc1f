"""`stoker run`'s scheduler rules (docs/contract.md §7): whether and when a task that ended runs
again. Pure: no I/O, no clock of its own, no logging.

    service=True: every end → run again (after back-off)
    otherwise:    FINISHED → stop (exit 0)
                  FAILED   → run again while failures < max_task_failures (-1: always),
                             else stop (exit 1)
    a stop requested by the user (Ctrl-C / SIGTERM) → stop, never restart

Back-off doubles with each quick end (base, 2·base, 4·base, ... up to max); a task that
stayed up for `reset_after_secs` restarts at once and resets the back-off, so a flapping
service cannot spin the machine while a crash after a long healthy run costs nothing. A base
of 0 restarts the first quick end at once and doubles from ZERO_BASE_NEXT_SECS after it (0
doubled stays 0: a service that exited at once restarted tens of times a second for ever,
and the max was never reached); only a max of 0 too never waits.
"""
from __future__ import annotations

import attrs

from config.words import number
from executor.events import TaskState

MAX_DOUBLINGS = 1000  # past any back-off's max: 2.0 ** 1000 times the smallest base a flag takes
ZERO_BASE_NEXT_SECS = 0.1  # a base of 0: the delay after the second quick end in a row, doubling on


@attrs.frozen(slots=True)
class Restart:
    delay_secs: float
    reason: str


@attrs.frozen(slots=True)
class Stop:
    exit_code: int
    reason: str


class ServiceRules:
    def __init__(
        self,
        *,
        service: bool,
        max_task_failures: int,
        backoff_base_secs: float = 1.0,
        backoff_max_secs: float = 60.0,
        reset_after_secs: float = 60.0,
    ) -> None:
        if backoff_base_secs < 0 or backoff_max_secs < backoff_base_secs:
            raise ValueError("back-off needs 0 <= base <= max")
        self._service = service
        self._max_task_failures = max_task_failures
        self._base = backoff_base_secs
        self._max = backoff_max_secs
        self._reset_after = reset_after_secs
        self.failures = 0  # failed task runs so far
        self._quick_ends = 0  # consecutive ends that came sooner than reset_after_secs

    def ended(self, state: TaskState, uptime_secs: float, stop_requested: bool = False) -> Restart | Stop:
        """The task ended in `state` after `uptime_secs`; decide what comes next."""
        if not state.terminal:
            raise ValueError(f"{state.value} is not a terminal state")
        if state is TaskState.FAILED:
            self.failures += 1
        if stop_requested:
            return Stop(0 if state is not TaskState.FAILED else 1, f"stopped on request; task {state.value}")
        if self._service:
            return self._restart(uptime_secs, f"service task {state.value}; services restart on any end")
        if state is TaskState.FINISHED:
            return Stop(0, "task finished successfully")
        if state is TaskState.KILLED:
            return Stop(1, "task was killed")
        limit = self._max_task_failures
        if limit == -1 or self.failures < limit:
            shown = "unlimited" if limit == -1 else str(limit)
            return self._restart(
                uptime_secs, f"task failed ({self.failures} of max_task_failures={shown})"
            )
        return Stop(1, f"task failed {self.failures} time(s); max_task_failures={limit} reached")

    def _restart(self, uptime_secs: float, why: str) -> Restart:
        if uptime_secs >= self._reset_after:
            self._quick_ends = 0
            return Restart(0.0, f"{why}; it ran {uptime_secs:.1f} s, restarting now")
        self._quick_ends += 1
        delay = self._delay()
        return Restart(delay, f"{why}; restarting in {_secs(delay)} s (quick end {self._quick_ends})")

    def _delay(self) -> float:
        """base · 2^(k-1) for the k-th quick end in a row, up to max; a base of 0 is 0 for the
        first, then doubles from ZERO_BASE_NEXT_SECS."""
        base, doublings = self._base, self._quick_ends - 1
        if base == 0:
            if doublings == 0:
                return 0.0
            base, doublings = ZERO_BASE_NEXT_SECS, doublings - 1
        # the exponent is capped: 2 ** 1024 is past a float (a service that ended quickly
        # 1,025 times in a row, 17 hours of flapping at the default 60 s, stopped `stoker run`)
        return min(self._max, base * 2.0 ** min(doublings, MAX_DOUBLINGS))


def _secs(secs: float) -> str:
    """A delay as the console shows it: a whole number with one decimal (`2.0`), any other
    as exact as `number` says it (a `--restart-backoff 0.05` is 0.05 s, not 0.1)."""
    return f"{secs:.1f}" if secs == int(secs) else number(secs)
