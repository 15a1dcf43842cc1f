"""The owner's side of a task's health checks, for a task that has them (loaded only then).

Owns, for one task: its `HealthPolicy` (`healthcheck/policy.py`), which judges each
attempt, and the running health loop, started through the owner's `HealthStarter` port
(its results come back as `HealthChecked` on the owner's queue) and stopped, at once or
waited for. Each judged attempt is recorded in the journal (one record, one log line).
When the checks start, whether an attempt counts, and what a verdict does to the task stay
with the owner (`owner.py`), which calls this from its thread only.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from config.spec import JobSpec
from executor.events import HealthChecked, HealthTransition
from executor.task.journal import Journal
from executor.task.ports import HealthChecks, HealthStarter
from healthcheck.policy import HealthPolicy, Verdict

if TYPE_CHECKING:
    from healthcheck.checkers import Checker


class HealthChecking:
    def __init__(self, job: JobSpec, checker: Checker, start_health: HealthStarter,
                 journal: Journal) -> None:
        self.checker = checker
        self._start_health = start_health
        self._journal = journal
        self._policy = HealthPolicy.from_spec(job.health)
        self._loop: HealthChecks | None = None

    def start(self, post: Callable[[object], None], clock: Callable[[], float]) -> None:
        """Start the health loop; each attempt comes back to `post` as `HealthChecked`."""
        self._loop = self._start_health(
            self.checker, lambda attempt, latency: post(HealthChecked(attempt, latency, clock())))

    def judge(self, event: HealthChecked) -> tuple[HealthTransition, Verdict]:
        """Judge one attempt and record it; the health transition and the policy's verdict."""
        policy, attempt = self._policy, event.attempt
        before = policy.state
        verdict = policy.record(attempt)
        t = HealthTransition(before, verdict.state, policy.attempts, attempt.outcome,
                             verdict.reason or attempt.reason)
        self._journal.health(policy, verdict, t, event.latency_secs, attempt.reason)
        return t, verdict

    def stop_async(self) -> None:
        """Stop the loop without waiting (none started: nothing)."""
        if self._loop is not None:
            self._loop.stop_async()

    def stop(self) -> None:
        """Stop the loop and wait for it (none started: nothing)."""
        if self._loop is not None:
            self._loop.stop()
