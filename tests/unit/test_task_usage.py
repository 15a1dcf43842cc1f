"""A task's live CPU rate and RSS (`executor/observe/taskusage.live`): its running trees'
usage added up while its supervisor runs and its attempt has not ended; otherwise not
known, with the reason, never 0. Replayed views, no /proc."""
from __future__ import annotations

from pathlib import Path

import attrs

from executor.host.truth import judge
from executor.observe.model import SINCE_LAST_LOOK, SINCE_START, Usage
from executor.observe.taskusage import live, running
from executor.task.inspection import Inspection
from executor.task.replay import replay
from executor.task.usagefigures import Live

HEADER = {"kind": "header", "wall": 100.0, "task": "hello.0", "job_key": "c/r/e/hello", "task_id": "t-1",
          "sandbox": "/sb", "ports": {}, "supervisor_pid": 4000, "processes": ["a", "b"], "health": "none"}


def inspection(state: str = "RUNNING", alive: bool = True) -> Inspection:
    records = [HEADER, {"kind": "task", "wall": 100.0, "to": "STARTING", "reason": "launched"}]
    records += [{"kind": "process", "wall": 100.1, "process": p, "run": 0, "from": "WAITING", "to": "RUNNING",
                 "reason": "started", "pid": pid} for p, pid in (("a", 4001), ("b", 4002))]
    records.append({"kind": "task", "wall": 101.0, "from": "STARTING", "to": state, "reason": "r"})
    view = replay(records)
    truth = judge(view.state, alive, last_record_wall=101.0, checkpoint_mtime=None, registry_wall=None)
    return Inspection(sandbox=Path("/sb"), view=view, attempt=view.current, truth=truth)


def usage(pid: int, cpu: float | None, rss: int, basis: str = SINCE_LAST_LOOK) -> Usage:
    return Usage(pid=pid, processes=1, rss_bytes=rss, cpu_percent=cpu, cpu_basis=basis, started_wall=100.0)


def test_a_running_tasks_trees_are_added_up_in_cores():
    found = live(inspection(), {"a": usage(4001, 50.0, 1000), "b": usage(4002, 25.0, 500, SINCE_START)})
    assert (found.cpu_cores, found.rss_bytes, found.note) == (0.75, 1500, "")
    assert found.basis == f"{SINCE_START}; {SINCE_LAST_LOOK}"
    assert [(r.process, r.pid, r.supervisor) for r in running(inspection())] == [("a", 4001, 4000), ("b", 4002, 4000)]


def test_a_running_task_with_no_tree_left_uses_nothing():
    assert (live(inspection(), {}).cpu_cores, live(inspection(), {}).rss_bytes) == (0, 0)


def test_a_tree_whose_cpu_is_not_known_leaves_the_tasks_cpu_unknown_not_smaller():
    found = live(inspection(), {"a": usage(4001, 50.0, 1000), "b": usage(4002, None, 500)})
    assert found.cpu_cores is None and found.rss_bytes == 1500 and "not known" in found.note


def test_an_ended_or_lost_task_is_not_measured_and_says_why():
    ended = live(inspection("FAILED"), {})
    assert (ended.cpu_cores, ended.rss_bytes) == (None, None) and ended.note.startswith("the task ended (FAILED)")
    lost = live(inspection(alive=False), {})
    assert (lost.cpu_cores, lost.rss_bytes) == (None, None) and "the task is LOST" in lost.note
    assert running(inspection(alive=False)) == []


def test_the_held_daemons_and_orphans_trees_count_with_the_runs():
    found = live(inspection(), {"a": usage(4001, 50.0, 1000)}, [usage(4100, 25.0, 30_000), usage(4101, 0.0, 7)])
    assert (found.cpu_cores, found.rss_bytes, found.note) == (0.75, 31_007, "")
    unknown = live(inspection(), {}, [usage(4100, None, 30_000)])
    assert unknown.cpu_cores is None and unknown.rss_bytes == 30_000 and "not known" in unknown.note
    assert live(inspection("FAILED"), {}, [usage(4100, 1.0, 30_000)]).rss_bytes is None


def test_only_the_runs_that_run_are_measured():
    records = [HEADER, {"kind": "task", "wall": 100.0, "to": "STARTING", "reason": "launched"},
               {"kind": "process", "wall": 100.1, "process": "a", "run": 0, "from": "WAITING", "to": "RUNNING",
                "reason": "started", "pid": 4001},
               {"kind": "process", "wall": 100.2, "process": "a", "run": 0, "from": "RUNNING", "to": "SUCCESS",
                "reason": "exit 0", "pid": 4001},
               {"kind": "task", "wall": 101.0, "from": "STARTING", "to": "RUNNING", "reason": "r"}]
    view = replay(records)  # a ended with its pid, b has not started
    truth = judge(view.state, True, last_record_wall=101.0, checkpoint_mtime=None, registry_wall=None)
    assert running(Inspection(sandbox=Path("/sb"), view=view, attempt=view.current, truth=truth)) == []


def test_each_unknown_figure_says_why_in_these_words():
    found = inspection()
    no_attempt = Inspection(sandbox=Path("/sb"), view=found.view, attempt=None, truth=found.truth)
    between = Inspection(sandbox=Path("/sb"), view=found.view, attempt=found.attempt,
                         truth=attrs.evolve(found.truth, state="RESTARTING"))
    assert live(no_attempt, {}) == Live(None, None, note="the task recorded no attempt")
    assert live(between, {}) == Live(None, None, note="between two attempts: no process of the task runs")
    assert live(inspection(), {"a": usage(4001, None, 1000)}) == \
        Live(None, 1000, note="a process tree's CPU time is not known yet")
    ended = Inspection(sandbox=Path("/sb"), view=found.view, attempt=attrs.evolve(found.attempt, state=""),
                       truth=attrs.evolve(found.truth, ended=True, state="KILLED"))
    assert live(ended, {}).note == "the task ended (KILLED): no process of it runs"
