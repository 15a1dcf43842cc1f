"""A process whose first thread exited while another runs (state Z, more than one thread)
is alive to every reader of /proc/PID/stat, through the one judgement
(`executor/procs/pidsignal.live_fields`). Each had its own copy that read Z as a zombie:

- the host's identities (`executor/host/identity.py`): a supervisor so was gone to
  `stoker status`, `stoker kill` ("no live supervisor holds ...") and the observer (the task
  LOST while it ran), and a lock holder so was dead to `lock.as_seen_here`;
- the observer's usage (`executor/observe/usage.py`): a run's top so showed no usage at
  all, and such a process below a run was left out of its tree's count, CPU and RSS, with
  everything below it;
- the tests' own leftover checks (`tests/support/proc_scan.is_live`).
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

import pytest

from executor.host.identity import identity_of, is_alive
from executor.observe.usage import RunRef, UsageSampler
from executor.procs import pidsignal
from tests.support import headless as headless_support
from tests.support.headless import headless
from tests.support.proc_scan import is_live
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)


def test_the_host_s_identity_of_a_headless_process_is_alive():
    with headless() as proc:
        found = identity_of(proc.pid)
        assert found is not None, "a headless process read as gone"
        assert is_alive(proc.pid, found.start_ticks, found.boot_id)
        assert pidsignal.read_stat(proc.pid) is not None and is_live(proc.pid)


def test_a_zombie_is_still_gone_to_every_reader():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        wait_for(lambda: headless_support.state(proc.pid) == "Z", 10, message="it exited, unreaped")
        assert identity_of(proc.pid) is None and pidsignal.read_stat(proc.pid) is None
        assert not is_live(proc.pid)
        assert UsageSampler().sample([RunRef("web", proc.pid, os.getpid())]) == {}
    finally:
        proc.wait()


def test_the_observer_shows_the_usage_of_a_run_whose_top_is_headless():
    with headless() as proc:
        usage = UsageSampler().sample([RunRef("web", proc.pid, os.getpid())])
        assert set(usage) == {"web"}, "a headless run's top showed no usage"
        assert usage["web"].pid == proc.pid and usage["web"].processes == 1


def test_the_observer_counts_a_headless_process_below_a_run_and_what_is_below_it(tmp_path):
    """A shell (the run's top), below it a headless process, below that a sleep: all three
    (was: one, the shell; the headless one and its subtree left out)."""
    pidfile = tmp_path / "pids"
    program = ("import ctypes, os, subprocess, threading, time; sleep = subprocess.Popen(['sleep', '600']); "
               "threading.Thread(target=time.sleep, args=(600,)).start(); "
               f"open({str(pidfile)!r}, 'w').write(f'{{os.getpid()}} {{sleep.pid}}'); "
               "ctypes.CDLL(None).pthread_exit(None)")
    top = subprocess.Popen(["/bin/sh", "-c", '"$@"; exit 0', "sh", sys.executable, "-c", program],
                           start_new_session=True)
    pids: list[int] = []
    try:
        wait_for(lambda: len(pidfile.read_text().split()) == 2 if pidfile.exists() else False, 10,
                 message="the middle process and its sleep started")
        pids = [int(p) for p in pidfile.read_text().split()]
        wait_for(lambda: headless_support.state(pids[0]) == "Z" and headless_support.running_threads(pids[0]) == 1,
                 10, message="the middle process headless")
        usage = UsageSampler().sample([RunRef("web", top.pid, os.getpid())])
        assert usage["web"].processes == 3, "a headless process and its subtree were left out of the run's tree"
    finally:
        os.killpg(top.pid, signal.SIGKILL)
        top.wait()
        for pid in pids:  # re-parented here if this process is a subreaper (a supervisor test's)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            wait_for(lambda pid=pid: headless_support.state(pid) in ("", "Z"), 10, message=f"pid {pid} gone")
