"""`executor/observe/metrics.py` over replayed checkpoints: counters count what the
checkpoint no longer keeps, enums are one 1 among 0s (an unknown state added), a task's
identity labels come from its job key and label only when they have the expected form."""
from __future__ import annotations

from pathlib import Path

import attrs

from executor.host.truth import Truth
from executor.observe.exposition import render
from executor.observe.metrics import ObserverFigures, families, identity, observer_families, task_families
from executor.observe.model import TaskDetail
from executor.task.inspection import Inspection
from executor.task.replay import RUNS_KEPT, replay
from tests.support.exposition import Parsed, parse

RUNS = RUNS_KEPT + 5


def _records(state: str) -> list[dict]:
    records = [{"kind": "header", "wall": 1.0, "task": "web.0", "job_key": "c/r/e/web", "task_id": "t-0",
                "sandbox": "", "ports": {}, "supervisor_pid": 7, "supervisor_start": 1, "supervisor_boot": "b",
                "processes": ["p"], "health": "none"},
               {"kind": "task", "wall": 1.0, "to": state, "reason": "x"}]
    for run in range(RUNS):
        records += [{"kind": "process", "wall": 2.0 + run, "process": "p", "run": run, "from": "WAITING",
                     "to": "RUNNING", "reason": "started", "pid": 100 + run},
                    {"kind": "process", "wall": 2.5 + run, "process": "p", "run": run, "from": "RUNNING",
                     "to": "WAITING", "reason": "exit 1", "pid": 100 + run, "exit_code": 1, "outcome": "FAILED"}]
    return records


def _detail(state: str, truth: Truth, row_state: str, row: dict | None = None,
            own: bool = True) -> TaskDetail:
    view = replay(_records(state))
    inspection = Inspection(sandbox=Path("/s"), view=view, attempt=view.current if own else None, truth=truth)
    return TaskDetail(row={"task_id": "t-0", "job_key": "c/r/e/web", "label": "web.0", "state": row_state,
                             "started": 1.0, **(row or {})},
                        inspection=inspection, usage={}, definition=None, definition_problem="", status={},
                      supervisor="7-1")


def _scraped(state: str, truth: Truth, row_state: str, row: dict | None = None,
             own: bool = True) -> Parsed:
    return parse(render(families([_detail(state, truth, row_state, row, own)],
                                 ObserverFigures(0.5, 1, None, 3))))


def test_runs_the_checkpoint_no_longer_keeps_still_count_and_failures_are_of_those_it_keeps():
    m = _scraped("RUNNING", Truth("RUNNING", alive=True, ended=False), "RUNNING")
    assert m.value("stoker_process_runs_total", process="p") == RUNS
    assert m.value("stoker_process_failed_runs", process="p") == RUNS_KEPT
    assert m.value("stoker_process_run_start_time_seconds", process="p") == 2.0 + RUNS - 1  # the latest's
    assert not m.samples("stoker_process_memory_rss_bytes")  # not measured: no series, never 0
    assert not m.samples("stoker_observer_registry_unreadable_entries")  # not this viewer's to know
    assert m.value("stoker_observer_checkpoint_replays_total") == 3


def test_a_state_is_one_1_among_0s_and_an_unknown_one_is_added():
    m = _scraped("RUNNING", Truth("RUNNING", alive=True, ended=False), "SOMETHING_NEW")
    states = {s.labels["state"]: s.value for s in m.samples("stoker_task_state")}
    assert states["SOMETHING_NEW"] == 1 and sum(states.values()) == 1 and len(states) == 11
    lost = _scraped("RUNNING", Truth("LOST", alive=False, ended=False), "LOST")
    assert lost.value("stoker_task_state", state="LOST") == 1
    assert lost.value("stoker_process_state", process="p", state="WAITING") == 1  # between runs: not LOST


def test_identity_labels_only_where_the_job_key_and_label_say_them():
    assert identity({"task_id": "t", "job_key": "c/r/e/n", "label": "n.12"}, "1-2") == (
        ("task_id", "t"), ("supervisor", "1-2"), ("role", "r"), ("environment", "e"), ("job_name", "n"),
        ("task_instance", "12"))
    assert identity({"task_id": "t", "job_key": "a/b", "label": "n.x"}, "") == (("task_id", "t"),)
    m = _scraped("RUNNING", Truth("RUNNING", alive=True, ended=False), "RUNNING", {"job_key": "", "label": ""})
    assert m.samples("stoker_task_info")[0].labels == {"task_id": "t-0", "supervisor": "7-1"}  # nothing empty


def test_an_id_registered_before_its_attempt_is_in_the_checkpoint_gets_none_of_the_attempt_before():
    """`stoker run` registers its next attempt's id (t-1) a moment before that attempt's
    header is in the checkpoint, which still ends with t-0's: t-1's runs were t-0's 25, then
    1 at the next scrape (a counter that fell without a restart of what it counts). The
    inspection gives t-1 no attempt then (tests/integration/test_status_cli.py); its
    registration is no start time either."""
    restarting = Truth("RESTARTING", alive=True, ended=False)
    m = _scraped("FAILED", restarting, "RESTARTING", {"task_id": "t-1"}, own=False)
    assert m.value("stoker_task_state", task_id="t-1", state="RESTARTING") == 1
    assert m.value("stoker_task_supervisor_alive", task_id="t-1") == 1
    for name in ("stoker_process_runs_total", "stoker_task_attempt", "stoker_task_start_time_seconds"):
        assert not m.samples(name), name
    own = _scraped("FAILED", restarting, "RESTARTING")  # t-0, between its attempt and the next
    assert own.value("stoker_process_runs_total", task_id="t-0", process="p") == RUNS
    assert own.value("stoker_task_start_time_seconds", task_id="t-0") == 1.0


class _Hostile:
    """A task whose identity reads, and whose inspection raises when it is asked for: its
    first samples are made before the failure (a test input, not a fake of the product)."""

    row = {"task_id": "bad-0", "state": "RUNNING", "started": 1.0}
    supervisor = "9-9"

    @property
    def inspection(self) -> Inspection:
        raise RuntimeError("unreadable")


def test_a_task_whose_samples_raise_is_left_out_whole_and_every_other_task_is_exported():
    running = Truth("RUNNING", alive=True, ended=False)
    tasks = [_detail("RUNNING", running, "RUNNING"), _Hostile(),
             _detail("RUNNING", running, "RUNNING", {"task_id": "t-2"})]
    failed: list[tuple[object, Exception]] = []
    out = task_families(tasks, lambda d, exc: failed.append((d, exc)))  # type: ignore[arg-type]
    m = parse(render([*out, *observer_families(ObserverFigures(0.5, 2, None, None, task_errors=1))]))
    assert {s.labels["task_id"] for s in m.samples("stoker_task_info")} == {"t-0", "t-2"}
    assert not m.samples("stoker_task_state", task_id="bad-0")  # its first samples were taken back
    assert [(d, str(exc)) for d, exc in failed] == [(tasks[1], "unreadable")]
    assert m.value("stoker_process_runs_total", task_id="t-0", process="p") == RUNS
    assert m.value("stoker_task_supervisor_alive", task_id="t-2") == 1
    assert m.value("stoker_observer_task_errors_total") == 1


def test_each_task_and_process_label_set_written_once_is_the_text_written_sample_by_sample():
    """`LabelText`: a scrape wrote each of its ~15,000 samples' labels pair by pair; a task's and a
    process's are written once now, a sample's as theirs and its own pair. The same bytes, also
    for values that need escaping or replacing (a quote, a backslash, a line feed, a lone
    surrogate) and for two samples whose labels became one text (left out as before)."""
    running = Truth("RUNNING", alive=True, ended=False)
    odd = {"task_id": 't"\\\n\udcff-1', "job_key": 'c/r"/e\\/w\neb', "label": "w.1", "sandbox": "/s\udcff"}
    tasks = [_detail("RUNNING", running, "RUNNING"), _detail("RUNNING", running, "RUNNING", odd),
             _detail("RUNNING", running, "RUNNING", dict(odd, task_id='t"\\\n\ufffd-1'))]
    out = families(tasks, ObserverFigures(0.5, 3, 0, 3))
    assert all(len(f.written) == len(f.samples) for f in out[:-5])  # the tasks': written by their maker
    plain = [attrs.evolve(f, written=()) for f in out]
    assert render(out) == render(plain)
    assert len(parse(render(out)).samples("stoker_task_info")) == 2  # the third's id wrote as the second's
