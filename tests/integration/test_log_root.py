"""The supervisor's `SANDBOX/.logs`, kept open between spawns (`executor.procs.spawn.LogRoot`):
what a task (or `stoker run`'s attempt archiving) does to `.logs` or `.logs/PROCESS` after
the first run must never make a later run's log directory land outside the sandbox's real
`.logs/PROCESS/RUN`; the spawn either lands there or fails with SpawnError.

Real directories, FIFOs and symlinks. The same through a supervisor with real processes:
`tests/integration/test_supervisor_logs.py` (log directories).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from executor.local.attempts import archive_logs
from executor.procs.spawn import LogDir, LogRoot, SpawnError
from tests.support.supervision import fds_on

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def sandbox(tmp_path):
    path = tmp_path / "sandbox"
    path.mkdir()
    return path


@pytest.fixture
def root(sandbox):
    logs = LogRoot(sandbox)
    yield logs
    logs.close()


@pytest.fixture
def outside(tmp_path):
    path = tmp_path / "outside"
    path.mkdir()
    return path


def made(root: LogRoot, process: str, run: int) -> Path:
    """Create run `run`'s directory; its path, after checking the fd names that directory."""
    directory: LogDir = root.run_dir(process, run)
    try:
        assert os.path.samestat(os.fstat(directory.fd), os.stat(directory.path))
        return directory.path
    finally:
        directory.close()


def everything_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_runs_after_the_first_land_in_the_real_directory_and_the_fd_is_kept(root, sandbox):
    assert made(root, "p", 0) == sandbox / ".logs" / "p" / "0"
    assert fds_on(sandbox / ".logs") == 1  # kept open between spawns
    assert made(root, "p", 1) == sandbox / ".logs" / "p" / "1"
    assert made(root, "q", 0) == sandbox / ".logs" / "q" / "0"
    assert fds_on(sandbox / ".logs") == 1
    root.close()
    assert fds_on(sandbox / ".logs") == 0
    assert everything_under(sandbox / ".logs") == ["p", "p/0", "p/1", "q", "q/0"]


@pytest.mark.parametrize("kind", ["symlink", "file", "fifo"])
def test_a_process_directory_replaced_after_the_first_run_is_refused(root, sandbox, outside, kind):
    made(root, "p", 0)
    process = sandbox / ".logs" / "p"
    shutil.rmtree(process)
    if kind == "symlink":
        process.symlink_to(outside)
    elif kind == "file":
        process.write_text("not a directory\n")
    else:
        os.mkfifo(process)
    with pytest.raises(SpawnError, match=r"would put its logs outside .*\.logs: .*/p: it is a"):
        root.run_dir("p", 1)
    assert everything_under(outside) == []


def test_a_process_directory_moved_outside_after_the_first_run_gets_nothing_more(root, sandbox, outside):
    made(root, "p", 0)
    (sandbox / ".logs" / "p").rename(outside / "p")
    assert made(root, "p", 1) == sandbox / ".logs" / "p" / "1"  # a new p in the real .logs
    assert everything_under(outside) == ["p", "p/0"]


def test_a_removed_process_directory_is_made_again(root, sandbox):
    made(root, "p", 0)
    shutil.rmtree(sandbox / ".logs" / "p")
    assert made(root, "p", 1) == sandbox / ".logs" / "p" / "1"


def test_a_removed_logs_directory_is_made_again(root, sandbox):
    made(root, "p", 0)
    shutil.rmtree(sandbox / ".logs")
    assert made(root, "p", 1) == sandbox / ".logs" / "p" / "1"
    assert everything_under(sandbox / ".logs") == ["p", "p/1"]


def test_logs_moved_outside_and_replaced_by_a_symlink_to_it_is_refused(root, sandbox, outside):
    """The open `.logs` fd now names a directory outside the sandbox, and `SANDBOX/.logs`
    leads there too: the check against what `.logs` is now refuses it."""
    made(root, "p", 0)
    (sandbox / ".logs").rename(outside / "logs")
    (sandbox / ".logs").symlink_to(outside / "logs")
    with pytest.raises(SpawnError, match=r"\.logs: it is a symlink"):
        root.run_dir("p", 1)
    with pytest.raises(SpawnError, match=r"\.logs: it is a symlink"):
        root.run_dir("new", 0)
    assert everything_under(outside) == ["logs", "logs/p", "logs/p/0"]


@pytest.mark.parametrize("kind", ["file", "fifo"])
def test_logs_moved_outside_and_replaced_by_something_else_is_refused(root, sandbox, outside, kind):
    made(root, "p", 0)
    (sandbox / ".logs").rename(outside / "logs")
    if kind == "file":
        (sandbox / ".logs").write_text("not a directory\n")
    else:
        os.mkfifo(sandbox / ".logs")
    with pytest.raises(SpawnError, match="outside"):
        root.run_dir("p", 1)
    assert everything_under(outside) == ["logs", "logs/p", "logs/p/0"]


def test_logs_moved_outside_with_nothing_in_its_place_starts_a_new_one(root, sandbox, outside):
    made(root, "p", 0)
    (sandbox / ".logs").rename(outside / "logs")
    assert made(root, "p", 1) == sandbox / ".logs" / "p" / "1"
    assert everything_under(outside) == ["logs", "logs/p", "logs/p/0"]


def test_an_archived_logs_directory_gets_nothing_more(root, sandbox):
    """`stoker run` renames `.logs` to `.logs.attempt-N` between attempts."""
    made(root, "p", 0)
    archive_logs(sandbox)
    assert made(root, "p", 1) == sandbox / ".logs" / "p" / "1"
    assert everything_under(sandbox / ".logs.attempt-0") == ["p", "p/0"]


def test_a_missing_sandbox_is_a_spawn_error_naming_the_directory(tmp_path):
    logs = LogRoot(tmp_path / "absent")
    with pytest.raises(SpawnError, match=r"cannot create the log directory .*absent/\.logs: "
                                         r"No such file or directory \(ENOENT\)"):
        logs.run_dir("p", 0)
    logs.close()


def test_a_removed_sandbox_after_the_first_run_is_a_spawn_error(tmp_path):
    sandbox = tmp_path / "gone"
    sandbox.mkdir()
    logs = LogRoot(sandbox)
    try:
        made(logs, "p", 0)
        shutil.rmtree(sandbox)
        with pytest.raises(SpawnError, match=r"cannot create the log directory .*gone/\.logs"):
            logs.run_dir("p", 1)
        assert not sandbox.exists()
    finally:
        logs.close()


@pytest.mark.parametrize("run", [0, 3])
def test_a_process_directory_there_before_the_first_spawn_is_used_or_refused(sandbox, outside, run):
    """Run 0 makes PROCESS with mkdir first, later runs open it first: either way what is
    already there is judged by the open."""
    (sandbox / ".logs" / "kept").mkdir(parents=True)
    (sandbox / ".logs" / "link").symlink_to(outside)
    os.mkfifo(sandbox / ".logs" / "fifo")
    root = LogRoot(sandbox)
    try:
        assert made(root, "kept", run) == sandbox / ".logs" / "kept" / str(run)
        for name in ("link", "fifo"):
            with pytest.raises(SpawnError, match=rf"would put its logs outside .*/{name}: it is a"):
                root.run_dir(name, run)
    finally:
        root.close()
    assert everything_under(outside) == []
