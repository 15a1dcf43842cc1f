"""The planner's rules the first tables left unstated (`make mutation` found each one): stale
reports, kills that only ever hasten the stop, what the final processes get of
`finalization_wait`, `min_duration` in task order, the run cap's default, and the reasons
`stoker status` and the logs show, with their numbers. Fake clock, no threads, no sleeps."""
from __future__ import annotations

import signal

import pytest

from executor.events import (
    ExitStatus,
    PhaseTransition,
    ProcessState,
    ProcessTransition,
    RunOutcome,
    TaskPhase,
)
from executor.task.planner import Planner
from executor.task.process_rules import ProcessTrack, RunCounts, after_run, regular_outcome
from tests.support.planner_harness import Harness, proc, started, task

TERM = int(signal.SIGTERM)
KILL = int(signal.SIGKILL)
S = ProcessState

pytestmark = pytest.mark.timeout(10)


def phase_reasons(h: Harness) -> list[tuple[str, str, str]]:
    return [(t.from_.value, t.to.value, t.reason) for t in h.transitions
            if isinstance(t, PhaseTransition)]


def process_changes(h: Harness, name: str) -> list[tuple[int | None, str, str, str]]:
    return [(t.run, t.from_.value, t.to.value, t.reason) for t in h.transitions
            if isinstance(t, ProcessTransition) and t.process == name]


def runs(d) -> list[tuple[str, int, int]]:
    return [(s.process, s.run, s.signal) for s in d.signal]


# ---- stale reports: a report about a run that is not the current one changes nothing ----


def test_the_pid_of_the_current_run_is_recorded():
    h = Harness(task(proc("a")))
    h.planner.decide(h.clock.now)
    assert h.planner.process("a").pid is None
    h.planner.started("a", 0, 4242, h.clock.now)
    assert h.planner.process("a").pid == 4242


# Each row: what happened to process `a` (max_failures=3), then the stale report.
STALE = {
    "started: an earlier run, once the process was restarted": ("restarted", "started", 0),
    "started: a run that never was": ("running", "started", 5),
    "started: the run of a process that finished": ("succeeded", "started", 0),
    "spawn_failed: an earlier run, once the process was restarted": ("restarted", "spawn_failed", 0),
    "spawn_failed: the run of a process that finished": ("succeeded", "spawn_failed", 0),
    "exited: the run of a process that finished": ("succeeded", "exited", 0),
}


@pytest.mark.parametrize("before, report, run", STALE.values(), ids=STALE.keys())
def test_a_stale_report_is_ignored(before, report, run):
    h = Harness(task(proc("a", max_failures=3), proc("b")))
    h.decide()  # a: run 0, pid 101
    if before == "restarted":
        h.exit("a", 1)  # a: run 1, pid 103
    elif before == "succeeded":
        h.exit("a", 0)
    view = h.planner.process("a")
    if report == "started":
        h.planner.started("a", run, 999, h.clock.now)
    elif report == "spawn_failed":
        h.planner.spawn_failed("a", run, "[Errno 2] No such file or directory", h.clock.now)
    else:
        h.planner.exited("a", run, ExitStatus(exit_code=1), h.clock.now)
    d = h.planner.decide(h.clock.now)
    assert (d.start, d.transitions) == ((), ())
    assert h.planner.process("a") == view


def test_a_spawn_failure_waits_min_duration_from_the_failure():
    h = Harness(task(proc("a", max_failures=3, min_duration_secs=5.0)))
    h.planner.decide(h.clock.now)
    h.clock.advance(2.0)
    h.planner.spawn_failed("a", 0, "[Errno 13] Permission denied", h.clock.now)
    d = h.decide()
    assert d.start == () and d.next_deadline_at == 1007.0
    assert h.planner.process("a").last_reason == (
        "could not start: [Errno 13] Permission denied; restarting (failure 1 of max_failures=3); "
        "waiting 5 s for min_duration=5")


# ---- the run cap ----


def test_the_run_cap_is_100_failed_or_lost_runs_by_default():
    h = Harness(task(proc("a", max_failures=0)))
    h.decide()
    for _ in range(99):
        assert started(h.exit("a", 1)) == ["a"]
    d = h.exit("a", 1)
    assert h.state("a") is S.FAILED and d.start == ()
    assert d.reason.startswith("process 'a' failed: exit status 1; 100 runs failed or were lost ")


# ---- min_duration in task order ----


def test_a_process_waiting_out_min_duration_does_not_hold_back_later_ones():
    h = Harness(task(proc("a", max_failures=0, min_duration_secs=5.0), proc("b"),
                     max_concurrency=1))
    assert started(h.decide()) == ["a"]
    d = h.exit("a", 1)  # a waits until 1005; b, later in task order, takes the free slot now
    assert started(d) == ["b"] and d.next_deadline_at == 1005.0
    h.clock.advance(5.0)
    d = h.decide()  # a's gate is open, but b holds the only slot: no start, no wakeup
    assert d.start == () and d.next_deadline_at is None
    assert started(h.exit("b")) == ["a"]


# ---- kill: only ever sooner, and the reasons it gives ----


def test_the_kill_reason_names_the_running_processes_and_both_signal_times():
    h = Harness(task(proc("a"), proc("b"), proc("c"), constraints=[("a", "c")]))
    h.decide()
    h.planner.kill(h.clock.now, "killed by the agent (KILL)", grace_secs=3.0)
    h.decide()
    h2 = Harness(task(proc("a")))
    h2.decide()
    h2.planner.kill(h2.clock.now, "shutdown", grace_secs=2.5, term_delay_secs=10.0)
    h2.decide()
    assert phase_reasons(h)[-1][2] == ("killed by the agent (KILL); stopping 2 running processes: "
                                       "SIGTERM now, SIGKILL 3 s later")
    assert phase_reasons(h2)[-1][2] == ("shutdown; stopping 1 running process: SIGTERM in 10 s, "
                                        "SIGKILL 2.5 s later")
    assert process_changes(h, "c")[-1] == (None, "WAITING", "KILLED", "not started: the task is stopping")


@pytest.mark.parametrize("grace", [0.0, -2.0])
def test_a_kill_without_grace_sigkills_at_once(grace):
    h = Harness(task(proc("a")))
    h.decide()
    h.planner.kill(h.clock.now, "now", grace_secs=grace)
    d = h.decide()
    assert runs(d) == [("a", 0, KILL)]
    assert phase_reasons(h)[-1][2] == "now; stopping 1 running process: SIGTERM now, SIGKILL 0 s later"


def test_a_second_kill_with_a_longer_grace_does_not_lengthen_the_first():
    h = Harness(task(proc("a", max_failures=2)))
    h.decide()
    h.exit("a", 1)  # the signals name the current run
    h.planner.kill(h.clock.now, "first", grace_secs=2.0)
    assert runs(h.decide()) == [("a", 1, TERM)]
    h.planner.kill(h.clock.now, "second", grace_secs=30.0, term_delay_secs=5.0)
    d = h.decide()
    assert (d.signal, d.transitions, d.next_deadline_at) == ((), (), 1002.0)
    h.clock.advance(2.0)
    assert runs(h.decide()) == [("a", 1, KILL)]
    assert h.exit("a", sig=KILL).reason == "first"


def test_the_planner_says_whether_the_task_was_killed():
    h = Harness(task(proc("a")))
    h.decide()
    assert h.planner.killed is False
    h.planner.kill(h.clock.now, "stop", grace_secs=1.0)
    assert h.planner.killed is True


def test_a_run_that_ends_on_its_own_during_a_kill_says_so():
    h = Harness(task(proc("web", daemon=True)))
    h.decide()
    h.planner.kill(h.clock.now, "shutdown", grace_secs=5.0, term_delay_secs=10.0)
    h.exit("web", 0)
    assert process_changes(h, "web")[-1] == (0, "RUNNING", "KILLED",
                                             "exit status 0 while the task was being killed")


def test_a_kill_that_skips_the_finals_keeps_the_first_reason_for_it():
    h = Harness(task(proc("a"), proc("f", final=True)))
    h.decide()
    h.planner.kill(h.clock.now, "stop", grace_secs=10.0)
    h.decide()
    h.planner.kill(h.clock.now, "second stop signal (SIGINT)", grace_secs=0.0, skip_finals=True)
    h.planner.kill(h.clock.now, "third stop signal (SIGINT)", grace_secs=0.0, skip_finals=True)
    assert runs(h.decide()) == [("a", 0, KILL)]
    d = h.exit("a", sig=KILL)
    assert d.phase is TaskPhase.KILLED and d.reason == "stop" and d.start == ()
    assert process_changes(h, "f") == [
        (None, "WAITING", "KILLED", "not started: final processes skipped: second stop signal (SIGINT)")]


def test_a_kill_during_finalization_that_skips_the_finals_names_itself_to_those_it_cancels():
    h = Harness(task(proc("main"), proc("f1", final=True), proc("f2", final=True),
                     constraints=[("f1", "f2")]))
    h.decide()
    h.exit("main")
    h.planner.kill(h.clock.now, "executor shutting down (SHUTDOWN): its grace is over", grace_secs=0.0,
                   skip_finals=True)
    h.decide()
    assert process_changes(h, "f2") == [
        (None, "WAITING", "KILLED", "not started: final processes skipped: executor shutting down "
                                    "(SHUTDOWN): its grace is over")]


# A stop that skips the finals while they run: SIGTERM now, SIGKILL after the stop's grace,
# but never past the finals' own deadline (finalization_wait=10 s from their start).
SKIP_WHILE_FINALS_RUN = {"the grace ends first": (2.0, 1002.0), "the finals' deadline ends first": (30.0, 1010.0)}


@pytest.mark.parametrize("grace, kill_at", SKIP_WHILE_FINALS_RUN.values(), ids=SKIP_WHILE_FINALS_RUN.keys())
def test_a_stop_that_skips_running_finals_sigterms_them_then_sigkills_after_its_grace(grace, kill_at):
    h = Harness(task(proc("main"), proc("f", final=True), finalization_wait_secs=10.0))
    h.decide()
    h.exit("main")
    assert h.state("f") is S.RUNNING
    h.planner.kill(h.clock.now, "stop", grace_secs=grace, skip_finals=True)
    d = h.decide()
    assert runs(d) == [("f", 0, TERM)] and d.next_deadline_at == kill_at
    h.clock.advance(kill_at - h.clock.now)
    assert runs(h.decide()) == [("f", 0, KILL)]


# ---- cleaning and finalization: the phases' reasons, and the finals' budget ----


def test_the_natural_end_reasons_name_what_is_stopped_and_the_finals_budget():
    h = Harness(task(proc("main"), proc("side", ephemeral=True), proc("f1", final=True),
                     proc("f2", final=True), finalization_wait_secs=30.0))
    h.decide()
    h.clock.advance(1.0)
    h.exit("main")
    h.clock.advance(4.0)
    h.exit("side", sig=TERM)
    assert phase_reasons(h) == [
        ("ACTIVE", "CLEANING", "the only regular process finished successfully; stopping 1 running "
                               "process (SIGKILL after 30 s)"),
        ("CLEANING", "FINALIZING", "every regular process has stopped; running 2 final processes "
                                   "within 26 s"),
    ]
    h2 = Harness(task(proc("main"), proc("f", final=True), finalization_wait_secs=30.0))
    h2.decide()
    h2.exit("main")
    assert phase_reasons(h2) == [
        ("ACTIVE", "CLEANING", "the only regular process finished successfully; nothing left running"),
        ("CLEANING", "FINALIZING", "every regular process has stopped; running 1 final process "
                                   "within 30 s"),
    ]


def test_a_final_process_restarting_in_finalization_gets_only_what_is_left_of_the_budget():
    h = Harness(task(proc("main"), proc("f", final=True, max_failures=3, min_duration_secs=2.0),
                     finalization_wait_secs=10.0))
    h.decide()
    d = h.exit("main")
    assert started(d) == ["f"] and d.next_deadline_at == 1010.0
    h.clock.advance(3.0)
    d = h.exit("f", 1)  # restarted within the same budget, behind min_duration
    assert d.start == () and d.next_deadline_at == 1005.0
    assert h.planner.process("f").state is S.WAITING
    h.clock.advance_to(1005.0)
    d = h.decide()
    assert [(s.process, s.run) for s in d.start] == [("f", 1)] and d.next_deadline_at == 1010.0
    h.clock.advance_to(1010.0)
    assert runs(h.decide()) == [("f", 1, KILL)]
    assert h.exit("f", sig=KILL).phase is TaskPhase.SUCCESS


def test_finals_left_waiting_at_the_deadline_are_not_started_and_say_why():
    h = Harness(task(proc("main"), proc("f1", final=True), proc("f2", final=True),
                     constraints=[("f1", "f2")], finalization_wait_secs=10.0))
    h.decide()
    h.exit("main")
    h.clock.advance(10.0)
    assert runs(h.decide()) == [("f1", 0, KILL)]
    assert process_changes(h, "f2") == [
        (None, "WAITING", "KILLED", "not started: finalization ran out of time (finalization_wait=10 s)")]


def test_an_ephemeral_final_process_waiting_to_restart_is_not_restarted_once_the_others_are_done():
    h = Harness(task(proc("main"), proc("f", final=True),
                     proc("e", final=True, ephemeral=True, max_failures=0, min_duration_secs=5.0)))
    h.decide()
    h.exit("main")
    h.exit("e", 1)  # waits 5 s to restart
    d = h.exit("f")
    assert d.phase is TaskPhase.SUCCESS
    assert process_changes(h, "e")[-1] == (0, "WAITING", "KILLED",
                                           "not restarted: the final processes are done")


def test_an_ephemeral_final_process_running_when_the_others_are_done_gets_sigterm_first():
    # Thermos SIGKILLs it there, with no SIGTERM (docs/aurora.md §11, "an ephemeral final
    # process at the end"); a log shipper gets to flush: SIGTERM, SIGKILL at the deadline.
    h = Harness(task(proc("main"), proc("f", final=True),
                     proc("log", final=True, ephemeral=True, daemon=True), finalization_wait_secs=10.0))
    h.decide()
    assert started(h.exit("main")) == ["f", "log"]
    h.clock.advance(2.0)
    d = h.exit("f")
    assert runs(d) == [("log", 0, TERM)] and d.next_deadline_at == 1010.0
    assert d.phase is TaskPhase.FINALIZING
    h.clock.advance(8.0)
    assert runs(h.decide()) == [("log", 0, KILL)]
    assert h.exit("log", sig=KILL).phase is TaskPhase.SUCCESS


@pytest.mark.parametrize("code, end", [(0, "SUCCESS"), (1, "FAILED")])
def test_a_task_without_final_processes_never_enters_finalizing(code, end):
    # Thermos goes through an empty FINALIZING phase (docs/aurora.md §11, "an empty
    # finalization").
    h = Harness(task(proc("main"), proc("side", ephemeral=True)))
    h.decide()
    h.exit("main", code)
    h.exit("side", sig=TERM)
    assert [(t.from_.value, t.to.value) for t in h.transitions
            if isinstance(t, PhaseTransition)] == [("ACTIVE", "CLEANING"), ("CLEANING", end)]


def test_a_deadlocked_final_plan_ends_the_finalization_though_an_ephemeral_final_process_runs():
    # Thermos waits for the ephemeral one, within finalization_wait (docs/aurora.md §11,
    # "deadlock beside an ephemeral process"): f2 can never start, so nothing is left to wait for.
    h = Harness(task(proc("main"), proc("f1", final=True), proc("f2", final=True),
                     proc("log", final=True, ephemeral=True, daemon=True),
                     constraints=[("f1", "f2")], finalization_wait_secs=10.0))
    h.decide()
    h.exit("main")
    d = h.exit("f1", 1)
    assert runs(d) == [("log", 0, TERM)] and h.state("f2") is S.KILLED
    assert h.exit("log", sig=TERM).phase is TaskPhase.SUCCESS


def test_a_regular_process_waiting_to_restart_when_the_task_stops_is_not_restarted():
    h = Harness(task(proc("a", max_failures=0, min_duration_secs=5.0), proc("b")))
    h.decide()
    h.exit("a", 1)
    h.exit("b", 1)  # the task's max_failures=1: it fails
    assert process_changes(h, "a")[-1] == (0, "WAITING", "KILLED", "not restarted: the task is stopping")


def test_every_process_given_up_after_sigkill_is_noted_in_the_same_decision():
    h = Harness(task(proc("a"), proc("b")))
    h.decide()
    h.planner.kill(h.clock.now, "stop", grace_secs=0.0)
    assert runs(h.decide()) == [("a", 0, KILL), ("b", 0, KILL)]
    h.clock.advance(1.0)
    d = h.decide()
    assert d.phase is TaskPhase.KILLED
    gone = [(t.process, t.to, t.outcome) for t in d.transitions if isinstance(t, ProcessTransition)]
    assert gone == [("a", S.KILLED, RunOutcome.KILLED), ("b", S.KILLED, RunOutcome.KILLED)]


# ---- what the decision says while the task runs, and a schedule that cannot run ----


def test_the_active_phase_says_the_task_is_running_its_processes():
    d = Harness(task(proc("a"))).decide()
    assert (d.phase, d.reason) == (TaskPhase.ACTIVE, "the task is running its processes")


def test_an_invalid_schedule_names_every_problem_under_task():
    with pytest.raises(ValueError) as caught:
        Planner(task(proc("a"), proc("b"), constraints=[("a", "x"), ("a", "b"), ("b", "a")]))
    assert str(caught.value) == (
        "invalid schedule: task.constraints[0].order = ['a', 'x'] names unknown processes: x "
        "(the task has: a, b); task.constraints form a cycle, so none of these can ever "
        "start: a -> b -> a")


def test_a_schedule_that_makes_a_waited_for_process_wait_for_an_ephemeral_one_is_invalid():
    with pytest.raises(ValueError) as caught:
        Planner(task(proc("side", ephemeral=True), proc("main"), constraints=[("side", "main")]))
    assert str(caught.value) == (
        "invalid schedule: task.constraints[0].order = ['side', 'main'] makes 'main' wait for "
        "'side', an ephemeral process: the task does not wait for ephemeral processes, so a "
        "process it waits for may not wait for one")


# ---- the process rules these reach ----


def test_a_run_the_task_signalled_names_the_last_signal_it_sent():
    h = Harness(task(proc("a"), proc("b")))
    h.decide()
    h.planner.kill(h.clock.now, "stop", grace_secs=5.0)
    h.decide()
    h.exit("a", 0)  # a clean exit on SIGTERM
    h.clock.advance(5.0)
    assert runs(h.decide()) == [("b", 0, KILL)]
    h.exit("b", sig=KILL)
    assert process_changes(h, "a")[-1] == (0, "RUNNING", "KILLED", "exit status 0 after the task's SIGTERM")
    assert process_changes(h, "b")[-1] == (0, "RUNNING", "KILLED",
                                           "killed by SIGKILL after the task's SIGKILL")


def test_a_min_duration_under_a_second_still_holds_the_restart():
    end = after_run(proc("a", max_failures=0, min_duration_secs=0.5), RunOutcome.FAILED,
                    "exit status 1", RunCounts(failures=1), None)
    assert (end.state, end.reason) == (S.WAITING, "exit status 1; restarting (failure 1; max_failures=0: "
                                                  "no limit); waiting 0.5 s for min_duration=0.5")


def _track(name: str, state: ProcessState, **kw) -> ProcessTrack:
    t = ProcessTrack(proc(name, **kw), ())
    t.state = state
    return t


@pytest.mark.parametrize("procs, expected", [
    ([], (TaskPhase.SUCCESS, "the task has no regular processes to wait for")),
    ([_track("e", S.KILLED, ephemeral=True)],
     (TaskPhase.SUCCESS, "the task has no regular processes to wait for")),
    ([_track("a", S.SUCCESS), _track("b", S.KILLED)],
     (TaskPhase.FAILED, "no regular process is running or can start, yet they are not done (deadlock)")),
], ids=["no processes", "only ephemeral ones", "one killed, none failed"])
def test_what_settled_regular_processes_mean_for_the_task(procs, expected):
    assert regular_outcome(procs, 1, settled=True) == expected


# ---- startable: what the first decide will start, asked before it (the owner's ready_ahead) ----


@pytest.mark.parametrize("spec", [
    task(proc("a"), proc("b"), proc("c")),
    task(proc("a"), proc("b"), proc("c"), constraints=[("a", "c")]),
    task(proc("a"), proc("b"), proc("c"), proc("d"), max_concurrency=2),
    task(proc("a"), proc("fin", final=True)),
    task(proc("fin", final=True)),
], ids=["all", "ordered", "max_concurrency", "with_a_final", "only_finals"])
def test_startable_names_the_runs_decide_then_starts_and_changes_nothing(spec):
    h = Harness(spec)
    ahead = h.planner.startable(h.clock.now)
    assert h.planner.startable(h.clock.now) == ahead  # asking changed nothing
    d = h.decide()
    assert ahead == [(s.process, s.run) for s in d.start if s.process != "fin"]


def test_startable_is_empty_once_the_task_is_not_active():
    h = Harness(task(proc("a")))
    h.decide()
    h.planner.kill(h.clock.now, "stop", grace_secs=1.0)
    h.decide()
    assert h.planner.startable(h.clock.now) == []
