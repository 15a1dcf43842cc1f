"""The owner's checks of a running task: the health checks and the disk-limit check.

Owns, for one task: starting them once its processes run (the health loop with the job's
checker, `healthcheck/loop.py`; the disk check, `executor/task/diskwatch.py`, when the
front-end asked for it and the task reserves disk), stopping them once the task stops (its
outcome is then decided: no check may change it), judging each health attempt with the
task's health policy (`healthcheck/policy.py`, loaded only for a task with a check) and
having its journal record it, and passing each disk sample to the disk check. What they
find goes back to the owner as a health `Verdict` or a reason to fail the task; the owner
feeds those to its status machine.

Called only from the owner's thread. The threads that run the checks post their results
to the owner's queue (`HealthChecked`, `DiskSampled`); a result that comes after `stop`
decides nothing.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from config.spec import JobSpec
from executor.events import DiskSampled, HealthChecked, HealthTransition
from executor.logs import log_event
from executor.task.journal import Journal

if TYPE_CHECKING:
    from executor.task.ports import DiskChecks, HealthChecks, HealthStarter, Reporter
    from healthcheck.checkers import Checker
    from healthcheck.policy import HealthPolicy, Verdict

logger = logging.getLogger(__name__)

COMMAND_GONE_SECS = 1.0  # a SIGKILLed command is reaped in milliseconds; this bounds a stuck one


class Checks:
    def __init__(self, job: JobSpec, checker: Checker | None, start_health: HealthStarter,
                 disk: DiskChecks | None, journal: Journal, reporter: Reporter,
                 post: Callable[[object], None], clock: Callable[[], float], *,
                 stop_commands: Callable[[float], bool]) -> None:
        self._checker = checker
        self._label = job.label
        self._stop_commands = stop_commands
        self._start_health = start_health
        self._policy = _health_policy(job) if checker else None
        self._disk = disk
        self._journal = journal
        self._reporter = reporter
        self._post = post
        self._clock = clock
        self._health: HealthChecks | None = None
        self._command_survived = False  # `wait_stopped` found a check's command alive after its SIGKILL

    @property
    def checker(self) -> Checker | None:
        """The task's health checker (None: no health check), for the checkpoint's header."""
        return self._checker

    def start(self) -> None:
        """The task's processes run: the first disk sample and the health loop start now."""
        if self._disk is not None:
            self._disk.start()
        if self._checker is not None and self._health is None:
            self._health = self._start_health(
                self._checker,
                lambda attempt, latency: self._post(HealthChecked(attempt, latency, self._clock())))

    def health(self, event: HealthChecked) -> Verdict | None:
        """Judge one attempt (the task is ACTIVE): recorded, logged and reported; the
        verdict for the status machine."""
        policy = self._policy
        if policy is None:
            return None
        before = policy.state
        verdict = policy.record(event.attempt)
        attempt = event.attempt
        t = HealthTransition(before, verdict.state, policy.attempts, attempt.outcome,
                             verdict.reason or attempt.reason)
        self._journal.health(policy, verdict, t, event.latency_secs, attempt.reason)
        self._reporter.on_transition(t)
        return verdict  # a FAILED one kills the task, which stops the loop (after leaving the ServerSet)

    def disk(self, event: DiskSampled) -> str | None:
        """A disk sample: the reason to fail the task when the sandbox is over its limit."""
        return self._disk.sampled(event) if self._disk is not None else None

    def tick(self) -> float | None:
        """At each step: start the disk sample that is due; when the next one is."""
        if self._disk is None:
            return None
        self._disk.tick()
        return self._disk.deadline_at()

    def stop_async(self) -> None:
        """The task stops: no health check and no disk sample starts after this, and the
        shell command of one under way is SIGKILLed (its result would decide nothing)."""
        if self._health is not None:
            self._health.stop_async()
            self._stop_commands(0.0)
        if self._disk is not None:
            self._disk.stop()

    def wait_stopped(self) -> None:
        """The task ends: before its terminal update is sent, the shell command of a check
        that was under way is gone (waited for up to COMMAND_GONE_SECS, logged if not)."""
        self.stop_async()
        if self._health is not None and not self._stop_commands(COMMAND_GONE_SECS):
            self._command_survived = True
            log_event(logger, logging.ERROR, "health_command_survives", task=self._label,
                      waited_secs=COMMAND_GONE_SECS,
                      reason="a health command SIGKILLed as the task stopped has not exited",
                      consequence="the task's end is reported; it is killed with the task")

    def close(self) -> None:
        """The task is over: the health loop's thread is waited for (a little), but not when
        it waits on a command that survived its SIGKILL (`wait_stopped`, said already): that
        wait added 2 s to the exit of a task whose health command was held in D state."""
        self.stop_async()
        if self._health is not None and not self._command_survived:
            self._health.stop()


def _health_policy(job: JobSpec) -> HealthPolicy:
    from healthcheck.policy import HealthPolicy  # only a task with a health check needs it

    return HealthPolicy.from_spec(job.health)
