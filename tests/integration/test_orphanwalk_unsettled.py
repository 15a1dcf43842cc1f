"""`executor/procs/orphanwalk.py` when it does not settle: every re-read of the orphans'
list finds new processes (a fork-hopper forking faster than the walk reads); and the
children of this process its re-reads leave out."""
from __future__ import annotations

import logging
import os
import subprocess
import threading

import pytest

from executor.procs import orphanwalk, pidsignal, proctree
from executor.procs.supervisor import Supervisor
from tests.support.stoker_proc import kill_leftovers
from tests.support.waiting import readline_within, wait_for

pytestmark = pytest.mark.timeout(60)


def test_a_walk_whose_every_re_read_finds_new_orphans_says_so(tmp_path, monkeypatch, caplog):
    """Was: a walk whose 16 re-reads of the orphans' list all found new processes (a hopper
    forking faster than it reads) ended as one that settled, in silence. Here each orphan
    the walk visits leaves the next one (no fork loop: one `sh` a visit, 17 at most)."""
    sup = Supervisor(sandbox=tmp_path, task_label="walk.0", env={"PATH": os.environ["PATH"]},
                     post=lambda event: None, cgroups="off")
    pids: set[int] = set()
    monkeypatch.setattr(orphanwalk, "_unsettled", [0], raising=False)  # its first time

    def orphan() -> int:
        sh = subprocess.Popen(["sh", "-c", "sleep 1000 >/dev/null & echo $!"], stdout=subprocess.PIPE, text=True)
        with sh:
            pid = int(readline_within(sh, 5))
            pids.add(pid)
        wait_for(lambda: (pidsignal.read_stat(pid) or (0,))[0] == os.getpid(), 5, message="re-parented here")
        return pid

    def leaves_another(info: proctree.ProcInfo) -> bool:
        if info.pid in pids and len(pids) <= orphanwalk.ROUNDS + 1:
            orphan()
        return False
    try:
        sup.start()  # this process a subreaper
        first = orphan()  # the walk's root, as the caller's list would give it
        with caplog.at_level(logging.WARNING):
            procs, roots, _ = orphanwalk.walk(os.getpid(), [first], frozenset, leaves_another, label="walk.0")
    finally:
        kill_leftovers(pids)  # reaped by the supervisor's reaper, then closed
        sup.close()
    assert len(roots) >= orphanwalk.ROUNDS, roots  # one new each re-read
    said = [r.getMessage() for r in caplog.records if r.name == "executor.procs.orphanwalk"]
    assert len(said) == 1 and said[0].startswith("orphan_walk_unsettled task=walk.0 times=1 "), said
    assert "each of its 16 re-reads of the orphans' list found new processes" in said[0], said
    assert f"the walk reads; {len(roots)} roots walked)" in said[0], said


def test_an_unsettled_walk_is_said_the_1st_10th_and_100th_time_in_whole(monkeypatch, caplog):
    monkeypatch.setattr(orphanwalk, "_unsettled", [0], raising=False)
    with caplog.at_level(logging.WARNING):
        for _ in range(100):
            orphanwalk._said_unsettled("t.0", 17)
    said = [r.getMessage() for r in caplog.records if r.name == "executor.procs.orphanwalk"]
    assert [line.split()[2] for line in said] == ["times=1", "times=10", "times=100"], said
    assert said[0] == (
        "orphan_walk_unsettled task=t.0 times=1 reason=\"each of its 16 re-reads of the orphans' list found new "
        "processes (a fork-hopper forking faster than the walk reads; 17 roots walked)\" "
        "consequence=\"a process forked after the last read is left to the next walk\"")


def test_a_re_read_walks_neither_a_child_it_was_told_to_skip_nor_a_root_it_pruned():
    """Both are on this process's list at each re-read: the skipped one (the caller's: a
    foreign child) is never walked, a root `prune` left out is not walked again as new."""
    children = [subprocess.Popen(["sleep", "1000"]) for _ in range(2)]
    root, skipped = (child.pid for child in children)
    # what the worker's earlier tests left on its list counts as registered: not new roots
    # (three of them were walked as new once in CI)
    before = frozenset(proctree.children(os.getpid(), leader_only=True)) - {root, skipped}
    try:
        for pruned in (False, True):
            procs, roots, _ = orphanwalk.walk(os.getpid(), [root], lambda: before,
                                              lambda info, p=pruned: p and info.pid == root,
                                              skip=frozenset({skipped}))
            assert roots == [root] and skipped not in procs and (root in procs) is not pruned, (procs, roots)
    finally:
        for child in children:
            child.kill()
            child.wait(5)


def test_a_re_read_reads_the_main_thread_s_list_only():
    """Where the kernel puts the orphans: a child another thread of this process forked
    (and lives on) is on that thread's list, the caller's to read, not the re-reads'."""
    root = subprocess.Popen(["sleep", "1000"])
    forked, done = [], threading.Event()

    def fork_and_live() -> None:
        forked.append(subprocess.Popen(["sleep", "1000"]))
        done.wait(30)
    thread = threading.Thread(target=fork_and_live, daemon=True)
    thread.start()
    try:
        wait_for(lambda: forked, 5, message="the other thread's child")
        # what the worker's earlier tests left on its list counts as registered: not new roots
        before = frozenset(proctree.children(os.getpid(), leader_only=True)) - {root.pid}
        procs, roots, _ = orphanwalk.walk(os.getpid(), [root.pid], lambda: before, lambda info: False)
        assert roots == [root.pid] and forked[0].pid not in procs, (procs, roots)
    finally:
        done.set()
        thread.join(10)
        for child in (root, *forked):
            child.kill()
            child.wait(5)
