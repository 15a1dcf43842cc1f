"""`executor.procs.sandboxfs` called alone on real entries: each kind in words, an entry of
the wanted kind never refused, the modes it makes files and directories with, a created file
not inherited by a child, a hard-linked file refused, a truncation made only once the file is
judged, and an unlink relative to its directory (`test_sandboxfs.py` has the planted links,
FIFOs and devices as a task leaves them)."""
from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path

import pytest

from executor.procs import sandboxfs


@pytest.fixture
def no_umask():
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def dir_fd(tmp_path: Path):
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield fd
    finally:
        os.close(fd)


def test_each_kind_of_entry_in_words(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))
        (tmp_path / "link").symlink_to("nowhere")
        (tmp_path / "file").write_text("")
        found = {name: sandboxfs.kind_of(os.lstat(tmp_path / name).st_mode)
                 for name in ("fifo", "sock", "link", "file")}
    assert found == {"fifo": "a FIFO", "sock": "a socket", "link": "a symlink", "file": "a regular file"}
    assert sandboxfs.kind_of(os.stat(tmp_path).st_mode) == "a directory"
    assert sandboxfs.kind_of(os.stat("/dev/null").st_mode) == "a character device"
    assert sandboxfs.kind_of(stat.S_IFBLK | 0o600) == "a block device"
    assert sandboxfs.kind_of(0o644) == "of an unknown kind (mode 644)"


@pytest.mark.parametrize(("name", "wanted"), [("d", "a directory"), ("f", "a regular file")])
def test_an_entry_of_the_wanted_kind_is_never_refused_whatever_the_error(tmp_path, dir_fd, name, wanted):
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("")
    assert sandboxfs._refuse_wrong_kind(OSError(errno.ELOOP, "x"), name, dir_fd, wanted) is None


def test_an_entry_of_another_kind_is_refused_naming_both(tmp_path, dir_fd):
    (tmp_path / "f").write_text("")
    with pytest.raises(sandboxfs.UnsafePath) as refused:
        sandboxfs.open_dir("f", dir_fd=dir_fd)
    assert str(refused.value) == "it is a regular file, not a directory"
    with pytest.raises(sandboxfs.UnsafePath) as created:
        sandboxfs.open_dir("f", dir_fd=dir_fd, create=True)
    assert str(created.value) == "it is a regular file, not a directory"


def test_directories_and_files_are_made_0755_and_0644(tmp_path, dir_fd, no_umask):
    for fd in (sandboxfs.open_dir("made", dir_fd=dir_fd, create=True), sandboxfs.new_dir("new", dir_fd=dir_fd),
               sandboxfs.open_regular("created", sandboxfs.LOG_FLAGS, dir_fd=dir_fd)):
        os.close(fd)
    modes = {name: stat.S_IMODE(os.stat(tmp_path / name).st_mode) for name in ("made", "new", "created")}
    assert modes == {"made": 0o755, "new": 0o755, "created": 0o644}
    os.close(sandboxfs.open_regular("own", sandboxfs.LOG_FLAGS, dir_fd=dir_fd, mode=0o600))
    assert stat.S_IMODE(os.stat(tmp_path / "own").st_mode) == 0o600


def test_a_created_or_opened_file_is_closed_on_exec(tmp_path, dir_fd):
    made = sandboxfs.open_regular("made", sandboxfs.LOG_FLAGS, dir_fd=dir_fd)
    again = sandboxfs.open_regular("made", sandboxfs.LOG_FLAGS, dir_fd=dir_fd)
    try:
        assert not os.get_inheritable(made) and not os.get_inheritable(again)
        assert os.get_blocking(made) and os.get_blocking(again)
    finally:
        os.close(made)
        os.close(again)


def test_a_file_with_another_name_elsewhere_is_refused(tmp_path, dir_fd):
    (tmp_path / "f").write_text("secret")
    os.link(tmp_path / "f", tmp_path / "outside")
    with pytest.raises(sandboxfs.UnsafePath) as refused:
        sandboxfs.open_regular("f", os.O_RDONLY, dir_fd=dir_fd)
    assert str(refused.value) == ("it is a regular file with 2 hard links (Stoker opens no file in a sandbox that "
                                  "may also be one outside it)")


def test_a_truncating_open_empties_the_file_once_judged(tmp_path, dir_fd):
    (tmp_path / "f").write_text("old text")
    os.close(sandboxfs.open_regular("f", os.O_WRONLY | os.O_TRUNC, dir_fd=dir_fd))
    assert (tmp_path / "f").read_bytes() == b""


def test_an_unlink_is_of_the_name_in_its_directory(tmp_path, dir_fd, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "f").write_text("")
    (tmp_path / "sub" / "f").write_text("")
    monkeypatch.chdir(tmp_path / "sub")  # the same name in the working directory stays
    sandboxfs.unlink_if_there(dir_fd, "f")
    sandboxfs.unlink_if_there(dir_fd, "f")  # gone: no error
    assert not (tmp_path / "f").exists() and (tmp_path / "sub" / "f").exists()


def test_what_the_task_puts_in_a_new_directory_s_place_meanwhile_is_judged(tmp_path, dir_fd, monkeypatch):
    """The name is not there, so `open_dir(create=True)` makes it; a task that puts a FIFO
    there first (the mkdir then finds it taken) has it judged by the open that follows."""
    def planted(name, mode=0o777, *, dir_fd=None):
        os.mkfifo(name, dir_fd=dir_fd)
        raise FileExistsError(errno.EEXIST, "File exists", name)

    monkeypatch.setattr(sandboxfs.os, "mkdir", planted)
    with pytest.raises(sandboxfs.UnsafePath) as refused:
        sandboxfs.open_dir("run", dir_fd=dir_fd, create=True)
    assert str(refused.value) == "it is a FIFO, not a directory"
    assert stat.S_ISFIFO(os.lstat(tmp_path / "run").st_mode)
