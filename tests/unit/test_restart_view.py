"""The view of a task between two attempts of `stoker run`: the `restart` record it writes
when its service rules restart the task, and how `stoker status`, `stoker ps` and the
observer show it (RESTARTING while its supervisor runs; the recorded end once it is gone).
Pure: records in, views and text out."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from executor.cli.ps import format_rows
from executor.cli.views import format_status
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.truth import describe_restart, judge
from executor.observe.model import TaskDetail, TaskSummary
from executor.observe.pages import task_page, tasks_page
from executor.task.compaction import compact
from executor.task.inspection import Inspection
from executor.task.inspectionjson import row, status_json
from executor.task.records import RestartRecord, parse, parse_checked
from executor.task.replay import replay

NOW = 1000.0
REASON = "task failed (1 of max_task_failures=3); restarting in 4.0 s (quick end 1)"


def attempt(number: int, wall: float, end: str = "FAILED") -> list[dict]:
    return [
        {"kind": "header", "wall": wall, "task": "flaky.0", "job_key": "c/r/e/flaky",
         "task_id": f"flaky-0-{number}", "sandbox": "/sb", "ports": {}, "supervisor_pid": 4000,
         "processes": ["a"], "health": "none"},
        {"kind": "task", "wall": wall, "to": "STARTING", "reason": "task launched"},
        {"kind": "task", "wall": wall + 0.1, "from": "STARTING", "to": "RUNNING", "reason": "running"},
        {"kind": "task", "wall": wall + 0.2, "from": "RUNNING", "to": end, "reason": "a failed: exit status 3"},
    ]


RESTART = {"kind": "restart", "wall": 997.0, "delay_secs": 4.0, "reason": REASON}
BETWEEN = attempt(1, 990.0) + [RESTART]  # attempt 1 ended; attempt 2 due at 1001.0


def inspection(docs: list[dict], alive: bool) -> Inspection:
    view = replay(docs)
    truth = judge(view.state, alive, last_record_wall=view.last_wall, checkpoint_mtime=None,
                  registry_wall=None, restart_scheduled=view.current.restart is not None)
    return Inspection(sandbox=Path("/sb"), view=view, attempt=view.current, truth=truth)


def entry() -> RegistryEntry:
    return RegistryEntry(sandbox="/sb", supervisor_pid=4000, supervisor_start=1, supervisor_boot="b",
                         front_end=FrontEnd.RUN, registered_wall=990.0, task_id="flaky-0-1",
                         job_key="c/r/e/flaky")


def test_the_restart_record_round_trips_and_a_damaged_one_is_named():
    record = parse(RESTART)
    assert record == RestartRecord(delay_secs=4.0, reason=REASON, wall=997.0)
    assert record.to_json() == RESTART
    damaged = parse_checked({"kind": "restart", "delay_secs": -1})
    assert "'delay_secs' is -1" in damaged.reason
    assert RestartRecord(delay_secs=1e300).to_json()["delay_secs"] == 253402300799  # capped: readable


def test_the_attempt_holds_the_restart_until_the_next_attempt_starts():
    view = replay(BETWEEN)
    assert view.current.restart.due_wall == 1001.0 and view.current.restart.reason == REASON
    later = replay(BETWEEN + attempt(2, 1001.0))
    assert later.attempt == 2 and later.current.restart is None
    assert later.attempts[0].restart.delay_secs == 4.0  # the ended attempt keeps it
    assert replay([r.to_json() for r in compact(map(parse, BETWEEN))]) == view


@pytest.mark.parametrize("recorded, alive, scheduled, state, ended", [
    ("FAILED", True, True, "RESTARTING", False),  # in the back-off
    ("FINISHED", True, True, "RESTARTING", False),  # a service that finished
    ("FAILED", False, True, "FAILED", True),  # stopped (or killed) in the back-off: the end as recorded
    ("FAILED", True, False, "FAILED", False),  # the supervisor lets go: no restart was scheduled
    ("RUNNING", True, True, "RUNNING", False),  # (the next attempt's records came)
])
def test_restarting_is_a_recorded_end_a_scheduled_restart_and_a_live_supervisor(recorded, alive, scheduled,
                                                                                  state, ended):
    truth = judge(recorded, alive, last_record_wall=1.0, checkpoint_mtime=None, registry_wall=None,
                  restart_scheduled=scheduled)
    assert (truth.state, truth.alive, truth.ended) == (state, alive, ended)


def test_the_words_say_how_the_last_attempt_ended_and_when_the_next_starts():
    assert describe_restart(1, "FAILED", 1001.0, NOW) == "attempt 1 ended FAILED; attempt 2 starts in 1.0s"
    assert describe_restart(3, "FINISHED", 999.0, NOW) == "attempt 3 ended FINISHED; attempt 4 is starting"
    assert describe_restart(1, "FAILED", NOW, NOW) == "attempt 1 ended FAILED; attempt 2 is starting"  # due now
    assert describe_restart(1, None, None, NOW) == "attempt 1 ended unknown; attempt 2 is scheduled"


def test_status_shows_restarting_with_the_next_attempt():
    insp = inspection(BETWEEN, alive=True)
    text = format_status(insp.view, NOW, insp.truth)
    first = text.splitlines()[0]
    assert "state=RESTARTING (attempt 1 ended FAILED; attempt 2 starts in 1.0s)  attempt=1" in first
    assert re.search(r"\n  restart: attempt 2 at \d{4}-\S+: task failed \(1 of max_task_failures=3\)", text)
    doc = status_json(insp)
    assert (doc["state"], doc["ended"], doc["supervisor_alive"]) == ("RESTARTING", False, True)
    assert doc["restart"] == {"attempt": 2, "after_state": "FAILED", "delay_secs": 4.0, "due": 1001.0,
                              "due_iso": doc["restart"]["due_iso"], "reason": REASON}
    assert doc["attempts"][0]["restart"]["delay_secs"] == 4.0  # the replayed view has the record


def test_a_gone_supervisor_leaves_the_recorded_end():
    insp = inspection(BETWEEN, alive=False)
    text = format_status(insp.view, NOW, insp.truth)
    assert "state=FAILED  attempt=1" in text and "RESTARTING" not in text and "restart:" not in text
    assert status_json(insp)["restart"] is None and row(entry(), insp)["restart"] is None


def test_ps_lists_restarting_with_a_line_for_the_next_attempt():
    r = row(entry(), inspection(BETWEEN, alive=True))
    assert (r["state"], r["recorded_state"], r["ended"]) == ("RESTARTING", "FAILED", False)
    assert r["restart"]["attempt"] == 2 and r["restart"]["due"] == 1001.0
    lines = format_rows([r], NOW).splitlines()
    assert lines[1].split()[2] == "RESTARTING"
    assert "flaky-0-1: RESTARTING (attempt 1 ended FAILED; attempt 2 starts in 1.0s)" in lines


def test_the_observer_shows_restarting_and_no_uptime():
    insp = inspection(BETWEEN, alive=True)
    r = row(entry(), insp)
    page = task_page(TaskDetail(row=r, inspection=insp, usage={}, definition=None,
                                definition_problem="", status={}), NOW)
    assert 'class="state s-RESTARTING">RESTARTING</span> (attempt 1 ended FAILED; attempt 2 starts in 1.0s)' in page
    listing = tasks_page([TaskSummary(row=r, ports={})], NOW, "/reg")
    assert "s-RESTARTING" in listing and "<td>-</td>" in listing  # no uptime between attempts
