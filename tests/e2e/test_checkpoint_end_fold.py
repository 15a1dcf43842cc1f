"""A real `stoker run` of a health-checked service, stopped: the checkpoint its checks grew
past 16 KiB is folded once more as the supervisor lets go of the ended task, and `stoker
status` reads the same story from it (every attempt counted, the task KILLED)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from executor.task.checkpoint import ENDED_COMPACT_BYTES, checkpoint_path, read_records
from tests.support.stoker_proc import REPO, stoker_runs
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)

CONFIG = """
web = Process(name='web', cmdline='sleep 600')
jobs = [Service(cluster='local', role='me', environment='test', name='hc',
  task=Task(processes=[web], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)),
  health_check_config=HealthCheckConfig(initial_interval_secs=0.01, interval_secs=0.01, timeout_secs=1.0,
    health_checker=HealthCheckerConfig(shell=ShellHealthChecker(shell_command='true'))))]
"""


def status(sandbox) -> dict:
    done = subprocess.run([sys.executable, "-m", "executor", "status", str(sandbox), "--json"], cwd=REPO,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_stopped_service_s_checkpoint_is_folded_to_few_records_telling_the_same_story(tmp_path):
    (tmp_path / "hc.aurora").write_text(CONFIG)
    with stoker_runs(tmp_path) as start:
        run = start(str(tmp_path / "hc.aurora"))
        path = checkpoint_path(run.sandbox)
        wait_for(lambda: path.exists() and path.stat().st_size >= ENDED_COMPACT_BYTES + 4096, 30,
                 message="the health checks' records past the bound")
        run.stop(signal.SIGTERM, 143)
        run.close()
    records = read_records(run.sandbox)
    assert path.stat().st_size < ENDED_COMPACT_BYTES / 2 and len(records) < 40, (path.stat().st_size, len(records))
    said = status(run.sandbox)
    assert said["state"] == "KILLED"
    health = said["attempts"][-1]["health"]
    assert health["attempts"] >= 70 and health["consecutive_successes"] == health["attempts"], health  # 16 KiB of them
    assert len(health["last_attempts"]) == 10  # the last 10 kept, as ever
