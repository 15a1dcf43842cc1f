"""`is_stranger` (`executor/procs/strangers.py`): which orphans an init `stoker run` adopted
are not the task's. With a cgroup, those the cgroup does not hold (this process's own
cgroup read from /proc); without one, those whose environment is read and carries no task
marker; never a registered run or a member of its process group."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from executor.procs.cgroup_paths import own_places
from executor.procs.cgroups import TaskCgroup
from executor.procs.proctree import ProcInfo
from executor.procs.spawn import TASK_MARKER
from executor.procs.strangers import is_stranger

MARKED = f"{TASK_MARKER}=ab12".encode()


def _info(environ: bytes = b"PATH=/bin", *, pid: int = 700, pgrp: int = 700, hidden: bool = False) -> ProcInfo:
    return ProcInfo(pid=pid, ppid=1, pgrp=pgrp, environ=environ, hidden=hidden)


def _stranger(info: ProcInfo, registered: frozenset[int] = frozenset(), cgroup: TaskCgroup | None = None) -> bool:
    return is_stranger(info, registered, cgroup)


@pytest.mark.parametrize("environ, hidden, stranger", [
    (b"PATH=/bin", False, True),  # read, no marker
    (b"", False, True),  # read, empty
    (MARKED + b"\0PATH=/bin", False, False),  # the marker first
    (b"PATH=/bin\0" + MARKED, False, False),  # ... or any later entry
    (b"PATH=/bin\0X_" + MARKED, False, True),  # another variable that ends like it
    (b"", True, False),  # not to be read: not said to be a stranger
])
def test_without_a_cgroup_an_orphan_is_a_stranger_when_its_environment_carries_no_marker(environ, hidden, stranger):
    assert _stranger(_info(environ, hidden=hidden)) is stranger


def test_a_registered_run_or_a_member_of_its_group_is_never_a_stranger():
    assert _stranger(_info(pid=700, pgrp=900), registered=frozenset({700})) is False
    assert _stranger(_info(pid=701, pgrp=700), registered=frozenset({700})) is False
    assert _stranger(_info(pid=701, pgrp=702), registered=frozenset({700})) is True


def test_with_a_cgroup_an_orphan_it_does_not_hold_is_a_stranger_whatever_its_environment():
    places = own_places(Path("/proc/self/cgroup").read_text(), Path("/proc/self/mountinfo").read_text())
    if not places:
        pytest.skip("no cgroup of this process shows on a mount")
    own = places[0]
    holding = TaskCgroup(place=own, home=own, how="kill")
    elsewhere = TaskCgroup(place=own.child("stoker-test-not-here"), home=own, how="kill")
    me = _info(b"PATH=/bin", pid=os.getpid(), pgrp=os.getpgrp())
    assert _stranger(me, cgroup=holding) is False
    assert _stranger(ProcInfo(pid=me.pid, ppid=1, pgrp=me.pgrp, environ=MARKED), cgroup=elsewhere) is True
    gone = _info(pid=2 ** 22 + 1)  # past pid_max: no /proc entry, not known to be outside
    assert _stranger(gone, cgroup=elsewhere) is False
