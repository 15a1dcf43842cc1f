"""`executor/procs/cgroupwalk.py` on real directories (a tmp dir: the walk is by directory
descriptors, whatever the file system): what it does when a callback fails or a directory
moves under it, and that it leaves no descriptor open."""
from __future__ import annotations

import contextlib
import errno
import gc
import json
import os
import resource
import subprocess
import sys
import time

import pytest

from executor.procs import cgroupwalk
from tests.support.stoker_proc import REPO


def _open_fds() -> set[str]:
    gc.collect()  # an earlier test's garbage closes its descriptors now, not between two looks
    return set(os.listdir("/proc/self/fd"))


def _at(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def test_what_visit_raises_below_the_top_ends_the_walk_and_is_raised(tmp_path):
    """Was: an OSError from `visit` on a cgroup below the top was swallowed (as if the
    cgroup had gone), the walk went on with the names of the level above looked up from
    that cgroup's descriptor, and climbed one level short."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "c").mkdir()
    before = _open_fds()

    def visit(fd: int) -> None:
        if _at(fd).endswith("/a"):
            raise OSError("visit failed")

    with pytest.raises(OSError, match="visit failed"):
        cgroupwalk.walk(str(tmp_path), visit)
    assert _open_fds() == before


def test_a_directory_moved_elsewhere_during_the_walk_stops_it_before_it_removes_outside(tmp_path):
    """cgroupfs renames a cgroup within its parent only; elsewhere a directory may move to
    another parent as it is walked. Was: the walk climbed `..` from it into its new parent
    and removed there (`outside/a`). Now it stops (ESTALE) where `..` is not where it came
    down from: only what it came down through is removed."""
    top, outside = tmp_path / "top", tmp_path / "outside"
    (top / "a" / "b").mkdir(parents=True)
    outside.mkdir()
    before = _open_fds()

    def visit(fd: int) -> None:
        if _at(fd).endswith("/b"):
            (top / "a").rename(outside / "a")

    removed: list[str] = []

    def leave(parent: int, name: str) -> None:
        os.rmdir(name, dir_fd=parent)
        removed.append(f"{_at(parent)}/{name}")

    with pytest.raises(OSError) as raised:
        cgroupwalk.walk(str(top), visit, leave)
    assert (raised.value.errno, removed) == (errno.ESTALE, [f"{outside}/a/b"])
    assert raised.value.strerror == f"{top}: a cgroup below it moved during the walk"
    assert (outside / "a").is_dir() and _open_fds() == before


def test_remove_below_removes_a_tree_bottom_up_with_two_descriptors_at_most(tmp_path):
    inner = tmp_path
    for name in ("a", ".b", "-c d"):
        inner = inner / name
        inner.mkdir()
    (tmp_path / "e").mkdir()
    before = _open_fds()
    assert cgroupwalk.remove_below(str(tmp_path)) and os.listdir(tmp_path) == []
    assert _open_fds() == before


def test_a_cgroup_gone_before_it_is_reached_is_left_out_and_the_walk_goes_on(tmp_path):
    for name in "abcd":
        (tmp_path / name).mkdir()
    order = os.listdir(tmp_path)  # as the walk lists them: it visits from the last
    visited: list[str] = []

    def visit(fd: int) -> None:
        visited.append(os.path.basename(_at(fd)))
        if len(visited) == 2:  # the first below the top: the next it would visit goes
            (tmp_path / order[-2]).rmdir()

    cgroupwalk.walk(str(tmp_path), visit)
    assert visited == [tmp_path.name, order[-1], order[-3], order[-4]]


def test_thaw_writes_to_those_frozen_by_themselves_or_unreadable_and_no_other(tmp_path):
    """As the v1 freezer shows them: `freezer.self_freezing` 0 (frozen by its parent, thaws
    with it) is left alone, 1 or unreadable is thawed; one that cannot be written is no error."""
    states = {"": "1", "a": "0", "a/b": "1", "c": None, "c/d": "0"}
    for name, self_freezing in states.items():
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / "freezer.state").write_text("FROZEN\n")
        if self_freezing is not None:
            (tmp_path / name / "freezer.self_freezing").write_text(self_freezing + "\n")
    (tmp_path / "e").mkdir()  # no files at all
    before = _open_fds()
    cgroupwalk.thaw(str(tmp_path))
    assert {name: (tmp_path / name / "freezer.state").read_text() for name in states} == {
        "": "THAWED\n", "a": "FROZEN\n", "a/b": "THAWED\n", "c": "THAWED\n", "c/d": "FROZEN\n"}
    assert os.listdir(tmp_path / "e") == [] and _open_fds() == before


def test_remove_below_is_false_when_one_cannot_be_removed_or_there_is_none(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "held").write_text("")  # as a cgroup a process is in: not removed
    (tmp_path / "c").mkdir()
    assert cgroupwalk.remove_below(str(tmp_path)) is False
    assert (tmp_path / "a" / "b" / "held").exists()
    assert cgroupwalk.remove_below(str(tmp_path / "a" / "b")) is False  # none below it
    assert cgroupwalk.remove_below(str(tmp_path / "gone")) is False


_OUT_OF_DESCRIPTORS = """
import json, os, resource, sys
from executor.procs import cgroupwalk

visited, fillers = [], []
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
try:
    while True:
        fillers.append(os.open("/dev/null", os.O_RDONLY))
except OSError:
    os.close(fillers.pop())  # one free: the walk opens its top, lists nothing below it
try:
    cgroupwalk.walk(sys.argv[1], lambda fd: visited.append(os.readlink(f"/proc/self/fd/{fd}")))
    said = None
except cgroupwalk.WalkCut as e:
    said = str(e)
print(json.dumps({"visited": visited, "said": said}))
"""


def test_a_walk_out_of_descriptors_says_so_rather_than_leave_a_subtree_out(tmp_path):
    """Was: the listing of the cgroups below one failed (EMFILE: RLIMIT_NOFILE reached) and
    was taken for none (as for a cgroup gone meanwhile): the walk ended after the top, its
    subtree left out in silence (a kill's pass never killed its members). Now `WalkCut`,
    saying which and why. In a child process, its descriptor limit lowered."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    done = subprocess.run([sys.executable, "-c", _OUT_OF_DESCRIPTORS, str(tmp_path)], capture_output=True,
                          text=True, timeout=60, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got == {"visited": [str(tmp_path)], "said": f"a cgroup 1 levels below {tmp_path}, and those below "
                                                        "it, not walked: Too many open files (EMFILE)"}, got


def test_a_walk_given_a_deadline_stops_at_the_first_step_past_it(tmp_path):
    """The kill's walk stops within its pass once its deadline has passed (was: checked only
    between passes, a pass over 1,000 levels took 2.28 s of its 2 s on a loaded host)."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    before, visited = _open_fds(), []
    with pytest.raises(cgroupwalk.WalkCut, match="stopped 1 levels down: its deadline passed"):
        cgroupwalk.walk(str(tmp_path), lambda fd: visited.append(_at(fd)), deadline=time.monotonic())
    assert visited == [str(tmp_path)] and _open_fds() == before
    cgroupwalk.walk(str(tmp_path), lambda fd: visited.append(_at(fd)), deadline=time.monotonic() + 60)
    assert visited[1:] == [str(tmp_path), str(tmp_path / "a"), str(tmp_path / "a" / "b")]


def test_thaw_and_remove_below_stop_at_their_deadline(tmp_path):
    """The kill's thaw and removal pass their deadline to the walk: past it, thaw says so
    (`WalkCut`) before it writes below the top, and remove_below removes nothing."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("", "a", "a/b"):
        (tmp_path / name / "freezer.state").write_text("FROZEN\n")
    with pytest.raises(cgroupwalk.WalkCut, match="its deadline passed"):
        cgroupwalk.thaw(str(tmp_path), deadline=time.monotonic())
    assert (tmp_path / "a" / "freezer.state").read_text() == "FROZEN\n"
    (tmp_path / "a" / "freezer.state").unlink()
    (tmp_path / "a" / "b" / "freezer.state").unlink()
    assert cgroupwalk.remove_below(str(tmp_path), deadline=time.monotonic()) is False
    assert (tmp_path / "a" / "b").is_dir()


@contextlib.contextmanager
def _descriptors_left(free: int):
    """This process with `free` descriptors left (RLIMIT_NOFILE lowered, the rest filled),
    put back on leaving."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fillers: list[int] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(int(n) for n in _open_fds()) + 16, hard))
    try:
        with contextlib.suppress(OSError):
            while True:
                fillers.append(os.open("/dev/null", os.O_RDONLY))
        for _ in range(free):
            os.close(fillers.pop())
        yield
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_out_of_descriptors_the_top_or_its_list_is_said_and_pids_says_so_when_asked_for_whole(tmp_path):
    """In this process (the test of a child's walk above is out of mutmut's sight): with no
    descriptor left the top itself is named; with one, the top opens and its list cannot be
    read. `pids` gives what it could read unless asked for the whole."""
    (tmp_path / "a").mkdir()
    emfile = "not walked: Too many open files (EMFILE)"
    with _descriptors_left(0):
        with pytest.raises(cgroupwalk.WalkCut) as top:
            cgroupwalk.walk(str(tmp_path))
        assert cgroupwalk.pids(str(tmp_path)) == []
        with pytest.raises(cgroupwalk.WalkCut):
            cgroupwalk.pids(str(tmp_path), whole=True)
    with _descriptors_left(1):  # the top open, none left to list it, read its processes, thaw it
        with pytest.raises(cgroupwalk.WalkCut) as below:
            cgroupwalk.walk(str(tmp_path))
        with pytest.raises(cgroupwalk.WalkCut) as read:
            cgroupwalk.pids(str(tmp_path), whole=True)
        with pytest.raises(cgroupwalk.WalkCut) as thaw:
            cgroupwalk.thaw(str(tmp_path))
    assert str(read.value) == "cannot read a cgroup's processes: Too many open files (EMFILE)"
    assert str(thaw.value) == f"cannot thaw a cgroup of {tmp_path}: Too many open files (EMFILE)"
    assert str(top.value) == f"{tmp_path} {emfile}"
    assert str(below.value) == f"a cgroup 1 levels below {tmp_path}, and those below it, {emfile}"
