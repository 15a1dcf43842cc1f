"""Issue 16, what the audit broke through LAUNCH: the real executor under the agent simulator.

- #12: a second LAUNCH with the id of the task that is running is a duplicate (an agent's
  retry, or a forged one): it is ignored. It used to send TASK_FAILED for the running task.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from config.document import encode
from config.loader import load_job
from tests.support.agent_sim import TERMINAL_STATES, AgentSimulator, make_task_info
from tests.support.stoker_proc import kill_leftovers, live, task_pids
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]

EXECUTOR = [sys.executable, "-m", "executor", "executor"]


def _sleeper(tmp_path: Path) -> bytes:
    path = tmp_path / "sleeper.aurora"
    path.write_text(
        "jobs = [Service(cluster='local', role='me', environment='test', name='sleeper',\n"
        "                task=Task(processes=[Process(name='sleep', cmdline='exec sleep 1000')],\n"
        "                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)),\n"
        "                lifecycle=DisableLifecycle)]\n")
    return encode(load_job(path))


@pytest.fixture
def sim(tmp_path):
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    agent = AgentSimulator(sandbox=sandbox)
    yield agent
    agent.close()
    kill_leftovers(task_pids(sandbox))


# ---- #12: a duplicate LAUNCH ----

def test_a_duplicate_launch_is_ignored_and_the_running_task_is_left_alone(sim, tmp_path, figures):
    info = make_task_info("task-1", _sleeper(tmp_path))
    sim.launch_executor(EXECUTOR, cwd=sim.sandbox)
    sim.wait_subscribed(timeout_secs=15)
    sim.launch(info)
    sim.wait_for_state("task-1", "TASK_RUNNING", 20)
    pids = wait_for(lambda: task_pids(sim.sandbox), 10)
    before = sim.states("task-1")
    # The simulator books a LAUNCH as a new task: its history restarts with the duplicate.
    sim.launch(info)  # the same TaskInfo again
    sim.launch(make_task_info("task-1", b"{}"))  # same id, other data
    # Events are handled in order: the KILL comes after both duplicates were handled.
    sim.kill("task-1", grace_secs=1.0)
    sim.wait_for(lambda: TERMINAL_STATES & set(sim.states("task-1")), 20, "a terminal update")
    assert sim.wait_exit(15) == 0
    after = sim.states("task-1")
    figures.add("updates for task-1 after two duplicate LAUNCHes and a KILL", " ".join(after))
    assert before == ["TASK_STARTING", "TASK_RUNNING"], before
    assert after == ["TASK_KILLED"], after
    assert not live(pids)
    log = sim.executor_log()
    assert log.count("launch_duplicate") == 2, log[-3000:]
