"""The health policy: attempt results in, STARTING / RUNNING / FAILED(reason) out.

Owns the health rules (docs/contract.md §5, docs/aurora.md §11; Aurora's algorithm in
docs/aurora.md §2) as a pure state machine. It never sleeps, fetches, reads a clock,
logs or does any other I/O; the caller runs the checks and logs the verdicts. `Attempt`,
`AttemptOutcome`, `HealthState` and `Verdict` are the fixed interface other modules use.

With m = ceil(initial_interval_secs / interval_secs) grace attempts and a budget of
n = m + max_consecutive_failures + need attempts::

                 need consecutive passes (PASSED or SNOOZED)
      STARTING ------------------------------------------------> RUNNING
         |                                                          |
         | more than max_consecutive_failures counted failures,     | more than
         | or `need` passes no longer fit in the n attempts         | max_consecutive_failures
         v                                                          | counted failures
      FAILED  <-----------------------------------------------------+
      (terminal: later attempts change nothing, the first reason sticks)

A failure among the first m attempts is ignored (not counted), also after RUNNING, but it
still uses up one of the n attempts. need = max(1, min_consecutive_successes): as in Aurora,
0 still needs one pass, and the budget has room for it (with min_consecutive_successes in n,
0 and max_consecutive_failures = 0 made n = m: a task failed at attempt m, every failure
ignored by grace and not one attempt after it; Aurora's deadline, one check late, gives that
pass attempt m + 1, as Stoker now does; 0 is 1 in every respect).

Where Stoker differs from Aurora (docs/aurora.md §11): Aurora checks its deadline before a check and
so allows up to n + 1 checks, and its fail-fast rule skips the last attempts; Stoker fails at
attempt n at the latest, and as soon as `need` consecutive passes can no longer fit in the
attempts left.

When Stoker itself cannot make a check, the attempt is FAILED, like the service failing it
(a decision; it is Aurora's rule too). That covers an exception in a checker (a Stoker bug:
`healthcheck.base.never_raises` and the loop log it at ERROR with its traceback, reason
"internal health check error: ...", or, when no thread could be started for it because the
task's process limit is reached, one WARNING line and that reason) and a health command that could not be started (fork
failed, e.g. a full process table, or the supervisor is closed: "health command could not
be started: ..."). Such a failure is ignored in grace and counts toward
max_consecutive_failures like any other, so a passing error costs nothing, and the reason
that fails the task names Stoker, not the service. Why not an outcome that is neither pass
nor fail: the rules above know only passes and failures (a snooze is a pass), and a task
whose checks can never be made would then stay RUNNING for ever, unchecked. The price: an
error that repeats on every attempt fails a task that may be healthy.
"""
from __future__ import annotations

import enum
import math

import attrs

from config.spec import HealthSpec, health_problems
from config.words import plural


class AttemptOutcome(enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    SNOOZED = "snoozed"  # .healthchecksnooze present: not run, counts as a pass


@attrs.frozen(slots=True)
class Attempt:
    outcome: AttemptOutcome
    reason: str = ""

    @classmethod
    def passed(cls, reason: str = "") -> Attempt:
        return cls(AttemptOutcome.PASSED, reason)

    @classmethod
    def failed(cls, reason: str) -> Attempt:
        return cls(AttemptOutcome.FAILED, reason)

    @classmethod
    def snoozed(cls) -> Attempt:
        return cls(AttemptOutcome.SNOOZED, "snoozed: .healthchecksnooze present")

    @property
    def ok(self) -> bool:
        return self.outcome is not AttemptOutcome.FAILED


class HealthState(enum.Enum):
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    FAILED = "FAILED"


@attrs.frozen(slots=True)
class Verdict:
    state: HealthState
    reason: str = ""
    changed: bool = False  # True on the attempt that moved the state
    attempt: int = 0  # the 1-based number of the attempt this verdict answers (0: none yet)
    # True when the attempt was a failure that grace ignored (callers log it at INFO, not
    # WARNING, as docs/design.md §7 asks).
    ignored: bool = False


def _guard(problems: list[str]) -> None:
    # The loader rejects such a job with the field's path; this stops a HealthSpec built
    # around it (config.spec.health_problems states the rules once for both).
    if problems:
        raise ValueError("invalid health check: " + "; ".join(problems))


def grace_attempts(initial_interval_secs: float, interval_secs: float) -> int:
    """m = ceil(initial_interval_secs / interval_secs), as on the decimal values.

    The quotient is rounded to 9 decimal places before the ceiling, so 0.3 / 0.1 is 3 and
    1.1 / 0.1 is 11, where float division gives 2.9999999999999996 and 11.000000000000002
    (and a ceiling of 12); a quotient within 5e-10 of a whole number counts as that number.
    """
    _guard(health_problems(initial_interval_secs=initial_interval_secs, interval_secs=interval_secs))
    # Rounded to 9 places first so that float noise cannot add an attempt: 0.3 / 0.1 is
    # 2.9999999999999996 in floating point, and must give 3, not 4 (nor 2).
    return math.ceil(round(initial_interval_secs / interval_secs, 9))


class HealthPolicy:
    """Counts health-check attempts and decides STARTING / RUNNING / FAILED.

    Attempts are counted, not timed, so a slow check never costs an attempt: the policy takes
    no clock at all, and the loop that feeds it decides when the next attempt runs.
    """

    __slots__ = (
        "_max_failures",
        "_min_successes",
        "_m",
        "_n",
        "_need",
        "_attempts",
        "_failures",
        "_successes",
        "_state",
        "_reason",
    )

    def __init__(
        self,
        initial_interval_secs: float,
        interval_secs: float,
        max_consecutive_failures: int,
        min_consecutive_successes: int,
    ) -> None:
        _guard(health_problems(max_consecutive_failures=max_consecutive_failures,
                               min_consecutive_successes=min_consecutive_successes))
        self._max_failures = max_consecutive_failures
        self._min_successes = min_consecutive_successes
        self._m = grace_attempts(initial_interval_secs, interval_secs)
        self._need = max(1, min_consecutive_successes)
        self._n = self._m + max_consecutive_failures + self._need
        self._attempts = 0
        self._failures = 0
        self._successes = 0
        self._state = HealthState.STARTING
        passes = plural(self._need, "consecutive pass")
        self._reason = (
            f"no health check made yet: {passes} needed within {plural(self._n, 'attempt')}"
        )

    @classmethod
    def from_spec(cls, spec: HealthSpec) -> HealthPolicy:
        return cls(
            initial_interval_secs=spec.initial_interval_secs,
            interval_secs=spec.interval_secs,
            max_consecutive_failures=spec.max_consecutive_failures,
            min_consecutive_successes=spec.min_consecutive_successes,
        )

    # ---- read-only view ----

    @property
    def attempts(self) -> int:
        return self._attempts

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    @property
    def consecutive_successes(self) -> int:
        return self._successes

    @property
    def state(self) -> HealthState:
        return self._state

    @property
    def m(self) -> int:
        """Grace attempts: failures among the first m attempts are ignored."""
        return self._m

    @property
    def n(self) -> int:
        """The attempt budget: RUNNING must be reached by attempt n."""
        return self._n

    @property
    def need(self) -> int:
        """Consecutive passes needed for RUNNING: max(1, min_consecutive_successes)."""
        return self._need

    @property
    def reason(self) -> str:
        """The reason of the latest verdict (for FAILED: the reason it failed with)."""
        return self._reason

    # ---- the machine ----

    def record(self, attempt: Attempt) -> Verdict:
        """Feed one attempt's result; return the state after it."""
        if self._state is HealthState.FAILED:
            # Terminal: the reason it failed with sticks.
            return Verdict(HealthState.FAILED, self._reason, attempt=self._attempts)
        self._attempts += 1
        before = self._state
        reason = self._record_pass(attempt) if attempt.ok else self._record_failure(attempt)
        if self._state is HealthState.STARTING:
            reason = self._check_budget(attempt) or reason
        self._reason = reason
        return Verdict(
            self._state,
            reason,
            changed=self._state is not before,
            attempt=self._attempts,
            ignored=self._in_grace(attempt) and self._state is before,
        )

    def _in_grace(self, attempt: Attempt) -> bool:
        """A failure among the first m attempts: not counted toward max_consecutive_failures."""
        return not attempt.ok and self._attempts <= self._m

    def _record_pass(self, attempt: Attempt) -> str:
        self._successes += 1
        self._failures = 0
        snoozed = attempt.outcome is AttemptOutcome.SNOOZED
        if self._state is HealthState.STARTING and self._successes >= self._need:
            self._state = HealthState.RUNNING
            reason = (
                f"{self._successes} consecutive health "
                f"{'check' if self._successes == 1 else 'checks'} passed "
                f"(min_consecutive_successes={self._min_successes})"
            )
            if snoozed:
                reason += ", the last one snoozed (.healthchecksnooze present)"
            return reason
        what = (
            "health check snoozed (.healthchecksnooze present), counted as a pass"
            if snoozed
            else "health check passed"
        )
        if attempt.reason and not snoozed:
            what += f": {attempt.reason}"
        if self._state is HealthState.STARTING:
            return (
                f"{what} ({self._successes} of {self._need} consecutive passes needed, "
                f"attempt {self._attempts} of {self._n})"
            )
        return what

    def _record_failure(self, attempt: Attempt) -> str:
        self._successes = 0
        if self._in_grace(attempt):
            # Grace: not counted toward max_consecutive_failures, also after RUNNING.
            return (
                f"failure {self._attempts} of the first {plural(self._m, 'attempt')} ignored "
                f"(grace): {attempt.reason}"
            )
        self._failures += 1
        if self._failures > self._max_failures:
            self._state = HealthState.FAILED
            return (
                f"{self._failures} consecutive health "
                f"{'check' if self._failures == 1 else 'checks'} failed "
                f"(max_consecutive_failures={self._max_failures}): {attempt.reason}"
            )
        return (
            f"health check failed, {self._failures} of {self._max_failures} consecutive "
            f"failures tolerated (max_consecutive_failures={self._max_failures}): "
            f"{attempt.reason}"
        )

    def _check_budget(self, attempt: Attempt) -> str | None:
        """Stoker's rule: FAILED as soon as `need` passes no longer fit in the attempts left.

        Only a failure can make them no longer fit (a pass uses one attempt and brings one
        pass), so the reason ends with that failure's reason."""
        left = self._n - self._attempts
        if self._need - self._successes <= left:
            return None
        self._state = HealthState.FAILED
        passes = plural(self._need, "consecutive pass")
        return (
            f"not enough successful health checks in time: {passes} needed within "
            f"{plural(self._n, 'attempt')}, {self._attempts} made; last: {attempt.reason}"
        )
