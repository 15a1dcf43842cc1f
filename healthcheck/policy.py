"""The health policy: attempt results in, STARTING / RUNNING / FAILED(reason) out.

(HealthPolicy itself is being written; Attempt, AttemptOutcome, HealthState and Verdict
below are the fixed interface other modules use.)
"""
from __future__ import annotations

import enum

import attrs


class AttemptOutcome(enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    SNOOZED = "snoozed"  # .healthchecksnooze present: not run, counts as a pass


@attrs.frozen(slots=True)
class Attempt:
    outcome: AttemptOutcome
    reason: str = ""

    @classmethod
    def passed(cls, reason: str = "") -> "Attempt":
        return cls(AttemptOutcome.PASSED, reason)

    @classmethod
    def failed(cls, reason: str) -> "Attempt":
        return cls(AttemptOutcome.FAILED, reason)

    @classmethod
    def snoozed(cls) -> "Attempt":
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
