"""The supervisor's walk of a task cgroup (`executor/procs/cgroupwalk.py`: what the close
kills, thaws and removes) and a bind mount of the same cgroup hierarchy below the task's, in
a mount namespace of the test's own. Was: a step into it was taken (`os.open` goes into
whatever is mounted; `..` from its root comes back to the task's, so the climb's check
passed): `pids` listed the process of a cgroup outside the task's (the close SIGKILLs what
it lists), `remove_below` removed the empty cgroup there. Now a step onto another mount
(`mnt_id`, not st_dev: the bind mount shares it) is not taken."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest

from executor.procs import cgroups
from tests.support import cgroups as cgroup_support
from tests.support.cgroups import FREEZER
from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(60)

_WALK = "import json, sys; from executor.procs import cgroupwalk as w; " \
        "print(json.dumps([w.pids(sys.argv[1]), w.remove_below(sys.argv[1])]))"


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root, unshare")
def test_the_supervisor_s_walk_never_goes_into_a_bind_mount_of_the_hierarchy_below_the_task_s():
    if (why := cgroup_support.unavailable(FREEZER)) is not None:
        pytest.skip(f"no v1 freezer task cgroup here: {why}")
    made = cgroups.create(f"stoker-test-{uuid.uuid4().hex[:8]}", FREEZER)
    assert isinstance(made, cgroups.TaskCgroup), made
    inside = subprocess.Popen(["sleep", "600"])
    try:
        cgroup_support.nest(made.directory, 1, inside.pid)
        with cgroup_support.bound_beside(made.directory) as (outside, sleeper, unshared):
            done = subprocess.run([*unshared, sys.executable, "-c", _WALK, made.directory], cwd=REPO,
                                  capture_output=True, text=True, timeout=30)
            assert done.returncode == 0, done.stderr
            assert (json.loads(done.stdout), os.path.isdir(os.path.join(outside, "e"))) == ([[inside.pid], False], True)
    finally:
        inside.kill()
        inside.wait()
        cgroup_support.remove(made.directory, 60)
        cgroups.release(made)
