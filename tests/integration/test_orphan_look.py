"""The orphans a supervisor hands its watchdog as it goes idle (`Containment.look`): the
children of this process (a subreaper) that are no registered run, each by pid and start
time; not a child this process had before the supervisor started, not an orphan that
carries another task's marker, not a run. And whether a run whose top exited left one
(`Containment.has_leftovers`): of its group, or carrying its marker. A supervisor in this
process, real orphans."""
from __future__ import annotations

import gc
import os
import subprocess
from collections.abc import Iterator

import pytest

from executor.procs import proctree
from executor.procs.spawn import RunChild
from tests.support.supervision import Harness, read_pids
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def harness(tmp_path, tracker) -> Iterator[Harness]:
    """A supervisor without a cgroup, closed after the test and then collected: its OOM
    counter's file goes with it (`oomcount`'s `__del__`), here and not in a later test that
    counts this process's descriptors (`test_log_stage_steps.py`'s)."""
    h = Harness(tmp_path / "sandbox", tracker, cgroups="off")
    try:
        yield h
    finally:
        h.sup.close()
        del h
        gc.collect()


def start_of(pid: int) -> int:
    info = proctree.read_proc(pid)
    assert info is not None
    return info.start


def parent_of(pid: int) -> int | None:
    info = proctree.read_proc(pid)
    return None if info is None else info.ppid


def settled(pid: int) -> bool:
    """An orphan of this process that has exec'ed its `sleep` (before, its environment and
    its session are still the shell's that forked it)."""
    try:
        with open(f"/proc/{pid}/comm") as comm:
            return comm.read() == "sleep\n" and parent_of(pid) == os.getpid()
    except OSError:
        return False


@pytest.fixture
def older(tracker) -> Iterator[subprocess.Popen[bytes]]:
    """A child this process had before the supervisor started (ask for it before `harness`)."""
    child = subprocess.Popen(["sleep", "30"])
    tracker.add(child.pid)
    yield child
    child.kill()
    child.wait()


def test_a_look_hands_over_the_task_s_orphans_and_nothing_else(older, harness, tmp_path, tracker):
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
    wait_for(lambda: settled(ours) and settled(theirs), 5, message="both orphans this process's, asleep")
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


def left_by_a_top(tmp_path, tracker, leave: str) -> tuple[RunChild, int]:
    """A run-like top in its own session that starts `leave` in the background, writes its
    pid and exits (reaped here): its leftover, now this process's orphan, and the top as the
    supervisor knows a run (pid, marker)."""
    pid_file = tmp_path / "left"
    top = subprocess.Popen(["bash", "-c", f"{leave} & echo $! > {pid_file}"], start_new_session=True)
    top.wait()
    (left,) = read_pids(pid_file)
    tracker.add(left)
    wait_for(lambda: settled(left), 5, message="the leftover this process's, asleep")
    return RunChild(pid=top.pid, popen=None, marker="m-left", process="a", run=0), left


@pytest.mark.parametrize("leave, found", [
    ("exec setsid env STOKER_RUN_MARKER=m-left sleep 30", True),  # its marker, another group
    ("exec sleep 30", True),  # its group, no marker
    ("exec setsid env STOKER_RUN_MARKER=m-other sleep 30", False),  # neither
])
def test_a_run_s_leftover_is_one_of_its_group_or_one_that_carries_its_marker(harness, tmp_path, tracker, leave, found):
    containment = harness.sup._containment
    assert containment is not None
    child, left = left_by_a_top(tmp_path, tracker, leave)
    assert containment.has_leftovers(child) is found
    os.kill(left, 9)
    wait_for(lambda: proctree.read_proc(left) is None, 5, message="the leftover gone")
    assert containment.has_leftovers(child) is False
