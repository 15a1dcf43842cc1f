"""`executor/procs/logstage.py` step by step on a real `.logs` (`spawn.LogRoot`), without a
supervisor: the wanted runs staged past one that fails or is staged already, a staged run
taken (its directory's path, its two descriptors, both closed after the fork), one the task
swapped for a symlink or a directory of its own refused (theirs left in place), and a
staging that fails half way (a FIFO planted as its stdout) leaving no directory and no
descriptor behind."""
from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.procs.logstage import LogStage
from executor.procs.spawn import LogRoot

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def root(tmp_path) -> Iterator[LogRoot]:
    gc.collect()  # an earlier test's garbage (a supervisor, a socket in a cycle) closes its descriptors now, not during this one
    before = set(os.listdir("/proc/self/fd"))
    (tmp_path / ".logs").mkdir()
    for process in ("a", "b"):
        (tmp_path / ".logs" / process).mkdir()
    logs = LogRoot(tmp_path)
    yield logs
    logs.close()
    assert set(os.listdir("/proc/self/fd")) == before  # every descriptor closed


def _names(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def test_the_wanted_runs_are_staged_past_one_that_cannot_be(root, tmp_path):
    stage = LogStage(root)
    os.mkfifo(tmp_path / ".logs/a/.next-2")  # no directory can be made there
    stage.want("b", 5)
    stage.want("a", 2)  # the last wish is tried first
    stage.stage_wanted(limit=2)
    assert _names(tmp_path / ".logs/b") == [".next-5"]
    stage.want("a", 3)
    stage.want("b", 5)  # (tried first) staged already: passed over, the next wish still made
    stage.stage_wanted(limit=2)
    assert _names(tmp_path / ".logs/a") == [".next-2", ".next-3"]
    stage.close()
    assert _names(tmp_path / ".logs/a") == [".next-2"] and _names(tmp_path / ".logs/b") == []


def test_a_staged_run_taken_is_its_directory_and_both_descriptors(root, tmp_path):
    stage = LogStage(root)
    stage.want("a", 2)
    stage.stage_wanted()
    taken = stage.take("a", 2)
    assert taken is not None and stage.take("a", 2) is None  # taken once
    directory, stdio = taken
    assert directory.path == tmp_path / ".logs/a/2" and _names(tmp_path / ".logs/a") == ["2"]
    assert os.path.samestat(os.fstat(directory.fd), os.stat(tmp_path / ".logs/a/2"))
    assert stdio.stdout is not None and stdio.stderr is not None
    assert stdio.close_after_fork == [stdio.stdout, stdio.stderr]
    os.write(stdio.stdout, b"out\n")
    os.write(stdio.stderr, b"err\n")
    assert (tmp_path / ".logs/a/2/stdout").read_text() == "out\n"
    assert (tmp_path / ".logs/a/2/stderr").read_text() == "err\n"
    for fd in stdio.close_after_fork:
        os.close(fd)
    directory.close()
    assert stage.take("b", 9) is None


@pytest.mark.parametrize("swap", ["symlink", "directory"])
def test_a_staged_directory_the_task_swapped_is_refused_and_theirs_left(root, tmp_path, swap):
    stage = LogStage(root)
    stage.want("a", 2)
    stage.stage_wanted()
    staged, moved = tmp_path / ".logs/a/.next-2", tmp_path / "moved"
    os.rename(staged, moved)
    if swap == "symlink":
        staged.symlink_to(moved)  # the staged directory itself, through a link
    else:
        staged.mkdir()
        (staged / "theirs").write_text("x")
    assert stage.take("a", 2) is None
    placed = tmp_path / ".logs/a/2"
    assert placed.is_symlink() if swap == "symlink" else (placed / "theirs").exists()
    assert _names(moved) == []  # the staged files were removed, through their directory's descriptor


@pytest.mark.parametrize("planted", ["stdout", "stderr"])
def test_a_staging_that_fails_half_way_leaves_nothing(root, tmp_path, planted):
    stage = LogStage(root)
    (tmp_path / ".logs/a/.next-2").mkdir()  # left by a supervisor killed -9: reused
    os.mkfifo(tmp_path / ".logs/a/.next-2" / planted)
    own_stdout = os.fstat(1)
    stage.want("a", 2)
    stage.stage_wanted()
    assert stage.take("a", 2) is None
    assert _names(tmp_path / ".logs/a") == []
    assert os.path.samestat(os.fstat(1), own_stdout)  # no descriptor but the staging's was closed
