"""The removal of the task's cgroup, by the watchdog once the supervisor is gone
(executor/procs/watchdogsh.py) and by the supervisor at close (executor/procs/cgroups.py): a
member SIGKILLed leaves the cgroup only once it has exited, which can take seconds (a large
memory freed; a request a FUSE server holds unanswered keeps it in D state, SIGKILL or not).
The watchdog gave up after 40 looks 10 ms apart and left the cgroup behind; it now waits for
`populated 0` (10 s at most). The supervisor looked every 2 ms; it now waits for the kernel's
word that cgroup.events changed. The watchdog's case holds a member a second: STOKER_FAULTS_FULL=1
only."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.support.cgroups import unavailable
from tests.support.fault_sizes import FULL
from tests.support.stoker_proc import REPO
from tests.support.users import needs_root

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]

_HELD_MEMBER = """
import json, os, subprocess, sys, time, uuid
from executor.procs import cgroups
from executor.procs.watchdog import start_watchdog
from tests.support.cgroups import remove

work, by, hold = sys.argv[1], sys.argv[2], sys.argv[3]
point, ready = os.path.join(work, "mnt"), os.path.join(work, "ready")
os.mkdir(point)
cg = cgroups.create(f"stoker-test-{uuid.uuid4().hex[:8]}", "auto")
server = member = None
try:
    server = subprocess.Popen([sys.executable, "-c", "import sys; from tests.support.fuse_server import serve_held; "
                               "serve_held(sys.argv[1], float(sys.argv[3]), sys.argv[2])", point, ready, hold])
    while f" {point} " not in open("/proc/self/mountinfo").read():  # (a stat would be the held request)
        time.sleep(0.01)
    member = subprocess.Popen([sys.executable, "-c", "import os, sys; "
                               "open(os.path.join(sys.argv[1], 'cgroup.procs'), 'w').write(str(os.getpid())); "
                               "os.stat(sys.argv[2])", cg.directory, point])
    while not os.path.exists(ready):  # the member's stat is read and held: it stays in D state
        time.sleep(0.01)
    started, tries = time.monotonic(), []
    if by == "watchdog":
        dog = start_watchdog("no-such-marker", cg.directory, cg.how)
        dog.close_pipe()  # as the supervisor's death does
        status = dog.popen.wait(15)
    else:
        real_rmdir = os.rmdir
        os.rmdir = lambda path: tries.append(path) or real_rmdir(path)
        status = cg.kill_and_remove(5.0)
    print(json.dumps({"status": status, "secs": time.monotonic() - started, "left": os.path.isdir(cg.directory),
                      "tries": len(tries)}))
finally:
    for child in (member, server):
        if child is not None:
            child.kill()
            child.wait()
    remove(cg.directory)
"""


def held_member(tmp_path, by: str, hold_secs: float) -> dict:
    """A task cgroup whose one member is held in D state for `hold_secs`, removed `by` the
    watchdog or the supervisor: how it went (`status`, `secs`, `left`, `tries`)."""
    if (why := unavailable()) is not None:
        pytest.skip(f"no task cgroup here: {why}")
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c", _HELD_MEMBER,
                           str(tmp_path), by, str(hold_secs)], capture_output=True, text=True, timeout=40,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


fuse = pytest.mark.skipif(shutil.which("unshare") is None or not os.path.exists("/dev/fuse"),
                          reason="needs unshare, FUSE")


@needs_root
@fuse
@pytest.mark.skipif(not FULL, reason="a member held a second: STOKER_FAULTS_FULL=1 only")
def test_the_watchdog_removes_a_cgroup_whose_killed_member_takes_a_second_to_exit(tmp_path):
    got = held_member(tmp_path, "watchdog", 1.0)
    assert got["secs"] >= 0.9  # not sooner: the member held it until the server let go
    assert (got["left"], got["status"]) == (False, 0), got  # removed, not given up on


@needs_root
@fuse
def test_the_supervisor_waits_for_its_cgroup_to_empty_without_looking_every_2_ms(tmp_path):
    got = held_member(tmp_path, "supervisor", 0.3)
    assert got["secs"] >= 0.25 and (got["left"], got["status"]) == (False, None), got
    assert got["tries"] <= 3, got  # 150 before: one every 2 ms


@needs_root
def test_the_supervisor_removes_a_cgroup_with_cgroups_its_task_made_below_it_without_spinning(tmp_path):
    """A task's root process may make cgroups of its own below the task's (a container
    runtime in it does). Empty, they kept the task's from being removed (EBUSY), and as it
    said `populated 0` the close retried at once: 19,726 rmdirs in 1 s, then it was left
    behind ("0 processes still in it"). Now those below are removed first, bottom up."""
    if (why := unavailable()) is not None:
        pytest.skip(f"no task cgroup here: {why}")
    from executor.procs import cgroups

    cg = cgroups.create(f"stoker-test-{os.urandom(4).hex()}", "auto")
    os.makedirs(os.path.join(cg.directory, "own", "deeper"))
    tries: list[str] = []
    real = os.rmdir
    try:
        os.rmdir = lambda path: tries.append(path) or real(path)  # type: ignore[assignment]
        problem = cg.kill_and_remove(1.0)
    finally:
        os.rmdir = real
        for below in ("own/deeper", "own", ""):
            if os.path.isdir(path := os.path.join(cg.directory, below)):
                real(path)
        cgroups.release(cg)  # this process may make another
    assert problem is None and len(tries) <= 5, (problem, len(tries))


@needs_root
def test_the_watchdog_removes_a_cgroup_with_cgroups_its_task_made_below_it(tmp_path):
    """The same task after the supervisor's death: the watchdog saw `populated 0`, its rmdir
    failed (EBUSY) and it left the cgroup behind, exit status 1. Now it removes those below
    first, bottom up, with builtins."""
    if (why := unavailable()) is not None:
        pytest.skip(f"no task cgroup here: {why}")
    from executor.procs import cgroups
    from executor.procs.watchdog import start_watchdog

    cg = cgroups.create(f"stoker-test-{os.urandom(4).hex()}", "auto")
    os.makedirs(os.path.join(cg.directory, "own", "deeper"))
    os.makedirs(os.path.join(cg.directory, "other"))
    try:
        dog = start_watchdog("no-such-marker", cg.directory, cg.how)
        dog.close_pipe()  # as the supervisor's death does
        status, left = dog.popen.wait(15), os.path.isdir(cg.directory)
    finally:
        for below in ("own/deeper", "own", "other", ""):
            if os.path.isdir(path := os.path.join(cg.directory, below)):
                os.rmdir(path)
        cgroups.release(cg)
    assert (status, left) == (0, False)
