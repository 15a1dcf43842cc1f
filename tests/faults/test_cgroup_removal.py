"""The removal of the task's cgroup, by the watchdog once the supervisor is gone
(executor/procs/watchdogsh.py) and by the supervisor at close (executor/procs/cgroups.py): a
member SIGKILLed leaves the cgroup only once it has exited, which can take seconds (a large
memory freed; a request a FUSE server holds unanswered keeps it in D state, SIGKILL or not).
The watchdog gave up after 40 looks 10 ms apart and left the cgroup behind; it now waits for
`populated 0` (10 s at most). The supervisor looked every 2 ms; it now waits for the kernel's
word that cgroup.events changed. The watchdog's case holds a member a second: STOKER_FAULTS_FULL=1
only. A supervisor killed as it makes its cgroup leaves none: its watchdog knows it first."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.support.cgroups import CgroupTracker, unavailable
from tests.support.earlyjob import write
from tests.support.fault_sizes import FULL
from tests.support.importhook import patched_at_load
from tests.support.stoker_proc import REPO, kill_leftovers, task_pids
from tests.support.users import needs_root
from tests.support.waiting import exit_code, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]

_HELD_MEMBER = """
import json, os, subprocess, sys, time, uuid
from executor.procs import cgroups
from executor.procs.watchdog import start_watchdog
from tests.support.cgroups import remove
from tests.support.waiting import exit_code

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
        status = exit_code(dog.pid, 15)
    else:
        real_rmdir, real_how = os.rmdir, cg.how
        if by == "supervisor, its first kill failing":  # its kill way's file missing, the next ones right
            cg.how = "kill" if real_how == "freezer" else "freezer"
        os.rmdir = lambda path: tries.append(path) or setattr(cg, "how", real_how) or real_rmdir(path)
        status = cg.kill_and_remove(1.0 if by.endswith("failing") else 5.0)
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
@fuse
def test_a_kill_that_failed_once_then_went_through_is_not_said_to_have_failed(tmp_path):
    """Was: `cannot kill through DIR: ...; cannot remove DIR: ...` at the deadline though
    every kill after the first went through (the member held in D state the while)."""
    got = held_member(tmp_path, "supervisor, its first kill failing", 3.0)
    assert got["left"] and got["tries"] >= 2, got  # a kill after the failed one, before the deadline
    assert got["status"].startswith("cannot remove ") and "cannot kill" not in got["status"], got
    assert got["status"].endswith("(1 processes still in it after 1.0 s)"), got


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
        os.rmdir = lambda path, **at: tries.append(path) or real(path, **at)  # type: ignore[assignment]
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
        status, left = exit_code(dog.pid, 15), os.path.isdir(cg.directory)
    finally:
        for below in ("own/deeper", "own", "other", ""):
            if os.path.isdir(path := os.path.join(cg.directory, below)):
                os.rmdir(path)
        cgroups.release(cg)
    assert (status, left) == (0, False)


def _killed_as_it_is_made(note: str) -> str:
    """A hook that SIGKILLs the process right after it makes its task cgroup (`stoker-*`,
    not the probe's), the directory written to `note` first."""
    return patched_at_load("executor.procs.cgroups", f"""
    def _patch(module):
        real = os.mkdir

        def mkdir(path, *args, **kwargs):
            real(path, *args, **kwargs)
            if os.path.basename(path).startswith("stoker-"):
                with open({note!r}, "w") as f:
                    f.write(path)
                os.kill(os.getpid(), 9)

        module.os = type(sys)("os")
        module.os.__dict__.update(os.__dict__, mkdir=mkdir)
    """)


@needs_root
@pytest.mark.parametrize("early", ["off", "on"])
def test_a_supervisor_killed_as_it_makes_its_cgroup_leaves_none(tmp_path, early):
    """Was: the supervisor made the cgroup, then started its watchdog with it: killed in
    between, neither removed it (a later task's sweep did, 60 s on, if one came). Now the
    watchdog starts first and is told the cgroup before it is made. With an early start, the
    early start's watchdog (no cgroup) is up too."""
    if (why := unavailable()) is not None:
        pytest.skip(f"no task cgroup here: {why}")
    note, hook = tmp_path / "made", tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_killed_as_it_is_made(str(note)))
    config = write(tmp_path, "Process(name='first', cmdline='sleep 1000')")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MESOS_")}, "STOKER_EARLY_START": early,
           "PYTHONPATH": f"{hook}{os.pathsep}{REPO}", "STOKER_PLAN_CACHE": str(tmp_path / "plans")}
    groups = CgroupTracker()
    try:
        for attempt in range(2):  # with an early start: the plan made ahead, then the kept one
            sandbox = tmp_path / f"sandbox{attempt}"
            try:
                done = subprocess.run([sys.executable, "-m", "executor", "run", str(config), "--sandbox",
                                       str(sandbox)], cwd=tmp_path, env=env, capture_output=True, timeout=60)
            finally:
                kill_leftovers(task_pids(sandbox))
            assert done.returncode == -9, done.stderr
            groups.add(made := note.read_text())
            wait_for(lambda: not os.path.isdir(made), 15, message=f"{made} removed by the watchdog")
    finally:
        groups.cleanup()


@needs_root
def test_a_failed_kill_and_the_removal_it_left_undone_are_both_said():
    """Was: only `cannot kill through DIR: ...`, not that the cgroup stayed, its processes
    in it (its kill way's file missing: a v1 freezer's, in a v2 cgroup)."""
    if (why := unavailable()) is not None:
        pytest.skip(f"no task cgroup here: {why}")
    from executor.procs import cgroups
    from tests.faults.test_cgroup_announce import sleeper_in

    cg = cgroups.create(f"stoker-test-{os.urandom(4).hex()}", "auto")
    groups = CgroupTracker()
    groups.add(cg.directory)
    try:
        cg.how = "freezer"  # freezer.state: no such file in a v2 cgroup, so the kill fails
        with sleeper_in(cg.directory):
            problem = cg.kill_and_remove(1.0)
    finally:
        groups.cleanup()
        cgroups.release(cg)
    assert problem is not None and problem.startswith(f"cannot kill through {cg.directory}: "), problem
    assert problem.endswith(f"; cannot remove {cg.directory}: Device or resource busy (EBUSY) "
                            "(1 processes still in it after 1.0 s)"), problem
