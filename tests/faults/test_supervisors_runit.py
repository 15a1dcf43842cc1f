"""`stoker run` under runit's runsv for real (README "Running under runit, s6, supervisord, or
a container's init"), with the example service's run script: a crash and a clean stop.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pytest

from tests.e2e.test_supervisors import EXAMPLES, service_copy
from tests.e2e.test_systemd import write_job
from tests.support.fault_sizes import FULL
from tests.support.stoker_proc import kill_leftovers, live, task_pids
from tests.support.waiting import wait_for
from tests.support.zookeeper import require

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]


@pytest.mark.skipif(not FULL, reason="about 3 s, 1 of them runsv's restart delay: STOKER_FAULTS_FULL=1 only")
def test_runsv_restarts_a_killed_stoker_run_which_ends_the_old_task_and_force_stop_is_clean(tmp_path):
    """The example runit service, its paths this test's: a `kill -9` of stoker run (the OOM
    killer's) gets it started again, with the lost attempt's process gone; `sv force-stop`
    (SIGTERM, SIGCONT) gets the staged stop and exit 143."""
    require("runit", None if shutil.which("runsv") else "runit is not installed (`make hosttools` installs it)")
    write_job(tmp_path, "sleep 1000")
    service = service_copy(EXAMPLES / "runit/stoker-hello", tmp_path)
    output = tmp_path / "runsv.out"
    with open(output, "wb") as out:
        runsv = subprocess.Popen(["runsv", str(service)], stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    pids: set[int] = set()
    try:
        wait_for(lambda: output.read_text().count("STARTING → RUNNING") == 1, 20, message="the task RUNNING")
        pids = task_pids(tmp_path / "sandbox")
        os.kill(int((service / "supervise/pid").read_text()), signal.SIGKILL)
        wait_for(lambda: output.read_text().count("STARTING → RUNNING") == 2, 20, message="RUNNING again")
        assert not live(pids), "the lost attempt's process outlived it"
        pids |= task_pids(tmp_path / "sandbox")
        subprocess.run(["sv", "-w", "20", "force-stop", str(service)], timeout=30, check=True,
                       stdout=subprocess.DEVNULL)
        assert "stopped by SIGTERM; stopped on request; task KILLED (exit 143)" in output.read_text()
    finally:
        subprocess.run(["sv", "-w", "5", "force-stop", str(service)], timeout=10, capture_output=True)
        subprocess.run(["sv", "exit", str(service)], timeout=10, capture_output=True)
        try:
            runsv.wait(5)
        except subprocess.TimeoutExpired:
            runsv.kill()
            runsv.wait(5)
        kill_leftovers(pids | task_pids(tmp_path / "sandbox"))
