"""Who is in the task's cgroup (`executor/procs/cgroups.py`): a running process taken in (an
early start's run, forked before the supervisor entered), and not when its pid is no longer
the child it was listed as; whether a process is in the cgroup or one below it, never in a
sibling whose name only begins the same; the member list read, and this process's way in
and back home. Real v2 cgroups below this process's own, real processes, each ended and
removed at the end."""
from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.procs import cgroups
from executor.procs.cgroup_paths import CgroupKind, Place
from tests.integration.test_cgroup_v2 import v2_root
from tests.support import cgroups as cgroup_support
from tests.support.children import sleeping_as

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def made() -> Iterator[cgroups.TaskCgroup]:
    """A task cgroup below this process's v2 cgroup, not entered; removed (its members
    killed) and released at the end."""
    here = v2_root()
    name = f"stoker-test-{uuid.uuid4().hex[:8]}"
    got = cgroups._make(Place(CgroupKind.V2, str(here / name), f"{_path_of_self()}/{name}"),
                        Place(CgroupKind.V2, str(here), _path_of_self()), lambda d, how: None)
    assert isinstance(got, cgroups.TaskCgroup), got
    yield got
    cgroup_support.remove(got.directory)


def _path_of_self() -> str:
    return cgroups._cgroup_of(os.getpid(), CgroupKind.V2) or "/"


def test_a_running_child_is_taken_in_and_held(made, sleeper):
    assert made.holds(sleeper.pid) is False
    assert made.take_in(sleeper.pid, parent=os.getpid()) is True
    assert made.holds(sleeper.pid) is True and cgroups.read_pids(made.directory) == [sleeper.pid]
    assert made.holds(os.getpid()) is False


def test_a_batch_of_moves_goes_through_the_open_list(made, sleeper):
    fd = made.open_procs()
    try:
        assert made.take_in(sleeper.pid, procs_fd=fd) is True
    finally:
        os.close(fd)
    assert cgroups.read_pids(made.directory) == [sleeper.pid]


def test_a_pid_that_is_no_longer_the_listed_parent_s_child_is_not_taken_in(made, sleeper):
    assert made.take_in(sleeper.pid, parent=os.getppid()) is None  # its parent is another now
    assert cgroups.read_pids(made.directory) == []
    sleeper.kill()
    sleeper.wait(10)
    assert made.take_in(sleeper.pid, parent=os.getpid()) is False  # gone: its pid may be anyone's
    assert made.take_in(sleeper.pid) is False  # (no parent to ask: the move itself finds it gone)


def test_a_zombie_has_no_parent_to_be_listed_under(sleeper):
    assert cgroups._parent_of(sleeper.pid) == os.getpid()
    sleeper.kill()
    os.waitid(os.P_PID, sleeper.pid, os.WEXITED | os.WNOWAIT)  # dead, not reaped: a zombie
    assert cgroups._parent_of(sleeper.pid) is None
    sleeper.wait(10)
    assert cgroups._parent_of(sleeper.pid) is None


def test_a_process_whose_name_has_a_parenthesis_and_spaces_is_read_by_its_last_one(tmp_path):
    with sleeping_as(tmp_path, "a) b c") as pid:
        assert cgroups._parent_of(pid) == os.getpid()


def test_a_process_below_the_task_s_cgroup_is_held_and_one_in_a_look_alike_sibling_is_not(made, sleeper):
    below = Path(made.directory) / "run"
    below.mkdir()
    sibling = Place(made.place.kind, made.directory + "x", made.place.path + "x")
    os.mkdir(sibling.directory)
    try:
        (below / "cgroup.procs").write_text(str(sleeper.pid))
        assert made.holds(sleeper.pid) is True
        (Path(sibling.directory) / "cgroup.procs").write_text(str(sleeper.pid))
        assert made.holds(sleeper.pid) is False
        rooted = cgroups.TaskCgroup(place=Place(made.place.kind, made.directory, made.place.path + "/"),
                                    home=made.home, how=made.how)
        (below / "cgroup.procs").write_text(str(sleeper.pid))
        assert rooted.holds(sleeper.pid) is True  # a path given with its slash: the same rule
    finally:
        sleeper.kill()
        sleeper.wait(10)
        cgroup_support.remove(sibling.directory)


def test_a_gone_process_is_neither_held_nor_not(made, sleeper):
    sleeper.kill()
    sleeper.wait(10)
    assert made.holds(sleeper.pid) is None


def test_the_member_list_of_a_gone_or_unreadable_cgroup_is_empty_and_scarcity_is_an_error(made, tmp_path, monkeypatch):
    assert cgroups.read_pids(str(tmp_path / "gone")) == []
    (tmp_path / "cgroup.procs").write_text("12\nnot a pid\n")
    assert cgroups.read_pids(str(tmp_path)) == []
    (tmp_path / "cgroup.procs").write_text("12\n34\n")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert cgroups.read_pids("", dir_fd=fd) == [12, 34]
    finally:
        os.close(fd)

    def scarce(*args, **kwargs):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(cgroups.os, "open", scarce)
    with pytest.raises(OSError) as raised:
        cgroups.read_pids(made.directory)
    assert raised.value.errno == errno.EMFILE


def test_a_file_bigger_than_one_read_is_read_whole(tmp_path):
    text = "".join(f"{n}\n" for n in range(30_000))  # ~170 KB: three reads
    (tmp_path / "cgroup.procs").write_text(text)
    assert cgroups.read(str(tmp_path), "cgroup.procs") == text
    assert cgroups.read_pids(str(tmp_path)) == list(range(30_000))


def test_this_process_goes_in_and_back_home(made):
    made.enter()
    try:
        assert made.entered is True and made.holds(os.getpid()) is True
        assert made.kill_and_remove(1) == f"the supervising process is still in {made.directory}; not killing it"
    finally:
        made.leave()
    assert made.entered is False and made.holds(os.getpid()) is False
    assert cgroups._cgroup_of(os.getpid(), CgroupKind.V2) == made.home.path


def test_a_discarded_cgroup_is_removed_and_let_go(made):
    cgroups._holder = made.directory
    try:
        cgroups.discard(made)
        assert not os.path.exists(made.directory) and cgroups._holder is None
    finally:
        cgroups._holder = None
    cgroups.discard(made)  # twice: nothing left to remove, nothing raised
