"""The owner's kill as an operator reads it (executor/task/killing.py): one `kill_stage` log
line per stage reached, with its fields; the lifecycle endpoints' answers and end coming back
through the owner's queue; and the stop timeout's reason. The owner rig's fakes, a fake clock."""
from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from config.spec import CheckKind, JobSpec, ProcessSpec
from executor.events import (
    ControlReply,
    ExitStatus,
    HealthChecked,
    KillRequested,
    KillStep,
    PhaseTransition,
    ProcessExited,
    ProcessTransition,
    TimerFired,
)
from executor.host.session import OPERATOR_KILL
from executor.task.killing import StopBounds
from executor.task.owner import TaskOwner
from executor.task.ports import OwnerPorts
from healthcheck.policy import Attempt
from tests.support.fake_ports import FakeChecker, FakeHealthLoop, FakeLifecycle
from tests.support.owner_rig import LIFECYCLE, OwnerRig, job

pytestmark = pytest.mark.timeout(10)


class Rig(OwnerRig):
    """The owner rig whose lifecycle starter keeps the callbacks the endpoints report through."""

    def __init__(self, spec: JobSpec, **stop: float) -> None:
        super().__init__()
        self.progress: Callable[[str], None] | None = None
        self.done_with: Callable[[str], None] | None = None
        checked = spec.health.kind is not CheckKind.NONE
        self.owner = TaskOwner(spec, OwnerPorts(
            procs=self.procs, open_checkpoint=lambda: self.checkpoint, reporter=self.reporter,
            checker=FakeChecker() if checked else None,
            start_health=lambda checker, on_result: FakeHealthLoop(self.effects) if checked else None,
            start_lifecycle=self._lifecycle, announcer=None),
            sandbox="/sandbox", clock=self.clock, wall_clock=lambda: 0.0, stop=StopBounds(**stop))
        self.owner.start()
        self.step()

    def _lifecycle(self, within: float | None, progress: Callable[[str], None],
                   done: Callable[[str], None]) -> FakeLifecycle:
        self.progress, self.done_with = progress, done
        return FakeLifecycle(self.effects, within)

    def kill(self, reason: str, grace: float | None = 4.0, lifecycle: bool = True) -> None:
        self.owner.request_kill(reason, grace, use_lifecycle=lifecycle)
        self.step()


def stage_lines(caplog: pytest.LogCaptureFixture) -> list[dict]:
    return [r.stoker_fields for r in caplog.records if getattr(r, "stoker_event", "") == "kill_stage"]


def test_each_stage_is_one_line_and_the_endpoints_answers_come_back_through_the_queue(caplog):
    rig = Rig(job(lifecycle=LIFECYCLE))
    with caplog.at_level(logging.INFO, logger="executor.task.killing"):
        rig.kill("killed by the agent (KILL)")
        assert rig.progress is not None and rig.done_with is not None
        rig.progress("POST http://localhost:31000/quitquitquit answered HTTP 200")  # from the endpoints' thread
        rig.step()
        rig.done_with("processes still running after /abortabortabort")
        rig.step()
    assert stage_lines(caplog) == [
        {"task": "t.0", "stage": "lifecycle", "port": 31000, "reason": "killed by the agent (KILL)"},
        {"task": "t.0", "stage": "lifecycle", "reason": "POST http://localhost:31000/quitquitquit answered HTTP 200"},
        {"task": "t.0", "stage": "signals", "reason": "processes still running after /abortabortabort: "
                                                      "SIGTERM now, SIGKILL in 4 s unless every process has exited"}]
    assert [t.stage for t in rig.reporter.transitions if isinstance(t, KillStep)] == ["lifecycle", "signals"]


def test_a_second_request_during_the_endpoints_names_itself_as_why_the_signals_came(caplog):
    rig = Rig(job(lifecycle=LIFECYCLE))
    rig.kill("killed by the agent (KILL)")
    with caplog.at_level(logging.INFO, logger="executor.task.killing"):
        rig.kill("executor shutting down (SHUTDOWN)", grace=1.0, lifecycle=False)
    assert stage_lines(caplog) == [{"task": "t.0", "stage": "signals", "reason": (
        "executor shutting down (SHUTDOWN): SIGTERM now, SIGKILL in 1 s unless every process has exited")}]


def test_a_kill_without_endpoints_has_no_stage_to_report(caplog):
    rig = Rig(job())
    with caplog.at_level(logging.INFO, logger="executor.task.killing"):
        rig.kill("killed by the agent (KILL)")
    assert stage_lines(caplog) == [] and not [t for t in rig.reporter.transitions if isinstance(t, KillStep)]


def test_the_stop_timeout_kills_at_once_and_says_which_flag_bounds_it():
    rig = Rig(job(), timeout_secs=2.5)
    rig.kill("killed by the agent (KILL)", grace=30.0)
    rig.clock.advance(2.5)
    rig.post(TimerFired(rig.clock.now))
    now = [t.reason for t in rig.reporter.transitions if isinstance(t, KillStep)]
    assert now == ["the stop is not over 2.5 s after it began (--stop-timeout-in-secs): SIGKILL to every "
                   "process now; the waits left and the final processes are skipped"]


def test_the_grace_after_the_endpoints_is_what_is_left_of_the_stop_s_bound():
    rig = Rig(job(lifecycle=LIFECYCLE), within_secs=6.0)  # stoker run --kill-grace 6
    rig.kill("stopped by SIGTERM", grace=30.0)
    rig.clock.advance(4.0)
    assert rig.done_with is not None
    rig.done_with("the endpoints answered")
    rig.step()
    assert [t.reason for t in rig.reporter.transitions if isinstance(t, KillStep)][-1] == (
        "the endpoints answered: SIGTERM now, SIGKILL in 2 s unless every process has exited")


class RefusedRig(Rig):
    """The endpoints refused at once: their end is on the owner's queue as the kill starts
    them (a lifecycle port nothing listens on answers before the owner's next look)."""

    def _lifecycle(self, within: float | None, progress: Callable[[str], None],
                   done: Callable[[str], None]) -> FakeLifecycle:
        started = super()._lifecycle(within, progress, done)
        done("lifecycle endpoints done")
        return started


def test_the_stop_is_said_before_what_the_endpoints_ended_it_with():
    """The supervisor's ACTIVE → CLEANING line, which gives the endpoints their time ("SIGTERM
    in 5 s"), was printed after the endpoints' refusal and its "SIGTERM now": both came in
    the owner's one look at its queue, and the planner's lines only after it, so the last
    line said the SIGTERM was 5 s away once it had been sent."""
    rig = RefusedRig(job(lifecycle=LIFECYCLE))
    rig.kill("stopped by SIGTERM")
    rig.step()
    said = [(type(t).__name__, t.reason) for t in rig.reporter.transitions
            if isinstance(t, KillStep | PhaseTransition)]
    assert said == [
        ("PhaseTransition", "stopped by SIGTERM; stopping 1 running process: SIGTERM in 5 s, SIGKILL 4 s later"),
        ("KillStep", "lifecycle endpoints done: SIGTERM now, SIGKILL in 4 s unless every process has exited")]


def test_the_stop_is_said_first_too_when_the_kill_is_the_event_the_owner_waited_for():
    """As `TaskOwner.run` takes it: the request it waited for, handled before the step that
    drains the rest (the endpoints' end among them)."""
    rig = RefusedRig(job(lifecycle=LIFECYCLE))
    rig.owner.request_kill("stopped by SIGTERM", 4.0)
    rig.owner._handle(rig.owner._wait())  # `run`'s loop, between two steps
    rig.step()
    rig.step()
    said = [type(t).__name__ for t in rig.reporter.transitions if isinstance(t, KillStep | PhaseTransition)]
    assert said == ["PhaseTransition", "KillStep"]


def test_the_stop_a_failed_health_check_began_is_said_before_what_the_endpoints_ended_it_with():
    """The kill a failed check starts (not a kill request): its ACTIVE → CLEANING line ("SIGTERM
    in 5 s") was still printed after the refused endpoints' "SIGTERM now", both in one look at
    the queue."""
    rig = RefusedRig(job(lifecycle=LIFECYCLE, health=True))
    rig.post(HealthChecked(Attempt.failed("HTTP 503"), 0.0, rig.clock.now))
    said = [type(t).__name__ for t in rig.reporter.transitions if isinstance(t, KillStep | PhaseTransition)]
    assert said == ["PhaseTransition", "KillStep"]


@pytest.mark.parametrize("waited", [False, True])
def test_a_run_that_ended_before_the_kill_s_signals_is_neither_signalled_nor_said_ended_by_them(waited):
    """A run whose exit was queued behind the kill request (it ended on its own, or by the
    SIGTERM systemd sent the whole unit, before the owner sent any): the step decided on the
    kill before it took the exit, sent the run SIGTERM and recorded 'exit status 3 after the
    task's SIGTERM'."""
    rig = Rig(job())
    rig.owner.request_kill("stopped by SIGTERM", 4.0)
    rig.owner.post(ProcessExited("a", 0, 101, ExitStatus(exit_code=3), rig.clock.now))
    if waited:
        rig.owner._handle(rig.owner._wait())  # `run`'s loop, between two steps
    rig.step()
    rig.step()
    ended = [t.reason for t in rig.reporter.transitions if isinstance(t, ProcessTransition) and t.outcome is not None]
    assert ended == ["exit status 3 while the task was being killed"]
    assert not [line for line in rig.effects.lines if "SIGTERM" in line]


def test_a_kill_request_held_behind_a_failing_one_still_hears_the_task_s_end():
    """A step that failed while it handled the events held for after the kill's decision (a
    bug, here the reporter raising on the endpoints' "SIGTERM now"): the operator's `stoker
    kill` held behind that event was dropped with it, neither handled nor answered at the
    close, and the operator waited for an answer that never came."""
    rig = Rig(job(lifecycle=LIFECYCLE))
    rig.kill("killed by the agent (KILL)")
    answers: list[ControlReply] = []
    rig.owner.request_kill("stopped by SIGTERM", 4.0)  # a later request: it hastens the kill
    assert rig.done_with is not None
    rig.done_with("lifecycle endpoints done")  # held behind it
    rig.owner.post(KillRequested(OPERATOR_KILL, 1.0, rig.clock.now, reply=answers.append))  # held too

    def on_transition(t: object) -> None:
        if isinstance(t, KillStep):
            raise RuntimeError("the reporter failed")

    rig.reporter.on_transition = on_transition  # type: ignore[method-assign]
    try:  # as `TaskOwner.run` does
        rig.owner.step()
    except RuntimeError as exc:
        rig.owner._internal_error(exc)
    finally:
        rig.owner.close()
    assert [(a.done, a.state) for a in answers] == [(True, "FAILED")]


@pytest.mark.parametrize("one_look", [True, False])
def test_a_failed_check_queued_before_a_kill_still_decides_the_end_when_a_run_exit_came_first(one_look):
    """A run ended (it restarts), its failed health check came next, then an operator's kill:
    the first cause wins, so the task ends FAILED by the check, as it does when each event
    has a step of its own. In one look at the queue the check waited for the planner's
    decision on the exit and the kill did not: the kill went first and the task ended KILLED."""
    rig = Rig(job(ProcessSpec(name="a", cmdline="serve", max_failures=0, min_duration_secs=0.0), health=True))
    events = [ProcessExited("a", 0, 101, ExitStatus(exit_code=1), rig.clock.now),
              HealthChecked(Attempt.failed("HTTP 503"), 0.0, rig.clock.now),
              KillRequested(OPERATOR_KILL, 1.0, rig.clock.now)]
    for event in events:
        rig.owner.post(event)
        if not one_look:
            rig.step()
    rig.step()
    if not rig.done:  # the new run, SIGTERMed
        rig.post(ProcessExited("a", 1, 102, ExitStatus(signal=15), rig.clock.now))
    assert rig.done
    assert [(u.state.value, u.message) for u in rig.reporter.updates if u.state.terminal] == [
        ("FAILED", "health check failed: 1 consecutive health check failed (max_consecutive_failures=0): HTTP 503")]


def test_a_kill_between_two_checks_results_held_for_the_planner_keeps_its_place():
    """A run's exit, a passed check, a kill, a failed check, in one look: the kill came before
    the failure, so the task ends KILLED. The kill held behind the first result was held again
    behind the second as the owner took them, and the failure came first: FAILED."""
    rig = Rig(job(ProcessSpec(name="a", cmdline="serve", max_failures=0, min_duration_secs=0.0), health=True))
    for event in (ProcessExited("a", 0, 101, ExitStatus(exit_code=1), rig.clock.now),
                  HealthChecked(Attempt.passed(), 0.0, rig.clock.now),
                  KillRequested(OPERATOR_KILL, 1.0, rig.clock.now),
                  HealthChecked(Attempt.failed("HTTP 503"), 0.0, rig.clock.now)):
        rig.owner.post(event)
    rig.step()
    rig.post(ProcessExited("a", 1, 102, ExitStatus(signal=15), rig.clock.now))
    assert [(u.state.value, u.message) for u in rig.reporter.updates if u.state.terminal] == [
        ("KILLED", OPERATOR_KILL)]


class QueuedFirstRig(Rig):
    """The owner rig whose first step waits for the test: what it queues meets that step."""

    started = False

    def step(self) -> None:
        if self.started:
            super().step()


def test_a_request_held_behind_a_kill_that_ends_the_task_at_once_hears_the_end():
    """A kill before the first step ends the task with nothing started: the decision is
    terminal, so the request held behind the kill is not handled, and the close answers it
    with the task's end, as a request that came as the task ended."""
    rig = QueuedFirstRig(job())
    replies: list[object] = []
    rig.owner.post(KillRequested("stopped by SIGTERM", 4.0))
    rig.owner.post(KillRequested("stoker kill", 4.0, reply=replies.append))
    rig.started = True
    rig.step()
    assert rig.done and rig.owner.final_update is not None
    final = rig.owner.final_update
    assert replies == [ControlReply(ok=True, done=True, state=final.state.value,
                                    message=f"task {rig.owner.job.label} {final.state.value}: {final.message}")]
    assert final.state.value == "KILLED"


def test_the_daemons_the_runs_left_are_signalled_with_the_stop_in_one_line(caplog):
    """Daemons outside the runs' process groups: SIGTERM with the regular processes, the
    line naming the task, the signal, how many were signalled and the stop's reason."""
    rig = Rig(job())
    rig.procs.daemons_alive = True
    with caplog.at_level(logging.INFO):
        rig.kill("stopped by SIGTERM", lifecycle=False)
    assert [r.getMessage() for r in caplog.records if getattr(r, "stoker_event", "") == "daemons_signalled"] == [
        'daemons_signalled task=t.0 signal=SIGTERM processes=1 reason="stopped by SIGTERM; stopping 1 running '
        'process: SIGTERM now, SIGKILL 4 s later"']
    assert rig.effects.lines[-2:] == ["0 SIGTERM a[0]", "0 SIGTERM daemons"]


def test_the_ports_room_for_the_stop_is_its_own_before_the_kills_first_line():
    """`stop_begun` before the kill's first transition is reported: where the address space
    is full, the room the port kept is what the kill's lines are made in."""
    rig = OwnerRig()
    owner = rig.own(job(ProcessSpec(name="a", cmdline="serve", min_duration_secs=0.0)))
    owner.start()
    rig.step()
    assert rig.procs.stops_begun == []  # a start lets nothing go
    reported = len(rig.reporter.transitions)
    owner.post(KillRequested("stop"))
    rig.step()
    assert len(rig.reporter.transitions) > reported  # (the kill's lines)
    assert rig.procs.stops_begun[:1] == [reported]
