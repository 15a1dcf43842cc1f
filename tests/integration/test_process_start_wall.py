"""A process's start in today's wall clock, as `stoker status` shows a running run's `up`
time and an older Stoker's task's start (its supervisor's): counted from the boot to the
clock's precision, not from /proc/stat's `btime`, whose fraction of a second is cut (a run
`up 2.9s` in a task started 2.0s ago, on a host whose boot fell at .91 of a second). On a
host whose boot fell within a few milliseconds of a whole second the old count passed too."""
from __future__ import annotations

import os
import subprocess
import time

from executor.host.identity import child_started_wall, identity_of, started_wall

TICK = 1 / os.sysconf("SC_CLK_TCK")


def test_a_childs_start_is_counted_to_the_clock_tick():
    before = time.time()
    child = subprocess.Popen(["sleep", "30"], stdin=subprocess.DEVNULL)
    try:
        after = time.time()
        found = identity_of(child.pid)
        assert found is not None
        starts = {"child_started_wall": child_started_wall(child.pid, os.getpid()),
                  "started_wall": started_wall(found)}
        for name, started in starts.items():  # (a start is counted in whole ticks, cut)
            assert started is not None and before - 2 * TICK <= started <= after + TICK, (name, before, started, after)
    finally:
        child.kill()
        child.wait()
