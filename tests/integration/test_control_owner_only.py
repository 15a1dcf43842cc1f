"""The control socket made 0600 in this process (`control._owner_only`): through an O_PATH
descriptor of its name, or by its name with no descriptor to spare; refused when the name
is no socket. And `.stoker` made or narrowed to 0700 (`sandbox.open_stoker_dir`). The race
with a symlink swapped in is test_control_bind_planted.py's."""
from __future__ import annotations

import contextlib
import errno
import os
import resource
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.host import control, sandbox
from tests.support.limits import descriptors, opened_since


@pytest.fixture
def stoker(tmp_path: Path):  # type: ignore[no-untyped-def]
    """SANDBOX/.stoker made (0700), a descriptor of it; closed after."""
    fd = sandbox.open_stoker_dir(tmp_path, create=True)
    yield tmp_path / ".stoker", fd
    os.close(fd)


def _bound(directory: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(directory / control.CONTROL_SOCKET))
    os.chmod(directory / control.CONTROL_SOCKET, 0o777)  # whatever the umask gave it
    return sock


def test_the_socket_just_bound_is_made_0600_and_its_stat_returned(stoker) -> None:
    path, fd = stoker
    with _bound(path):
        st = control._owner_only(fd)
        assert stat.S_IMODE((path / control.CONTROL_SOCKET).stat().st_mode) == 0o600
        assert (st.st_dev, st.st_ino) == (os.stat(path / control.CONTROL_SOCKET).st_dev,
                                          os.stat(path / control.CONTROL_SOCKET).st_ino)
        assert stat.S_ISSOCK(st.st_mode)


@pytest.mark.parametrize("kind", ["symlink", "file"])
def test_a_name_that_is_no_socket_is_refused_and_left_as_it_is(stoker, tmp_path: Path, kind: str) -> None:
    path, fd = stoker
    target = tmp_path / "outside"
    target.write_text("not the supervisor's\n")
    target.chmod(0o644)
    name = path / control.CONTROL_SOCKET
    if kind == "symlink":
        name.symlink_to(target)
    else:
        name.write_text("a file\n")
        name.chmod(0o644)
    with pytest.raises(OSError, match=r"^\[Errno 40\] control.sock is no longer the socket just bound$") as caught:
        control._owner_only(fd)
    assert caught.value.errno == errno.ELOOP
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert stat.S_IMODE(name.lstat().st_mode) == (0o777 if kind == "symlink" else 0o644)



@contextlib.contextmanager
def _no_descriptor_to_spare(really: bool = True) -> Iterator[None]:
    """RLIMIT_NOFILE at the lowest free descriptor for the block (`really`): the next
    descriptor is refused (EMFILE); the limit put back after it, whatever happened."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowest = os.dup(0)
    os.close(lowest)
    if really:
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

def test_with_no_descriptor_to_spare_the_socket_is_made_0600_by_its_name(stoker) -> None:
    path, fd = stoker
    with _bound(path):
        with _no_descriptor_to_spare():
            st = control._owner_only(fd)
        assert stat.S_IMODE((path / control.CONTROL_SOCKET).stat().st_mode) == 0o600
        assert stat.S_ISSOCK(st.st_mode) and st.st_ino == os.stat(path / control.CONTROL_SOCKET).st_ino


def test_with_no_descriptor_to_spare_a_name_that_is_no_socket_is_refused(stoker, tmp_path: Path) -> None:
    path, fd = stoker
    target = tmp_path / "outside"
    target.write_text("not the supervisor's\n")
    (path / control.CONTROL_SOCKET).write_text("a file\n")
    with _no_descriptor_to_spare(), pytest.raises(OSError, match="no longer the socket just bound"):
        control._owner_only(fd)


def test_an_existing_stoker_of_this_user_is_narrowed_to_0700_and_a_new_one_made_so(tmp_path: Path) -> None:
    (tmp_path / "old" / ".stoker").mkdir(parents=True)
    (tmp_path / "old" / ".stoker").chmod(0o755)
    (tmp_path / "new").mkdir()
    for name in ("old", "new"):
        fd = sandbox.open_stoker_dir(tmp_path / name, create=True)
        try:
            assert stat.S_IMODE(os.fstat(fd).st_mode) == 0o700
            assert os.path.samestat(os.fstat(fd), os.stat(tmp_path / name / ".stoker"))
        finally:
            os.close(fd)


def test_without_create_a_stoker_is_opened_as_it_is(tmp_path: Path) -> None:
    (tmp_path / ".stoker").mkdir()
    (tmp_path / ".stoker").chmod(0o755)
    fd = sandbox.open_stoker_dir(tmp_path)
    os.close(fd)
    assert stat.S_IMODE((tmp_path / ".stoker").stat().st_mode) == 0o755


def test_a_stoker_is_opened_in_the_sandbox_descriptor_given_not_by_the_path(tmp_path: Path) -> None:
    (tmp_path / "opened" / ".stoker").mkdir(parents=True)
    (tmp_path / "named").mkdir()
    given = os.open(tmp_path / "opened", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = sandbox.open_stoker_dir(tmp_path / "named", sandbox_fd=given)
        assert os.path.samestat(os.fstat(fd), os.stat(tmp_path / "opened" / ".stoker"))
        os.close(fd)
        os.fstat(given)  # still the caller's: a copy of it was used and closed
    finally:
        os.close(given)


def test_a_stoker_that_is_not_the_one_pinned_is_refused_with_its_path_and_no_descriptor_left(tmp_path: Path) -> None:
    from executor.procs.sandboxfs import UnsafePath

    (tmp_path / ".stoker").mkdir()
    st = os.stat(tmp_path / ".stoker")
    fd = sandbox.open_stoker_dir(tmp_path, pinned=f"{st.st_dev}:{st.st_ino}")  # (`sandboxfs.dir_id`'s form)
    os.close(fd)
    before = descriptors()
    with pytest.raises(UnsafePath, match=rf"^{tmp_path}/\.stoker is not the directory its supervisor made"):
        sandbox.open_stoker_dir(tmp_path, pinned="0:0")
    assert opened_since(before) == {}


@pytest.mark.parametrize("spare", ["a descriptor", "no descriptor"])
def test_a_symlink_to_another_socket_is_refused(stoker, tmp_path: Path, spare: str) -> None:
    """Not followed to the socket it leads to (by the O_PATH descriptor: not made 0600 either;
    by the name, with no descriptor to spare, the stat after the chmod is the link's own)."""
    path, fd = stoker
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.bind(str(tmp_path / "other.sock"))
        os.chmod(tmp_path / "other.sock", 0o755)
        (path / control.CONTROL_SOCKET).symlink_to(tmp_path / "other.sock")
        with _no_descriptor_to_spare(spare == "no descriptor"), \
                pytest.raises(OSError, match="no longer the socket just bound"):
            control._owner_only(fd)
        if spare == "a descriptor":
            assert stat.S_IMODE((tmp_path / "other.sock").stat().st_mode) == 0o755
