"""The Mesos side audited (docs/mesos.md): the real `stoker executor` under the agent
simulator, each test a defect an operator or a scheduler would hit.

- A frozen agent (stopped, deadlocked, a paused VM: the kernel still completes the TCP
  handshake, nobody answers) used to hold the executor's SUBSCRIBE forever, waiting for
  the answer's headers with no timeout, so MESOS_RECOVERY_TIMEOUT never fired and the task
  was never killed. A SUBSCRIBE now waits for its answer at most what is left of the
  outage (at most the connect timeout) (docs/mesos.md §15).
- An executor whose only launch was a LAUNCH_GROUP failed every task of it and then stayed
  up, idle, holding its resources, until the agent shut it down. It now exits once the
  group's updates are acknowledged, as after any task it cannot start (docs/mesos.md §9).
- A token with a character no header can carry (a trailing newline) made http.client raise
  an error quoting the whole `Bearer` value, which the driver logged with its traceback:
  the token in the executor log, and exit status 1. It is now a settings error (exit 2)
  that names the variable and the position, never the token (docs/mesos.md §6).
"""
from __future__ import annotations

import socket
import sys
import time

import pytest

from tests.support.agent_sim import AgentSimulator, make_task_info
from tests.support.stoker_proc import kill_leftovers, task_pids
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.timeout(30)]

EXECUTOR = [sys.executable, "-m", "executor", "executor"]


@pytest.fixture
def sim(tmp_path):
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    agent = AgentSimulator(sandbox=sandbox)
    yield agent
    agent.close()
    kill_leftovers(task_pids(sandbox))
    print("---- executor log ----\n" + agent.executor_log()[-4000:])


def _frozen_agent(port: int) -> socket.socket:
    """A listening socket that never accepts: connects succeed (the kernel's backlog), and
    no request is ever answered, like an agent process that is stopped."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(16)
    return sock


def test_a_frozen_agent_still_ends_the_executor_at_the_recovery_timeout(sim, figures):
    sim.launch_executor(EXECUTOR, cwd=sim.sandbox, recovery_timeout="1secs", backoff_max="200ms")
    wait_for(lambda: "mesos_subscribed" in sim.executor_log(), 15)  # the stream is the executor's
    sim.crash()
    frozen = _frozen_agent(sim.port)
    try:
        lost_at = time.monotonic()
        assert sim.wait_exit(10) == 4  # the agent is lost for good
        took = time.monotonic() - lost_at
    finally:
        frozen.close()
    figures.add("exit after the agent froze (recovery timeout 1 s)", f"{took:.2f} s")
    assert took >= 1.0  # never before the recovery timeout
    log = sim.executor_log()
    assert "mesos_giving_up" in log and "MESOS_RECOVERY_TIMEOUT of 1s" in log


def test_an_executor_given_only_a_launch_group_fails_its_tasks_and_exits(sim, figures):
    sim.launch_executor(EXECUTOR, cwd=sim.sandbox)
    sim.wait_subscribed(timeout_secs=15)
    sim.launch_group([make_task_info("task-3", b"{}"), make_task_info("task-4", b"{}")])
    for tid in ("task-3", "task-4"):
        failed = sim.wait_for_state(tid, "TASK_FAILED", 10)
        assert "LAUNCH_GROUP" in failed.message and failed.reason == "REASON_TASK_INVALID"
    started = time.monotonic()
    assert sim.wait_exit(5) == 0  # no task will ever run here: the executor leaves
    figures.add("exit after the group's updates", f"{time.monotonic() - started:.2f} s")
    assert not sim.destroyed_after_grace and sim.unknown_updates == []


@pytest.mark.parametrize("token", ["T0k3n-SECRET\n", "T0k3n\r\nX-Forged: 1"])
def test_a_token_a_header_cannot_carry_is_a_settings_error_that_never_shows_it(sim, token):
    sim.launch_executor(EXECUTOR, cwd=sim.sandbox, token=token,
                        env_overrides={"STOKER_LOG_LEVEL": "DEBUG"})
    assert sim.wait_exit(10) == 2  # a settings error, before anything starts
    out = sim.executor_log() + (sim.sandbox / "executor.stdout").read_text()
    assert "MESOS_EXECUTOR_AUTHENTICATION_TOKEN" in out and "control character" in out, out
    assert "T0k3n" not in out, out
    assert sim.requests == []  # nothing was sent with it
