"""`stoker executor` whose threads have no room below an address-space limit set as it runs.

The limit is put on the running executor (prlimit) once its task runs: room for allocations
(half a thread's stack and first allocations), none for a thread, so every start after it is
refused by `executor.logs.start_thread` (a full pids cgroup refuses them in the C library,
the same RuntimeError). The agent's SHUTDOWN must still end the task (TASK_KILLED) and the
executor (exit 0), with no traceback in its log: a start that no longer has room is said in
one line where a feature degrades, never a callback's failure.
"""
from __future__ import annotations

import resource

import pytest

from executor.logs import room_for_thread
from tests.support.agent_sim import make_task_info
from tests.support.agents import sandboxed_agent
from tests.support.executor_e2e import EXECUTOR, HELLO, document
from tests.support.ports import free_ports
from tests.support.stoker_proc import live, task_pids

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]


def mapped_bytes(pid: int) -> int:
    """What process `pid` maps (its VmSize), in bytes."""
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))


def no_room_for_a_thread(pid: int) -> None:
    """Process `pid`'s address-space limit: room for allocations, none for a thread."""
    hard = resource.prlimit(pid, resource.RLIMIT_AS)[1]
    resource.prlimit(pid, resource.RLIMIT_AS, (mapped_bytes(pid) + room_for_thread() // 2, hard))


def subscribed(agent, tmp_path):
    """A `stoker executor` launched by `agent` and subscribed: its process."""
    proc = agent.launch_executor(EXECUTOR, cwd=agent.sandbox, shutdown_grace="3secs")
    agent.wait_subscribed(timeout_secs=10)
    return proc


def running(agent, tmp_path):
    """`subscribed`, its task-1 RUNNING: the executor's process and the task's pids."""
    proc = subscribed(agent, tmp_path)
    agent.launch(make_task_info("task-1", document(tmp_path, HELLO), ports=free_ports(2)))
    agent.wait_for_state("task-1", "TASK_RUNNING", 10)
    return proc, task_pids(agent.sandbox)


def test_shutdown_with_no_room_for_a_thread_still_kills_the_task_and_exits(tmp_path):
    """Was: the SHUTDOWN's timer (SIGKILL for what still runs when the grace is over) refused,
    the callback failed with a traceback (`mesos_callback_failed`)."""
    with sandboxed_agent(tmp_path) as agent:
        proc, pids = running(agent, tmp_path)
        no_room_for_a_thread(proc.pid)
        agent.shutdown()
        agent.wait_for_state("task-1", "TASK_KILLED", 10)
        assert agent.wait_exit(10) == 0
        assert not live(pids)
        log = agent.executor_log()
    assert "shutdown_deadline_unarmed" in log, log[-3000:]


def test_a_launch_with_no_room_for_the_tasks_thread_fails_the_task_and_exits(tmp_path):
    """The task's thread refused: TASK_FAILED in one line, and the executor ends."""
    with sandboxed_agent(tmp_path) as agent:
        no_room_for_a_thread(subscribed(agent, tmp_path).pid)
        agent.launch(make_task_info("task-1", document(tmp_path, HELLO), ports=free_ports(2)))
        failed = agent.wait_for_state("task-1", "TASK_FAILED", 10)
        status = agent.wait_exit(10)
    assert failed.message == ("executor error: the task's thread could not start (can't start new thread); "
                              "nothing started"), failed.message
    assert status == 0  # the terminal update delivered


def test_a_kill_with_no_room_for_a_thread_still_kills_the_task(tmp_path):
    """The agent's KILL (no lifecycle endpoints) with no room for a thread: TASK_KILLED, exit 0."""
    with sandboxed_agent(tmp_path) as agent:
        proc, pids = running(agent, tmp_path)
        no_room_for_a_thread(proc.pid)
        agent.kill("task-1", grace_secs=1.0)
        agent.wait_for_state("task-1", "TASK_KILLED", 10)
        assert agent.wait_exit(10) == 0
        assert not live(pids)
