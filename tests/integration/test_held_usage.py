"""The trees of the processes a task owns besides its runs
(`executor/observe/usage.UsageSampler.owned`): every child of the live supervisor, its
task's subreaper, but its watchdog and the runs' tops (counted with their runs), whether or
not the supervisor has looked at it since it was adopted. A stand-in supervisor (a
subreaper) holds a run, a watchdog and an orphan its run's child left."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

from executor.host.identity import read_proc
from executor.observe.usage import UsageSampler
from tests.support.waiting import wait_for

HELD = 20_000_000
SUPERVISOR = f"""
import ctypes, subprocess, sys, time
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
run = subprocess.Popen(["sleep", "60"])
watchdog = subprocess.Popen(["/bin/sh", "-c", "sleep 60", "stoker-watchdog", "marker"])
daemon = "import time; x = b'd' * {HELD}; print(flush=True); time.sleep(60)"
left = subprocess.run([sys.executable, "-c", "import subprocess, sys; "
                       f"p = subprocess.Popen([sys.executable, '-c', {{daemon!r}}], stdout=subprocess.PIPE); "
                       "p.stdout.readline(); print(p.pid)"], stdout=subprocess.PIPE, text=True).stdout
print(run.pid, watchdog.pid, left.strip(), flush=True)
time.sleep(60)
"""


def rss_of(pid: int) -> int:
    data = read_proc(f"/proc/{pid}/stat")
    return int(data[data.rfind(b")") + 2:].split()[21]) * os.sysconf("SC_PAGE_SIZE")


def test_an_orphan_the_supervisor_has_not_looked_at_counts_and_its_watchdog_does_not():
    """The figures counted the held list only: an orphan adopted more than 0.8 s after its
    run started, with no step of the task since, held 80 MB that `stoker status` did not
    show (ram_used 1.7 MB)."""
    supervisor = subprocess.Popen([sys.executable, "-c", SUPERVISOR], stdout=subprocess.PIPE,
                                  start_new_session=True)
    try:
        assert supervisor.stdout is not None
        run, watchdog, orphan = map(int, supervisor.stdout.readline().split())
        sampler = UsageSampler()
        (found,) = sampler.owned(supervisor.pid, [run], watchdog)
        assert found.pid == orphan and found.processes == 1 and found.rss_bytes >= HELD
        assert found.rss_bytes >= rss_of(orphan) - 1024 * 1024 and found.cpu_percent is not None
        assert {u.pid for u in sampler.owned(supervisor.pid, [], watchdog)} == {run, orphan}  # no watchdog
        assert orphan not in {u.pid for u in sampler.owned(os.getpid(), [], None)}  # not this one's child
        # A process of the task named like a watchdog is counted: only the pid its supervisor
        # wrote is left out (a task's `/bin/sh -c ... stoker-watchdog` hid from the figures).
        assert {u.pid for u in sampler.owned(supervisor.pid, [run], None)} == {watchdog, orphan}
        assert {u.pid for u in sampler.owned(supervisor.pid, [run], orphan)} == {watchdog, orphan}  # not one
    finally:
        os.killpg(supervisor.pid, signal.SIGKILL)
        supervisor.wait()
    assert wait_for(lambda: UsageSampler().owned(supervisor.pid, [], None) == [])
