"""The sandbox's own files as `executor/host/sandbox.py` reads them, on real directories: the
temporaries a writer killed between its write and its rename left in `.stoker` (found by
their names alone, bounded for a reader, removed by the lock's holder), when the checkpoint
was last written, the end of a run's log reaching into its rotated part (never through a
FIFO or a symlink), where a `.stoker` a supervisor holds open went, and the absolute path a
sandbox is recorded by."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.host import sandbox as sandboxes
from executor.procs import sandboxfs

pytestmark = pytest.mark.timeout(30)

TEMPS = [".task.json.0123abcd.tmp", ".held.json.ffffffff.tmp", ".usage.json.00000000.tmp"]
NOT_TEMPS = [
    ".task.json.0123abc.tmp",  # 7 hex digits
    ".task.json.0123abcde.tmp",  # 9
    ".task.json.0123ABCD.tmp",  # not the writer's lower-case hex
    ".task.json.0123abcg.tmp",
    ".task.json.0123abcX.tmp",
    "task.json.0123abcd.tmp",  # no leading dot
    ".checkpoint.jsonl.0123abcd.tmp",  # not a file written aside and renamed over
    ".task.json.0123abcd.tmpx",
    ".task.json.0123abcd",
    ".task.json0123abcd.tmp",
    "task.json",
]


@pytest.fixture
def stoker(tmp_path) -> Iterator[int]:
    (tmp_path / ".stoker").mkdir(mode=0o700)
    fd = os.open(tmp_path / ".stoker", os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield fd
    finally:
        os.close(fd)


def test_the_temporaries_are_the_regular_files_a_writer_names_so(tmp_path, stoker):
    for name in TEMPS + NOT_TEMPS:
        (tmp_path / ".stoker" / name).write_bytes(b"x")
    (tmp_path / ".stoker/.held.json.0000aaaa.tmp").mkdir()  # a directory of that name: not one
    (tmp_path / ".stoker/.usage.json.0000bbbb.tmp").symlink_to(tmp_path / ".stoker/task.json")  # nor a link
    assert sandboxes.temporaries(stoker) == sorted(TEMPS)
    every = len(TEMPS) + len(NOT_TEMPS) + 2
    assert sandboxes.temporaries(stoker, names_at_most=every) == sorted(TEMPS)
    assert sandboxes.temporaries(stoker, names_at_most=every - 1) is None  # more names than a reader reads
    assert sandboxes.remove_stale_temps(stoker) == sorted(TEMPS)
    assert sorted(os.listdir(tmp_path / ".stoker")) == sorted(
        [*NOT_TEMPS, ".held.json.0000aaaa.tmp", ".usage.json.0000bbbb.tmp"])
    assert sandboxes.remove_stale_temps(stoker) == []


def test_a_temporary_that_cannot_be_removed_is_left_and_not_named(tmp_path, stoker, monkeypatch):
    for name in TEMPS:
        (tmp_path / ".stoker" / name).write_bytes(b"x")
    unlink = os.unlink

    def refusing(name, *, dir_fd=None):
        if name == TEMPS[0]:
            raise PermissionError(13, "Permission denied", name)
        unlink(name, dir_fd=dir_fd)

    monkeypatch.setattr(os, "unlink", refusing)
    assert sandboxes.remove_stale_temps(stoker) == sorted(TEMPS[1:])
    assert os.listdir(tmp_path / ".stoker") == [TEMPS[0]]


def test_the_checkpoint_s_last_write_is_its_regular_file_s_in_the_stoker_dir_pinned(tmp_path, stoker):
    assert sandboxes.checkpoint_mtime(tmp_path) is None  # no checkpoint yet
    assert sandboxes.checkpoint_mtime(tmp_path / "no-such") is None
    checkpoint = tmp_path / ".stoker/checkpoint.jsonl"
    checkpoint.write_bytes(b"{}\n")
    os.utime(checkpoint, (1000.0, 1234.5))
    pinned = sandboxfs.dir_id(stoker)
    assert sandboxes.checkpoint_mtime(tmp_path) == 1234.5
    assert sandboxes.checkpoint_mtime(tmp_path, pinned) == 1234.5
    assert sandboxes.checkpoint_mtime(tmp_path, "1:2") is None  # another `.stoker` than the one pinned
    checkpoint.unlink()
    checkpoint.symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").write_bytes(b"")
    assert sandboxes.checkpoint_mtime(tmp_path) is None  # a link is no checkpoint's
    checkpoint.unlink()
    checkpoint.mkdir()
    assert sandboxes.checkpoint_mtime(tmp_path) is None


def _logs(sandbox: Path) -> Path:
    run = sandbox / ".logs/web/3"
    run.mkdir(parents=True)
    return run


def test_a_log_s_end_is_its_last_bytes_and_its_size(tmp_path):
    run = _logs(tmp_path)
    (run / "stdout").write_bytes(b"0123456789")
    assert sandboxes.log_end(tmp_path, "web", 3, "stdout", 4) == (b"6789", 10)
    assert sandboxes.log_end(tmp_path, "web", 3, "stdout", 10) == (b"0123456789", 10)
    assert sandboxes.log_end(tmp_path, "web", 3, "stdout", 100) == (b"0123456789", 10)  # no rotated part
    assert sandboxes.log_end(tmp_path, "web", 3, "stderr", 100) is None
    assert sandboxes.log_end(tmp_path, "web", 4, "stdout", 100) is None
    assert sandboxes.log_end(tmp_path, "db", 3, "stdout", 100) is None


def test_a_log_rotated_a_moment_ago_is_read_into_its_rotated_part(tmp_path):
    run = _logs(tmp_path)
    (run / "stdout").write_bytes(b"new")
    (run / "stdout.1").write_bytes(b"abcdefgh")
    assert sandboxes.log_end(tmp_path, "web", 3, "stdout", 6) == (b"fghnew", 11)  # the size both hold
    assert sandboxes.log_end(tmp_path, "web", 3, "stdout", 100) == (b"abcdefghnew", 11)
    assert sandboxes.log_end(tmp_path, "web", 3, "stdout", 3) == (b"new", 3)  # enough in the file itself
    assert sandboxes.log_end(tmp_path, "web", 3, "stdout", 2) == (b"ew", 3)


def test_a_log_that_is_a_fifo_or_reached_through_a_link_is_not_read(tmp_path):
    run = _logs(tmp_path)
    os.mkfifo(run / "stdout")  # an open would wait for a writer for ever
    assert sandboxes.log_end(tmp_path, "web", 3, "stdout", 100) is None
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside/stderr").write_bytes(b"secret")
    (run / "stderr").symlink_to(tmp_path / "outside/stderr")
    assert sandboxes.log_end(tmp_path, "web", 3, "stderr", 100) is None
    (tmp_path / ".logs/db").symlink_to(tmp_path / "outside")
    assert sandboxes.log_end(tmp_path, "db", 3, "stderr", 100) is None
    (tmp_path / ".logs/web/4").symlink_to(tmp_path / "outside")
    assert sandboxes.log_end(tmp_path, "web", 4, "stderr", 100) is None
    assert sandboxes.log_end(tmp_path, "../outside", 3, "stderr", 100) is None


def test_a_stoker_dir_held_open_is_there_until_renamed_or_removed(tmp_path, stoker):
    assert sandboxes.moved_to(tmp_path, stoker) is None
    os.rename(tmp_path / ".stoker", tmp_path / ".stoker.moved")
    assert sandboxes.moved_to(tmp_path, stoker) == str(tmp_path / ".stoker.moved")
    (tmp_path / ".stoker").mkdir()  # another one in its place
    assert sandboxes.moved_to(tmp_path, stoker) == str(tmp_path / ".stoker.moved")
    os.rmdir(tmp_path / ".stoker")
    (tmp_path / ".stoker").symlink_to(tmp_path / ".stoker.moved")  # planted where it was: not it
    assert sandboxes.moved_to(tmp_path, stoker) == str(tmp_path / ".stoker.moved")
    os.unlink(tmp_path / ".stoker")
    os.rmdir(tmp_path / ".stoker.moved")
    assert sandboxes.moved_to(tmp_path, stoker) == f"{tmp_path}/.stoker.moved (deleted)"


def test_a_stoker_dir_gone_where_the_kernel_cannot_say(tmp_path, stoker, monkeypatch):
    os.rename(tmp_path / ".stoker", tmp_path / ".stoker.moved")

    def no_proc(path, *args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", path)

    monkeypatch.setattr(os, "readlink", no_proc)  # no /proc mounted
    assert sandboxes.moved_to(tmp_path, stoker) == "a name it cannot tell"


def test_a_sandbox_is_recorded_by_its_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert sandboxes.sandbox_path("sb") == tmp_path / "sb"
    assert sandboxes.sandbox_path("./a/../sb") == tmp_path / "sb"
    assert sandboxes.sandbox_path(tmp_path / "sb") == tmp_path / "sb"
