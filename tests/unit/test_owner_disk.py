"""TaskOwner and the disk-limit check, one event at a time with fake ports and a fake clock:
when samples start (with the processes, then at the owner's deadlines, never two at once),
the verdict ending the task FAILED with Aurora's message through the staged kill, and its
precedence (a kill, or a failed health check, under way first wins; no check once the task
stops)."""
from __future__ import annotations

import signal

import pytest

from config.spec import ProcessSpec
from executor.events import (
    DiskSampled,
    ExitStatus,
    HealthChecked,
    ProcessExited,
    TaskState,
    TaskTransition,
    TimerFired,
)
from executor.task.disklimit import exceeded_reason
from executor.task.killing import StopBounds
from healthcheck.policy import Attempt
from tests.support.fake_ports import FakeDisk
from tests.support.owner_rig import OwnerRig, job

pytestmark = pytest.mark.timeout(10)

LIMIT = 1000


class Harness(OwnerRig):
    def __init__(self, health: bool = False, disk: bool = True, stop_timeout: float | None = None) -> None:
        super().__init__()
        self.disk = FakeDisk(self.clock, self.effects, LIMIT)
        spec = job(ProcessSpec(name="a", cmdline="serve"), health=health, finalization_wait_secs=5.0,
                   disk_bytes=LIMIT)
        self.own(spec, disk=self.disk if disk else None, stop=StopBounds(timeout_secs=stop_timeout))
        self.owner.start()
        self.done = self.owner.step()

    def sampled(self, used: int, took: float = 0.5) -> None:
        self.clock.advance(took)
        self.post(DiskSampled(used, files=1, secs=took))

    def to_deadline(self) -> None:
        assert self.owner.next_deadline_at is not None
        self.clock.advance_to(self.owner.next_deadline_at)
        self.post(TimerFired(self.clock.now))

    def exit_a(self, sig: int = signal.SIGTERM) -> None:
        self.post(ProcessExited("a", 0, pid=101, status=ExitStatus(signal=sig), at=self.clock.now))

    def ends(self) -> list[tuple[TaskState, str]]:
        return [(u.state, u.message) for u in self.reporter.updates if u.state.terminal]


def test_the_first_sample_starts_with_the_processes_then_one_an_interval_after_each():
    h = Harness()
    assert h.effects.lines == ["0 update STARTING", "0 spawn a[0]", "0 update RUNNING", "0 disk sample"]
    assert h.owner.next_deadline_at is None  # no timer while a sample runs
    h.sampled(LIMIT)  # as much as reserved: not more
    assert h.owner.next_deadline_at == h.clock.now + 60.0
    h.to_deadline()
    assert h.effects.lines[-1] == "60.5 disk sample"
    assert h.disk.limit.sampling


def test_more_than_the_limit_kills_the_task_and_ends_it_failed_with_aurora_s_message():
    h = Harness()
    h.sampled(LIMIT + 1)
    reason = exceeded_reason(LIMIT, LIMIT + 1)
    assert h.effects.lines[-1] == "0.5 SIGTERM a[0]"  # the staged kill, as a failed health check
    assert any(isinstance(t, TaskTransition) and t.reason == reason for t in h.reporter.transitions)
    assert h.ends() == []  # not before its processes are gone
    h.exit_a()
    assert h.done and h.ends() == [(TaskState.FAILED, reason)]


def test_the_stop_timeout_sigkills_a_disk_failure_s_stop_and_the_task_still_ends_failed():
    h = Harness(stop_timeout=2.0)  # --stop-timeout-in-secs, shorter than the 5 s grace
    h.sampled(LIMIT + 1)
    h.to_deadline()
    assert h.effects.lines[-2:] == ["0.5 SIGTERM a[0]", "2.5 SIGKILL a[0]"]
    h.exit_a(signal.SIGKILL)
    assert h.ends() == [(TaskState.FAILED, exceeded_reason(LIMIT, LIMIT + 1))]


def test_a_kill_under_way_wins_and_no_sample_starts_after_it():
    h = Harness()
    h.owner.request_kill("killed by the agent (KILL)", 5.0)
    h.done = h.owner.step()
    h.sampled(LIMIT * 10)  # the sample that was running when the kill came
    assert h.owner.next_deadline_at == pytest.approx(h.clock.now + 4.5)  # the kill's SIGKILL, no sample
    h.clock.advance(100.0)
    h.post(TimerFired(h.clock.now))
    h.exit_a(signal.SIGKILL)
    assert h.ends() == [(TaskState.KILLED, "killed by the agent (KILL)")]
    assert [line for line in h.effects.lines if "disk" in line] == ["0 disk sample"]


def test_a_failed_health_check_first_decides_the_end():
    h = Harness(health=True)
    h.post(HealthChecked(Attempt.passed("ok"), 0.01, h.clock.now))
    h.post(HealthChecked(Attempt.failed("HTTP 503"), 0.01, h.clock.now))
    h.sampled(LIMIT * 10)
    h.exit_a()
    [(state, message)] = h.ends()
    assert state is TaskState.FAILED and "health check failed" in message and "Disk" not in message


def test_once_the_processes_ended_the_check_stops():
    h = Harness()
    h.sampled(0)
    h.post(ProcessExited("a", 0, pid=101, status=ExitStatus(exit_code=0), at=h.clock.now))
    assert h.done and [state for state, _ in h.ends()] == [TaskState.FINISHED]
    assert h.disk.limit.deadline_at() is None and not h.disk.limit.take(h.clock.now + 1000.0)


def test_a_sample_that_comes_after_the_last_process_ended_decides_nothing():
    # Both in the queue at one step: the task ended before the walk's result was known (a job
    # that wrote its output and exited 0 while a sample ran ended FAILED, not FINISHED).
    h = Harness()
    h.clock.advance(0.5)
    h.owner.post(ProcessExited("a", 0, pid=101, status=ExitStatus(exit_code=0), at=h.clock.now))
    h.owner.post(DiskSampled(LIMIT * 10, files=1, secs=0.5))
    assert h.owner.step()
    assert [state for state, _ in h.ends()] == [TaskState.FINISHED]


def test_a_failed_health_check_that_comes_after_the_last_process_ended_decides_nothing_either():
    h = Harness(health=True)
    h.post(HealthChecked(Attempt.passed("ok"), 0.01, h.clock.now))
    h.owner.post(ProcessExited("a", 0, pid=101, status=ExitStatus(exit_code=0), at=h.clock.now))
    h.owner.post(HealthChecked(Attempt.failed("HTTP 503"), 0.01, h.clock.now))
    assert h.owner.step()
    assert [state for state, _ in h.ends()] == [TaskState.FINISHED]


def test_a_sample_over_the_limit_before_the_end_still_fails_the_task():
    h = Harness()
    h.clock.advance(0.5)
    h.owner.post(DiskSampled(LIMIT * 10, files=1, secs=0.5))
    h.owner.post(ProcessExited("a", 0, pid=101, status=ExitStatus(exit_code=0), at=h.clock.now))
    assert h.owner.step()
    assert h.ends() == [(TaskState.FAILED, exceeded_reason(LIMIT, LIMIT * 10))]


def test_without_the_check_the_owner_has_no_timer():
    h = Harness(disk=False)
    assert "0 disk sample" not in h.effects.lines
    assert h.owner.next_deadline_at is None
