"""`executor/observe/metrics.py`: the samples a task's figures, health check and runs give,
with its identity labels on each, and which tasks an answer's `Window` keeps (the families
over long checkpoints, the enums and the identity's form: test_metrics_families.py)."""
from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from executor.host.truth import Truth
from executor.observe.exposition import Labels
from executor.observe.metrics import TASK_STATES, Window, identity, task_families
from executor.observe.model import TaskDetail, Usage
from executor.task.inspection import Inspection
from executor.task.replay import replay
from executor.task.usagefigures import Figures

RUNNING = Truth("RUNNING", alive=True, ended=False)
ID: Labels = (("task_id", "t-0"), ("supervisor", "7-1"), ("role", "r"), ("environment", "e"),
              ("job_name", "web"), ("task_instance", "0"))


def _health(outcome: str, wall: float, latency: float, state: str, attempts: int) -> dict:
    return {"kind": "health", "outcome": outcome, "reason": "", "latency_secs": latency, "state": state,
            "attempts": attempts, "consecutive_failures": 2 if outcome == "failed" else 0,
            "consecutive_successes": 0 if outcome == "failed" else 1, "wall": wall}


def _records(checker: str = "none", health: tuple[dict, ...] = ()) -> list[dict]:
    """An attempt whose process `p` runs (its run 0 since wall 2.0) and whose `q` ended its
    run 0 (4.0 to 5.0), with the health records given."""
    return [{"kind": "header", "wall": 1.0, "task": "web.0", "job_key": "c/r/e/web", "task_id": "t-0",
             "sandbox": "", "ports": {}, "supervisor_pid": 7, "supervisor_start": 1, "supervisor_boot": "b",
             "processes": ["p", "q"], "health": checker},
            {"kind": "task", "wall": 1.0, "to": "RUNNING", "reason": "x"},
            {"kind": "process", "wall": 2.0, "process": "p", "run": 0, "from": "WAITING", "to": "RUNNING",
             "reason": "started", "pid": 100},
            {"kind": "process", "wall": 4.0, "process": "q", "run": 0, "from": "WAITING", "to": "RUNNING",
             "reason": "started", "pid": 101},
            {"kind": "process", "wall": 5.0, "process": "q", "run": 0, "from": "RUNNING", "to": "SUCCESS",
             "reason": "exit 0", "pid": 101, "exit_code": 0, "outcome": "SUCCESS"},
            *health]


def _detail(records: list[dict], *, task_id: str = "t-0", figures: Figures | None = None,
            usage: dict[str, Usage] | None = None, row: dict | None = None) -> TaskDetail:
    view = replay(records)
    return TaskDetail(row={"task_id": task_id, "job_key": "c/r/e/web", "label": "web.0", "state": "RUNNING",
                           "started": 1.0, **(row or {})},
                      inspection=Inspection(sandbox=Path("/s"), view=view, attempt=view.current, truth=RUNNING),
                      usage=usage or {}, definition=None, definition_problem="", status={}, figures=figures,
                      supervisor="7-1")


def _samples(*details: TaskDetail) -> dict[str, list[tuple[Labels, float]]]:
    return {f.name: list(f.samples) for f in task_families(details) if f.samples}


def _figures(unverified: str = "", disk_used: int | None = 300) -> Figures:
    return Figures(cpu_used=0.5, cpu_reserved=2.0, ram_used=100, ram_reserved=400, disk_used=disk_used,
                   disk_reserved=1000, cpu_basis="since", cpu_note="", disk_note="", disk_sampled=9.0,
                   disk_sample_secs=0.1, disk_check_secs=60.0, disk_error="", unverified=unverified)


RESERVED = {"stoker_task_cpu_reserved_cores": 2.0, "stoker_task_memory_reserved_bytes": 400,
            "stoker_task_disk_used_bytes": 300, "stoker_task_disk_reserved_bytes": 1000,
            "stoker_task_disk_sample_time_seconds": 9.0}
USED = {"stoker_task_cpu_usage_cores": 0.5, "stoker_task_memory_rss_bytes": 100}


def test_a_tasks_use_and_reservation_each_with_its_identity():
    samples = _samples(_detail(_records(), figures=_figures()))
    for name, number in {**USED, **RESERVED}.items():
        assert samples[name] == [(ID, number)], name


def test_a_reservation_that_may_be_the_tasks_own_writing_is_left_out_with_the_disk_figure():
    samples = _samples(_detail(_records(), figures=_figures(unverified="another user's usage file")))
    for name, number in USED.items():
        assert samples[name] == [(ID, number)], name
    assert not set(RESERVED) & set(samples)


def test_no_disk_sample_is_no_disk_figure_and_no_sample_time():
    samples = _samples(_detail(_records(), figures=_figures(disk_used=None)))
    assert "stoker_task_disk_used_bytes" not in samples and "stoker_task_disk_sample_time_seconds" not in samples
    assert samples["stoker_task_disk_reserved_bytes"] == [(ID, 1000)]


def test_a_running_runs_tree_and_the_start_of_each_processs_latest_run():
    """`p` runs, its tree measured (150 % of a core is 1.5 cores); its start is the tree's top
    process's (the run's record is the supervisor's fork: a moment before). `q`'s run ended:
    its recorded start, whatever the tree's reader found; `r`'s tree had no start and no CPU
    figure yet: the run's recorded start, no CPU series."""
    usage = {"p": Usage(pid=100, processes=3, rss_bytes=4096, cpu_percent=150.0, cpu_basis="since",
                        started_wall=2.5, stopped=True, cpu_secs=7.5),
             "q": Usage(pid=101, processes=1, rss_bytes=1, cpu_percent=None, cpu_basis="since", started_wall=99.0)}
    samples = _samples(_detail(_records(), usage=usage))
    p, q = (*ID, ("process", "p")), (*ID, ("process", "q"))
    assert samples["stoker_process_run_start_time_seconds"] == [(p, 2.5), (q, 4.0)]
    assert samples["stoker_process_stopped"] == [(p, 1), (q, 0)]
    assert samples["stoker_process_tree_processes"] == [(p, 3), (q, 1)]
    assert samples["stoker_process_cpu_seconds"] == [(p, 7.5), (q, 0.0)]
    assert samples["stoker_process_cpu_usage_cores"] == [(p, 1.5)]
    assert samples["stoker_process_memory_rss_bytes"] == [(p, 4096), (q, 1)]
    unstarted = {"p": Usage(pid=100, processes=1, rss_bytes=1, cpu_percent=None, cpu_basis="", started_wall=None)}
    assert _samples(_detail(_records(), usage=unstarted))["stoker_process_run_start_time_seconds"] == [
        (p, 2.0), (q, 4.0)]


HEALTH = (_health("passed", 10.0, 0.25, "RUNNING", 1), _health("failed", 20.0, 0.5, "RUNNING", 2),
          _health("failed", 30.0, 0.75, "RUNNING", 3))


def test_a_health_check_its_counts_and_its_last_check_for_each_task():
    samples = _samples(_detail(_records("http", HEALTH)), _detail(_records("http", HEALTH[:1]), task_id="t-1"))
    one = tuple((k, "t-1" if k == "task_id" else v) for k, v in ID)
    assert samples["stoker_task_health_state"] == [
        ((*ID, ("state", s)), int(s == "RUNNING")) for s in ("STARTING", "RUNNING", "FAILED")] + [
        ((*one, ("state", s)), int(s == "RUNNING")) for s in ("STARTING", "RUNNING", "FAILED")]
    assert samples["stoker_task_health_checks_total"] == [(ID, 3), (one, 1)]
    assert samples["stoker_task_health_consecutive_failures"] == [(ID, 2), (one, 0)]
    assert samples["stoker_task_health_consecutive_successes"] == [(ID, 0), (one, 1)]
    assert samples["stoker_task_health_recent_checks"][:3] == [
        ((*ID, ("outcome", "passed")), 1), ((*ID, ("outcome", "failed")), 2), ((*ID, ("outcome", "snoozed")), 0)]
    assert samples["stoker_task_health_last_check_duration_seconds"] == [(ID, 0.75), (one, 0.25)]
    assert samples["stoker_task_health_last_check_time_seconds"] == [(ID, 30.0), (one, 10.0)]


def test_a_check_not_yet_run_is_starting_with_no_last_check_and_no_check_is_no_series():
    samples = _samples(_detail(_records("http")))
    assert [(dict(labels)["state"], n) for labels, n in samples["stoker_task_health_state"]] == [
        ("STARTING", 1), ("RUNNING", 0), ("FAILED", 0)]
    assert samples["stoker_task_health_checks_total"] == [(ID, 0)]
    assert "stoker_task_health_last_check_time_seconds" not in samples
    assert not {name for name in _samples(_detail(_records())) if "health" in name}


def test_whether_the_check_still_runs_beside_its_verdict_which_is_the_last_once_the_task_ended():
    """A KILLED task's verdict stays its last (RUNNING here): the running series says it is no
    longer the check's now, as `stoker ps` marks it `was:`."""
    samples = _samples(_detail(_records("http", HEALTH[:1])))
    assert samples["stoker_task_health_check_running"] == [(ID, 1)]
    ended = _detail(_records("http", (*HEALTH[:1], {"kind": "task", "wall": 40.0, "to": "KILLED", "reason": "k"})))
    samples = _samples(ended)
    assert samples["stoker_task_health_check_running"] == [(ID, 0)]
    assert [(dict(labels)["state"], n) for labels, n in samples["stoker_task_health_state"]] == [
        ("STARTING", 0), ("RUNNING", 1), ("FAILED", 0)]
    gone = attrs.evolve(_detail(_records("http", HEALTH[:1])).inspection, truth=Truth("LOST", alive=False, ended=True))
    samples = _samples(attrs.evolve(_detail(_records("http", HEALTH[:1])), inspection=gone))
    assert samples["stoker_task_health_check_running"] == [(ID, 0)]
    assert "stoker_task_health_check_running" not in _samples(_detail(_records()))


def test_the_tasks_info_attempt_and_state_each_once():
    samples = _samples(_detail(_records(), row={"job_key": "c/r/e"}))  # no role/env/job form: no cluster
    assert samples["stoker_task_info"] == [((("task_id", "t-0"), ("supervisor", "7-1"), ("task_instance", "0"),
                                              ("job_key", "c/r/e")), 1)]
    samples = _samples(_detail(_records()))
    assert samples["stoker_task_attempt"] == [(ID, 1)]
    assert [dict(labels)["state"] for labels, _ in samples["stoker_task_state"]] == list(TASK_STATES)


@pytest.mark.parametrize("started", [None, "5", True, [1]])
def test_a_registration_time_that_is_not_a_number_is_no_start_time(started):
    assert "stoker_task_start_time_seconds" not in _samples(_detail(_records(), row={"started": started}))


def test_the_instance_is_the_labels_last_part_and_a_row_without_an_id_has_none():
    assert identity({"task_id": "t", "label": "my.job.3"}, "") == (("task_id", "t"), ("task_instance", "3"))
    assert identity({"task_id": None, "job_key": None, "label": None}, "1-2") == (("supervisor", "1-2"),)


def _inspection(alive: bool = False, since: float | None = None, view_wall: float | None = None) -> Inspection:
    view = None if view_wall is None else attrs.evolve(replay(_records()[:2]), last_wall=view_wall)
    return Inspection(sandbox=Path("/s"), view=view, attempt=None,
                      truth=Truth("RUNNING" if alive else "LOST", alive=alive, ended=not alive, since_wall=since))


@pytest.mark.parametrize("inspection, ended_wall, last", [
    (_inspection(since=300.0, view_wall=200.0), 400.0, 400.0),  # its supervisor let go then
    (_inspection(since=300.0, view_wall=200.0), None, 300.0),  # LOST: its last sign of life
    (_inspection(view_wall=200.0), None, 200.0),  # its checkpoint's last record
    (_inspection(), None, 100.0),  # its registration
])
def test_an_ended_task_is_kept_for_the_window_after_its_last_sign(inspection, ended_wall, last):
    assert Window(600.0, last + 600.0).keeps(inspection, 100.0, ended_wall)
    assert not Window(600.0, last + 600.5).keeps(inspection, 100.0, ended_wall)
    assert Window(None, last + 1e9).keeps(inspection, 100.0, ended_wall)  # no window: kept


def test_a_task_whose_supervisor_runs_is_always_kept_and_an_entry_by_the_time_it_ended():
    assert Window(0.0, 1e9).keeps(_inspection(alive=True), 1.0, None)
    assert Window(600.0, 1000.0).keeps_entry(400.0) and not Window(600.0, 1000.5).keeps_entry(400.0)
    assert Window(600.0, 1e9).keeps_entry(None) and Window(None, 1e9).keeps_entry(0.0)
