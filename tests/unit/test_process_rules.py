"""Thermos' per-run rules as tables, and the drawn state machines checked against their data."""
from __future__ import annotations

import re

import pytest

from config.spec import ProcessSpec, TaskSpec
from executor.events import ExitStatus, ProcessState, RunOutcome, TaskPhase
from executor.task import planner, process_rules
from executor.task.plans import Plan
from executor.task.process_rules import (
    PROCESS_EDGES,
    ProcessTrack,
    RunCounts,
    after_run,
    end_of_run,
    regular_outcome,
    run_outcome,
)

S = ProcessState
R = RunOutcome

_EDGE = re.compile(r"^\s+([A-Z]+) ──.*──▶ ([A-Z]+(?: \| [A-Z]+)*)\s*$")


def drawn_edges(doc: str) -> dict[str, set[str]]:
    """Every `FROM ──label──▶ TO | TO` line of a docstring's drawing."""
    edges: dict[str, set[str]] = {}
    for line in doc.splitlines():
        m = _EDGE.match(line)
        if m:
            edges.setdefault(m.group(1), set()).update(m.group(2).split(" | "))
    return edges


def table_edges(table) -> dict[str, set[str]]:
    return {k.name: {v.name for v in vs} for k, vs in table.items() if vs}


@pytest.mark.parametrize("module, table", [(process_rules, PROCESS_EDGES),
                                           (planner, planner.PHASE_EDGES)])
def test_the_drawn_machine_and_its_edge_table_agree(module, table):
    drawn = drawn_edges(module.__doc__)
    assert drawn, f"no drawn edges found in {module.__name__}'s docstring"
    assert drawn == table_edges(table)
    enum = type(next(iter(table)))
    assert set(table) == set(enum), "every state has a row (terminal ones an empty one)"


def test_an_edge_outside_the_table_is_refused():
    p = planner.Planner(TaskSpec(name="t", processes=(spec(),)))
    track = p._procs["web"]
    with pytest.raises(AssertionError, match="no edge WAITING → SUCCESS"):
        p._note(track, S.SUCCESS, "never drawn")
    with pytest.raises(AssertionError, match="no phase edge ACTIVE → SUCCESS"):
        p._set_phase(TaskPhase.SUCCESS, "never drawn")


def spec(**kw) -> ProcessSpec:
    kw.setdefault("min_duration_secs", 0.0)
    return ProcessSpec(name="web", cmdline="serve", **kw)


@pytest.mark.parametrize("status, signalled, outcome", [
    (ExitStatus(exit_code=0), False, R.SUCCESS),
    (ExitStatus(exit_code=3), False, R.FAILED),
    (ExitStatus(signal=9), False, R.LOST),  # the OOM killer, or anyone outside the task
    (ExitStatus(signal=15), True, R.KILLED),
    (ExitStatus(exit_code=0), True, R.KILLED),  # a clean exit on the task's SIGTERM
])
def test_how_an_exit_counts(status, signalled, outcome):
    assert run_outcome(status, signalled_by_task=signalled) is outcome


@pytest.mark.parametrize("kw, outcome, counts, cap, state, reason", [
    ({}, R.SUCCESS, RunCounts(successes=1), 100, S.SUCCESS, "exit status 0"),
    ({"daemon": True}, R.SUCCESS, RunCounts(successes=1), 100, S.WAITING,
     "exit status 0; restarting (daemon)"),
    ({"max_failures": 3}, R.FAILED, RunCounts(failures=1), 100, S.WAITING,
     "exit status 0; restarting (failure 1 of max_failures=3)"),
    ({"max_failures": 0}, R.FAILED, RunCounts(failures=7), 100, S.WAITING,
     "exit status 0; restarting (failure 7; max_failures=0: no limit but the run cap of 100 failed or lost runs)"),
    ({"max_failures": 2}, R.FAILED, RunCounts(failures=2), 100, S.FAILED,
     "exit status 0; failed for good (failure 2 of max_failures=2)"),
    ({"max_failures": 1, "ephemeral": True}, R.FAILED, RunCounts(failures=1), 100, S.SUCCESS,
     "exit status 0; ephemeral process done after failure 1 of max_failures=1"),
    ({"max_failures": 1}, R.LOST, RunCounts(losses=4), 100, S.WAITING,
     "exit status 0; restarting (loss 4, not counted toward max_failures=1)"),
    ({"max_failures": 0}, R.LOST, RunCounts(failures=2, losses=3), 5, S.FAILED,
     "exit status 0; 5 runs failed or were lost (2 failures, 3 losses), reaching the run cap of 5"),
    ({"daemon": True}, R.SUCCESS, RunCounts(successes=9), 5, S.WAITING,
     "exit status 0; restarting (daemon)"),  # successes never reach the cap
    ({"max_failures": 0, "min_duration_secs": 2.5}, R.FAILED, RunCounts(failures=1), None,
     S.WAITING, "exit status 0; restarting (failure 1; max_failures=0: no limit); "
                "waiting 2.5 s for min_duration=2.5"),
])
def test_after_a_run_ended_on_its_own(kw, outcome, counts, cap, state, reason):
    end = after_run(spec(**kw), outcome, "exit status 0", counts, cap)
    assert (end.state, end.reason) == (state, reason)
    assert bool(end.failed_because) == (state is S.FAILED)


@pytest.mark.parametrize("outcome, stopping, killed, state, reason", [
    (R.KILLED, True, True, S.KILLED, "killed by SIGTERM after the task's SIGTERM"),
    (R.FAILED, True, True, S.KILLED, "killed by SIGTERM while the task was being killed"),
    (R.LOST, True, False, S.KILLED, "killed by SIGTERM; not restarted: the task is stopping"),
    (R.LOST, False, False, S.WAITING,
     "killed by SIGTERM; restarting (loss 1, not counted toward max_failures=1)"),
])
def test_a_stopping_task_restarts_nothing(outcome, stopping, killed, state, reason):
    end = end_of_run(spec(), outcome, "killed by SIGTERM", RunCounts(losses=1), 100,
                     last_signal="SIGTERM", stopping=stopping, task_killed=killed)
    assert (end.state, end.reason) == (state, reason)


def test_run_counts_ignore_runs_the_task_killed():
    counts = RunCounts()
    for outcome in (R.SUCCESS, R.FAILED, R.FAILED, R.LOST, R.KILLED):
        counts = counts.count(outcome)
    assert counts == RunCounts(successes=1, failures=2, losses=1)


def track(name: str, state: ProcessState, deps=(), **kw) -> ProcessTrack:
    t = ProcessTrack(ProcessSpec(name=name, cmdline="x", **kw), tuple(deps))
    t.state = state
    return t


@pytest.mark.parametrize("states, max_failures, settled, expected", [
    ([("a", S.RUNNING, ())], 1, False, None),
    ([("a", S.SUCCESS, ())], 1, True, (TaskPhase.SUCCESS, "the only regular process finished successfully")),
    ([("a", S.SUCCESS, ()), ("b", S.FAILED, ())], 2, True,
     (TaskPhase.SUCCESS, "1 of 2 regular processes finished successfully; 1 failed, under the "
                         "task's max_failures=2")),
    ([("a", S.FAILED, ()), ("b", S.WAITING, ("a",))], 0, True,
     (TaskPhase.FAILED, "process 'b' can never start: it waits for 'a', which failed (deadlock)")),
])
def test_what_the_regular_processes_mean_for_the_task(states, max_failures, settled, expected):
    procs = [track(n, s, d) for n, s, d in states]
    assert regular_outcome(procs, max_failures, settled=settled) == expected
    assert Plan(procs).settled() == settled


@pytest.mark.parametrize("failed, max_failures, tail", [
    (10, 1, ""),
    (11, 1, "; and 1 more process failed (stoker status lists them)"),
    (500, 3, "; and 490 more processes failed (stoker status lists them)"),
])
def test_a_task_reason_names_ten_failed_processes_and_counts_the_rest(failed, max_failures, tail):
    # 500 processes failing in one step made a reason of 500 sentences (about 40 KB): the
    # TASK_FAILED message the agent and Aurora's scheduler keep, one log line, one console line.
    procs = []
    for n in range(failed):
        procs.append(track(f"p{n}", S.FAILED))
        procs[-1].failed_because = "exit status 1 after 1 of max_failures=1 runs"
    phase, why = regular_outcome(procs + [track("ok", S.RUNNING)], max_failures, settled=False)
    named = "; ".join(f"process 'p{n}' failed: exit status 1 after 1 of max_failures=1 runs"
                      for n in range(10))
    head = f"{failed} processes failed, reaching the task's max_failures={max_failures}: " \
        if max_failures > 1 else ""
    assert (phase, why) == (TaskPhase.FAILED, head + named + tail)


def test_a_plan_knows_its_dependencies():
    a, b = track("a", S.FAILED), track("b", S.WAITING, ("a",))
    plan = Plan([a, b])
    assert (plan.deps_done(b), plan.failed_dep(b), plan.running()) == (False, "a", 0)
    plan.stop(10.0, 20.0)
    plan.stop(12.0, 15.0)
    assert (plan.term_at, plan.kill_at) == (10.0, 15.0)  # deadlines only move earlier
