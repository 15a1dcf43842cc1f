"""The rig every owner table test starts from (tests/unit/test_owner_table.py, test_owner_operators.py,
test_owner_disk.py, test_owner_announcing.py): a TaskOwner over the fake ports
(`fake_ports.py`), on a fake clock, whose every act lands in one `Effects` log; the job
those tests vary (`job`); and `post`, one event and the step it causes.

Nothing here starts a process, a thread or a socket.
"""
from __future__ import annotations

import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from config.spec import CheckKind, HealthSpec, JobSpec, LifecycleSpec, ProcessSpec, TaskSpec
from executor.task.owner import TaskOwner
from executor.task.ports import OwnerPorts
from tests.support.fake_clock import FakeClock
from tests.support.fake_ports import (
    Effects,
    FakeChecker,
    FakeCheckpoint,
    FakeHealthLoop,
    FakeLifecycle,
    FakeProcs,
    RecordingReporter,
)

if TYPE_CHECKING:  # the ports are for the type checker only (executor/task/ports.py)
    from executor.task.ports import Announcer

TERM, KILL = int(signal.SIGTERM), int(signal.SIGKILL)
LIFECYCLE = LifecycleSpec(port=31000, graceful_shutdown_wait_secs=2.0, shutdown_wait_secs=3.0)
HEALTH = HealthSpec(kind=CheckKind.TCP, port=31001, initial_interval_secs=0.0, interval_secs=1.0,
                    max_consecutive_failures=0, min_consecutive_successes=1)


def job(*procs: ProcessSpec, lifecycle: LifecycleSpec | None = None, health: bool = False,
        finalization_wait_secs: float = 30.0, disk_bytes: int | None = None) -> JobSpec:
    """Task `t` of job `me/test/t` with these processes (one, `a`, serving, when none given),
    the TCP check `HEALTH` when `health`."""
    procs = procs or (ProcessSpec(name="a", cmdline="serve", min_duration_secs=0.0),)
    return JobSpec(role="me", environment="test", cluster="local", name="t", instance=0, task_id="t-0",
                   lifecycle=lifecycle, health=HEALTH if health else HealthSpec(),
                   task=TaskSpec(name="t", processes=procs, finalization_wait_secs=finalization_wait_secs,
                                 disk_bytes=disk_bytes))


class OwnerRig:
    """The fakes, made first (a test's own fakes may need the clock and the log), then the
    owner of `spec` over them (`own`)."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.effects = Effects(self.clock)
        self.procs = FakeProcs(self.effects)
        self.checkpoint = FakeCheckpoint()
        self.reporter = RecordingReporter(self.effects)
        self.procs.transitions_reported = lambda: len(self.reporter.transitions)
        self.done = False

    def own(self, spec: JobSpec, *, announcer: Announcer | None = None,
            wall_clock: Callable[[], float] = lambda: 0.0, **owner_kw: Any) -> TaskOwner:
        """The owner, its health checker a fake when the job has a check; `owner_kw`: the
        rest of TaskOwner's settings (kill grace, stop bounds, `disk`, ...)."""
        self.owner = TaskOwner(
            spec, OwnerPorts(
                procs=self.procs, open_checkpoint=lambda: self.checkpoint, reporter=self.reporter,
                checker=None if spec.health.kind is CheckKind.NONE else FakeChecker(),
                start_health=lambda checker, on_result: FakeHealthLoop(self.effects),
                start_lifecycle=lambda within, progress, done: FakeLifecycle(self.effects, within),
                announcer=announcer),
            sandbox="/sandbox", clock=self.clock, wall_clock=wall_clock, **owner_kw)
        return self.owner

    def post(self, event: object) -> None:
        """One event, and the step it causes."""
        assert not self.done, "the task already ended"
        self.owner.post(event)
        self.step()

    def step(self) -> None:
        self.done = self.owner.step()
        if self.done:
            self.owner.close()
