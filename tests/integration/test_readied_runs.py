"""A run readied ahead and never started (`executor.procs.sandboxfs.readied`, which the next
attempt's archive asks through `executor.task.wiring`): an empty stdout
marked with the sticky bit beside an empty, unmarked stderr. And what the next attempt's
archive of `.logs` removes for them, and keeps. Real files in a real directory."""
from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from executor.local.attempts import archive_logs
from executor.procs.sandboxfs import readied

MARK = stat.S_ISVTX


def _run(process: Path, run: int, out: str = "", err: str = "", out_mode: int = 0o644 | MARK,
         err_mode: int = 0o644) -> Path:
    """Run `run`'s directory with its two files, as `runlogs` makes them (by default: readied)."""
    path = process / str(run)
    path.mkdir(parents=True)
    for name, text, mode in (("stdout", out, out_mode), ("stderr", err, err_mode)):
        (path / name).write_text(text)
        os.chmod(path / name, mode)
    return path


def _symlinked_stdout(process: Path) -> None:
    """Run 0's stdout a symlink to a readied stdout elsewhere: not looked through."""
    _run(process, 0)
    (process / "elsewhere").write_text("")
    os.chmod(process / "elsewhere", 0o644 | MARK)
    (process / "0" / "stdout").unlink()
    (process / "0" / "stdout").symlink_to(process / "elsewhere")


CASES: list[tuple[str, Callable[[Path], object], bool]] = [
    ("readied", lambda p: _run(p, 0), True),
    ("it wrote to stdout", lambda p: _run(p, 0, out="x"), False),
    ("it wrote to stderr", lambda p: _run(p, 0, err="x"), False),
    ("neither file marked (a run that wrote nothing)", lambda p: _run(p, 0, out_mode=0o644), False),
    ("both marked (chmod -R 1777)", lambda p: _run(p, 0, err_mode=0o644 | MARK), False),
    ("no stderr", lambda p: (_run(p, 0), (p / "0" / "stderr").unlink()), False),
    ("its stdout a symlink", _symlinked_stdout, False),
]


@pytest.mark.parametrize("name, made, is_readied", CASES, ids=[c[0] for c in CASES])
def test_a_run_is_readied_only_when_its_stdout_alone_is_marked_and_both_are_empty_files(
        tmp_path, name, made, is_readied):
    made(tmp_path)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        said = readied(0, fd)
    finally:
        os.close(fd)
    assert said is is_readied


def _listing(top: Path) -> list[str]:
    return sorted(str(p.relative_to(top)) for p in top.rglob("*"))


def test_an_attempt_of_readied_runs_alone_keeps_no_logs_and_says_nothing(tmp_path, caplog):
    _run(tmp_path / ".logs" / "web", 0)
    _run(tmp_path / ".logs" / "db", 0)
    with caplog.at_level(logging.WARNING):
        archive_logs(tmp_path)
    assert os.listdir(tmp_path) == [] and caplog.records == []


def test_readied_runs_are_removed_from_an_attempt_kept_with_all_else_it_holds(tmp_path, caplog):
    """Each process whose runs were readied alone goes; one that ran keeps its runs; an empty
    process directory and a file the task put there are the task's: kept."""
    logs = tmp_path / ".logs"
    for i in range(8):  # readied ones made first: listed after the others on tmpfs, before on others
        _run(logs / f"readied{i}", 0)
    for i in range(8):
        _run(logs / f"ran{i}", 0, out="hello")
        _run(logs / f"ran{i}", 1)  # its next run, readied
    (logs / "idle").mkdir()
    (logs / "notes").write_text("the task's")
    with caplog.at_level(logging.WARNING):
        archive_logs(tmp_path)
    assert caplog.records == [] and os.listdir(tmp_path) == [".logs.attempt-0"]
    kept = tmp_path / ".logs.attempt-0"
    assert _listing(kept) == sorted(["idle", "notes", *(f"ran{i}" for i in range(8)),
                                     *(f"ran{i}/0{s}" for i in range(8) for s in ("", "/stdout", "/stderr"))])


def test_an_empty_logs_directory_is_an_attempt_kept(tmp_path):
    (tmp_path / ".logs").mkdir()
    archive_logs(tmp_path)
    assert os.listdir(tmp_path) == [".logs.attempt-0"]


@pytest.mark.parametrize("logs", ["a file", "a symlink"])
def test_a_logs_that_is_no_directory_is_left_alone_without_a_word(tmp_path, caplog, logs):
    if logs == "a file":
        (tmp_path / ".logs").write_text("")
    else:
        (tmp_path / "elsewhere").mkdir()
        (tmp_path / ".logs").symlink_to(tmp_path / "elsewhere")
    with caplog.at_level(logging.WARNING):
        archive_logs(tmp_path)
    assert caplog.records == [] and sorted(os.listdir(tmp_path)) == [".logs", *(["elsewhere"] if logs != "a file" else [])]


@pytest.mark.parametrize("free", [0, 1], ids=["the sandbox not opened", "its .logs not opened"])
def test_logs_that_cannot_be_kept_apart_are_said_so_with_their_path_and_the_error(tmp_path, caplog, free):
    """With `free` descriptors left: the sandbox's open, or then the open of its `.logs`, fails."""
    import resource

    _run(tmp_path / ".logs" / "web", 0, out="hello")
    probe = os.open("/dev/null", os.O_RDONLY)  # the lowest free descriptor
    os.close(probe)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with caplog.at_level(logging.WARNING):
        resource.setrlimit(resource.RLIMIT_NOFILE, (probe + free, hard))
        try:
            archive_logs(tmp_path)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert [r.getMessage() for r in caplog.records] == [
        f'logs_not_archived path={tmp_path / ".logs"} error="[Errno 24] Too many open files'
        + (f": \'{tmp_path}\'" if free == 0 else ": '.logs'")
        + '" reason="the earlier attempt\'s logs could not be kept apart"']
    assert sorted(os.listdir(tmp_path)) == [".logs"]
