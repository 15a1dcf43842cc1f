"""`stoker executor` under the agent simulator with its sandbox on a small tmpfs that fills:
while the task runs (its own output fills it), and before the task is launched (no byte or
inode left). Every status update still reaches the agent, the executor exits 0 with no
traceback (the fixture checks its log), and what could not be written is said once; and the
executor's own log on that disk, as it fills and has room again, under PYTHONUNBUFFERED=1.

Found by this probe: with nothing left on the disk, the run whose `.logs` could not be made
was reported TASK_RUNNING ("processes started") between TASK_STARTING and TASK_FAILED,
though no process had started."""
from __future__ import annotations

import os
import re

import pytest

from tests.support import limits
from tests.support.agent_sim import make_task_info
from tests.support.agents import sandboxed_agent
from tests.support.executor_e2e import EXECUTOR, TOKEN, document, launch
from tests.support.ports import free_ports
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)

# disk=1*GB: the disk-limit check (the sandbox past Resources.disk) must not end it first
JOB = """
    p = Process(name='web', cmdline={cmdline!r})
    jobs = [Service(cluster='local', role='me', environment='test', name='web',
                    task=Task(processes=[p], resources=Resources(cpu=0.1, ram=1*MB, disk=1*GB),
                              finalization_wait=1))]
"""


@pytest.fixture
def fs(tmp_path):
    with limits.tmpfs(tmp_path / "fs", size="2m", inodes=400) as mount_point:
        yield mount_point


@pytest.fixture
def agent(fs):
    with sandboxed_agent(fs, auth_token=TOKEN) as sim:
        yield sim


def test_a_task_that_fills_its_sandbox_runs_on_and_its_kill_is_reported(agent, fs, tmp_path):
    fills = "yes 'a line of output that fills the disk' | head -c 4000000; exec sleep 1000"
    launch(agent, document(tmp_path, JOB.format(cmdline=fills)))
    agent.wait_for_state("task-1", "TASK_RUNNING", 10)
    wait_for(lambda: os.statvfs(fs).f_bavail == 0, 10, message="the task's output never filled the disk")
    agent.kill("task-1", grace_secs=1.0)
    killed = agent.wait_for_state("task-1", "TASK_KILLED", 10)
    assert agent.states("task-1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"]
    assert killed.message == "killed by the agent (KILL)"
    assert agent.wait_exit(10) == 0
    warned = [line.split()[4] for line in agent.executor_log().splitlines() if " WARNING " in line]
    assert len(warned) == len(set(warned)), warned  # each file that could not be written: said once


def test_a_sandbox_full_before_the_launch_fails_the_task_without_a_running_update(agent, fs, tmp_path):
    data = document(tmp_path, JOB.format(cmdline="exec sleep 1000"))
    agent.launch_executor(EXECUTOR, cwd=agent.sandbox)
    agent.wait_subscribed(timeout_secs=10)
    limits.fill(fs)
    limits.fill_inodes(fs)
    agent.launch(make_task_info("task-1", data, ports=free_ports(2)))
    failed = agent.wait_for_state("task-1", "TASK_FAILED", 10)
    assert agent.states("task-1") == ["TASK_STARTING", "TASK_FAILED"]  # was: a RUNNING between
    assert failed.message.startswith("process 'web' failed: could not start: cannot create the log directory ")
    assert "No space left on device (ENOSPC)" in failed.message
    assert agent.wait_exit(10) == 0
    log = agent.executor_log()
    assert "the task runs without a checkpoint" in log and log.count("checkpoint_unavailable") == 1


LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [A-Z]+ +\S+: \S+( .*)?$")


def test_the_executors_own_log_on_a_full_sandbox_keeps_whole_lines_and_says_what_it_lost(agent, fs, tmp_path):
    """The executor's log (SANDBOX/executor.log) under PYTHONUNBUFFERED=1, as many container
    images set it: a line the full disk cut short ran on into the next one once there was room,
    and no line was counted or said lost (Python's unbuffered stderr drops the rest of a short
    write unsaid); now the cut line is finished, and so is the one logged while the disk was
    full, kept by the buffer (it was counted lost too, `log_lines_dropped count=1`)."""
    data = document(tmp_path, JOB.format(cmdline="exec sleep 1000"))
    launch(agent, data, env_overrides={"PYTHONUNBUFFERED": "1"})
    agent.wait_for_state("task-1", "TASK_RUNNING", 10)
    filler = limits.fill(fs)
    def page_full() -> bool:
        return agent.log_path.stat().st_size % 4096 == 0

    # one `framework_message` line each, each written (or the page full) before the next is
    # sent, until the log's last page is full: a page's rest takes up to ~60 of them (was: 60
    # sent at once, then 5 s for the last page to fill, which a loaded host's executor missed)
    for n in range(150):
        agent.message(b"x" * n)
        wait_for(lambda n=n: page_full() or re.search(rf" framework_message bytes={n}$", agent.executor_log(), re.M),
                 10, message=f"framework message {n} neither logged nor cut by the full page")
        if page_full():
            break
    assert page_full(), "the log never filled its page"
    agent.message(b"lost")
    filler.unlink()
    agent.message(b"a" * 100)
    wait_for(lambda: "framework_message bytes=100" in agent.executor_log(), 5)
    agent.kill("task-1", grace_secs=1.0)
    agent.wait_for_state("task-1", "TASK_KILLED", 10)
    assert agent.wait_exit(10) == 0
    lines = agent.executor_log().splitlines()
    torn = [line[:150] for line in lines if line and (not LINE.match(line) or
            " framework_message " in line and not re.search(r" framework_message bytes=\d+$", line))]
    assert not torn, torn
    assert [line for line in lines if " log_lines_dropped " in line] == [], lines[-8:]
    assert any(line.endswith(" framework_message bytes=4") for line in lines), lines[-8:]  # b"lost"
