"""tests/support/stoker_proc.py: a second `StokerProcess` in one working directory (`stoker
kill` beside the `stoker run` it stops) keeps the first one's output; the pids a checkpoint
named are killed only while their process is the one it named."""
from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.support.stoker_proc import StokerProcess, kill_leftovers, live, task_pids


def test_a_second_process_in_one_directory_does_not_truncate_the_first_one_s_output(tmp_path):
    """Both wrote `stoker.stdout` and `stoker.stderr` there: the second one's start truncated
    the first one's files, and what the first one had written was lost (a test that looked
    for a warning `stoker run` wrote before the `stoker kill` did not find it, 1 run in 2)."""
    first = StokerProcess(["--version"], tmp_path).exited(0)
    second = StokerProcess(["--version"], tmp_path).exited(0)
    assert first.stdout() == second.stdout() and first.stdout().startswith("stoker ")
    assert first.stdout_path != second.stdout_path and first.stderr_path != second.stderr_path


def _checkpoint_naming(sandbox: Path, pid: int, wall: float) -> None:
    (sandbox / ".stoker").mkdir(parents=True, exist_ok=True)
    record = {"kind": "process", "process": "p", "run": 0, "from": "WAITING", "to": "RUNNING",
              "reason": "starting run 0", "pid": pid, "wall": wall}
    (sandbox / ".stoker" / "checkpoint.jsonl").write_text(json.dumps(record) + "\n")


@pytest.fixture
def child():
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_a_pid_the_checkpoint_named_that_a_later_process_took_is_spared(tmp_path, child):
    """`kill_leftovers(task_pids(sandbox))` SIGKILLed whatever had the pid a checkpoint named,
    maybe long after its run ended: a process that took the pid since (pid reuse), started
    after the record, is not the run's, and lives on."""
    started = psutil.Process(child.pid).create_time()
    _checkpoint_naming(tmp_path, child.pid, started - 60)  # the run it names ended a minute ago
    assert live(task_pids(tmp_path)) == set()
    kill_leftovers(task_pids(tmp_path))
    assert child.poll() is None


def test_a_pid_the_checkpoint_named_as_its_process_started_is_killed(tmp_path, child):
    _checkpoint_naming(tmp_path, child.pid, time.time())
    assert live(task_pids(tmp_path)) == {child.pid}
    kill_leftovers(task_pids(tmp_path))
    assert child.wait(10) == -signal.SIGKILL
