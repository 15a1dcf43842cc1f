"""A process's run log directories bounded (`executor/procs/runprune.py`), in a sandbox of
the test's own: each run's directory KEEP_RUNS before the one starting removed when the
owner is next idle, never run 0; a process whose log directory cannot be had safely (the
task put a symlink in its place) costs its own removals only, not the next process's."""
from __future__ import annotations

import os
from pathlib import Path

from executor.procs.runprune import KEEP_RUNS, RunPrune
from executor.procs.spawn import LogRoot


def runs(sandbox: Path, process: str) -> list[int]:
    return sorted(int(n) for n in os.listdir(sandbox / ".logs" / process))


def made(sandbox: Path, process: str, count: int) -> None:
    for run in range(count):
        (sandbox / ".logs" / process / str(run)).mkdir(parents=True)


def test_the_run_keep_runs_before_the_one_starting_goes_when_idle_never_the_first(tmp_path):
    made(tmp_path, "a", KEEP_RUNS + 2)
    root = LogRoot(tmp_path)
    prune = RunPrune(root)
    for run in range(KEEP_RUNS + 2):
        prune.started("a", run)
    assert runs(tmp_path, "a") == list(range(KEEP_RUNS + 2))  # not before the owner is idle
    prune.prune_due()
    assert runs(tmp_path, "a") == [0, *range(2, KEEP_RUNS + 2)]
    prune.prune_due()  # nothing due twice
    assert runs(tmp_path, "a") == [0, *range(2, KEEP_RUNS + 2)]
    root.close()


def test_a_process_whose_log_directory_is_a_symlink_costs_no_other_process_its_removals(tmp_path):
    made(tmp_path, "b", KEEP_RUNS + 2)
    elsewhere = tmp_path / "elsewhere"
    made(elsewhere, "a", KEEP_RUNS + 2)
    (tmp_path / ".logs" / "a").symlink_to(elsewhere / ".logs" / "a")
    root = LogRoot(tmp_path)
    prune = RunPrune(root)
    for process in ("a", "b"):
        prune.started(process, KEEP_RUNS + 1)
    prune.prune_due()
    assert runs(elsewhere, "a") == list(range(KEEP_RUNS + 2))  # never followed
    assert runs(tmp_path, "b") == [0, *range(2, KEEP_RUNS + 2)]
    root.close()
