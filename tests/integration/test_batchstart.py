"""A batch of runs started together (`executor/procs/batchstart.py`): each run's log files
made while the runs before it fork on the fork thread, with real processes and a real
reaper: the results in order, a run that cannot start in its place, and either side's
failure."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from config.spec import ProcessSpec
from executor.procs import batchstart
from executor.procs.reaper import Reaper
from executor.procs.supervisor import SpawnError
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)


def children_by_thread() -> dict[int, set[int]]:
    """The children the kernel lists under each thread of this process, by thread id."""
    found = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            found[int(tid)] = {int(pid) for pid in Path(f"/proc/self/task/{tid}/children").read_text().split()}
        except FileNotFoundError:  # a thread that ended since the listing
            continue
    return found


def test_a_batch_forks_on_the_fork_thread_in_order_with_a_run_that_cannot_start_in_its_place(harness):
    os.makedirs(harness.sandbox / ".logs")
    os.mkfifo(harness.sandbox / ".logs" / "p3")  # planted by a task: p3's logs cannot go there
    runs = [(ProcessSpec(f"p{i}", f"echo I am p{i}; exec sleep 60"), 0) for i in range(6)]
    results: list[int | SpawnError] = []
    asking = threading.Thread(target=lambda: results.extend(harness.sup.spawn_many(runs)))
    asking.start()  # not the main thread: a single run would be forked on this one
    asking.join(30)
    assert not asking.is_alive()
    pids = [r for r in results if isinstance(r, int)]
    harness.tracker.add(*pids)
    assert [type(r) for r in results] == [int, int, int, SpawnError, int, int]
    assert "would put its logs outside" in str(results[3]) and "/p3: it is a FIFO" in str(results[3])
    forkers = {tid for tid, children in children_by_thread().items() if children & set(pids)}
    assert len(forkers) == 1 and forkers.isdisjoint({asking.native_id, threading.main_thread().native_id})
    assert set(pids) <= children_by_thread()[forkers.pop()]
    for i in (0, 1, 2, 4, 5):
        wait_for(lambda i=i: harness.log(f"p{i}").read_text() == f"I am p{i}\n", 10, message=f"p{i}'s line")


@pytest.fixture
def reaper():
    r = Reaper.acquire()
    try:
        yield r
    finally:
        r.release()


def test_a_failure_on_the_forking_side_forks_nothing_after_it_and_reaches_the_caller(reaper):
    forked: list[int] = []

    def fork(item: int) -> int:
        if item == 3:
            raise RuntimeError("a bug in the fork of run 3")
        forked.append(item)
        return item

    with pytest.raises(RuntimeError, match="a bug in the fork of run 3"):
        batchstart.start(reaper, list(range(6)), lambda run: run, fork)
    assert forked == [0, 1, 2]


def test_a_failure_on_the_preparing_side_reaches_the_caller_once_the_runs_before_it_are_forked(reaper):
    forked: list[int] = []

    def ready(run: int) -> int:
        if run == 3:
            raise RuntimeError("a bug in the preparation of run 3")
        return run

    with pytest.raises(RuntimeError, match="a bug in the preparation of run 3"):
        batchstart.start(reaper, list(range(6)), ready, forked.append)
    wait_for(lambda: forked == [0, 1, 2], 10, message="the runs handed over forked")


def test_a_single_run_is_made_ready_and_forked_in_place_off_the_main_thread(reaper):
    threads: list[str] = []
    results: list[int] = []

    def start() -> None:
        results.extend(batchstart.start(reaper, [7], lambda run: run,
                                        lambda item: threads.append(threading.current_thread().name) or item))

    asking = threading.Thread(target=start, name="asking")
    asking.start()
    asking.join(10)
    assert (results, threads) == ([7], ["asking"])
