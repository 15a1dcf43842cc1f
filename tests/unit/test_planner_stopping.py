"""The planner stopping a task: final processes and finalization, kills and their grace.
Fake clock, no threads, no sleeps."""
from __future__ import annotations

import pytest

from executor.events import ExitStatus, PhaseTransition, ProcessState, ProcessTransition, TaskPhase
from tests.support.planner_harness import KILL, TERM, Harness, proc, signals, started, task, task_transitions

pytestmark = pytest.mark.timeout(10)


# ---- final processes and finalization ----


def test_final_processes_run_in_their_order_only_after_every_regular_process_ended():
    h = Harness(task(proc("f2", final=True), proc("f1", final=True), proc("main"),
                     constraints=[("f1", "f2")]))
    assert started(h.decide()) == ["main"]
    d = h.exit("main")
    assert started(d) == ["f1"] and d.phase is TaskPhase.FINALIZING
    assert task_transitions(h) == [("ACTIVE", "CLEANING"), ("CLEANING", "FINALIZING")]
    assert started(h.exit("f1")) == ["f2"]
    d = h.exit("f2", 1)  # a final process's failure never changes the outcome
    assert d.phase is TaskPhase.SUCCESS


def test_task_with_only_final_processes_runs_them_and_succeeds():
    h = Harness(task(proc("f", final=True)))
    d = h.decide()
    assert started(d) == ["f"] and d.phase is TaskPhase.FINALIZING
    assert h.exit("f").phase is TaskPhase.SUCCESS


def test_finalization_deadline_sigkills_the_finals_and_ends_the_task():
    h = Harness(task(proc("main"), proc("f", final=True, daemon=True),
                     finalization_wait_secs=10.0))
    h.decide()
    h.clock.advance(4.0)
    d = h.exit("main")
    assert started(d) == ["f"] and d.next_deadline_at == 1014.0  # cleaning start + 10 s
    h.clock.advance_to(1013.999)
    assert h.decide().signal == ()
    h.clock.advance_to(1014.0)
    d = h.decide()
    assert signals(d) == [("f", KILL)] and d.phase is TaskPhase.FINALIZING
    d = h.exit("f", sig=KILL)
    assert d.phase is TaskPhase.SUCCESS and h.state("f") is ProcessState.KILLED


def test_run_that_ignores_sigkill_is_given_up_a_quarter_second_later():
    h = Harness(task(proc("main"), proc("f", final=True), finalization_wait_secs=2.0))
    h.decide()
    h.exit("main")
    h.clock.advance(2.0)
    d = h.decide()
    assert signals(d) == [("f", KILL)] and d.next_deadline_at == 1002.25
    h.clock.advance_to(1002.249)
    assert h.decide().transitions == ()
    h.clock.advance_to(1002.25)
    d = h.decide()
    assert d.phase is TaskPhase.SUCCESS and h.state("f") is ProcessState.KILLED
    assert h.planner.process("f").last_reason == "run 0 did not exit 0.25 s after SIGKILL; given up on"
    h.planner.exited("f", 0, ExitStatus(signal=KILL), h.clock.now)  # late report: ignored
    assert h.decide().transitions == ()


def test_finalization_is_skipped_when_cleaning_spent_the_budget():
    h = Harness(task(proc("main"), proc("e", ephemeral=True), proc("f", final=True),
                     finalization_wait_secs=5.0))
    h.decide()
    d = h.exit("main")
    assert signals(d) == [("e", TERM)] and d.next_deadline_at == 1005.0
    h.clock.advance(5.0)
    assert signals(h.decide()) == [("e", KILL)]
    d = h.exit("e", sig=KILL)
    assert d.start == () and d.phase is TaskPhase.SUCCESS
    assert h.state("f") is ProcessState.KILLED
    assert "finalization skipped" in h.planner.process("f").last_reason


# ---- kill ----


def test_kill_sigterms_then_sigkills_at_exactly_now_plus_grace_then_runs_finals():
    h = Harness(task(proc("a"), proc("b"), proc("later"), proc("f", final=True),
                     constraints=[("a", "later")], finalization_wait_secs=30.0))
    h.decide()
    h.clock.advance(1.0)
    h.planner.kill(h.clock.now, "killed by the agent", grace_secs=3.0)
    d = h.decide()
    assert d.phase is TaskPhase.CLEANING
    assert signals(d) == [("a", TERM), ("b", TERM)] and d.next_deadline_at == 1004.0
    assert h.state("later") is ProcessState.KILLED  # no new regular runs after a kill
    d = h.exit("a", 0)  # exited on SIGTERM, cleanly: still KILLED, not restarted or SUCCESS
    assert h.state("a") is ProcessState.KILLED and d.start == ()
    h.clock.advance_to(1003.999)
    assert h.decide().signal == ()
    h.clock.advance_to(1004.0)
    assert signals(h.decide()) == [("b", KILL)]
    h.clock.advance(0.5)
    d = h.exit("b", sig=KILL)
    assert started(d) == ["f"] and d.phase is TaskPhase.FINALIZING
    assert d.next_deadline_at == 1034.5  # finals get finalization_wait from here
    d = h.exit("f", 0)
    assert d.phase is TaskPhase.KILLED and d.reason == "killed by the agent"


def test_kill_without_grace_uses_finalization_wait():
    h = Harness(task(proc("a"), finalization_wait_secs=7.0))
    h.decide()
    h.planner.kill(h.clock.now, "stop")
    d = h.decide()
    assert signals(d) == [("a", TERM)] and d.next_deadline_at == 1007.0


def test_second_kill_shortens_the_grace_but_never_lengthens_it():
    h = Harness(task(proc("a")))
    h.decide()
    h.planner.kill(h.clock.now, "first", grace_secs=10.0)
    assert h.decide().next_deadline_at == 1010.0
    h.clock.advance(1.0)
    h.planner.kill(h.clock.now, "second", grace_secs=2.0)
    d = h.decide()
    assert d.next_deadline_at == 1003.0 and d.signal == () and d.transitions == ()
    h.planner.kill(h.clock.now, "third", grace_secs=60.0)
    assert h.decide().next_deadline_at == 1003.0
    h.clock.advance_to(1003.0)
    assert signals(h.decide()) == [("a", KILL)]
    d = h.exit("a", sig=KILL)
    assert d.phase is TaskPhase.KILLED and d.reason == "first"


def test_kill_during_finalizing_leaves_the_finals_their_budget():
    # The stop's SIGTERM and grace are for the regular processes; the finals are the task's
    # own clean-up and run on within their finalization_wait, as Thermos lets them.
    h = Harness(task(proc("main"), proc("f1", final=True), proc("f2", final=True),
                     constraints=[("f1", "f2")], finalization_wait_secs=10.0))
    h.decide()
    h.exit("main")
    h.planner.kill(h.clock.now, "stop now", grace_secs=2.0)
    d = h.decide()
    assert d.signal == () and d.next_deadline_at == 1010.0
    assert h.state("f1") is ProcessState.RUNNING and h.state("f2") is ProcessState.WAITING
    h.clock.advance(3.0)  # past the kill's grace
    assert started(h.exit("f1")) == ["f2"]
    d = h.exit("f2")
    assert d.phase is TaskPhase.KILLED and d.reason == "stop now"


def test_a_second_stop_during_finalizing_stops_the_finals_at_once():
    h = Harness(task(proc("main"), proc("f1", final=True), proc("f2", final=True),
                     constraints=[("f1", "f2")]))
    h.decide()
    h.exit("main")
    h.planner.kill(h.clock.now, "stop", grace_secs=2.0)
    h.decide()
    h.planner.kill(h.clock.now, "second stop signal (SIGINT)", grace_secs=0.0, skip_finals=True)
    assert signals(h.decide()) == [("f1", KILL)]
    assert h.state("f2") is ProcessState.KILLED
    assert h.exit("f1", sig=KILL).phase is TaskPhase.KILLED


def test_kill_with_a_term_delay_holds_restarts_and_signals_until_the_delay_is_over():
    h = Harness(task(proc("web", daemon=True)))
    h.decide()
    h.planner.kill(h.clock.now, "shutdown", grace_secs=5.0, term_delay_secs=10.0)
    d = h.decide()
    assert d.signal == () and d.next_deadline_at == 1010.0
    h.clock.advance(3.0)  # the lifecycle endpoints finished early: a second kill, signals now
    h.planner.kill(h.clock.now, "shutdown", grace_secs=5.0)
    d = h.decide()
    assert signals(d) == [("web", TERM)] and d.next_deadline_at == 1008.0


def test_run_that_exits_on_its_own_during_a_kill_is_killed_not_restarted():
    h = Harness(task(proc("web", daemon=True)))
    h.decide()
    h.planner.kill(h.clock.now, "shutdown", grace_secs=5.0, term_delay_secs=10.0)
    d = h.exit("web", 0)  # /quitquitquit made it exit before any signal
    assert h.state("web") is ProcessState.KILLED and d.start == ()
    assert d.phase is TaskPhase.KILLED


def test_kill_in_a_terminal_phase_does_nothing():
    h = Harness(task(proc("a")))
    h.decide()
    assert h.exit("a").phase is TaskPhase.SUCCESS
    h.planner.kill(h.clock.now, "too late", grace_secs=0.0)
    d = h.decide()
    assert d.phase is TaskPhase.SUCCESS and d.transitions == () and d.next_deadline_at is None


def test_kill_before_anything_started_still_runs_the_finals():
    h = Harness(task(proc("a"), proc("f", final=True)))
    h.planner.kill(h.clock.now, "stop", grace_secs=1.0)
    d = h.decide()
    assert started(d) == ["f"] and h.state("a") is ProcessState.KILLED
    assert h.exit("f").phase is TaskPhase.KILLED


def test_a_kill_while_the_only_process_waits_to_restart_says_nothing_runs():
    # was: "stopping 0 running processes: SIGTERM now, SIGKILL 5 s later", of a stop that
    # signals no one
    h = Harness(task(proc("a", max_failures=3, min_duration_secs=30.0)))
    h.decide()
    h.exit("a", 1)
    h.decide()
    assert h.planner.process("a").state is ProcessState.WAITING
    h.planner.kill(h.clock.now, "killed by the operator (stoker kill)", grace_secs=5.0)
    assert signals(h.decide()) == []
    phases = [t.reason for t in h.transitions if isinstance(t, PhaseTransition)]
    assert task_transitions(h)[-2:] == [("ACTIVE", "CLEANING"), ("CLEANING", "KILLED")]
    assert phases[-2] == "killed by the operator (stoker kill); nothing running to stop"
    [last] = [t for t in h.transitions if isinstance(t, ProcessTransition)][-1:]
    assert (last.from_, last.to, last.reason) == (ProcessState.WAITING, ProcessState.KILLED,
                                                  "not restarted: the task is stopping")
