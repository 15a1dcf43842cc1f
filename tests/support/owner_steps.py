"""The table tests' vocabulary (tests/unit/test_owner_table.py, test_owner_operators.py):
the owner with its stop bounds over the rig's fakes (`Harness`), and the steps, each posting
one event (time passes only by `Wait` and `Deadline`); `START`, what every start does.

Nothing here starts a process, a thread or a socket.
"""
from __future__ import annotations

import attrs

from config.spec import JobSpec
from executor.events import (
    DaemonsExited,
    ExitStatus,
    HealthChecked,
    LifecycleDone,
    ProcessExited,
    ProcessState,
    ProcessTransition,
    TimerFired,
)
from executor.task.killing import StopBounds
from healthcheck.policy import Attempt
from tests.support.owner_rig import OwnerRig

START = ["0 update STARTING", "0 spawn a[0]", "0 update RUNNING"]


class Harness(OwnerRig):
    def __init__(self, spec: JobSpec, kill_grace_secs: float | None = None,
                 stop_within_secs: float | None = None, running_early: bool = False,
                 stop_timeout_secs: float | None = None) -> None:
        super().__init__()
        self.own(spec, stop=StopBounds(kill_grace_secs, stop_within_secs, stop_timeout_secs),
                 running_early=running_early)


@attrs.frozen
class Kill:
    reason: str = "killed by the agent (KILL)"
    grace: float | None = 5.0
    lifecycle: bool = True
    now: bool = False  # immediate: a second Ctrl-C
    kill_all_in: float | None = None  # a SHUTDOWN's grace end, this long from now: SIGKILL then

    def __call__(self, h: Harness) -> None:
        kill_all_at = None if self.kill_all_in is None else h.clock.now + self.kill_all_in
        h.owner.request_kill(self.reason, self.grace, use_lifecycle=self.lifecycle, immediate=self.now,
                             kill_all_at=kill_all_at)
        h.step()


@attrs.frozen
class Exit:
    process: str = "a"
    code: int | None = None
    sig: int | None = None

    def __call__(self, h: Harness) -> None:
        runs = [t.run for t in h.reporter.transitions if isinstance(t, ProcessTransition)
                and t.process == self.process and t.to is ProcessState.RUNNING]
        assert runs, f"{self.process} never ran"
        status = ExitStatus(signal=self.sig) if self.sig is not None else ExitStatus(exit_code=self.code)
        h.post(ProcessExited(self.process, runs[-1], pid=0, status=status, at=h.clock.now))


@attrs.frozen
class Wait:
    secs: float

    def __call__(self, h: Harness) -> None:
        h.clock.advance(self.secs)
        h.post(TimerFired(h.clock.now))


@attrs.frozen
class Deadline:
    """Time passes until the owner's next deadline, as when its queue wait times out."""

    def __call__(self, h: Harness) -> None:
        assert h.owner.next_deadline_at is not None, "the owner waits for no deadline"
        h.clock.advance_to(h.owner.next_deadline_at)
        h.post(TimerFired(h.clock.now))


@attrs.frozen
class Health:
    ok: bool

    def __call__(self, h: Harness) -> None:
        attempt = Attempt.passed() if self.ok else Attempt.failed("HTTP 503")
        h.post(HealthChecked(attempt, 0.001, h.clock.now))


@attrs.frozen
class LifecycleEnds:
    def __call__(self, h: Harness) -> None:
        h.post(LifecycleDone("processes still running after /abortabortabort", h.clock.now))


@attrs.frozen
class Daemons:
    """Whether daemons a run left live now: set, then the supervisor's wake-up posted."""

    alive: bool

    def __call__(self, h: Harness) -> None:
        h.procs.daemons_alive = self.alive
        h.post(DaemonsExited(h.clock.now))
