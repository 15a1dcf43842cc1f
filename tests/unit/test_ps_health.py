"""The HEALTH `stoker ps` and the observer's task list show: the verdict while the check
runs; of a task whose check no longer runs (it ended, its supervisor is gone, it waits
between two attempts) the last verdict marked `was:`, so a KILLED or LOST task never reads
as healthy now, and a failed check that ended the task says so. `--json` keeps `health`
(the last verdict) and adds `health_current` and `failed_by_health_check`."""
from __future__ import annotations

from pathlib import Path

import pytest

from executor.cli.ps import format_rows
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.truth import judge
from executor.observe.model import TaskDetail, TaskSummary
from executor.observe.pages import task_page, tasks_page
from executor.task.inspection import Inspection
from executor.task.inspectionjson import row
from executor.task.replay import replay

NOW = 1000.0
FAILED_CHECK = "health check failed: 3 consecutive health checks failed (max_consecutive_failures=2): refused"


def health(wall: float, state: str, outcome: str = "passed") -> dict:
    return {"kind": "health", "wall": wall, "outcome": outcome, "reason": "", "latency_secs": 0.001,
            "state": state, "attempts": 1, "consecutive_failures": int(outcome == "failed"),
            "consecutive_successes": int(outcome == "passed")}


def task(*ends: tuple[str, str], healthy: str = "RUNNING", check: str = "HTTP GET http://localhost:1/health") -> list[dict]:
    docs = [{"kind": "header", "wall": 900.0, "task": "web.0", "job_key": "c/r/e/web", "task_id": "web-0-1",
             "sandbox": "/sb", "ports": {}, "supervisor_pid": 4000, "processes": ["web"], "health": check},
            {"kind": "task", "wall": 900.0, "to": "STARTING", "reason": "task launched"},
            {"kind": "task", "wall": 901.0, "from": "STARTING", "to": "RUNNING", "reason": "healthy: ok"}]
    if check != "none":
        docs.insert(2, health(900.5, healthy, "failed" if healthy == "FAILED" else "passed"))
    before = "RUNNING"
    for n, (to, reason) in enumerate(ends):
        doc = {"kind": "task", "wall": 950.0 + n, "from": before, "to": to, "reason": reason}
        if to == "KILLING":
            doc["ends_as"] = "FAILED" if reason.startswith("health check failed") else "KILLED"
        docs.append(doc)
        before = to
    return docs


def shown(docs: list[dict], alive: bool) -> dict:
    return shown_with(docs, alive)[0]


def shown_with(docs: list[dict], alive: bool) -> tuple[dict, Inspection]:
    view = replay(docs)
    truth = judge(view.state, alive, last_record_wall=view.last_wall, checkpoint_mtime=None,
                  registry_wall=None, killing_ends_as=view.current.killing_ends_as)
    entry = RegistryEntry(sandbox="/sb", supervisor_pid=4000, supervisor_start=1, supervisor_boot="b",
                          front_end=FrontEnd.EXECUTOR, registered_wall=900.0, task_id="web-0-1",
                          job_key="c/r/e/web")
    inspection = Inspection(sandbox=Path("/sb"), view=view, attempt=view.current, truth=truth)
    return row(entry, inspection), inspection


def health_cell(r: dict) -> str:
    head, line = format_rows([r], NOW).splitlines()[:2]
    return line[head.index("HEALTH"):].strip()


KILL = [("KILLING", "killed by the operator (stoker kill)"), ("KILLED", "killed by the operator (stoker kill)")]
BY_CHECK = [("KILLING", FAILED_CHECK), ("FAILED", FAILED_CHECK)]


@pytest.mark.parametrize("docs, alive, cell, current, by_check", [
    (task(), True, "RUNNING", True, False),  # a live task: its check's verdict now
    (task(*KILL), False, "was:RUNNING", False, False),  # KILLED: healthy at its end, not now
    (task(), False, "was:RUNNING", False, False),  # LOST: healthy when last seen
    (task(*KILL), True, "was:RUNNING", False, False),  # ended, its supervisor not yet gone
    (task(*BY_CHECK, healthy="FAILED"), False, "was:FAILED (ended it)", False, True),
    (task(BY_CHECK[0], healthy="FAILED"), False, "was:FAILED (ended it)", False, True),  # died killing
    (task(BY_CHECK[0], healthy="FAILED"), True, "FAILED", True, True),  # its kill under way
    (task(*KILL, healthy="FAILED"), False, "was:FAILED", False, False),  # failed during an operator's kill
    (task(*KILL, check="none"), False, "none", False, False),  # no check: said as it is
])
def test_the_health_of_a_task_whose_check_no_longer_runs_is_its_last_verdict_marked(docs, alive, cell,
                                                                                      current, by_check):
    r = shown(docs, alive)
    assert health_cell(r) == cell
    assert (r["health_current"], r["failed_by_health_check"]) == (current, by_check)
    assert r["health"] == cell.removeprefix("was:").removesuffix(" (ended it)")  # its meaning kept
    listing = tasks_page([TaskSummary(row=r, ports={})], NOW, "/reg")
    css = r["health"] if current or cell == "none" else "other"  # a past verdict: never coloured as a live one
    assert f'<span class="state s-{css}">{cell}</span>' in listing


def test_the_task_page_says_the_same():
    r, inspection = shown_with(task(*KILL), alive=False)
    page = task_page(TaskDetail(row=r, inspection=inspection, usage={}, definition=None,
                                definition_problem="", status={}), NOW)
    was = '<span class="state s-other">was:RUNNING</span>'
    assert f"<dt>health</dt><dd>{was}</dd>" in page  # the task's facts
    assert f"<dt>state</dt><dd>{was}</dd>" in page  # its Health section
