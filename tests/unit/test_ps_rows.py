"""`stoker ps`'s table and notes (`executor/cli/ps.py`, `format_rows`), whole: a row's cells,
'-' for a task id or job key it lacks (its notes then named by its sandbox), a row's problem
(not a starting one's), a LOST task's since and its leftovers, one GONE with no end, one
whose supervisor died while killing it, another user's processes carrying its marker, a
sandbox a later supervisor took, and the announcement's note."""
from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from executor.cli.ps import format_rows
from tests.unit.test_ps_health import shown_with, task

NOW = 1000.0
HEAD = ("TASK_ID  JOB_KEY    STATE  PID   SANDBOX  STARTED                                PROCS  HEALTH\n"
        "web-0-1  c/r/e/web  LOST   4000  /sb      1970-01-01T00:15:00+00:00 (1m40s ago)  0/1    was:RUNNING\n")
SINCE = "supervisor gone since 1970-01-01T00:15:01+00:00 (1m39s ago), its checkpoint's last record"


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def lost(**changed: Any) -> dict[str, Any]:
    """A LOST task's row as `stoker ps --json` gives it, with `changed`."""
    r, _ = shown_with(task(), False)
    return {**r, **changed}


def test_a_lost_task_s_row_its_since_and_its_leftovers():
    r = lost(leftovers=[{"pid": 41, "process": "web", "run": 2}, {"pid": 42, "process": None, "run": 0}],
             foreign_processes=[{"pid": 43, "user": "mallory"}, {"pid": 44, "user": "uid 4242"}])
    assert format_rows([r], NOW) == HEAD + (
        f"web-0-1: LOST ({SINCE})\n"
        "  leftover processes: 41 (web run 2), 42 (? run 0)\n"
        "  other users' processes carrying its marker (not its leftovers): 43 (mallory), 44 (uid 4242)\n")


def test_a_row_with_no_task_id_nor_job_key_is_dashes_and_its_notes_are_its_sandbox_s():
    r = lost(task_id="", job_key="", lost_since=None, lost_since_source=None, problem="its checkpoint cannot be read")
    text = format_rows([r], NOW)
    assert text.splitlines()[1].startswith("-        -        LOST   4000  /sb ")
    assert text.splitlines()[2:] == [
        "/sb: its checkpoint cannot be read",
        "/sb: LOST (supervisor gone since an unknown time, no record)",
        "  leftover processes: none"]


def test_a_starting_row_s_problem_is_no_note():
    r = lost(problem="nothing recorded yet")
    assert "nothing recorded yet" not in format_rows([r], NOW, starting={0})
    assert "web-0-1: nothing recorded yet" in format_rows([r], NOW, starting={1})


@pytest.mark.parametrize(("changed", "head"), [
    ({"state": "GONE"}, "GONE (its supervisor recorded no end)"),
    ({"state": "GONE", "replaced_by": {"task_id": "web-0-2", "supervisor_pid": 5}},
     "GONE (its supervisor recorded no end; replaced by web-0-2 in the same sandbox)"),
    ({"replaced_by": {"task_id": "", "supervisor_pid": 5}},
     f"LOST ({SINCE}; replaced by the supervisor pid 5 in the same sandbox)"),
    ({"state": "KILLED", "ended": True, "died_killing": True}, "KILLED (its supervisor died while killing)"),
], ids=["gone", "gone replaced", "lost replaced", "died killing"])
def test_what_a_task_no_supervisor_ends_says(changed, head):
    assert format_rows([lost(**changed)], NOW).splitlines()[2:] == [f"web-0-1: {head}", "  leftover processes: none"]


@pytest.mark.parametrize("changed", [{"state": "RUNNING", "supervisor_alive": True}, {"ended": True}],
                         ids=["supervised", "ended"])
def test_a_supervised_or_ended_task_has_no_such_note(changed):
    assert format_rows([lost(**changed)], NOW).splitlines()[2:] == []


def test_an_announcement_is_a_note_and_a_lost_task_s_reads_as_ended_with_its_supervisor():
    announced = {"path": "/aurora/web", "member": "member_0001", "state": "JOINED", "connection": "CONNECTED",
                 "reason": "joined", "since": 990.0}
    joined = "announced: /aurora/web/member_0001 since 1970-01-01T00:16:30+00:00 (10.0s ago) (ZooKeeper CONNECTED"
    assert format_rows([lost(announcement=announced, task_id="")], NOW).splitlines()[2] == (
        f"/sb: {joined}; recorded: its session ended with the supervisor)")
    assert format_rows([lost(announcement=announced, state="RUNNING")], NOW).splitlines()[2] == f"web-0-1: {joined})"


def test_a_restart_due_is_a_note_of_its_own_named_by_the_sandbox_without_a_task_id():
    r = lost(task_id="", restart={"attempt": 3, "after_state": "FAILED", "due": NOW + 10.0})
    assert format_rows([r], NOW).splitlines()[2] == "/sb: LOST (attempt 2 ended FAILED; attempt 3 starts in 10.0s)"


def test_an_announcement_not_joined_says_why():
    announced = {"path": "/aurora/web", "member": None, "state": "JOINING", "connection": "SUSPENDED",
                 "reason": "connecting to ZooKeeper", "since": 990.0}
    assert format_rows([lost(announcement=announced, state="RUNNING")], NOW).splitlines()[2] == (
        "web-0-1: announcement: JOINING at /aurora/web since 1970-01-01T00:16:30+00:00 (10.0s ago): connecting to "
        "ZooKeeper (ZooKeeper SUSPENDED)")
