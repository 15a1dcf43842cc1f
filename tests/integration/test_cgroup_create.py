"""Where the task's cgroup is made, and each reason none is (`executor/procs/cgroups.py`'s
`create`): cgroups off, one already held by this process, a setting outside every cgroup
mount, a name the watchdog's line cannot carry, a name someone else holds, a systemd unit
not delegated; what `announce` is told on the way (the watchdog's record of a directory it
may have to remove), the empty `stoker-*` cgroups an earlier crash left swept, and what a
made cgroup says of itself. Real cgroups in the v2 hierarchy this process is in (skipped
without one, or without root), each removed at the end."""
from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from executor.procs import cgroups
from executor.procs.cgroup_paths import CgroupKind, Place
from tests.integration.test_cgroup_v2 import v2_root
from tests.support import cgroups as cgroup_support

pytestmark = pytest.mark.timeout(60)


def unique(prefix: str = "stoker-test-") -> str:
    """A name of this process's (another worker of the run makes its own beside it)."""
    return f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def root() -> Iterator[Path]:
    """This process's own v2 cgroup; every directory `unique` named below it removed after
    the test (never another's: the run's workers share it), and this process's hold let go."""
    here = v2_root()
    yield here
    for name in os.listdir(here):
        if name.startswith("stoker-") and f"-{os.getpid()}-" in name:
            cgroup_support.remove(str(here / name))
    cgroups._holder = None  # (a failed test's cgroup, released with its directory)


def made(name: str, setting: str = "auto", said: list | None = None) -> cgroups.TaskCgroup | cgroups.NoCgroup:
    return cgroups.create(name, setting, (lambda d, how: said.append((d, how))) if said is not None
                          else (lambda d, how: None))


def test_cgroups_off_make_none_and_say_so(root):
    got = made(unique(), "off")
    assert got == cgroups.NoCgroup("cgroups are off (--cgroups off or STOKER_CGROUPS=off)")


def test_a_cgroup_made_is_announced_before_and_after_and_says_how_it_is_killed(root):
    name, said = unique(), []
    got = made(name, said=said)
    assert isinstance(got, cgroups.TaskCgroup), got
    try:
        assert got.directory == str(root / name) and os.path.isdir(got.directory)
        assert got.place == Place(CgroupKind.V2, str(root / name), got.place.path)
        assert got.place.path.endswith("/" + name) and got.home.directory == str(root)
        assert said == [(got.directory, ""), (got.directory, got.how)] and got.how in ("kill", "freeze")
        assert not got.entered and got.passed_over == ""
    finally:
        cgroups.discard(got)
    assert not os.path.exists(got.directory)


def test_a_second_task_in_one_process_gets_none_until_the_first_is_released(root):
    first = made(unique())
    assert isinstance(first, cgroups.TaskCgroup), first
    try:
        second = made(unique())
        assert second == cgroups.NoCgroup(f"this process already keeps another task in {first.directory} "
                                          "(a process is in one cgroup per hierarchy)")
        cgroups.release(attrs.evolve(first, place=first.place.child("other")))  # not the one held
        assert isinstance(made(unique()), cgroups.NoCgroup)
    finally:
        cgroups.discard(first)
    third = made(unique())
    assert isinstance(third, cgroups.TaskCgroup), third
    cgroups.discard(third)


def test_a_setting_outside_every_cgroup_mount_is_refused_by_name(root, tmp_path):
    got = made(unique(), str(tmp_path / "x" / ".."))
    assert got == cgroups.NoCgroup(f"STOKER_CGROUPS={tmp_path}/x/.. is not in a cgroup2 or cgroup-v1 freezer mount")


def test_a_setting_that_names_a_cgroup_makes_the_task_s_below_it(root):
    parent = root / unique()
    parent.mkdir()
    name = unique()
    got = made(name, str(parent) + "/")
    assert isinstance(got, cgroups.TaskCgroup), got
    try:
        assert got.directory == str(parent / name) and got.home.directory == str(root)
    finally:
        cgroups.discard(got)


def test_a_name_with_a_newline_is_refused_before_anything_is_made_or_announced(root):
    said: list = []
    got = made("stoker-test-a\nb", said=said)
    assert isinstance(got, cgroups.NoCgroup)
    assert f"cannot make '{root}/stoker-test-a\\nb': a newline in its path" in got.reason, got.reason
    assert said == [] and not any("\n" in n for n in os.listdir(root))


def test_a_name_someone_else_made_is_refused_and_announced_as_not_made(root):
    name, said = unique(), []
    (root / name).mkdir()
    here = Place(CgroupKind.V2, str(root), "/")
    got = cgroups._first_made(name, "auto", [here], "", lambda d, how: said.append((d, how)))
    assert got == cgroups.NoCgroup(f"cannot make {root / name}: File exists (EEXIST)")
    assert said == [(str(root / name), ""), ("", "")]
    assert os.path.isdir(root / name)  # not ours: left as it was


def test_auto_tries_the_next_hierarchy_and_says_what_it_tried_first(root):
    name = unique()
    (root / name).mkdir()
    got = made(name)
    if isinstance(got, cgroups.NoCgroup):
        pytest.skip(f"no second hierarchy here: {got.reason}")
    try:
        assert got.place.kind is CgroupKind.V1_FREEZER and got.how == "freezer"
        assert got.passed_over == f"cannot make {root / name}: File exists (EEXIST)"
        assert got.describe().endswith(f"(freezer FROZEN, then SIGKILL; tried first: {got.passed_over})")
    finally:
        cgroups.discard(got)


def test_only_old_empty_stoker_cgroups_are_swept_as_one_is_made(root):
    old, young, other = root / unique("stoker-old-"), root / unique("stoker-old-"), root / unique("kept-old-")
    for directory in (old, young, other):
        directory.mkdir()
    stale = time.time() - cgroups.STALE_SECS - 5
    os.utime(old, (stale, stale))
    os.utime(other, (stale, stale))
    os.utime(young, (time.time() - cgroups.STALE_SECS + 30,) * 2)
    try:
        got = made(unique())
        assert isinstance(got, cgroups.TaskCgroup), got
        cgroups.discard(got)
        assert not old.exists() and young.exists() and other.exists()
    finally:
        os.rmdir(other)


def describe(how: str, passed_over: str = "") -> str:
    place = Place(CgroupKind.V2, "/sys/fs/cgroup/a/stoker-x", "/a/stoker-x")
    return cgroups.TaskCgroup(place=place, home=place, how=how, passed_over=passed_over).describe()


def test_a_cgroup_describes_its_kind_place_way_of_killing_and_what_was_tried_first():
    assert describe("kill") == "cgroup2 cgroup /sys/fs/cgroup/a/stoker-x (cgroup.kill)"
    assert describe("freeze") == "cgroup2 cgroup /sys/fs/cgroup/a/stoker-x (cgroup.freeze, then SIGKILL)"
    assert describe("freezer", "no room") == \
        "cgroup2 cgroup /sys/fs/cgroup/a/stoker-x (freezer FROZEN, then SIGKILL; tried first: no room)"


@pytest.fixture
def unit(root, monkeypatch) -> Path:
    """A v2 cgroup named like a systemd service's, and this process as the one systemd started
    for it (SYSTEMD_EXEC_PID, its own pid)."""
    directory = root / f"{unique()}.service"
    directory.mkdir()
    monkeypatch.setenv("SYSTEMD_EXEC_PID", str(os.getpid()))
    return directory


def undelegated(directory: Path, kind: CgroupKind = CgroupKind.V2) -> str | None:
    return cgroups._undelegated_service(Place(kind, str(directory), "/" + directory.name))


def test_a_service_s_own_cgroup_is_systemd_s_unless_delegated(unit, monkeypatch):
    assert undelegated(unit) == unit.name
    assert undelegated(unit, CgroupKind.V1_FREEZER) is None  # systemd does not manage the v1 freezer
    monkeypatch.setenv("SYSTEMD_EXEC_PID", str(os.getppid()))  # another's unit's variables, inherited
    assert undelegated(unit) is None
    monkeypatch.delenv("SYSTEMD_EXEC_PID")
    assert undelegated(unit) is None


@pytest.mark.parametrize("attribute", ["user.delegate", "trusted.delegate"])
def test_either_delegate_mark_makes_a_service_s_cgroup_stoker_s(unit, attribute):
    os.setxattr(unit, attribute, b"0")
    assert undelegated(unit) == unit.name
    os.setxattr(unit, attribute, b"1\n")
    assert undelegated(unit) is None


def test_a_cgroup_not_named_for_a_service_is_never_systemd_s(root, monkeypatch):
    monkeypatch.setenv("SYSTEMD_EXEC_PID", str(os.getpid()))
    for name in (f"{unique()}.scope", f"{unique()}.service.d"):
        (root / name).mkdir()
        assert undelegated(root / name) is None
        os.rmdir(root / name)


def first_made(name: str, setting: str, homes: list[Place]) -> cgroups.TaskCgroup | cgroups.NoCgroup:
    return cgroups._first_made(name, setting, homes, Path("/proc/self/mountinfo").read_text(), lambda d, how: None)


def test_auto_passes_over_an_undelegated_service_and_says_why(root, unit):
    service = Place(CgroupKind.V2, str(unit), "/" + unit.name)
    why = f"{unit} is systemd's, for {unit.name}, which is not delegated (Delegate=yes in the unit gives Stoker a cgroup there)"
    assert first_made(unique(), "auto", [service]) == cgroups.NoCgroup(why)
    assert os.listdir(unit) == [n for n in os.listdir(unit) if not n.startswith("stoker-")]
    here = Place(CgroupKind.V1_FREEZER, str(root), "/")  # (a second hierarchy, as auto lists them)
    got = first_made(unique(), "auto", [service, attrs.evolve(here, kind=CgroupKind.V2)])
    assert isinstance(got, cgroups.TaskCgroup), got
    try:
        assert got.passed_over == why and os.path.dirname(got.directory) == str(root)
    finally:
        cgroups._rmdir_quietly(got.directory)


def test_no_cgroup_is_made_where_this_process_has_none_to_come_back_to(root):
    assert first_made(unique(), "auto", []) == cgroups.NoCgroup(
        "no cgroup2 or cgroup-v1 freezer hierarchy shows this process's cgroup")
    assert first_made(unique(), str(root), []) == cgroups.NoCgroup(
        "this process is in no cgroup2 cgroup to come back to")


def test_every_reason_a_hierarchy_was_passed_over_is_said(root, monkeypatch):
    monkeypatch.setenv("SYSTEMD_EXEC_PID", str(os.getpid()))
    units = [root / f"{unique()}.service" for _ in range(2)]
    for unit in units:
        unit.mkdir()
    services = [Place(CgroupKind.V2, str(unit), "/" + unit.name) for unit in units]
    whys = [f"{unit} is systemd's, for {unit.name}, which is not delegated (Delegate=yes in the unit gives "
            "Stoker a cgroup there)" for unit in units]
    assert first_made(unique(), "auto", services) == cgroups.NoCgroup("; ".join(whys))
    got = first_made(unique(), "auto", [*services, Place(CgroupKind.V2, str(root), "/")])
    assert isinstance(got, cgroups.TaskCgroup), got
    try:
        assert got.passed_over == "; ".join(whys)
    finally:
        cgroups._rmdir_quietly(got.directory)


def test_a_service_s_cgroup_that_is_gone_is_still_its_name(root, monkeypatch):
    monkeypatch.setenv("SYSTEMD_EXEC_PID", str(os.getpid()))
    assert undelegated(root / "gone.service") == "gone.service"  # nothing to stat, no mark to read


def test_a_cgroup_with_no_file_to_kill_it_by_is_removed_and_announced_as_not_made(root):
    name, said = unique(), []
    place = Place(CgroupKind.V1_FREEZER, str(root / name), "/" + name)  # a v2 directory: no freezer.state
    got = cgroups._make(place, place, lambda d, how: said.append((d, how)))
    assert got == f"{root / name} has none of freezer.state (kernel too old)"
    assert said == [(str(root / name), ""), ("", "")] and not (root / name).exists()


def test_no_cgroup_when_this_process_s_own_cannot_be_read(root, monkeypatch):
    def unreadable(directory: str, name: str, dir_fd: int | None = None) -> str:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(cgroups, "read", unreadable)
    assert made(unique()) == cgroups.NoCgroup("cannot read /proc/self/cgroup or mountinfo: Permission denied (EACCES)")


def test_a_cgroup_file_that_is_not_utf8_is_read_with_a_replacement(tmp_path):
    (tmp_path / "cgroup.events").write_bytes(b"populated \xff\n")
    assert cgroups.read(str(tmp_path), "cgroup.events") == "populated \ufffd\n"
