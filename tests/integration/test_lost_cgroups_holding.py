"""`executor/procs/cgrouplost.py`'s `holding` (the kill by marker's re-check of another user's
process: in a lost attempt's cgroup, or below it) and `thaw_older` (which of an older
Stoker's cgroups were frozen), on real cgroups."""
from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from executor.procs import cgrouplost, cgroups
from tests.integration.test_lost_cgroups import _v2_home
from tests.support import cgroups as cgroup_support
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)


def test_holding_is_a_process_in_the_cgroup_or_below_it_never_in_one_beside_it_nor_one_gone():
    """`holding` and `in_task_cgroup` (a 16-character marker: False)."""
    marker = uuid.uuid4().hex
    lost = Path(_v2_home(), cgroups.task_name(marker))
    below, beside = lost / "below", Path(f"{lost}x")  # beside: its name and more
    procs = []
    try:
        for directory in (lost, below, beside):
            directory.mkdir()
            procs.append(subprocess.Popen(["sleep", "600"]))
            (directory / "cgroup.procs").write_text(str(procs[-1].pid))
        gone = subprocess.Popen(["true"])
        gone.wait()
        holds = cgrouplost.holding([str(lost)])
        assert [holds(p.pid) for p in procs] == [True, True, False]
        assert not holds(gone.pid) and not holds(os.getpid())
        # as stoker status asks it: the same, by the whole marker only (16 characters name none)
        assert [cgrouplost.in_task_cgroup(marker, p.pid, os.geteuid()) for p in procs] == [True, True, False]
        assert not cgrouplost.in_task_cgroup(marker[:16], procs[0].pid, os.geteuid())
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)
        for directory in (below, lost, beside):
            with contextlib.suppress(OSError):
                wait_for(lambda d=directory: not cgroups.read_pids(str(d)), 10, message="emptied")
                directory.rmdir()


def test_thaw_older_names_those_that_were_frozen_and_thaws_them():
    if os.geteuid() != 0 or not os.access(cgroup_support.FREEZER, os.W_OK):
        pytest.skip("needs root and a writable cgroup-v1 freezer")
    tag = uuid.uuid4().hex[:16]
    frozen, thawed = Path(cgroup_support.FREEZER, f"stoker-{tag}"), Path(cgroup_support.FREEZER, f"stoker-{tag}t")
    try:
        for directory in (frozen, thawed):
            directory.mkdir()
        (frozen / "freezer.state").write_text("FROZEN")
        wait_for(lambda: (frozen / "freezer.state").read_text().strip() == "FROZEN", 10, message="frozen")
        gone = f"{frozen}gone"  # its state unreadable: thawed as the others, not named
        assert cgrouplost.thaw_older([str(frozen), str(thawed), gone]) == [str(frozen)]
        assert (frozen / "freezer.state").read_text().strip() == "THAWED"
    finally:
        for directory in (frozen, thawed):
            with contextlib.suppress(OSError):
                (directory / "freezer.state").write_text("THAWED")
                directory.rmdir()
