"""Opening sandbox files that a task could have replaced: real FIFOs, sockets, symlinks.

Every open here must return at once: a test that blocks is stopped by its timeout, and the
FIFO cases open a reader afterwards so a stuck thread would be released.
"""
from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from executor.procs import sandboxfs
from executor.procs.logpump import LOG_FLAGS, LogFile

pytestmark = pytest.mark.timeout(10)


@pytest.fixture
def directory(tmp_path):
    """A run directory (tmp_path/run) and its fd."""
    root = tmp_path / "run"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    yield root, fd
    os.close(fd)


def _plant(root: Path, name: str, kind: str, tmp_path: Path) -> socket.socket | None:
    path = root / name
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink to a file":
        target = tmp_path / "elsewhere"
        target.write_text("outside\n")
        path.symlink_to(target)
    elif kind == "dangling symlink":
        path.symlink_to(tmp_path / "nowhere")
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        return sock
    elif kind == "directory":
        path.mkdir()
    return None


@pytest.mark.parametrize("kind, what", [
    ("fifo", "it is a FIFO, not a regular file"),
    ("symlink to a file", "it is a symlink, not a regular file (Stoker follows no symlink"),
    ("dangling symlink", "it is a symlink, not a regular file"),
    ("socket", "it is a socket, not a regular file"),
])
@pytest.mark.parametrize("flags", [LOG_FLAGS, os.O_RDWR | os.O_CREAT | os.O_APPEND, os.O_RDONLY],
                         ids=["log", "checkpoint", "read"])
def test_open_regular_refuses_what_is_not_a_regular_file_without_blocking(directory, tmp_path, kind, what,
                                                                          flags):
    root, fd = directory
    sock = _plant(root, "entry", kind, tmp_path)
    try:
        with pytest.raises(sandboxfs.UnsafePath) as caught:
            sandboxfs.open_regular("entry", flags, dir_fd=fd)
        assert str(caught.value).startswith(what), str(caught.value)
        assert sandboxfs.describe_os_error(caught.value) == str(caught.value)
    finally:
        if sock is not None:
            sock.close()
    if kind == "symlink to a file":
        assert (tmp_path / "elsewhere").read_text() == "outside\n"


def test_a_fifo_with_a_reader_is_refused_too(directory):
    root, fd = directory
    os.mkfifo(root / "fifo")
    reader = os.open(root / "fifo", os.O_RDONLY | os.O_NONBLOCK)
    try:
        with pytest.raises(sandboxfs.UnsafePath, match="FIFO"):
            sandboxfs.open_regular("fifo", LOG_FLAGS, dir_fd=fd)
    finally:
        os.close(reader)


def _write_log(dir_fd: int, data: bytes) -> None:
    """Opens `log` as the log pump does, checks the fd is blocking and close-on-exec, writes `data`."""
    log = sandboxfs.open_regular("log", LOG_FLAGS, dir_fd=dir_fd)
    try:
        assert os.get_blocking(log) and not os.get_inheritable(log)
        os.write(log, data)
    finally:
        os.close(log)


def test_open_regular_gives_a_blocking_cloexec_fd_of_a_new_or_existing_file(directory):
    root, fd = directory
    _write_log(fd, b"a")
    assert (root / "log").read_bytes() == b"a"
    with pytest.raises(IsADirectoryError):  # a directory keeps its own errno
        (root / "dir").mkdir()
        sandboxfs.open_regular("dir", LOG_FLAGS, dir_fd=fd)
    with pytest.raises(FileNotFoundError):
        sandboxfs.open_regular("missing", os.O_RDONLY, dir_fd=fd)



def test_open_regular_appends_to_an_existing_file_and_keeps_a_callers_o_excl(directory):
    """A new file is made with O_EXCL and needs no check; an existing one takes the checked
    open; a caller's own O_EXCL still fails on an existing file."""
    root, fd = directory
    (root / "log").write_bytes(b"old\n")
    _write_log(fd, b"new\n")
    assert (root / "log").read_bytes() == b"old\nnew\n"
    with pytest.raises(FileExistsError):
        sandboxfs.open_regular("log", os.O_WRONLY | os.O_CREAT | os.O_EXCL, dir_fd=fd)


@pytest.mark.parametrize("kind", ["fifo", "symlink to a file"])
def test_new_dir_makes_a_directory_and_refuses_what_is_planted(directory, tmp_path, kind):
    root, fd = directory
    made = sandboxfs.new_dir("0", dir_fd=fd)
    os.close(made)
    again = sandboxfs.new_dir("0", dir_fd=fd)  # there already: opened
    os.close(again)
    assert (root / "0").is_dir()
    _plant(root, "1", kind, tmp_path)
    with pytest.raises(sandboxfs.UnsafePath, match=r"^it is a .*, not a directory"):
        sandboxfs.new_dir("1", dir_fd=fd)

@pytest.mark.parametrize("kind", ["fifo", "symlink to a file", "socket"])
def test_open_dir_refuses_what_is_not_a_directory(directory, tmp_path, kind):
    root, fd = directory
    sock = _plant(root, "entry", kind, tmp_path)
    try:
        with pytest.raises(sandboxfs.UnsafePath, match=r"^it is a .*, not a directory"):
            sandboxfs.open_dir("entry", dir_fd=fd, create=True)
    finally:
        if sock is not None:
            sock.close()


def test_open_dir_refuses_a_symlink_to_a_directory_but_creates_what_is_missing(directory, tmp_path):
    root, fd = directory
    (tmp_path / "outside").mkdir()
    (root / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(sandboxfs.UnsafePath, match="symlink"):
        sandboxfs.open_dir("link", dir_fd=fd, create=True)
    made = sandboxfs.open_dir("made", dir_fd=fd, create=True)
    os.close(made)
    assert (root / "made").is_dir()
    with pytest.raises(FileNotFoundError):
        sandboxfs.open_dir("absent", dir_fd=fd)


def test_a_fifo_raced_into_a_rotating_log_is_refused_not_waited_on(directory, monkeypatch):
    """The window between rotation's rename and its open of the new file: a task that wins
    the race with a FIFO must cost the log, never the pump thread."""
    root, fd = directory
    log = LogFile(fd, "stdout", root / "stdout", max_bytes=4, backups=2)
    real_replace = os.replace

    def replace_then_plant(src, dst, *, src_dir_fd=None, dst_dir_fd=None):  # type: ignore[no-untyped-def]
        real_replace(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
        if str(dst) == "stdout.1":
            os.mkfifo("stdout", dir_fd=dst_dir_fd)

    monkeypatch.setattr(os, "replace", replace_then_plant)
    errors: list[OSError] = []

    def write() -> None:
        try:
            log.write(b"12345678")
        except OSError as e:
            errors.append(e)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():  # release it before failing: open the FIFO's other end
        os.close(os.open(root / "stdout", os.O_RDONLY | os.O_NONBLOCK))
        pytest.fail("the rotating log blocked opening a FIFO")
    log.close()
    assert len(errors) == 1 and "it is a FIFO, not a regular file" in str(errors[0]), errors
    assert (root / "stdout.1").read_bytes() == b"1234"


def test_rotation_renames_inside_the_directory_it_was_opened_in(directory, tmp_path):
    root, fd = directory
    log = LogFile(fd, "stdout", root / "stdout", max_bytes=4, backups=2)
    log.write(b"aaaa")
    moved, outside = tmp_path / "moved", tmp_path / "outside"
    outside.mkdir()
    (outside / "stdout").write_text("precious")
    os.rename(root, moved)
    root.symlink_to(outside)
    log.write(b"bbbbcccc")
    log.close()
    assert sorted(p.name for p in outside.iterdir()) == ["stdout"]
    assert (outside / "stdout").read_text() == "precious"
    assert [(moved / n).read_bytes() for n in ("stdout", "stdout.1", "stdout.2")] == [b"cccc", b"bbbb", b"aaaa"]
