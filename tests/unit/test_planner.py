"""Unit tests for the pure process planner: one test (or table) per Thermos rule, fake clock,
no threads, no sleeps. Here: starting (parallel, order, concurrency), how a run's end counts,
min_duration and the task's health; stopping is in test_planner_stopping.py, the decision's
own properties in test_planner_decisions.py."""
from __future__ import annotations

import pytest

from executor.events import ProcessState, RunOutcome, TaskPhase
from tests.support.planner_harness import KILL, TERM, Harness, proc, signals, started, task, task_transitions

pytestmark = pytest.mark.timeout(10)


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


def test_nothing_starts_in_the_decision_that_ends_the_task():
    # Thermos' runner forks what is runnable before it sees the plan is done, then SIGTERMs
    # it (docs/aurora.md §11, "a run in the last pass"): here the sidecar, whose
    # min_duration ends as main exits. Stoker decides the outcome first.
    h = Harness(task(proc("main"), proc("side", ephemeral=True, max_failures=0,
                                         min_duration_secs=1.0)))
    h.decide()
    h.exit("side", 1)  # may run again at t=1
    h.clock.advance(1.0)
    d = h.exit("main")
    assert started(d) == [] and signals(d) == []
    assert d.phase is TaskPhase.SUCCESS
    assert h.state("side") is ProcessState.KILLED


def test_a_task_of_ephemeral_processes_only_succeeds_without_starting_them():
    h = Harness(task(proc("side", ephemeral=True), proc("log", ephemeral=True, final=True)))
    d = h.decide()
    assert started(d) == []
    assert d.phase is TaskPhase.SUCCESS
    assert [p.run for p in h.planner.processes()] == [-1, -1]


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


def test_an_ephemeral_process_whose_last_allowed_failure_is_its_capped_run_is_done():
    # Thermos tests the run cap before max_failures: the sidecar's 4th run (2 losses, then
    # its 2nd failure) would fail it for good there, and the task with it (docs/aurora.md
    # §11, "run cap"). Its max_failures is its normal end: it is done.
    h = Harness(task(proc("main"), proc("side", ephemeral=True, max_failures=2)), run_cap=4)
    h.decide()
    h.exit("side", sig=KILL)
    h.exit("side", sig=KILL)
    h.exit("side", 1)
    d = h.exit("side", 1)
    assert h.state("side") is ProcessState.SUCCESS and d.start == ()
    assert d.phase is TaskPhase.ACTIVE
    assert h.exit("main").phase is TaskPhase.SUCCESS


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
