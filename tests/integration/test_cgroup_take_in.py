"""An early start's runs moved into the task's cgroup (executor/procs/cgrouplife.py,
`take_in`) while a run's child daemonizes: it forks the daemon and exits, so the daemon
re-parents to the mover (the subreaper) in the middle of the walk.

Each case runs in a Python process of its own (a subreaper, as the supervisor is), which
makes the cgroup, starts the run, holds one move until the daemon is re-parented, and
removes the cgroup and everything it started before it prints what it found."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support import cgroups as cgroup_support
from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(60)

# Both cases' cleanup: the run and the process it left SIGKILLed, then reaped (the run's
# child re-parented here is ours to reap; one a subreaper run held is gone with it).
_END = """
import contextlib, os, signal


def end(run, left):
    for pid in (run.pid, left):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    run.wait(10)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(left, 0)

"""
_DAEMONIZE = _END + """
import ctypes, json, os, signal, subprocess, sys, time, uuid
from executor.procs import cgrouplife, cgroups, proctree
from tests.support import cgroups as support

ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER, as the supervisor
held = sys.argv[1]  # whose move waits until the middle is gone: "middle" or "daemon"
subreaper = sys.argv[2] == "subreaper"  # the run a subreaper: the daemon re-parents to it
made = cgroups.create(f"stoker-test-{uuid.uuid4().hex[:8]}", "auto")
# the run: a shell (or a subreaper) whose child (the middle, `sleep 1032`) forked the daemon (`sleep 1031`)
run = subprocess.Popen([sys.executable, "-c", "import ctypes, subprocess, time; ctypes.CDLL(None).prctl(36, 1, 0, 0, 0); "
                        "subprocess.Popen(['sh', '-c', 'sleep 1031 & exec sleep 1032']); time.sleep(600)"]
                       if subreaper else ["sh", "-c", "sh -c 'sleep 1031 & exec sleep 1032'; exec sleep 1033"])

def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""

def under(pid, command):
    return next((kid for kid in proctree.children(pid) if cmdline(kid) == command), None)

def parent(pid):
    with open(f"/proc/{pid}/stat", "rb") as f:
        return int(f.read().rpartition(b")")[2].split()[1])

deadline = time.monotonic() + 10
middle = daemon = None
while daemon is None and time.monotonic() < deadline:  # a state, polled: the daemon forked
    middle = under(run.pid, b"sleep\\x001032\\x00")
    daemon = under(middle, b"sleep\\x001031\\x00") if middle else None
assert daemon is not None, "the run's daemon did not start"
real, holds = cgroups.TaskCgroup.take_in, []

def take_in(self, pid, *args):
    if not holds and pid == (middle if held == "middle" else daemon):
        holds.append(pid)
        os.kill(middle, signal.SIGKILL)  # the middle exits (a zombie of the subreaper's)
        while parent(daemon) != (run.pid if subreaper else os.getpid()):
            time.sleep(0.001)
    return real(self, pid, *args)

cgroups.TaskCgroup.take_in = take_in
try:
    moved = cgrouplife.take_in(made, (run.pid,), adopted=lambda: [p for p in proctree.children(os.getpid())
                                                                  if p != run.pid])
    inside = set(cgroups.read_pids(made.directory))
    found = {"daemon": daemon in inside, "run": run.pid in inside, "moved": sorted(moved),
             "daemon_pid": daemon, "run_pid": run.pid}
finally:
    cgroups.TaskCgroup.take_in = real
    support.remove(made.directory)
    cgroups.release(made)
    end(run, daemon)
print(json.dumps(found))
"""


@pytest.mark.skipif(cgroup_support.unavailable() is not None, reason="no task cgroup can be made here")
@pytest.mark.parametrize("held", ["middle", "daemon"])
@pytest.mark.parametrize("run", ["shell", "subreaper"])
def test_a_daemon_re_parented_mid_walk_is_moved_in(held, run):
    # "daemon": listed under the middle, then re-parented before its move: its move was
    # refused (no longer the child it was listed as) and the pid taken for seen, so the next
    # pass's listing of the orphans skipped it: left outside, alive after the task's kill.
    # "middle": listed with the whole tree before any move, then the same. "subreaper": the
    # daemon re-parents to the run, moved and listed already: only a pass that lists the run
    # again finds it (not one that lists the orphans alone).
    done = subprocess.run([sys.executable, "-c", _DAEMONIZE, held, run], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=30)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["run"] and found["daemon"], found
    assert found["daemon_pid"] in found["moved"], found


# The run: a process of two threads, the second of which started `sleep 1034`. Its first
# listing comes back as one whose second thread exited as it was read would make it: the
# child handed to the first thread, read before, and missed.
_THREADED = _END + """
import ctypes, json, os, signal, subprocess, sys, time, uuid
from executor.procs import cgrouplife, cgroups, proctree
from tests.support import cgroups as support

ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: the child, left, is ours to reap
made = cgroups.create(f"stoker-test-{uuid.uuid4().hex[:8]}", "auto")
run = subprocess.Popen([sys.executable, "-c", "import subprocess, threading, time; "
                        "threading.Thread(target=lambda: (subprocess.Popen(['sleep', '1034']), time.sleep(600))).start(); "
                        "time.sleep(600)"])
deadline, child = time.monotonic() + 10, None
while child is None and time.monotonic() < deadline:  # a state, polled: the thread's child forked
    child = next(iter(proctree.children(run.pid)), None)
assert child is not None, "the run's thread did not start its child"
real, listed = proctree.children_and_threads, []

def children_and_threads(pid):
    if pid == run.pid and not listed:
        listed.append(pid)
        return [], True
    return real(pid)

proctree.children_and_threads = children_and_threads
try:
    moved = cgrouplife.take_in(made, (run.pid,))
    found = {"child": child in set(cgroups.read_pids(made.directory)), "moved": sorted(moved), "child_pid": child}
finally:
    proctree.children_and_threads = real
    support.remove(made.directory)
    cgroups.release(made)
    end(run, child)
print(json.dumps(found))
"""


@pytest.mark.skipif(cgroup_support.unavailable() is not None, reason="no task cgroup can be made here")
def test_a_child_a_process_of_several_threads_hid_from_its_first_listing_is_moved_in():
    # A later pass lists again only the processes that had children, and those of several
    # threads: one whose listing raced a thread's exit (its child handed to a thread read
    # before) showed none, and was never listed again.
    done = subprocess.run([sys.executable, "-c", _THREADED], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=30)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["child"] and found["child_pid"] in found["moved"], found
