"""replay(): checkpoint records in, the task's view out. Pure: no files, no clock, no threads."""
import ast
import json
from pathlib import Path

import pytest

from executor.task.records import parse_lines
from executor.task.replay import HEALTH_HISTORY, replay

ROOT = Path(__file__).resolve().parents[2]


def header(wall=100.0, pid=4000, **extra):
    return {"kind": "header", "wall": wall, "task": "hello.0", "job_key": "c/r/e/hello",
            "task_id": "t-1", "sandbox": "/sb", "ports": {"health": 31000},
            "supervisor_pid": pid, "processes": ["setup", "web"],
            "health": "HTTP GET http://localhost:31000/health", **extra}


def task(frm, to, reason, wall):
    return {"kind": "task", "wall": wall, "from": frm, "to": to, "reason": reason}


def proc(name, run, frm, to, reason, wall, pid=None, exit_code=None, signal=None):
    return {"kind": "process", "wall": wall, "process": name, "run": run, "from": frm,
            "to": to, "reason": reason, "pid": pid, "exit_code": exit_code, "signal": signal}


def health(outcome, state, attempts, fails, succs, wall, reason="", latency=0.002):
    return {"kind": "health", "wall": wall, "outcome": outcome, "reason": reason,
            "latency_secs": latency, "state": state, "attempts": attempts,
            "consecutive_failures": fails, "consecutive_successes": succs}


RECORDED = [
    header(),
    task("", "STARTING", "task launched", 100.0),
    proc("setup", 0, "WAITING", "RUNNING", "started", 100.1, pid=4001),
    proc("web", 0, "WAITING", "RUNNING", "started", 100.1, pid=4002),
    proc("setup", 0, "RUNNING", "SUCCESS", "exit status 0", 100.5, pid=4001, exit_code=0),
    health("failed", "STARTING", 1, 0, 0, 101.0, reason="connection refused"),
    proc("web", 0, "RUNNING", "WAITING", "exit status 3; restarting (failure 1 of "
         "max_failures=3)", 102.0, pid=4002, exit_code=3),
    proc("web", 1, "WAITING", "RUNNING", "started", 107.0, pid=4010),
    health("passed", "RUNNING", 2, 0, 1, 108.0),
    task("STARTING", "RUNNING", "1 consecutive health checks passed", 108.0),
]


def test_replay_of_a_recorded_sequence():
    view = replay(RECORDED)
    assert (view.label, view.job_key, view.task_id, view.sandbox) == \
        ("hello.0", "c/r/e/hello", "t-1", "/sb")
    assert view.ports == {"health": 31000}
    assert (view.attempt, view.supervisor_pid, view.state) == (1, 4000, "RUNNING")
    assert view.reason == "1 consecutive health checks passed"
    assert [(h.from_state, h.to_state) for h in view.history] == \
        [("", "STARTING"), ("STARTING", "RUNNING")]
    setup, web = view.processes
    assert (setup.name, setup.state, setup.restarts) == ("setup", "SUCCESS", 0)
    (run,) = setup.runs
    assert (run.pid, run.state, run.exit_code, run.started_wall, run.ended_wall) == \
        (4001, "SUCCESS", 0, 100.1, 100.5)
    assert (web.state, web.restarts) == ("RUNNING", 1)
    first, second = web.runs
    assert (first.run, first.state, first.exit_code, first.ended_wall) == (0, "FAILED", 3, 102.0)
    assert first.reason.startswith("exit status 3; restarting")
    assert (second.run, second.pid, second.state, second.ended_wall) == (1, 4010, "RUNNING", None)
    h = view.health
    assert (h.state, h.attempts, h.consecutive_failures, h.consecutive_successes) == \
        ("RUNNING", 2, 0, 1)
    assert h.checker == "HTTP GET http://localhost:31000/health"
    assert [(a.outcome, a.reason) for a in h.last_attempts] == \
        [("failed", "connection refused"), ("passed", "")]


def test_restart_outcomes_are_derived_from_the_exit():
    records = [
        header(),
        proc("web", 0, "WAITING", "RUNNING", "started", 1.0, pid=10),
        proc("web", 0, "RUNNING", "WAITING", "killed by SIGKILL; lost", 2.0, pid=10, signal=9),
        proc("web", 1, "WAITING", "RUNNING", "started", 3.0, pid=11),
        proc("web", 1, "RUNNING", "WAITING", "daemon restarts", 4.0, pid=11, exit_code=0),
        proc("web", 2, "WAITING", "RUNNING", "started", 5.0, pid=12),
        proc("web", 2, "RUNNING", "KILLED", "killed by SIGTERM", 6.0, pid=12, signal=15),
    ]
    web = replay(records).processes[1]
    assert [(r.run, r.state, r.signal, r.exit_code) for r in web.runs] == [
        (0, "LOST", 9, None), (1, "SUCCESS", None, 0), (2, "KILLED", 15, None)]
    assert web.state == "KILLED"


def phase(frm, to, reason, wall):
    return {"kind": "phase", "wall": wall, "from": frm, "to": to, "reason": reason}


def test_the_supervisor_phases_are_kept_and_the_current_one_shown():
    records = RECORDED + [
        task("RUNNING", "KILLING", "killed by the agent (KILL)", 110.0),
        phase("ACTIVE", "CLEANING", "killed by the agent (KILL); stopping 1 running process", 110.0),
        phase("CLEANING", "FINALIZING", "every regular process has stopped", 111.0),
    ]
    view = replay(records)
    assert [(p.from_state, p.to_state) for p in view.current.phases] == [
        ("ACTIVE", "CLEANING"), ("CLEANING", "FINALIZING")]
    assert (view.phase.to_state, view.phase.wall, view.phase.reason) == (
        "FINALIZING", 111.0, "every regular process has stopped")
    assert view.state == "KILLING"  # phases are not task states
    assert replay(RECORDED).phase is None


def test_a_recorded_run_outcome_names_how_the_run_ended():
    records = [
        header(),
        proc("web", 0, "WAITING", "RUNNING", "started", 1.0, pid=10),
        dict(proc("web", 0, "RUNNING", "WAITING", "exit status 0; restarting (daemon)", 2.0,
                  pid=10, exit_code=0), outcome="SUCCESS"),
        proc("web", 1, "WAITING", "RUNNING", "started", 3.0, pid=11),
        dict(proc("web", 1, "RUNNING", "WAITING", "killed by SIGKILL; restarting (loss 1, ...)",
                  4.0, pid=11, signal=9), outcome="LOST"),
    ]
    web = replay(records).processes[1]
    assert [(r.run, r.state) for r in web.runs] == [(0, "SUCCESS"), (1, "LOST")]


def test_a_spawn_failure_is_a_run_without_pid():
    records = [header(), proc("web", 0, "WAITING", "FAILED",
                              "cannot start /bin/bash: No such file or directory (ENOENT)", 1.0)]
    (run,) = replay(records).processes[1].runs
    assert (run.pid, run.state, run.started_wall, run.ended_wall) == (None, "FAILED", None, 1.0)
    assert "ENOENT" in run.reason


def test_waiting_for_a_run_that_has_not_started_makes_no_run():
    records = [header(), proc("web", 1, "WAITING", "WAITING", "waiting 4.2 s for min_duration=5",
                              1.0)]
    web = replay(records).processes[1]
    assert web.runs == () and web.reason == "waiting 4.2 s for min_duration=5"


def test_restart_attempts_keep_their_history():
    records = RECORDED + [
        task("RUNNING", "FAILED", "process 'web' failed: exit status 3", 120.0),
        header(wall=125.0, pid=5000),
        task("", "STARTING", "task launched", 125.0),
        proc("web", 0, "WAITING", "RUNNING", "started", 125.1, pid=5002),
    ]
    view = replay(records)
    assert view.attempt == 2 and len(view.attempts) == 2
    old, new = view.attempts
    assert (old.number, old.state, old.reason) == (1, "FAILED", "process 'web' failed: exit status 3")
    assert old.processes[1].restarts == 1
    assert (new.started_wall, new.supervisor_pid, new.state) == (125.0, 5000, "STARTING")
    assert [(p.name, len(p.runs)) for p in new.processes] == [("setup", 0), ("web", 1)]
    assert new.processes[1].runs[0].pid == 5002
    assert view.health.state is None and view.health.last_attempts == ()


def test_health_history_keeps_the_last_ten():
    records = [header()] + [health("passed", "RUNNING", i, 0, i, float(i), reason=f"#{i}")
                            for i in range(1, 26)]
    h = replay(records).health
    assert len(h.last_attempts) == HEALTH_HISTORY
    assert [a.reason for a in h.last_attempts] == [f"#{i}" for i in range(16, 26)]
    assert h.attempts == 25


def test_unknown_kinds_and_damaged_records_are_ignored():
    records = [
        {"kind": "from-the-future", "wall": 1.0, "x": 1},
        header(),
        {"kind": "process", "wall": 2.0, "process": "web", "run": "zero", "to": "RUNNING"},
        {"kind": "process", "wall": 2.0, "process": None},
        {"kind": "health", "wall": "noon"},
        "not a dict",
        proc("web", 0, "WAITING", "RUNNING", "started", 3.0, pid=7),
    ]
    view = replay(records)
    assert view.attempt == 1
    assert [(r.run, r.pid) for r in view.processes[1].runs] == [(0, 7)]
    assert view.health.state is None


def test_records_before_any_header_form_the_first_attempt():
    view = replay([task("", "STARTING", "launched", 1.0)])
    assert (view.attempt, view.state, view.label) == (1, "STARTING", "")


def test_replay_of_nothing():
    view = replay([])
    assert view.attempt == 1 and view.state is None and view.processes == ()


def test_torn_or_garbled_lines_are_skipped():
    lines = [b'{"kind":"header","task":"a.0"}', b"garbage{", b"", b"[1,2]",
             b'{"kind":"task","to":"RUNNING"}', b'{"kind":"task","to":"FAI']
    assert [r["kind"] for r in parse_lines(lines)] == ["header", "task"]
    assert replay(parse_lines(lines)).state == "RUNNING"


def test_replay_module_is_pure():
    tree = ast.parse((ROOT / "executor" / "task" / "replay.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"os", "time", "threading", "subprocess", "socket", "psutil",
                           "requests", "logging", "signal", "select", "json"}


# ---- bounded, whatever the file holds ----


def test_the_view_is_bounded_however_many_records_come():
    from executor.task.replay import ATTEMPTS_KEPT, PROCESSES_KEPT, RUNS_KEPT, TRANSITIONS_KEPT

    def records():
        yield header(processes=[])
        for n in range(3000):  # more processes than the view keeps
            yield proc(f"p{n}", 0, "WAITING", "RUNNING", "started", 1.0)
        for run in range(500):  # more runs of one process
            yield proc("p0", run + 1, "WAITING", "RUNNING", "started", 2.0 + run)
        for n in range(500):
            yield task("STARTING", "RUNNING", f"#{n}", 3.0)
        for n in range(100):
            yield header(wall=1000.0 + n)

    view = replay(records())
    assert len(view.attempts) == ATTEMPTS_KEPT and view.earlier_attempts == 101 - ATTEMPTS_KEPT
    assert view.attempt == 101
    first = replay(list(records())[:-100]).current
    assert len(first.processes) == PROCESSES_KEPT
    p0 = first.processes[0]
    assert len(p0.runs) == RUNS_KEPT and p0.earlier_runs == 501 - RUNS_KEPT and p0.restarts == 500
    assert len(first.history) == TRANSITIONS_KEPT and first.history[-1].reason == "#499"


def test_a_task_with_more_processes_than_the_view_keeps_says_how_many_it_left_out():
    # A task of 1,200 processes was shown as one of 1,000 (`stoker status` listed p0..p999,
    # `stoker ps` said 0/1000, the observer "Processes (1000)"), with nothing saying so.
    from executor.cli.views import format_status
    from executor.task.replay import PROCESSES_KEPT

    names = [f"p{n}" for n in range(PROCESSES_KEPT + 200)]
    records = [header(processes=names)]
    records += [proc(name, 0, "WAITING", "RUNNING", "started", 1.0, pid=10 + i)
                for i, name in enumerate(names)]
    cur = replay(records).current
    assert len(cur.processes) == PROCESSES_KEPT
    assert (cur.processes_not_shown, cur.processes_total) == (200, PROCESSES_KEPT + 200)
    note = (f"200 more processes of the task not shown: a task's view keeps its first "
            f"{PROCESSES_KEPT}")
    assert cur.not_shown_note == note
    assert note in format_status(replay(records), now_wall=2.0).splitlines()
    small = replay(RECORDED).current
    assert (small.processes_not_shown, small.not_shown_note) == (0, "")


def test_a_record_of_a_run_the_view_dropped_changes_nothing():
    records = [header(), proc("web", 5, "WAITING", "RUNNING", "run 5", 1.0, pid=50),
               proc("web", 2, "RUNNING", "FAILED", "stale", 2.0, pid=20, exit_code=1)]
    web = replay(records).processes[1]
    assert (web.state, web.reason, [r.run for r in web.runs]) == ("RUNNING", "run 5", [5])


def test_a_summary_record_adds_what_compaction_dropped():
    records = [header(), {"kind": "summary", "earlier_attempts": 7, "earlier_runs": {"web": 40, "late": 2},
                          "health_state": "RUNNING"},
               proc("web", 40, "WAITING", "RUNNING", "started", 101.0, pid=5)]
    view = replay(records)
    assert view.attempt == 8 and view.earlier_attempts == 7
    assert [(p.name, p.earlier_runs, p.restarts) for p in view.processes] == [
        ("setup", 0, 0), ("web", 40, 40), ("late", 2, 1)]
    assert view.health.state == "RUNNING" and view.last_wall == 101.0


def test_damaged_records_are_named_up_to_a_bound_then_counted():
    from executor.task.replay import WARNINGS_KEPT

    records = [header()] + [{"kind": "task", "to": "RUNNING", "wall": float("inf")}] * 50
    warnings = replay(records).warnings
    assert len(warnings) == WARNINGS_KEPT + 1
    assert warnings[0].startswith("checkpoint record 2, a task record: 'wall' is inf")
    assert warnings[-1] == f"{50 - WARNINGS_KEPT} more damaged checkpoint records skipped"


def test_each_attempt_keeps_the_ports_its_header_recorded():
    records = [task("", "STARTING", "no header kept", 90.0), header(wall=100.0),
               header(wall=200.0, ports={"health": 32000, "http": 32001})]
    view = replay(records)
    assert [a.ports for a in view.attempts] == [None, {"health": 31000}, {"health": 32000, "http": 32001}]
    assert view.ports == {"health": 32000, "http": 32001}  # the task's: the last header's


def test_each_attempt_keeps_how_its_processes_were_contained():
    view = replay([header(containment="cgroup2 cgroup /sys/fs/cgroup/stoker-1 (cgroup.kill)"),
                   header(wall=200.0, pid=5000),
                   header(wall=300.0, pid=6000, containment="process groups, task markers and "
                                                            "the subreaper (no cgroup: off)")])
    assert [a.containment for a in view.attempts] == [
        "cgroup2 cgroup /sys/fs/cgroup/stoker-1 (cgroup.kill)", "",
        "process groups, task markers and the subreaper (no cgroup: off)"]



def test_each_attempt_keeps_the_uid_its_header_says_its_processes_ran_as():
    view = replay([header(run_uid=1000), header(wall=200.0, pid=5000), header(wall=300.0, pid=6000, run_uid=0)])
    assert [a.run_uid for a in view.attempts] == [1000, None, 0]  # None: an older Stoker's header

# ---- the rules `make mutation` found unstated ----

# Each row: the record that ends run 0 (after a RUNNING record), without an outcome -> the
# run's state. The rule: a final state is the run's; leaving RUNNING, or an exit status,
# derives SUCCESS / LOST / FAILED from the exit; otherwise the record's state is shown.
ENDS = {
    "exit 0, no 'from'": ({"to": "WAITING", "exit_code": 0}, "SUCCESS"),
    "a signal, no 'from'": ({"to": "WAITING", "signal": 9}, "LOST"),
    "exit 3, no 'from'": ({"to": "WAITING", "exit_code": 3}, "FAILED"),
    "from RUNNING, no exit status": ({"from": "RUNNING", "to": "WAITING"}, "FAILED"),
    "no 'from', no exit status": ({"to": "WAITING"}, "WAITING"),
    "a final state wins": ({"from": "RUNNING", "to": "KILLED", "exit_code": 0}, "KILLED"),
}


@pytest.mark.parametrize("end, state", ENDS.values(), ids=ENDS.keys())
def test_how_a_run_ended_when_the_record_does_not_say(end, state):
    records = [header(), proc("web", 0, "WAITING", "RUNNING", "started", 1.0, pid=10),
               {"kind": "process", "wall": 2.0, "process": "web", "run": 0, **end}]
    (run,) = replay(records).processes[1].runs
    assert (run.state, run.ended_wall) == (state, 2.0)


def test_a_process_that_never_started_has_no_run_and_one_not_in_the_header_is_shown():
    records = [header(), proc("late", None, "WAITING", "KILLED", "not started: the task is stopping",
                              1.0)]
    setup, web, late = replay(records).processes
    assert (late.name, late.state, late.reason, late.runs) == (
        "late", "KILLED", "not started: the task is stopping", ())


def test_records_without_a_wall_time_show_0_and_a_health_attempt_keeps_its_latency():
    records = [header(), {"kind": "task", "to": "STARTING", "reason": "launched"},
               {"kind": "phase", "to": "CLEANING"},
               {"kind": "health", "outcome": "failed", "reason": "HTTP 503", "latency_secs": 0.25}]
    view = replay(records)
    assert (view.history[0].wall, view.phase.wall) == (0.0, 0.0)
    (attempt,) = view.health.last_attempts
    assert (attempt.wall, attempt.outcome, attempt.reason, attempt.latency_secs) == (
        0.0, "failed", "HTTP 503", 0.25)


def test_each_damaged_record_is_named_by_its_place_and_skipped():
    records = [header(), {"kind": "task", "to": "SLEEPING"}, "not a dict",
               {"kind": "from-the-future"}, {"kind": "health", "outcome": "passed", "attempts": -1}]
    assert replay(records).warnings == (
        "checkpoint record 2, a task record: 'to' is 'SLEEPING', not a TaskStage name; skipped",
        "checkpoint record 3, a record: a JSON str, not an object; skipped",
        "checkpoint record 5, a health record: 'attempts' is -1, outside 0 ... 9223372036854775807; "
        "skipped",
    )
    assert replay(RECORDED).warnings == ()


def test_the_supervisor_s_identity_comes_from_its_attempt_s_header():
    records = [header(supervisor_start=81234, supervisor_boot="boot-1", marker="t-1/2f9a"),
               header(wall=200.0, pid=5000)]
    first, second = replay(records).attempts
    assert (first.supervisor_pid, first.supervisor_start, first.supervisor_boot, first.marker) == (
        4000, 81234, "boot-1", "t-1/2f9a")
    assert (second.supervisor_pid, second.supervisor_start, second.supervisor_boot, second.marker) == (
        5000, None, "", "")
    view = replay(records[:1])
    assert (view.supervisor_start, view.marker) == (81234, "t-1/2f9a")


def test_the_last_wall_time_is_the_last_record_s_a_header_s_too():
    assert replay([header(wall=5.0)]).last_wall == 5.0
    assert replay([header(wall=5.0), {"kind": "summary", "earlier_attempts": 1}]).last_wall == 5.0


def test_what_compaction_dropped_adds_to_what_the_view_dropped_itself():
    from executor.task.replay import ATTEMPTS_KEPT, RUNS_KEPT

    headers = [header(wall=float(n)) for n in range(ATTEMPTS_KEPT + 1)]  # the view drops one
    view = replay(headers + [{"kind": "summary", "earlier_attempts": 2}])
    assert view.earlier_attempts == 1 + 2 and view.attempt == ATTEMPTS_KEPT + 3
    runs = [proc("web", n, "WAITING", "RUNNING", "started", 1.0 + n) for n in range(RUNS_KEPT + 1)]
    web = replay([header()] + runs + [{"kind": "summary", "earlier_runs": {"web": 10}}]).processes[1]
    assert web.earlier_runs == 1 + 10 and web.restarts == 10 + RUNS_KEPT


def test_a_newer_stokers_state_in_a_from_does_not_hide_the_tasks_end():
    """A newer Stoker that adds a state (say DRAINING) writes it as the "from" of the task's
    terminal record: the record was skipped as damaged, and an older `stoker status` showed
    the ended task LOST. Its end is read; the state it left is shown as not known."""
    records = [*RECORDED,
               task("DRAINING", "FINISHED", "every process finished successfully", 110.0),
               proc("web", 1, "DRAINING", "SUCCESS", "exit status 0", 110.0, pid=4010, exit_code=0)]
    view = replay(parse_lines([json.dumps(r) for r in records]))
    assert (view.state, view.reason) == ("FINISHED", "every process finished successfully")
    assert view.history[-1].from_state == ""
    assert view.processes[1].state == "SUCCESS"


def _ended_by_phase(*after):
    """A task whose supervisor recorded its terminal phase (FAILED), then `after`."""
    return parse_lines([json.dumps(r) for r in (
        header(), task("", "STARTING", "task launched", 100.0), task("STARTING", "RUNNING", "started", 100.2),
        {"kind": "phase", "wall": 101.0, "from": "CLEANING", "to": "FAILED", "reason": "web failed"},
    )] + list(after), keep_unreadable=True)


@pytest.mark.parametrize("end", ['{"kind":"task","from":"RUNNING","to":"FAI', '{"kind":"tYsk","from":"RUNNING",'
                                 '"to":"FAILED","reason":"web failed","wall":101.1}',
                                 '{"kind":"task","from":"RUNNING","to":"FA\\u0000LED","reason":"","wall":101.1}'])
def test_a_task_end_torn_or_damaged_after_its_terminal_phase_is_that_phase_s_end(end):
    (attempt,) = replay(_ended_by_phase(end)).attempts
    assert attempt.state == "FAILED" and attempt.reason == (
        "web failed (its last record damaged or unknown: ended as its supervisor's terminal phase before it says)")


def test_a_terminal_phase_with_nothing_after_it_or_a_whole_task_end_is_as_recorded():
    """Nothing unread after the phase (a supervisor killed between the two records): the task
    state as recorded (RUNNING, LOST once its supervisor is gone); a whole end: its own."""
    assert replay(_ended_by_phase()).current.state == "RUNNING"
    whole = json.dumps(task("RUNNING", "KILLED", "killed", 101.1))
    assert (replay(_ended_by_phase("{torn", whole)).current.state, replay(_ended_by_phase(whole, "{torn")).current.reason) == (
        "KILLED", "killed")


def test_a_first_record_of_a_long_kind_not_known_is_named_by_an_excerpt_of_it():
    """The hint on a checkpoint whose records follow no header quotes the "kind" of the record
    before them: a garbled one 1 MiB long (the reader's line cap) was quoted whole, in
    `stoker status`, `stoker ps` and the observer's answer, as a damaged line's never is."""
    view = replay([{"kind": "x" * 100_000}, {"kind": "task", "from": "NEW", "to": "STARTING",
                                             "reason": "launched", "wall": 1000.0}])
    assert view.headless_after.startswith("checkpoint record 1, of a kind not known ('xxx"), view.headless_after
    assert len(view.headless_after) < 200 and "...'" in view.headless_after
