"""An operator's restart (`stoker restart`): the pure rule that says when one may be asked
for, and the planner's story once it is: SIGTERM now, SIGKILL after the grace, the run
ends RESTARTED (neither a failure nor a loss) and the next one starts at once, without
waiting for min_duration. Fake clock, no threads, no processes."""
from __future__ import annotations

import signal

import pytest

from config.spec import ProcessSpec, TaskSpec
from executor.events import ExitStatus, ProcessState, RunOutcome, TaskPhase
from executor.task.planner import Planner
from executor.task.process_rules import ProcessTrack, RestartAnswer, RunCounts, restart_refusal
from tests.support.fake_clock import FakeClock

TERM, KILL = int(signal.SIGTERM), int(signal.SIGKILL)

pytestmark = pytest.mark.timeout(10)


def track(state: ProcessState, *, final: bool = False, min_duration: float = 0.0,
          ended_at: float | None = None, start_now: bool = False) -> ProcessTrack:
    spec = ProcessSpec(name="web", cmdline="serve", final=final, min_duration_secs=min_duration)
    return ProcessTrack(spec, (), state=state, run=0 if state is not ProcessState.WAITING else -1,
                        ended_at=ended_at, start_now=start_now, last_reason="exit status 3")


S = ProcessState
P = TaskPhase

REFUSAL_RULES = {
    "a running process of an active task": (track(S.RUNNING), P.ACTIVE, [], None),
    "one waiting for its min_duration starts at once": (
        track(S.WAITING, min_duration=5.0, ended_at=8.0), P.ACTIVE, [], None),
    "a stopping task restarts nothing": (
        track(S.RUNNING), P.CLEANING, [],
        "the task is stopping (its supervisor is CLEANING): nothing is restarted"),
    "nor does a finalizing one": (
        track(S.RUNNING), P.FINALIZING, [],
        "the task is stopping (its supervisor is FINALIZING): nothing is restarted"),
    "a final process runs only at the end": (
        track(S.WAITING, final=True), P.ACTIVE, [],
        "process 'web' is a final process: it runs only once the task is stopping"),
    "a process that succeeded for good": (
        track(S.SUCCESS), P.ACTIVE, [], "process 'web' has ended for good (SUCCESS: exit status 3)"),
    "one that failed for good": (
        track(S.FAILED), P.ACTIVE, [], "process 'web' has ended for good (FAILED: exit status 3)"),
    "one waiting for the processes it is ordered after": (
        track(S.WAITING), P.ACTIVE, ["db", "cache"],
        "process 'web' has not started: it waits for 'db', 'cache'"),
    "one waiting for a slot under max_concurrency": (
        track(S.WAITING, min_duration=5.0, ended_at=1.0), P.ACTIVE, [],
        "process 'web' is waiting for a free slot (max_concurrency=2)"),
    "the moment its min_duration is over, it no longer waits for it": (
        track(S.WAITING, min_duration=5.0, ended_at=5.0), P.ACTIVE, [],
        "process 'web' is waiting for a free slot (max_concurrency=2)"),
}


@pytest.mark.parametrize("p, phase, waiting_for, refusal", REFUSAL_RULES.values(), ids=REFUSAL_RULES)
def test_when_a_restart_is_refused(p, phase, waiting_for, refusal):
    assert restart_refusal(p, phase, waiting_for, now=10.0, max_concurrency=2, running=2) == refusal


def test_one_whose_run_just_ended_is_not_said_to_wait_for_a_slot_there_is():
    """The restart and the run's exit came in the same step, with the min_duration over (0):
    it was refused as "waiting for a free slot (max_concurrency=0)", a limit the task does not
    have. The next decision starts it: the restart is taken."""
    ended = track(S.WAITING, min_duration=0.0, ended_at=10.0)
    assert restart_refusal(ended, P.ACTIVE, [], now=10.0, max_concurrency=0, running=3) is None
    assert restart_refusal(ended, P.ACTIVE, [], now=10.0, max_concurrency=2, running=1) is None


def test_a_restarted_run_counts_as_nothing():
    assert RunCounts().count(RunOutcome.RESTARTED) == RunCounts()


class Story:
    """Drives a Planner like the owner: decide, fork what it says, report exits."""

    def __init__(self, *procs: ProcessSpec, **task_kw) -> None:
        self.clock = FakeClock()
        self.planner = Planner(TaskSpec(name="t", processes=procs, **task_kw))
        self.pid = 100
        self.transitions: list = []

    def decide(self):
        d = self.planner.decide(self.clock.now)
        self.transitions += d.transitions
        for s in d.start:
            self.pid += 1
            self.planner.started(s.process, s.run, self.pid, self.clock.now)
        return d

    def exit(self, name: str, status: ExitStatus):
        self.planner.exited(name, self.planner.process(name).run, status, self.clock.now)
        return self.decide()


def web(**kw) -> ProcessSpec:
    kw.setdefault("min_duration_secs", 15.0)
    return ProcessSpec(name="web", cmdline="serve", **kw)


def test_a_restart_terms_the_run_and_the_next_starts_at_once_despite_min_duration():
    s = Story(web(max_failures=1))
    s.decide()
    answer = s.planner.restart("web", s.clock.now, grace_secs=5.0)
    assert answer.accepted
    assert answer.reason == ("restarting process 'web': SIGTERM to run 0 now, SIGKILL 5 s later; "
                             "run 1 starts as soon as it has ended")
    d = s.decide()
    assert [(c.process, c.run, c.signal) for c in d.signal] == [("web", 0, TERM)]
    assert d.next_deadline_at == s.clock.now + 5.0  # its SIGKILL
    s.clock.advance(1.0)
    d = s.exit("web", ExitStatus(signal=TERM))
    ended = [t for t in s.transitions if t.to is ProcessState.WAITING][-1]
    assert ended.outcome is RunOutcome.RESTARTED
    assert ended.reason == ("killed by SIGTERM after the operator's restart; the next run starts "
                            "now (not counted toward max_failures=1)")
    assert [(c.process, c.run) for c in d.start] == [("web", 1)]  # no min_duration wait
    view = s.planner.process("web")
    assert (view.failures, view.losses, view.state) == (0, 0, ProcessState.RUNNING)


def test_a_run_that_ignores_sigterm_is_sigkilled_after_the_grace():
    s = Story(web())
    s.decide()
    s.planner.restart("web", s.clock.now, grace_secs=2.0)
    s.decide()
    s.clock.advance(1.9)
    assert s.decide().signal == ()
    s.clock.advance(0.1)
    d = s.decide()
    assert [(c.process, c.signal) for c in d.signal] == [("web", KILL)]
    assert d.next_deadline_at is None  # nothing more to send; the reaper reports the exit
    d = s.exit("web", ExitStatus(signal=KILL))
    assert [c.run for c in d.start] == [1]


def test_asking_twice_changes_nothing():
    s = Story(web())
    s.decide()
    s.planner.restart("web", s.clock.now, grace_secs=2.0)
    s.decide()
    again = s.planner.restart("web", s.clock.now, grace_secs=0.0)
    assert again.accepted and again.reason == "process 'web' run 0 is already restarting"
    assert s.decide().signal == ()


def test_a_kill_during_a_restart_wins_and_nothing_restarts():
    s = Story(web())
    s.decide()
    s.planner.restart("web", s.clock.now, grace_secs=5.0)
    s.decide()
    s.planner.kill(s.clock.now, "killed by the agent (KILL)", grace_secs=1.0)
    s.decide()
    d = s.exit("web", ExitStatus(signal=TERM))
    assert d.start == ()
    assert s.planner.process("web").state is ProcessState.KILLED
    assert d.phase is TaskPhase.KILLED


def test_a_process_waiting_for_min_duration_starts_at_once():
    s = Story(web(max_failures=3))
    s.decide()
    s.clock.advance(1.0)
    d = s.exit("web", ExitStatus(exit_code=3))
    assert d.start == () and d.next_deadline_at == s.clock.now + 15.0
    answer = s.planner.restart("web", s.clock.now, grace_secs=5.0)
    assert answer.accepted and answer.reason == ("process 'web' was waiting for its min_duration; "
                                                 "run 1 starts now")
    assert [c.run for c in s.decide().start] == [1]


def test_an_unknown_process_is_refused_with_the_task_s_processes_named():
    s = Story(web(), ProcessSpec(name="db", cmdline="db"))
    s.decide()
    answer = s.planner.restart("cache", s.clock.now, grace_secs=5.0)
    assert answer.accepted is False
    assert answer.reason == "task 't' has no process 'cache' (its processes: web, db)"


def test_the_planner_refuses_what_the_rule_refuses_with_the_task_s_own_order_and_limit():
    s = Story(ProcessSpec(name="db", cmdline="db"), ProcessSpec(name="cache", cmdline="cache"), web(),
              constraints=(("db", "web"),), max_concurrency=1)
    s.decide()  # db runs; cache waits for the one slot, web for db
    assert s.planner.restart("web", s.clock.now, grace_secs=5.0) == RestartAnswer(
        False, "process 'web' has not started: it waits for 'db'")
    assert s.planner.restart("cache", s.clock.now, grace_secs=5.0) == RestartAnswer(
        False, "process 'cache' is waiting for a free slot (max_concurrency=1)")


def test_the_restarted_run_is_signalled_wherever_it_is_in_the_task():
    s = Story(ProcessSpec(name="db", cmdline="db"), web())
    s.decide()
    answer = s.planner.restart("web", s.clock.now, grace_secs=0.0)  # no grace: SIGKILL right after
    assert answer.reason == ("restarting process 'web': SIGTERM to run 0 now, SIGKILL 0 s later; "
                             "run 1 starts as soon as it has ended")
    d = s.decide()
    assert [(c.process, c.run, c.signal) for c in d.signal] == [("web", 0, TERM)]
    assert [(c.process, c.run, c.signal) for c in s.decide().signal] == [("web", 0, KILL)]


def test_a_run_that_ends_on_its_own_before_the_sigterm_counts_as_what_it_was():
    s = Story(web(max_failures=3))
    s.decide()
    s.planner.restart("web", s.clock.now, grace_secs=5.0)
    s.clock.advance(0.5)
    s.exit("web", ExitStatus(exit_code=3))  # before any decide() sent the SIGTERM
    ended = [t for t in s.transitions if t.to is ProcessState.WAITING][-1]
    assert ended.outcome is RunOutcome.FAILED
    assert s.planner.process("web").failures == 1


def test_a_run_that_ends_on_its_own_before_the_sigterm_is_still_followed_at_once():
    """The operator was told "run 1 starts as soon as it has ended"; a run that ended on its
    own as the restart came (before its SIGTERM) counted right, but the next run then waited
    for min_duration (15 s here, 5 by default), and `stoker restart` with it."""
    s = Story(web(max_failures=3))
    s.decide()
    s.planner.restart("web", s.clock.now, grace_secs=5.0)
    s.clock.advance(0.5)
    d = s.exit("web", ExitStatus(exit_code=3))
    assert [(c.process, c.run) for c in d.start] == [("web", 1)]
    assert s.planner.process("web").failures == 1


def test_a_restart_that_comes_with_the_run_s_exit_is_taken_and_starts_the_next():
    """`stoker restart` as the run exits (both in one step of the owner, the exit first) with
    min_duration 0: refused, "waiting for a free slot (max_concurrency=0)", exit 1."""
    s = Story(web(max_failures=3, min_duration_secs=0.0))
    s.decide()
    s.clock.advance(0.5)
    s.planner.exited("web", 0, ExitStatus(exit_code=3), s.clock.now)
    answer = s.planner.restart("web", s.clock.now, grace_secs=5.0)
    assert answer == RestartAnswer(True, "process 'web' run 0 has just ended (exit status 3); run 1 starts now")
    assert [(c.process, c.run) for c in s.decide().start] == [("web", 1)]


def test_the_restarted_process_takes_back_its_slot_under_max_concurrency():
    """`b` waited for the one slot `a` held; `stoker restart a` stopped a's run and `b`,
    first in task order, took the slot: `a` did not run again while `b` ran (a service: for
    ever), and `stoker restart` waited as long for the run it had been promised."""
    s = Story(ProcessSpec(name="b", cmdline="b", min_duration_secs=5.0, max_failures=3),
              web(min_duration_secs=5.0), max_concurrency=1)
    s.decide()
    s.clock.advance(1.0)
    assert [c.process for c in s.exit("b", ExitStatus(exit_code=1)).start] == ["web"]
    s.clock.advance(6.0)  # b's min_duration is over: it waits for the slot
    assert s.decide().start == () and s.planner.process("b").state is ProcessState.WAITING
    assert s.planner.restart("web", s.clock.now, grace_secs=2.0).accepted
    s.decide()
    d = s.exit("web", ExitStatus(signal=TERM))
    assert [(c.process, c.run) for c in d.start] == [("web", 1)]
    assert s.planner.process("b").state is ProcessState.WAITING
