"""The paths a container image's task file system is walked by (`executor/mesos/imagefs.py`),
in this process on a tree of the test's own: a mount point made below the image's root
(each level made, never through a symlink, a FIFO or device there never opened), a path
opened below a root with nothing made, and the words an error is said in. The image owner
controls the tree: a symlink may lead out of it."""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from executor.mesos import imagefs

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def root(tmp_path: Path):  # type: ignore[no-untyped-def]
    """(the image's root as a path, an fd of it); the fd closed after."""
    top = tmp_path / "rootfs"
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield top, fd
    finally:
        os.close(fd)


@pytest.fixture
def no_umask():  # type: ignore[no-untyped-def]
    """The modes made as asked: this process's umask 0 meanwhile."""
    mask = os.umask(0)
    try:
        yield
    finally:
        os.umask(mask)


def _made(root_fd: int, inside: str, is_file: bool) -> tuple[str, str]:
    """`_mount_point`'s answer as (the parent's real path, the name); its fd closed."""
    fd, name = imagefs._mount_point(root_fd, inside, is_file)
    try:
        return os.readlink(f"/proc/self/fd/{fd}"), name
    finally:
        os.close(fd)


@pytest.mark.parametrize("inside", ["data/deep/dir", "/data/deep/dir/", "./data/./deep/dir"])
def test_a_directory_mount_point_is_made_with_each_level_above_it(root, no_umask, inside):
    top, fd = root
    assert _made(fd, inside, False) == (str(top / "data/deep"), "dir")
    for level in ("data", "data/deep", "data/deep/dir"):
        st = os.lstat(top / level)
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o755
    assert _made(fd, inside, False) == (str(top / "data/deep"), "dir")  # there already: taken


def test_a_file_mount_point_is_an_empty_regular_file(root, no_umask):
    top, fd = root
    assert _made(fd, "etc/resolv.conf", True) == (str(top / "etc"), "resolv.conf")
    st = os.lstat(top / "etc/resolv.conf")
    assert stat.S_ISREG(st.st_mode) and st.st_size == 0 and stat.S_IMODE(st.st_mode) == 0o644
    (top / "etc/resolv.conf").write_text("kept")
    assert _made(fd, "etc/resolv.conf", True) == (str(top / "etc"), "resolv.conf")
    assert (top / "etc/resolv.conf").read_text() == "kept"


def test_mount_points_are_made_with_their_own_modes_whatever_the_umask(root, no_umask):
    top, fd = root
    assert _made(fd, "a/X", False) == (str(top / "a"), "X")
    assert _made(fd, "a/fileX", True) == (str(top / "a"), "fileX")
    assert [stat.S_IMODE(os.lstat(top / name).st_mode) for name in ("a", "a/X", "a/fileX")] == [0o755, 0o755, 0o644]


@pytest.mark.parametrize(("inside", "said"), [
    ("a/../b", "'a/../b' has a '..' in it"),
    ("..", "'..' has a '..' in it"),
    ("", "'' names no mount point below the image's root"),
    ("/", "'/' names no mount point below the image's root"),
    ("a/.", "'a/.' names no mount point below the image's root"),
])
def test_a_mount_point_that_is_no_name_below_the_root_is_refused(root, inside, said):
    _, fd = root
    with pytest.raises(OSError) as refused:
        imagefs._mount_point(fd, inside, False)
    assert (refused.value.errno, refused.value.strerror) == (errno.EINVAL, said)


def test_a_symlink_where_the_mount_point_goes_or_above_it_is_never_followed(root, tmp_path):
    top, fd = root
    outside = tmp_path / "outside"
    outside.mkdir()
    (top / "link").symlink_to(outside)
    for inside, named in (("link", "link"), ("link/made", "link")):
        with pytest.raises(OSError) as refused:
            imagefs._mount_point(fd, inside, False)
        assert (refused.value.errno, refused.value.strerror, refused.value.filename) == (
            errno.ELOOP, os.strerror(errno.ELOOP), named)
    assert list(outside.iterdir()) == []  # nothing made out of the image
    (top / "file-link").symlink_to(outside / "f")
    with pytest.raises(OSError) as refused:
        imagefs._mount_point(fd, "file-link", True)
    assert refused.value.errno == errno.ELOOP and not (outside / "f").exists()


@pytest.mark.parametrize(("kind", "is_file", "said"), [
    ("fifo", False, "there is there, but not a directory"),
    ("fifo", True, "there is there, but not a regular file"),
    ("dir", True, "there is there, but not a regular file"),
    ("file", False, "there is there, but not a directory"),
])
def test_something_else_where_the_mount_point_goes_is_refused_unopened(root, kind, is_file, said):
    top, fd = root
    {"fifo": lambda p: os.mkfifo(p), "dir": lambda p: p.mkdir(), "file": lambda p: p.write_text("x")}[kind](top / "there")
    with pytest.raises(OSError) as refused:  # (a FIFO opened would block here for ever)
        imagefs._mount_point(fd, "there", is_file)
    assert (refused.value.errno, refused.value.strerror) == (errno.EINVAL, said)


def test_a_walk_from_a_root_that_is_a_symlink_is_refused(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "swapped").symlink_to(tmp_path / "real")
    with pytest.raises(OSError) as refused:
        imagefs._walk(tmp_path / "swapped", "a").__enter__()  # refused as it is entered
    assert refused.value.errno == errno.ELOOP and not (tmp_path / "real/a").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError) as refused_file:
        imagefs._walk(tmp_path / "file", "a").__enter__()
    assert refused_file.value.filename == str(tmp_path / "file")


def test_a_path_below_a_root_is_opened_as_a_path_with_nothing_made(root):
    top, _ = root
    (top / "usr/bin").mkdir(parents=True)
    (top / "usr/bin/tool").write_text("x")
    for inside in ("usr/bin/tool", "/usr/./bin//tool"):
        fd = imagefs._open_below(top, inside)
        try:
            assert os.readlink(f"/proc/self/fd/{fd}") == str(top / "usr/bin/tool")
            assert os.fstat(fd).st_mode and fcntl_flags(fd) & os.O_PATH
        finally:
            os.close(fd)
    with pytest.raises(FileNotFoundError):
        imagefs._open_below(top, "usr/lib/none")
    assert not (top / "usr/lib").exists()
    fd = imagefs._open_below(top, "")
    try:
        assert os.readlink(f"/proc/self/fd/{fd}") == str(top)
    finally:
        os.close(fd)


def fcntl_flags(fd: int) -> int:
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_GETFL)


@pytest.mark.parametrize("inside", ["link", "link/inner", "usr/link"])
def test_a_symlink_on_the_way_below_a_root_or_at_its_end_is_eloop(root, tmp_path, inside):
    top, _ = root
    (tmp_path / "outside/inner").mkdir(parents=True)
    (top / "usr").mkdir()
    (top / "link").symlink_to(tmp_path / "outside")
    (top / "usr/link").symlink_to("/")
    with pytest.raises(OSError) as refused:
        imagefs._open_below(top, inside)
    assert (refused.value.errno, refused.value.strerror, refused.value.filename) == (
        errno.ELOOP, os.strerror(errno.ELOOP), "link")


def test_a_root_that_is_not_a_directory_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        imagefs._open_below(tmp_path / "file", "")


def test_a_path_with_dot_dot_below_a_root_is_refused(root):
    top, _ = root
    with pytest.raises(OSError) as refused:
        imagefs._open_below(top, "usr/../etc")
    assert (refused.value.errno, refused.value.strerror) == (errno.EINVAL, "'usr/../etc' has a '..' in it")


@pytest.mark.parametrize(("exc", "said"), [
    (ValueError("no such user"), "no such user"),
    (OSError(errno.ELOOP, "Too many levels of symbolic links"),
     "a symlink is on the way (a path inside the image is never followed through one)"),
    (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
    (OSError("no errno"), "no errno"),
])
def test_an_error_is_said_in_its_own_words_a_symlink_s_in_the_image_s(exc, said):
    assert imagefs._why(exc) == said
