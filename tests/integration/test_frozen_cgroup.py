"""`frozen_cgroup`, which `stoker kill`/`restart`/`status` and the observer use to say that a
supervisor is frozen, against real cgroups frozen by the test (v2 `cgroup.freeze`, the v1
freezer), the process frozen being a real `sleep`.

A freeze of a cgroup above the process's (`systemctl freeze` of the unit around it, `docker
pause` of a container it runs nested in) freezes it too: the cgroup named is the one whose
own freeze holds it, the one to thaw, not the process's own (writing 0 to that one thaws
nothing)."""
from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.host.frozen import frozen_cgroup
from executor.procs.cgroup_paths import CgroupKind, own_places
from tests.support import cgroups as cgroup_support
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)

FREEZE = {CgroupKind.V2: ("cgroup.freeze", "1", "0"), CgroupKind.V1_FREEZER: ("freezer.state", "FROZEN", "THAWED")}


def _place(kind: CgroupKind) -> str | None:
    """The directory of this process's cgroup of `kind` (None: none shows it)."""
    places = own_places(Path("/proc/self/cgroup").read_text(), Path("/proc/self/mountinfo").read_text())
    return next((p.directory for p in places if p.kind is kind), None)


@pytest.fixture(params=[CgroupKind.V2, CgroupKind.V1_FREEZER], ids=["v2", "v1"])
def nested(request) -> Iterator[tuple[CgroupKind, Path, Path, int]]:
    """A test cgroup `outer` of the kind, a cgroup `inner` below it, and a `sleep` in
    `inner`; all killed and removed after (thawed first)."""
    kind = request.param
    above = _place(kind)
    if above is None:
        pytest.skip(f"no {kind.value} hierarchy shows this process's cgroup")
    outer = Path(above) / f"stoker-test-{uuid.uuid4().hex[:8]}"
    try:
        outer.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot make a cgroup in {above}: {exc}")
    sleeper = None
    try:
        if not (outer / FREEZE[kind][0]).exists():
            pytest.skip(f"{outer} cannot be frozen")
        (outer / "inner").mkdir()
        sleeper = subprocess.Popen(["sleep", "1000"])
        (outer / "inner" / "cgroup.procs").write_text(str(sleeper.pid))
        yield kind, outer, outer / "inner", sleeper.pid
    finally:
        for directory in (outer, outer / "inner"):
            if (directory / FREEZE[kind][0]).exists():
                (directory / FREEZE[kind][0]).write_text(FREEZE[kind][2])
        if sleeper is not None:
            sleeper.kill()
            sleeper.wait(10)
        cgroup_support.remove(str(outer))


def _freeze(kind: CgroupKind, directory: Path, pid: int) -> None:
    name, frozen, _ = FREEZE[kind]
    (directory / name).write_text(frozen)
    wait_for(lambda: frozen_cgroup(pid) is not None, 10, message=f"{pid} is seen frozen")


def test_a_process_frozen_by_its_own_cgroup_is_said_frozen_by_it(nested):
    kind, _, inner, pid = nested
    assert frozen_cgroup(pid) is None
    _freeze(kind, inner, pid)
    assert frozen_cgroup(pid) == str(inner)


def test_a_process_frozen_by_a_cgroup_above_its_own_is_said_frozen_by_that_one(nested):
    kind, outer, _, pid = nested
    _freeze(kind, outer, pid)
    assert frozen_cgroup(pid) == str(outer)  # was: its own cgroup, which no thaw of its own thaws
    (outer / FREEZE[kind][0]).write_text(FREEZE[kind][2])
    wait_for(lambda: frozen_cgroup(pid) is None, 10, message=f"{pid} is seen thawed")
