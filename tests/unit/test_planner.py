"""Unit tests for the pure process planner: one test (or table) per Thermos rule, fake clock,
no threads, no sleeps."""
from __future__ import annotations

import ast
import pathlib
import signal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.spec import ProcessSpec, TaskSpec
from executor.events import (
    ExitStatus,
    PhaseTransition,
    ProcessState,
    ProcessTransition,
    RunOutcome,
    TaskPhase,
)
from executor.task import planner as planner_module
from executor.task.planner import Decision, Planner
from executor.task.plans import Plan
from tests.support.fake_clock import FakeClock

TERM = int(signal.SIGTERM)
KILL = int(signal.SIGKILL)

pytestmark = pytest.mark.timeout(10)


def proc(name: str, **kw) -> ProcessSpec:
    kw.setdefault("min_duration_secs", 0.0)  # most rules are easier to see without the gate
    return ProcessSpec(name=name, cmdline=f"run-{name}", **kw)


def task(*procs: ProcessSpec, constraints=(), **kw) -> TaskSpec:
    return TaskSpec(name="t", processes=tuple(procs), constraints=tuple(constraints), **kw)


class Harness:
    """Drives a Planner like the owner does: decide, fork what it says, report exits."""

    def __init__(self, spec: TaskSpec, **kw) -> None:
        self.clock = FakeClock()
        self.planner = Planner(spec, **kw)
        self.transitions: list = []
        self.next_pid = 100

    def decide(self) -> Decision:
        d = self.planner.decide(self.clock.now)
        self.transitions += d.transitions
        for s in d.start:
            self.next_pid += 1
            self.planner.started(s.process, s.run, self.next_pid, self.clock.now)
        assert_plans_kept(self.planner)
        return d

    def run_of(self, name: str) -> int:
        return self.planner.process(name).run

    def exit(self, name: str, code: int | None = 0, sig: int | None = None) -> Decision:
        status = ExitStatus(signal=sig) if sig is not None else ExitStatus(exit_code=code)
        self.planner.exited(name, self.run_of(name), status, self.clock.now)
        return self.decide()

    def state(self, name: str) -> ProcessState:
        return self.planner.process(name).state

    def states(self) -> dict[str, str]:
        return {v.name: v.state.value for v in self.planner.processes()}


def assert_plans_kept(planner: Planner) -> None:
    """What each plan keeps as the states change (`Plan.moved`) is what a plan made afresh
    from the same processes finds."""
    for plan in (planner._regular, planner._final):
        fresh = Plan(list(plan.procs), term_at=plan.term_at, kill_at=plan.kill_at)
        assert plan.ready() == fresh.ready()
        assert plan.running_procs() == fresh.running_procs()
        assert plan.settled() == fresh.settled()
        assert all(plan.count(s) == fresh.count(s) for s in ProcessState)
        assert all(plan.deps_done(p) == fresh.deps_done(p) for p in plan.procs)


def started(d: Decision) -> list[str]:
    return [s.process for s in d.start]


def signals(d: Decision) -> list[tuple[str, int]]:
    return [(s.process, s.signal) for s in d.signal]


def task_transitions(h: Harness) -> list[tuple[str, str]]:
    return [(t.from_.value, t.to.value) for t in h.transitions if isinstance(t, PhaseTransition)]


def row(t: ProcessTransition | PhaseTransition) -> tuple[str | None, str, str]:
    """(process or None for a phase, from, to) as the states' names."""
    process = t.process if isinstance(t, ProcessTransition) else None
    return process, t.from_.value, t.to.value


# ---- starting: parallel, order, concurrency ----


def test_processes_without_constraints_all_start_at_once():
    h = Harness(task(proc("a"), proc("b"), proc("c")))
    d = h.decide()
    assert started(d) == ["a", "b", "c"]
    assert [s.run for s in d.start] == [0, 0, 0]
    assert d.phase is TaskPhase.ACTIVE and d.next_deadline_at is None


def test_order_chain_starts_each_process_after_its_predecessor_succeeds():
    h = Harness(task(proc("c"), proc("b"), proc("a"), constraints=[("a", "b", "c")]))
    assert started(h.decide()) == ["a"]
    assert started(h.decide()) == []
    assert started(h.exit("a")) == ["b"]
    assert started(h.exit("b")) == ["c"]
    d = h.exit("c")
    assert d.phase is TaskPhase.SUCCESS
    assert d.reason == "all 3 regular processes finished successfully"


def test_failed_predecessor_blocks_its_dependent_forever_and_the_task_fails_as_deadlocked():
    h = Harness(task(proc("a"), proc("b"), proc("c"), constraints=[("a", "b")], max_failures=0))
    assert started(h.decide()) == ["a", "c"]
    h.exit("a", 1)
    assert h.state("b") is ProcessState.WAITING  # c still runs: not a deadlock yet
    d = h.exit("c")
    assert d.phase is TaskPhase.FAILED
    assert d.reason == "process 'b' can never start: it waits for 'a', which failed (deadlock)"
    assert h.planner.process("b").last_reason == "never started: it waits for 'a', which failed"
    assert h.state("b") is ProcessState.KILLED


def test_a_deadlock_is_one_though_an_ephemeral_process_still_runs():
    """b can never start (a failed for good, under the task's max_failures=0); the ephemeral
    daemon's runs cannot change that, so the task fails and stops it, not wait for ever."""
    h = Harness(task(proc("a"), proc("w", ephemeral=True), proc("b"), proc("e", ephemeral=True, daemon=True),
                     constraints=[("a", "w"), ("a", "b")], max_failures=0))
    assert started(h.decide()) == ["a", "e"]
    d = h.exit("a", 1)
    assert h.planner.phase is TaskPhase.CLEANING and signals(d) == [("e", TERM)]
    assert "process 'b' can never start: it waits for 'a', which failed (deadlock)" in h.planner.reason
    h.exit("e", sig=TERM)
    assert task_transitions(h)[-1] == ("CLEANING", "FAILED")


def test_max_concurrency_starts_runnable_processes_in_task_order():
    h = Harness(task(proc("d"), proc("c"), proc("b"), proc("a"), max_concurrency=2))
    assert started(h.decide()) == ["d", "c"]
    assert started(h.exit("c")) == ["b"]
    assert started(h.exit("d")) == ["a"]
    assert started(h.exit("b")) == []
    assert h.exit("a").phase is TaskPhase.SUCCESS


def test_max_concurrency_restarts_wait_their_turn():
    h = Harness(task(proc("a", max_failures=2), proc("b"), max_concurrency=1))
    assert started(h.decide()) == ["a"]
    assert started(h.exit("a", 1)) == ["a"]  # a is first in task order and runnable again
    assert started(h.exit("a")) == ["b"]


# ---- how a run's end counts ----


@pytest.mark.parametrize("max_failures, runs_before_failed", [(1, 1), (3, 3)])
def test_process_fails_for_good_after_max_failures_failed_runs(max_failures, runs_before_failed):
    h = Harness(task(proc("web", max_failures=max_failures)))
    h.decide()
    for n in range(1, runs_before_failed):
        d = h.exit("web", 3)
        assert started(d) == ["web"] and d.start[0].run == n
        assert h.planner.process("web").failures == n
    d = h.exit("web", 3)
    assert h.state("web") is ProcessState.FAILED and d.start == ()
    assert d.phase is TaskPhase.FAILED
    assert d.reason == (f"process 'web' failed: exit status 3 after {max_failures} of "
                        f"max_failures={max_failures} runs")


def test_max_failures_zero_restarts_without_limit():
    h = Harness(task(proc("web", max_failures=0)), run_cap=None)
    h.decide()
    for n in range(1, 251):
        d = h.exit("web", 1)
        assert [(s.process, s.run) for s in d.start] == [("web", n)]
    assert h.planner.process("web").failures == 250
    assert h.planner.phase is TaskPhase.ACTIVE


def test_daemon_restarts_after_a_successful_run():
    h = Harness(task(proc("d", daemon=True)))
    h.decide()
    for n in (1, 2, 3):
        d = h.exit("d", 0)
        assert [(s.process, s.run) for s in d.start] == [("d", n)]
    view = h.planner.process("d")
    assert view.successes == 3 and view.failures == 0 and view.state is ProcessState.RUNNING


def test_ephemeral_process_is_not_waited_for_and_is_sigtermed_in_cleaning():
    h = Harness(task(proc("main"), proc("sidecar", ephemeral=True)))
    assert started(h.decide()) == ["main", "sidecar"]
    d = h.exit("main")
    assert d.phase is TaskPhase.CLEANING
    assert signals(d) == [("sidecar", TERM)]
    d = h.exit("sidecar", sig=TERM)
    assert h.state("sidecar") is ProcessState.KILLED
    assert h.planner.process("sidecar").last_outcome is RunOutcome.KILLED
    assert d.phase is TaskPhase.SUCCESS


def test_ephemeral_process_failing_past_max_failures_counts_as_finished():
    h = Harness(task(proc("main"), proc("e", ephemeral=True, max_failures=2)))
    h.decide()
    assert started(h.exit("e", 1)) == ["e"]
    d = h.exit("e", 1)
    assert h.state("e") is ProcessState.SUCCESS and d.start == ()
    assert h.planner.process("e").last_reason == (
        "exit status 1; ephemeral process done after failure 2 of max_failures=2")
    assert h.exit("main").phase is TaskPhase.SUCCESS


def test_signal_death_is_a_loss_restarted_without_counting_a_failure():
    h = Harness(task(proc("web", max_failures=1)))
    h.decide()
    for n in (1, 2, 3):
        d = h.exit("web", sig=KILL)
        assert [(s.process, s.run) for s in d.start] == [("web", n)]
    view = h.planner.process("web")
    assert (view.losses, view.failures, view.last_outcome) == (3, 0, RunOutcome.LOST)


def test_spawn_failure_is_a_failed_run_that_keeps_its_reason():
    h = Harness(task(proc("web", max_failures=2)))
    h.planner.decide(h.clock.now)  # no started(): the fork failed
    h.planner.spawn_failed("web", 0, "[Errno 2] No such file or directory", h.clock.now)
    d = h.decide()
    assert started(d) == ["web"]
    h.planner.spawn_failed("web", 1, "[Errno 2] No such file or directory", h.clock.now)
    d = h.decide()
    assert h.planner.process("web").failures == 2
    assert d.reason == ("process 'web' failed: could not start: [Errno 2] No such file or "
                        "directory after 2 of max_failures=2 runs")


@pytest.mark.parametrize("exits, failures, losses", [
    ([("code", 1)] * 3 + [("sig", KILL)] * 2, 3, 2),
    ([("sig", KILL)] * 5, 0, 5),
])
def test_run_cap_counts_failures_and_losses(exits, failures, losses):
    h = Harness(task(proc("web", max_failures=0)), run_cap=5)
    h.decide()
    for kind, value in exits[:-1]:
        d = h.exit("web", value) if kind == "code" else h.exit("web", sig=value)
        assert started(d) == ["web"]
    kind, value = exits[-1]
    d = h.exit("web", value) if kind == "code" else h.exit("web", sig=value)
    assert h.state("web") is ProcessState.FAILED and d.start == ()
    assert d.phase is TaskPhase.FAILED
    assert f"5 runs failed or were lost ({failures} failures, {losses} losses)" in d.reason
    assert d.reason.endswith("reaching the run cap of 5")


def test_run_cap_ignores_successful_daemon_runs():
    h = Harness(task(proc("d", daemon=True, max_failures=0)), run_cap=3)
    h.decide()
    for _ in range(10):
        assert started(h.exit("d", 0)) == ["d"]
    assert started(h.exit("d", 1)) == ["d"]
    assert started(h.exit("d", 1)) == ["d"]
    h.exit("d", 1)
    assert h.state("d") is ProcessState.FAILED


# ---- min_duration ----


def test_min_duration_holds_a_rerun_until_exactly_min_duration_after_the_run_ended():
    h = Harness(task(proc("web", max_failures=0, min_duration_secs=5.0)))
    assert started(h.decide()) == ["web"]  # the first run is not delayed
    h.clock.advance(2.0)
    d = h.exit("web", 1)
    assert d.start == () and d.next_deadline_at == 1007.0
    assert h.planner.process("web").next_start_at == 1007.0
    h.clock.advance(4.999)
    d = h.decide()
    assert d.start == () and d.next_deadline_at == 1007.0
    h.clock.advance_to(1007.0)
    d = h.decide()
    assert [(s.process, s.run) for s in d.start] == [("web", 1)]
    assert d.next_deadline_at is None and h.planner.process("web").next_start_at is None


def test_min_duration_gate_keeps_the_task_from_looking_deadlocked():
    h = Harness(task(proc("web", max_failures=2, min_duration_secs=3.0)))
    h.decide()
    d = h.exit("web", 1)
    assert d.phase is TaskPhase.ACTIVE and d.next_deadline_at == 1003.0


# ---- task health ----


def test_task_max_failures_counts_failed_processes_not_failed_runs():
    # The docs' example: ten failed runs of one process are one failed process.
    h = Harness(task(proc("a", max_failures=10), proc("b", max_failures=10), max_failures=2))
    h.decide()
    for _ in range(10):
        h.exit("a", 1)
    assert h.state("a") is ProcessState.FAILED and h.planner.phase is TaskPhase.ACTIVE
    d = h.exit("b", 0)
    assert d.phase is TaskPhase.SUCCESS
    assert d.reason == ("1 of 2 regular processes finished successfully; 1 failed, "
                        "under the task's max_failures=2")


def test_task_fails_when_max_failures_processes_failed():
    h = Harness(task(proc("a"), proc("b"), proc("c"), max_failures=2))
    h.decide()
    h.exit("a", 1)
    d = h.exit("b", 2)
    assert d.phase is TaskPhase.CLEANING and signals(d) == [("c", TERM)]
    assert d.reason.startswith("2 processes failed, reaching the task's max_failures=2: "
                               "process 'a' failed: exit status 1 after 1 of max_failures=1 runs; "
                               "process 'b' failed: exit status 2")
    d = h.exit("c", sig=TERM)
    assert d.phase is TaskPhase.FAILED and h.state("c") is ProcessState.KILLED


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


def test_run_that_ignores_sigkill_is_given_up_one_second_later():
    h = Harness(task(proc("main"), proc("f", final=True), finalization_wait_secs=2.0))
    h.decide()
    h.exit("main")
    h.clock.advance(2.0)
    d = h.decide()
    assert signals(d) == [("f", KILL)] and d.next_deadline_at == 1003.0
    h.clock.advance_to(1003.0)
    d = h.decide()
    assert d.phase is TaskPhase.SUCCESS and h.state("f") is ProcessState.KILLED
    assert h.planner.process("f").last_reason == "run 0 did not exit 1 s after SIGKILL; given up on"
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


# ---- the decision itself ----


def test_decide_is_idempotent_at_the_same_time():
    h = Harness(task(proc("a"), proc("b", ephemeral=True), proc("f", final=True)))
    first = h.decide()
    assert started(first) == ["a", "b"]
    again = h.planner.decide(h.clock.now)
    assert (again.start, again.signal, again.transitions) == ((), (), ())
    assert again.next_deadline_at == first.next_deadline_at
    h.planner.exited("a", 0, ExitStatus(exit_code=0), h.clock.now)
    cleaning = h.planner.decide(h.clock.now)
    assert signals(cleaning) == [("b", TERM)]
    again = h.planner.decide(h.clock.now)
    assert (again.start, again.signal, again.transitions) == ((), (), ())


def test_transitions_name_the_process_run_states_and_reason_with_numbers():
    h = Harness(task(proc("web", max_failures=3, min_duration_secs=5.0)))
    h.decide()
    h.exit("web", 3)
    h.clock.advance(5.0)
    h.decide()
    assert all(isinstance(t, ProcessTransition) for t in h.transitions)
    got = [(t.process, t.run, t.from_.value, t.to.value, t.reason) for t in h.transitions]
    assert got == [
        ("web", 0, "WAITING", "RUNNING", "starting run 0"),
        ("web", 0, "RUNNING", "WAITING",
         "exit status 3; restarting (failure 1 of max_failures=3); waiting 5 s for min_duration=5"),
        ("web", 1, "WAITING", "RUNNING", "starting run 1 (run 0: exit status 3)"),
    ]


def test_transition_reasons_for_losses_daemons_and_unlimited_failures():
    h = Harness(task(proc("a", max_failures=0), proc("d", daemon=True)))
    h.decide()
    h.exit("a", 2)
    h.exit("a", sig=KILL)
    h.exit("d", 0)
    reasons = [t.reason for t in h.transitions
               if isinstance(t, ProcessTransition) and t.to is ProcessState.WAITING]
    assert reasons == [
        "exit status 2; restarting (failure 1 unlimited with max_failures=0)",
        "killed by SIGKILL; restarting (loss 1, not counted toward max_failures=0)",
        "exit status 0; restarting (daemon)",
    ]


def test_a_transition_that_ends_a_run_carries_its_outcome():
    h = Harness(task(proc("a", max_failures=0), proc("b")))
    h.decide()
    h.exit("a", sig=KILL)  # a loss: restarted, the outcome says why
    h.exit("a", 1)
    h.planner.kill(h.clock.now, "stop", grace_secs=1.0)
    h.decide()
    h.exit("b", sig=TERM)
    got = [(t.process, t.to.value, t.outcome) for t in h.transitions
           if isinstance(t, ProcessTransition)]
    assert got == [
        ("a", "RUNNING", None), ("b", "RUNNING", None),
        ("a", "WAITING", RunOutcome.LOST), ("a", "RUNNING", None),
        ("a", "WAITING", RunOutcome.FAILED), ("a", "RUNNING", None),
        ("b", "KILLED", RunOutcome.KILLED),
    ]


def test_each_state_change_yields_exactly_one_transition_in_order():
    h = Harness(task(proc("a"), proc("e", ephemeral=True), proc("f", final=True)))
    h.decide()
    h.exit("a")
    h.exit("e", sig=TERM)
    h.exit("f")
    got = [row(t) for t in h.transitions]
    assert got == [
        ("a", "WAITING", "RUNNING"), ("e", "WAITING", "RUNNING"),
        ("a", "RUNNING", "SUCCESS"), (None, "ACTIVE", "CLEANING"),
        ("e", "RUNNING", "KILLED"), (None, "CLEANING", "FINALIZING"),
        ("f", "WAITING", "RUNNING"), ("f", "RUNNING", "SUCCESS"), (None, "FINALIZING", "SUCCESS"),
    ]


def test_stale_or_unknown_reports_are_handled():
    h = Harness(task(proc("a")))
    h.decide()
    h.planner.exited("a", 7, ExitStatus(exit_code=0), h.clock.now)  # a run that never was
    assert h.decide().transitions == ()
    with pytest.raises(KeyError, match="no process 'zzz'"):
        h.planner.exited("zzz", 0, ExitStatus(exit_code=0), h.clock.now)


@pytest.mark.parametrize("constraints, message", [
    ([("a", "x")], r"task.constraints\[0\].order = \['a', 'x'\] names unknown processes: x "),
    ([("a", "b"), ("b", "a")], "task.constraints form a cycle, so none of these can ever start: a -> b -> a"),
    ([("a", "f")], r"task.constraints\[0\].order = \['a', 'f'\] mixes final and non-final processes"),
])
def test_invalid_schedules_are_rejected(constraints, message):
    with pytest.raises(ValueError, match=message):
        Planner(task(proc("a"), proc("b"), proc("f", final=True), constraints=constraints))


def test_a_process_that_waits_for_a_daemon_is_refused_it_would_never_start():
    with pytest.raises(ValueError, match="makes 'x' wait for 'd', a daemon process"):
        Planner(task(proc("d", daemon=True), proc("x"), constraints=[("d", "x")]))


def test_planner_module_is_pure():
    tree = ast.parse(pathlib.Path(planner_module.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    banned = {"requests", "psutil", "subprocess", "socket", "threading", "os", "time", "logging",
              "select", "signal"}
    assert imported & banned == set()


# ---- invariants under random event sequences ----

actions = st.lists(st.tuples(st.sampled_from(["exit0", "exit1", "signal", "advance", "kill", "restart"]),
                             st.integers(0, 3)), max_size=40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=actions, concurrency=st.integers(0, 2), daemon=st.booleans())
def test_random_event_sequences_keep_the_invariants(actions, concurrency, daemon):
    spec = task(proc("a", max_failures=2, min_duration_secs=1.0), proc("b", daemon=daemon),
                proc("c", ephemeral=True), proc("f", final=True), constraints=[("a", "b")],
                max_concurrency=concurrency, finalization_wait_secs=3.0)
    h = Harness(spec, run_cap=5)
    seen = {p.name: "WAITING" for p in spec.processes}
    phase = "ACTIVE"

    def check(d: Decision) -> None:
        nonlocal phase
        for t in d.transitions:  # every change is reported once, from the state it left
            process, from_, to = row(t)
            if process is None:
                assert from_ == phase
                phase = to
            else:
                assert seen[process] == from_ != to
                seen[process] = to
        assert seen == h.states() and phase == d.phase.value
        running = sum(v == "RUNNING" for v in seen.values())
        assert concurrency == 0 or running <= concurrency
        again = h.planner.decide(h.clock.now)
        assert (again.start, again.signal, again.transitions) == ((), (), ())

    check(h.decide())
    for kind, i in actions:
        running = [v.name for v in h.planner.processes() if v.state is ProcessState.RUNNING]
        if kind == "advance":
            h.clock.advance(0.5 * i)
            check(h.decide())
        elif kind == "kill":
            h.planner.kill(h.clock.now, "random kill", grace_secs=float(i))
            check(h.decide())
        elif kind == "restart":
            h.planner.restart("abcf"[i], h.clock.now, grace_secs=float(i) + 1.0)  # 0: SIGKILL at once
            check(h.decide())
        elif running:
            name = running[i % len(running)]
            code = {"exit0": 0, "exit1": 1}.get(kind)
            check(h.exit(name, code) if code is not None else h.exit(name, sig=KILL))
    # Whatever happened, a kill and reported exits always end the task within its deadlines.
    h.planner.kill(h.clock.now, "end", grace_secs=1.0)
    for _ in range(100):
        d = h.decide()
        check(d)
        if d.phase.terminal:
            break
        running = [v.name for v in h.planner.processes() if v.state is ProcessState.RUNNING]
        if running and d.signal:
            check(h.exit(running[0], sig=KILL))
        elif d.next_deadline_at is not None:
            h.clock.advance_to(max(h.clock.now, d.next_deadline_at))
        elif running:
            check(h.exit(running[0], 0))
    assert h.planner.phase.terminal


def test_signal_numbers_match_the_platform():
    assert (planner_module.SIGTERM, planner_module.SIGKILL) == (TERM, KILL)


@pytest.mark.parametrize("start", [1000.0, 1e9, 2.0 ** 40])  # a fresh boot, 31 years up, 34,000 years
def test_a_daemon_restarted_thousands_of_times_after_a_long_uptime_keeps_exact_gates(start):
    """Times are monotonic floats that grow with the host's uptime: the min_duration gate
    and the kill's grace stay exact to the millisecond whatever the clock's start."""
    h = Harness(task(proc("cron", daemon=True, min_duration_secs=0.05)))
    h.clock = FakeClock(start)
    assert started(h.decide()) == ["cron"]
    for run in range(1, 2001):
        h.clock.advance(0.001)
        ended_at = h.clock.now
        d = h.exit("cron", 0)
        assert d.start == () and d.next_deadline_at == ended_at + 0.05
        h.clock.advance_to(d.next_deadline_at)
        assert [(s.process, s.run) for s in h.decide().start] == [("cron", run)]
    assert h.planner.process("cron").run == 2000
    killed_at = h.clock.advance(0.001)
    h.planner.kill(killed_at, "stop", grace_secs=0.01)
    d = h.decide()
    assert signals(d) == [("cron", TERM)] and d.next_deadline_at == pytest.approx(killed_at + 0.01, abs=1e-6)
