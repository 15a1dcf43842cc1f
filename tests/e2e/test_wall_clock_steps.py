"""`stoker run` across a step of the wall clock (NTP stepping it by an hour, a VM resumed and
its clock set): every wait of the supervisor (the kill grace, the restart back-off) is counted
on a clock no step moves, and `stoker status` counts a live attempt's age on the boot clock.

The real CLI as a child process whose wall clock the test steps (`tests/support/wallclock.py`:
an LD_PRELOAD library; the host's clock untouched), real task processes. A wait counted on the
wall clock would take an hour after a step back, and end at once after a step forward.
"""
from __future__ import annotations

import datetime
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.support.configs import write_config
from tests.support.stoker_proc import REPO, live, stoker_runs, task_pids
from tests.support.waiting import wait_for
from tests.support.wallclock import WallClock

pytestmark = pytest.mark.timeout(60)

HOUR = 3600.0


@pytest.fixture
def stoker(tmp_path):
    with stoker_runs(tmp_path) as start:
        yield start


@pytest.mark.parametrize("step", [-HOUR, HOUR], ids=["back", "forward"])
def test_the_kill_grace_is_the_grace_whatever_the_wall_clock_does(stoker, tmp_path, step):
    clock = WallClock(tmp_path)
    cfg = write_config(tmp_path, """
        p = Process(name='stubborn', cmdline="trap '' TERM; touch trapped; sleep 1000")
        jobs = [Job(cluster='local', role='me', environment='test', name='stubborn',
                    task=Task(processes=[p], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
    """)
    grace = 1.5
    run = stoker(str(cfg), "--kill-grace", str(grace), env=clock.env({}))
    run.wait_output("task             STARTING → RUNNING")
    # a SIGTERM before the shell's trap ended it at once (0.03 s: CI under load)
    wait_for(lambda: (run.sandbox / "trapped").exists())
    pids = wait_for(lambda: task_pids(run.sandbox))
    started = time.monotonic()
    run.signal(signal.SIGTERM)
    run.wait_output("task             RUNNING → KILLING")
    clock.step_to(step)  # within the grace
    assert run.wait(grace + 10) == 143, run.stderr()
    took = time.monotonic() - started
    assert "KILLING → KILLED" in run.stdout()
    assert not live(pids)
    # SIGKILL at the grace's end: not at once (a step forward), nor an hour on (a step back).
    assert grace - 0.1 <= took < grace + 8, took


def test_the_restart_back_off_and_the_attempt_age_across_a_step_back(stoker, tmp_path):
    clock = WallClock(tmp_path)
    cfg = write_config(tmp_path, """
        p = Process(name='flap', cmdline='sleep 0.2; exit 1')
        jobs = [Job(cluster='local', role='me', environment='test', name='flap', service=True,
                    task=Task(processes=[p], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
    """)
    run = stoker(str(cfg), "--restart-backoff", "1", env=clock.env({}))
    run.wait_output("services restart on any end")
    clock.step_to(-HOUR)  # within the first back-off (1 s)
    started = time.monotonic()
    # The back-offs (1 s, then 2 s) pass as they would: the third attempt starts.
    run.wait_output("task             STARTING → RUNNING", timeout_secs=20, count=3)
    assert time.monotonic() - started >= 2.0
    status = subprocess.run([sys.executable, "-m", "executor", "status", str(run.sandbox)], cwd=REPO,
                            env=clock.env(), capture_output=True, text=True, timeout=30)
    started_line = next(line for line in status.stdout.splitlines() if "started: " in line)
    age = re.search(r"started: (\S+) \(([0-9.]+)s ago\)", started_line)
    assert age is not None and float(age.group(2)) < 30, started_line
    # The stepped clock is the one the supervisor and `stoker status` read: an hour back.
    assert abs(datetime.datetime.fromisoformat(age.group(1)).timestamp() - (time.time() - HOUR)) < 30
