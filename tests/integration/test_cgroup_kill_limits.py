"""The supervisor's kill of its task cgroup (`TaskCgroup.kill_and_remove`,
`executor/procs/cgroups.py`) out of descriptors: a real cgroup-v2 cgroup killed the
`cgroup.freeze` way (a walk of the subtree), by a child process whose RLIMIT_NOFILE is
lowered and filled. Was: the walk took a cgroup it could not read (EMFILE) for an empty one,
so the pass went by its member in silence; the kill said it went through, the member lived
on until the deadline ('cannot remove ...: EBUSY (0 processes still in it ...)': not counted
either). Now the walk stops with `cgroupwalk.WalkCut`, the pass is repeated (RETRY_SECS
later), and what is said at the deadline names it."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.integration.test_cgroup_v2 import v2_root
from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(60)

_KILL = """
import json, os, resource, subprocess, sys, uuid
import attrs
from executor.procs import cgroups, cgroupwalk
from tests.support import cgroups as support

freed = sys.argv[1] == "freed"  # the descriptors given back at the first walk cut short
made = cgroups.create(f"stoker-test-{uuid.uuid4().hex[:8]}", "auto")
cg = attrs.evolve(made, how="freeze")
run = subprocess.Popen(["sleep", "600"])
cuts, fillers, real_walk = [], [], cgroupwalk.walk
limits = resource.getrlimit(resource.RLIMIT_NOFILE)

def walk(*args, **kwargs):  # the real walk, its cuts noted
    try:
        return real_walk(*args, **kwargs)
    except cgroupwalk.WalkCut as e:
        cuts.append(str(e))
        while freed and fillers:
            os.close(fillers.pop())
        raise

try:
    assert cg.take_in(run.pid)
    support.nest(cg.directory, 3, run.pid)  # below the task's: only the walk finds it
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, limits[1]))
    cgroupwalk.walk = walk
    try:
        while True:
            fillers.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        os.close(fillers.pop())  # one free: the walk opens the task's cgroup, not its list
    problem = cg.kill_and_remove(2.0)
finally:
    cgroupwalk.walk = real_walk
    for fd in fillers:
        os.close(fd)
    resource.setrlimit(resource.RLIMIT_NOFILE, limits)
    left = os.path.isdir(cg.directory)
    support.remove(cg.directory)
    cgroups.release(made)
    run.kill()
print(json.dumps({"problem": problem, "cuts": cuts, "status": run.wait(10), "left": left, "dir": cg.directory}))
"""


def killed(way: str) -> dict:
    v2_root()
    done = subprocess.run([sys.executable, "-c", _KILL, way], capture_output=True, text=True, timeout=40,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_kill_pass_cut_short_by_emfile_is_repeated_and_goes_through():
    got = killed("freed")
    assert len(got["cuts"]) == 1 and got["cuts"][0].endswith("Too many open files (EMFILE)"), got
    assert (got["problem"], got["status"], got["left"]) == (None, -9, False), got


def test_a_kill_out_of_descriptors_to_its_deadline_says_so():
    got = killed("never freed")
    assert len(got["cuts"]) >= 2, got  # the pass repeated
    cut = "cannot read a cgroup's processes: Too many open files (EMFILE)"
    assert got["problem"] == (f"cannot kill through {got['dir']}: {cut}; cannot remove {got['dir']}: Device or "
                              f"resource busy (EBUSY) (its processes not counted: {cut} after 2.0 s)"), got
    assert (got["status"], got["left"]) == (-9, True), got  # (killed by the test's cleanup)
