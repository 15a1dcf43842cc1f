"""`executor/task/inspectionjson.py`: an inspected task as `stoker ps --json` (`row`) and
`stoker status --json` (`status_json`) give it, field by field, from checkpoints the
product's own writer made and inspected in this process: a live supervisor's task with a
process running and one not, a health check with no verdict yet and a ServerSet member; a
LOST one with its leftovers and another user's process, replaced since; a sandbox with no
record; and the cells `stoker ps` shows."""
from __future__ import annotations

import json
import os
from typing import Any

import attrs
import pytest

from executor.host.clock import iso_time
from executor.host.identity import own_identity
from executor.host.truth import RESTARTING, UNKNOWN, Truth
from executor.task import inspection, inspectionjson
from executor.task.leftoverprocs import Foreign, Leftover
from tests.support.statuscli import GONE, RUNNING, entry_for, header, write

pytestmark = pytest.mark.timeout(30)

ME = own_identity()
ANNOUNCED = {"kind": "announce", "path": "/aurora/web", "member": "member_0000000007", "state": "JOINED",
             "connection": "CONNECTED", "reason": "joined", "since": 1003.5, "wall": 1003.5}


def _plain(value: Any) -> bool:
    """Whether `value` is made of what JSON has only (no enum, no attrs class)."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


def test_a_live_task_s_row_and_status(tmp_path):
    sandbox = tmp_path / "sb"
    write(sandbox, [dict(header(ME.pid, ME.start_ticks), processes=["web", "side", "cron"], health="http"),
                    *RUNNING, ANNOUNCED])
    seen = inspection.inspect_sandbox(sandbox, entry_for(sandbox))
    row = inspectionjson.row(entry_for(sandbox), seen)
    started = seen.attempt.started_wall
    assert {k: row[k] for k in ("state", "recorded_state", "supervisor_alive", "ended", "died_killing",
                                "processes_running", "processes_total", "health", "started", "started_iso",
                                "lost_since", "lost_since_source", "leftovers", "foreign_processes",
                                "replaced_by", "restart")} == {
        "state": "RUNNING", "recorded_state": "RUNNING", "supervisor_alive": True, "ended": False,
        "died_killing": False, "processes_running": 1, "processes_total": 3, "health": "STARTING",
        "started": started, "started_iso": iso_time(started), "lost_since": None, "lost_since_source": None,
        "leftovers": [], "foreign_processes": [], "replaced_by": None, "restart": None}
    assert row["announcement"] == {
        "path": "/aurora/web", "member": "member_0000000007", "member_path": "/aurora/web/member_0000000007",
        "state": "JOINED", "connection": "CONNECTED", "reason": "joined", "since": 1003.5,
        "since_iso": iso_time(1003.5)}, row["announcement"]
    assert row["task_uid"] == os.stat(sandbox).st_uid and row["task_uid_source"] == "sandbox_owner", row
    assert inspectionjson.procs_shown(row) == "1/3" and inspectionjson.state_shown(row) == "RUNNING"
    status = inspectionjson.status_json(seen)
    assert _plain(status) and json.loads(json.dumps(status))["attempts"][0]["health"]["checker"] == "http", status
    assert status["attempt"] == 1 and status["started"] == started and status["started_iso"] == iso_time(started)
    assert status["attempts"][0]["announcement"]["state"] == "JOINED", status["attempts"][0]
    assert status["state"] == "RUNNING" and status["supervisor_alive"] and status["foreign_processes"] == []


def test_a_check_of_no_kind_before_its_first_verdict_is_none_and_no_attempt_is_a_dash(tmp_path):
    sandbox = tmp_path / "sb"
    write(sandbox, [dict(header(ME.pid, ME.start_ticks)), *RUNNING])
    seen = inspection.inspect_sandbox(sandbox)
    assert inspectionjson.health_summary(seen) == "none"
    assert inspectionjson.health_summary(attrs.evolve(seen, attempt=None)) == "-"


def test_a_lost_task_replaced_since_with_its_leftovers_and_another_user_s_process(tmp_path):
    sandbox = tmp_path / "sb"
    write(sandbox, [dict(header(GONE, 7), processes=["web", "side"]), *RUNNING])
    entry = entry_for(sandbox, pid=GONE, start=7)
    taker = entry_for(sandbox, pid=GONE + 1, start=9, task_id="web-0-2", registered_wall=2000.0)
    seen = attrs.evolve(inspection.inspect_sandbox(sandbox, entry), replaced_by=taker,
                        leftovers=(Leftover(11, "web", 3, "sleep 600"), Leftover(12, "web", 4, "sleep 1"),
                                   Leftover(13, "", None, "sh")),
                        foreign=(Foreign(14, "nobody (uid 65534)", "sleep 9"),))
    row = inspectionjson.row(entry, seen)
    assert row["state"] == "LOST" and row["lost_since"] == 1002.0, row
    assert row["lost_since_source"] == "its checkpoint's last record", row
    assert row["processes_running"] == 1 and row["processes_total"] == 2, row  # one process left runs
    assert row["leftovers"] == [{"pid": 11, "process": "web", "run": 3, "command": "sleep 600"},
                                {"pid": 12, "process": "web", "run": 4, "command": "sleep 1"},
                                {"pid": 13, "process": "", "run": None, "command": "sh"}], row["leftovers"]
    foreign = [{"pid": 14, "user": "nobody (uid 65534)", "command": "sleep 9"}]
    assert row["foreign_processes"] == foreign, row
    assert row["replaced_by"] == {"task_id": "web-0-2", "supervisor_pid": GONE + 1, "registered": 2000.0,
                                  "registered_iso": iso_time(2000.0)}, row["replaced_by"]
    status = inspectionjson.status_json(seen)
    assert status["foreign_processes"] == foreign and status["replaced_by"] == row["replaced_by"], status
    assert status["leftovers"] == row["leftovers"] and _plain(status), status


def test_a_sandbox_with_no_record_says_its_place_its_supervisor_and_why(tmp_path):
    sandbox = tmp_path / "sb"
    (sandbox / ".stoker").mkdir(parents=True)
    (sandbox / ".stoker/supervisor.lock").touch()
    seen = inspection.inspect_sandbox(sandbox, entry_for(sandbox, pid=GONE, start=7))
    status = inspectionjson.status_json(seen)
    assert status["sandbox"] == str(sandbox) and status["supervisor_pid"] == GONE, status
    assert status["problem"] == seen.problem != "" and "attempt" not in status, status
    row = inspectionjson.row(entry_for(sandbox, pid=GONE, start=7), seen)
    assert row["processes_running"] == row["processes_total"] == 0 and row["task_uid"] is None, row


def test_a_row_read_before_its_header_is_named_from_the_checkpoint_only_for_its_attempt(tmp_path):
    sandbox = tmp_path / "sb"
    write(sandbox, [dict(header(ME.pid, ME.start_ticks)), *RUNNING])
    seen = inspection.inspect_sandbox(sandbox)
    nameless = entry_for(sandbox, task_id="")
    assert inspectionjson.row(nameless, seen)["task_id"] == "web-0-1"
    assert inspectionjson.row(nameless, attrs.evolve(seen, attempt=None))["task_id"] == ""


def test_a_restarting_task_s_next_attempt_and_none_without_its_restart_record(tmp_path):
    sandbox = tmp_path / "sb"
    write(sandbox, [dict(header(ME.pid, ME.start_ticks)), *RUNNING])
    seen = inspection.inspect_sandbox(sandbox)
    restarting = attrs.evolve(seen, truth=Truth(RESTARTING, alive=True, ended=False))
    assert inspectionjson.restart_json(restarting) is None
    failed = {"kind": "task", "from": "RUNNING", "to": "FAILED", "reason": "web failed", "wall": 1010.0}
    write(sandbox, [failed, {"kind": "restart", "delay_secs": 2.5, "reason": "task failed (1 of 3)", "wall": 1011.0}])
    row = inspectionjson.row(entry_for(sandbox), inspection.inspect_sandbox(sandbox))
    assert row["state"] == RESTARTING and row["restart"] == {
        "attempt": 2, "after_state": "FAILED", "delay_secs": 2.5, "due": 1013.5, "due_iso": iso_time(1013.5),
        "reason": "task failed (1 of 3)"}, row["restart"]


def test_stoker_ps_shows_an_unknown_task_s_processes_as_a_dash_and_a_gone_sandbox_so():
    counted = {"state": "RUNNING", "processes_running": 1, "processes_total": 2}
    assert inspectionjson.procs_shown(counted) == "1/2"
    assert inspectionjson.procs_shown({**counted, "state": UNKNOWN}) == "-"
    assert inspectionjson.state_shown({"state": UNKNOWN, "sandbox_gone": True}) == "SANDBOX GONE"
    assert inspectionjson.state_shown({"state": UNKNOWN}) == UNKNOWN
