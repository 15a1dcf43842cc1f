"""The owner's checks (`executor/task/checks.py`): the health loop started with the job's
checker and each of its results posted with the owner's time; each attempt judged, its
transition and record; no disk check, no disk sample judged; a health command that
survived its SIGKILL not waited for again at the close."""
from __future__ import annotations

import logging
from collections.abc import Callable

import attrs
import pytest

from executor.events import DiskSampled, HealthChecked
from executor.task.checks import COMMAND_GONE_SECS, Checks
from executor.task.journal import Journal
from healthcheck.policy import Attempt
from tests.support.fake_ports import Effects, FakeChecker, FakeClock, FakeHealthLoop, RecordingReporter
from tests.support.logevents import lines
from tests.support.owner_rig import HEALTH, OwnerRig, job


class Loop(FakeHealthLoop):
    """A fake health loop that says whether its thread was waited for (`stop`)."""

    waited = False

    def stop(self, timeout_secs: float = 2.0) -> bool:
        self.waited = True
        return super().stop(timeout_secs)


class Loops:
    """The health starter: what each start was given, and the loops it made."""

    def __init__(self) -> None:
        self.started: list[tuple[object, Callable[[Attempt, float], None]]] = []
        self.loops: list[Loop] = []
        self.effects = Effects(FakeClock())

    def __call__(self, checker: object, on_result: Callable[[Attempt, float], None]) -> Loop:
        self.started.append((checker, on_result))
        self.loops.append(Loop(self.effects))
        return self.loops[-1]


def checks(loops: Loops, posts: list[object], *, stopped: bool = True, health: bool = True) -> Checks:
    """Checks of a job with a health check (`health`) and no disk check; the health
    commands' stop answers `stopped`."""
    spec = job(health=health)
    return Checks(spec, FakeChecker() if health else None, loops, None, Journal(spec.label, lambda: 0.0),
                  RecordingReporter(loops.effects), posts.append, lambda: 12.5,
                  stop_commands=lambda within_secs: stopped)


def test_the_health_loop_gets_the_job_s_checker_once_and_each_result_is_posted_with_the_owner_s_time():
    loops, posts = Loops(), list[object]()
    owned = checks(loops, posts)
    owned.start()
    owned.start()
    ((checker, on_result),) = loops.started
    assert checker is owned.checker and isinstance(checker, FakeChecker)
    attempt = Attempt.failed("HTTP 503")
    on_result(attempt, 0.25)
    assert posts == [HealthChecked(attempt, 0.25, 12.5)]


def test_no_health_check_starts_no_loop_and_judges_nothing():
    loops, posts = Loops(), list[object]()
    owned = checks(loops, posts, health=False)
    owned.start()
    assert (loops.started, owned.checker) == ([], None)
    assert owned.health(HealthChecked(Attempt.passed(), 0.1, 1.0)) is None


def test_with_no_disk_check_a_sample_decides_nothing_and_no_sample_is_due():
    owned = checks(Loops(), [])
    assert owned.disk(DiskSampled(used_bytes=1 << 40, error="")) is None
    assert owned.tick() is None


def test_each_attempt_s_transition_says_its_number_and_the_verdict_s_reason_and_its_record_the_attempt_s():
    h = OwnerRig()
    h.own(attrs.evolve(job(health=True), health=attrs.evolve(HEALTH, max_consecutive_failures=2)))
    h.owner.start()
    h.step()
    for attempt in (Attempt.failed("HTTP 503"), Attempt.passed()):
        h.post(HealthChecked(attempt, 0.25, h.clock.now))
    said = [(t.attempt, t.outcome.value, t.reason) for t in h.reporter.transitions
            if type(t).__name__ == "HealthTransition"]
    assert said == [
        (1, "failed", "health check failed, 1 of 2 consecutive failures tolerated (max_consecutive_failures=2): "
                      "HTTP 503"),
        (2, "passed", "1 consecutive health check passed (min_consecutive_successes=1)")]
    records = [(r["attempts"], r["reason"], r["latency_secs"]) for r in h.checkpoint.records if r["kind"] == "health"]
    assert records == [(1, "HTTP 503", 0.25), (2, "", 0.25)]


@pytest.mark.parametrize("survived", [False, True])
def test_the_close_waits_for_the_loop_unless_a_health_command_survived_its_sigkill_which_is_said_once(
        caplog, survived):
    loops = Loops()
    owned = checks(loops, [], stopped=not survived)
    owned.start()
    owned.wait_stopped()
    owned.close()
    (loop,) = loops.loops
    assert (loop.stopping, loop.waited) == (True, not survived)
    assert loops.effects.lines == ["0 health start", "0 health stop"]
    assert lines(caplog, "health_command_survives") == [
        f'health_command_survives task=t.0 waited_secs={COMMAND_GONE_SECS} reason="a health command SIGKILLed '
        'as the task stopped has not exited" consequence="the task\'s end is reported; it is killed with the task"'
    ] * survived
    assert [(r.name, r.levelno) for r in caplog.records] == [("executor.task.checks", logging.ERROR)] * survived
