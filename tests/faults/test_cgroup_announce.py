"""The task cgroup named to the watchdog before it is made (`WatchdogKeeper.announce`,
`cgroups.create`): a watchdog is only ever left knowing a cgroup this process made.

Real watchdogs (`/bin/sh`) let go as at the supervisor's death (their pipe closed), real
cgroup2 cgroups with a real `sleep` in them: "another task's" cgroup, which the one being
made must never take down.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from executor.procs import cgroups
from executor.procs.cgroup_paths import CgroupKind, own_places
from executor.procs.reaper import Reaper
from executor.procs.watchdog import WatchdogKeeper
from tests.support import proc_scan
from tests.support.cgroups import CgroupTracker, unavailable
from tests.support.users import needs_root
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60), needs_root]


def _v2_home() -> str:
    places = own_places(Path("/proc/self/cgroup").read_text(), Path("/proc/self/mountinfo").read_text())
    home = next((p.directory for p in places if p.kind is CgroupKind.V2), None)
    if home is None or unavailable(home) is not None:
        pytest.skip(f"no task cgroup2 cgroup here: {home and unavailable(home)}")
    return home


@contextlib.contextmanager
def sleeper_in(directory: str) -> Iterator[bytes]:
    """A `sleep` in the cgroup `directory`: the entry of its environment it alone carries
    (whoever reaps it, a pid reused since is never taken for it), killed at the end."""
    entry = f"STOKER_TESTS_SLEEPER={os.urandom(8).hex()}"
    try:
        name, _, value = entry.partition("=")
        sleeper = subprocess.Popen(["sleep", "1000"], start_new_session=True, env={name: value})
        Path(directory, "cgroup.procs").write_text(str(sleeper.pid))
        yield entry.encode()
    finally:
        proc_scan.kill_carrying(entry)


@contextlib.contextmanager
def others_cgroup(directory: str) -> Iterator[bytes]:
    """A cgroup at `directory` that is not this task's, with a `sleep` in it (`sleeper_in`)."""
    groups = CgroupTracker()
    groups.add(directory)
    try:
        os.mkdir(directory)
        with sleeper_in(directory) as entry:
            yield entry
    finally:
        groups.cleanup()


@contextlib.contextmanager
def keeper() -> Iterator[tuple[WatchdogKeeper, Callable[[], None]]]:
    """A started watchdog keeper (nothing made yet), and what lets it go as at the
    supervisor's death (its pipe closed) and waits for it; done at the end too."""
    reaper = Reaper.acquire()
    keep = [True]
    dog = WatchdogKeeper(reaper=reaper, marker=os.urandom(16).hex(), label="announce.0",
                         cgroup=lambda: ("", "", ""), keep=lambda: keep[0])

    def let_go() -> None:
        keep[0] = False
        dog.let_go()
        dog.wait_gone(15)

    try:
        dog.start()
        assert dog.pid is not None
        yield dog, let_go
    finally:
        let_go()
        reaper.release()


def _restarted(dog: WatchdogKeeper) -> None:
    first = dog.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: dog.pid not in (None, first), 10, message="a new watchdog")


def test_a_watchdog_told_a_cgroup_someone_else_made_first_leaves_it_and_its_process():
    """Was: the name was told, the mkdir failed (EEXIST: not ours), the task ran without a
    cgroup, and at the supervisor's death its watchdog killed every process of that cgroup
    and removed it (also a watchdog restarted meanwhile: it was told again)."""
    name = f"stoker-{os.urandom(8).hex()}"
    home = _v2_home()
    with others_cgroup(os.path.join(home, name)) as sleeper:
        with keeper() as (dog, let_go):
            made = cgroups.create(name, home, dog.announce)
            assert isinstance(made, cgroups.NoCgroup), made
            _restarted(dog)
        assert proc_scan.pids_carrying(sleeper), "the watchdog killed a process of a cgroup it did not make"
        assert os.path.isdir(os.path.join(home, name))


def test_a_cgroups_setting_with_a_newline_never_names_its_parent_to_the_watchdog():
    """Was: STOKER_CGROUPS=DIR with a newline at its end (a line read from a file) named
    `DIR` itself to the watchdog (its line ended there); the mkdir failed (no such directory)
    and at the supervisor's death the watchdog killed every process of DIR, the delegated
    cgroup other tasks' are made in, and removed it."""
    parent = os.path.join(_v2_home(), f"stoker-test-{os.urandom(4).hex()}")
    with others_cgroup(parent) as sleeper:
        with keeper() as (dog, let_go):
            made = cgroups.create(f"stoker-{os.urandom(8).hex()}", parent + "\n", dog.announce)
            assert isinstance(made, cgroups.NoCgroup), made
        assert proc_scan.pids_carrying(sleeper), "the watchdog killed a process of the parent cgroup"
        assert os.path.isdir(parent)


def test_a_cgroups_setting_with_a_newline_is_named_as_every_message_names_a_path():
    """The reason `stoker status` shows writes a byte that is not UTF-8 as `\\xff`. Was:
    Python's repr, `\\udcff`."""
    home = _v2_home()
    made = cgroups.create(f"stoker-{os.urandom(8).hex()}", os.path.join(home, "x" + os.fsdecode(b"\xff") + "\ny"))
    assert isinstance(made, cgroups.NoCgroup), made
    assert made.reason.startswith(f"cannot make '{home}/x\\xff\\ny/stoker-"), made.reason
    assert made.reason.endswith("': a newline in its path")


def test_a_watchdog_told_of_a_cgroup_about_to_be_made_never_kills_what_is_there():
    """The supervisor killed after the name was told, before its mkdir failed (EEXIST):
    nothing of the task can be in the cgroup yet, so the watchdog only tries to remove it,
    as it removes an empty one the supervisor made (tests/faults/test_cgroup_removal.py)."""
    directory = os.path.join(_v2_home(), f"stoker-{os.urandom(8).hex()}")
    with others_cgroup(directory) as sleeper:
        with keeper() as (dog, let_go):
            dog.announce(directory, "")
        assert proc_scan.pids_carrying(sleeper), "the watchdog killed a process of a cgroup it did not make"
        assert os.path.isdir(directory)


@pytest.mark.parametrize("spaced", [False, True], ids=["plain", "spaces-in-its-path"])
def test_a_watchdog_restarted_mid_task_kills_the_cgroup_it_was_told_of(spaced):
    """The cgroup made and named (the keeper's own arguments say none): a watchdog started
    again meanwhile is told it, and how to kill it, and does at the supervisor's death;
    also below a STOKER_CGROUPS=DIR with spaces in its name (` cgroup kill /a b /c`)."""
    home, groups = _v2_home(), CgroupTracker()
    made: cgroups.TaskCgroup | cgroups.NoCgroup | None = None
    parent = os.path.join(home, f"stoker-test {os.urandom(4).hex()} x") if spaced else home
    try:
        if spaced:
            groups.add(parent)
            os.mkdir(parent)
        with keeper() as (dog, let_go):
            made = cgroups.create(f"stoker-{os.urandom(8).hex()}", parent, dog.announce)
            assert isinstance(made, cgroups.TaskCgroup), made
            groups.add(made.directory)
            with sleeper_in(made.directory) as sleeper:
                _restarted(dog)
                let_go()
                wait_for(lambda: not proc_scan.pids_carrying(sleeper), 10, message="the task's process killed")
        wait_for(lambda: not os.path.isdir(made.directory), 10, message="the cgroup removed")
    finally:
        groups.cleanup()  # (the parent with those below it)
        if isinstance(made, cgroups.TaskCgroup):
            cgroups.release(made)
