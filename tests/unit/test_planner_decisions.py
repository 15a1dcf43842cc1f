"""The planner's decision itself: idempotent, its transitions and their reasons, bad schedules
refused, the module pure, invariants under random event sequences, exact gates after a long
uptime. Fake clock, no threads, no sleeps."""
from __future__ import annotations

import ast
import pathlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executor.events import ExitStatus, ProcessState, ProcessTransition, RunOutcome
from executor.task import planner as planner_module
from executor.task.planner import Decision, Planner
from tests.support.fake_clock import FakeClock
from tests.support.planner_harness import KILL, TERM, Harness, proc, row, signals, started, task

pytestmark = pytest.mark.timeout(10)


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
        "exit status 2; restarting (failure 1; max_failures=0: no limit but the run cap of 100 failed or lost runs)",
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


@pytest.mark.timeout(60)  # 150 examples: 2.2 s alone, past the module's 10 s on a loaded 2-core host
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
