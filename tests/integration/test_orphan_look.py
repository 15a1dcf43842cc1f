"""The orphans a supervisor hands its watchdog as it goes idle (`Containment.look`): the
children of this process (a subreaper) that are no registered run, each by pid and start
time; not a child this process had before the supervisor started, not an orphan that
carries another task's marker, not a run. A supervisor in this process, real orphans."""
from __future__ import annotations

import os
import subprocess

import pytest

from executor.procs import proctree
from tests.support.supervision import Harness, read_pids
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)


def start_of(pid: int) -> int:
    info = proctree.read_proc(pid)
    assert info is not None
    return info.start


def parent_of(pid: int) -> int | None:
    info = proctree.read_proc(pid)
    return None if info is None else info.ppid


def test_a_look_hands_over_the_task_s_orphans_and_nothing_else(tmp_path, tracker):
    older = subprocess.Popen(["sleep", "30"])  # this process's child before the supervisor
    tracker.add(older.pid)
    harness = Harness(tmp_path / "sandbox", tracker, cgroups="off")
    try:
        handed: list[dict[int, int]] = []
        containment = harness.sup._containment
        assert containment is not None
        containment.hand_over_to(lambda held: handed.append(dict(held)))
        pids = tmp_path / "orphans"
        top = harness.spawn("a", f"(sleep 30 & echo $! >> {pids}); "
                                 f"(STOKER_TASK_MARKER=another sleep 30 & echo $! >> {pids}); exec sleep 30")
        wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 2, 5, message="two orphans")
        ours, theirs = read_pids(pids)
        tracker.add(ours, theirs)
        wait_for(lambda: all(parent_of(p) == os.getpid() for p in (ours, theirs)), 5,
                 message="both orphans this process's")
        containment.look()
        assert handed[-1] == {ours: start_of(ours)}
        assert top not in handed[-1] and older.pid not in handed[-1] and theirs not in handed[-1]
        seen = len(handed)
        containment.look()  # nothing changed: nothing handed again
        assert len(handed) == seen
        os.kill(ours, 9)
        wait_for(lambda: proctree.read_proc(ours) is None, 5, message="the orphan reaped")
        containment.orphan_reaped()
        containment.look()
        assert handed[-1] == {}
    finally:
        harness.sup.close()
        older.kill()
        older.wait()
