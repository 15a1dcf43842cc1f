"""The Mesos side audited (docs/mesos.md): the real `stoker executor` under the agent
simulator, each test a defect an operator or a scheduler would hit.

- A frozen agent (stopped, deadlocked, a paused VM: the kernel still completes the TCP
  handshake, nobody answers) used to hold the executor's SUBSCRIBE forever, waiting for
  the answer's headers with no timeout, so MESOS_RECOVERY_TIMEOUT never fired and the task
  was never killed. A SUBSCRIBE now waits for its answer (and the stream's first event) at
  most what is left of the outage (docs/mesos.md §15).
- An executor whose only launch was a LAUNCH_GROUP failed every task of it and then stayed
  up, idle, holding its resources, until the agent shut it down. It now exits once the
  group's updates are acknowledged, as after any task it cannot start (docs/mesos.md §9).
- A token with a character no header can carry (a trailing newline) made http.client raise
  an error quoting the whole `Bearer` value, which the driver logged with its traceback:
  the token in the executor log, and exit status 1. It is now a settings error (exit 2)
  that names the variable and the position, never the token (docs/mesos.md §6).
- On SHUTDOWN the executor gave the task's regular processes the grace minus 1 s, and then
  its final processes their whole finalization_wait: a final process still running when
  the agent's grace ended was destroyed with the container, and the task reported as
  TASK_FAILED (REASON_EXECUTOR_TERMINATED) instead of TASK_KILLED. Whatever still runs at
  the end of the kill grace is now SIGKILLed (docs/mesos.md §16).
- A SUBSCRIBE answered 403 (the token's claims name another executor or container: the
  only 403 the agent gives a SUBSCRIBE) was retried like the 403 an UPDATE gets during
  an agent's recovery, until MESOS_RECOVERY_TIMEOUT. It is now refused for good at once
  (docs/mesos.md §5).
- (From this audit's own change, docs/mesos.md §12: a task that ends while the agent is
  away now keeps the executor waiting for the resubscription, up to
  MESOS_RECOVERY_TIMEOUT.) A stop signal during that wait was not read until it ended: a
  SIGTERM now cuts it to the shutdown grace, as SHUTDOWN does.

Already right, and proven here as nothing else did end to end: a KILL's kill policy
overrides the TaskInfo's, the TaskInfo's applies when the KILL has none, and a KILL for a
task the executor never had is logged and ignored (docs/mesos.md §9, §18).
"""
from __future__ import annotations

import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from config.document import encode
from config.loader import load_job
from tests.support.agent_sim import make_task_info
from tests.support.shellwords import fake_sh, in_aurora
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.timeout(30)]

EXECUTOR = [sys.executable, "-m", "executor", "executor"]



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
    wait_for(lambda: " registered agent=" in sim.executor_log(), 15)  # the stream is the executor's
    lost_at = time.monotonic()  # before the crash: the executor's clock starts as it sees it
    sim.crash()
    frozen = _frozen_agent(sim.port)
    try:
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


def test_a_token_a_header_cannot_carry_is_a_settings_error_that_never_shows_it(sim):
    token = "T0k3n-SECRET\n"  # a trailing newline, as a file read into a variable has
    sim.launch_executor(EXECUTOR, cwd=sim.sandbox, token=token,
                        env_overrides={"STOKER_LOG_LEVEL": "DEBUG"})
    assert sim.wait_exit(10) == 2  # a settings error, before anything starts
    out = sim.executor_log() + (sim.sandbox / "executor.stdout").read_text()
    assert "MESOS_EXECUTOR_AUTHENTICATION_TOKEN" in out and "control character" in out, out
    assert "T0k3n" not in out, out
    assert sim.requests == []  # nothing was sent with it


def _stubborn(tmp_path: Path) -> bytes:
    """A task whose process ignores SIGTERM and whose own grace (finalization_wait) is 20 s:
    only a SIGKILL at the end of the grace the agent asked for ends it early."""
    path = tmp_path / "stubborn.aurora"
    path.write_text(
        f"p = Process(name='stubborn', cmdline='exec {in_aurora(fake_sh())} --ignore-sigterm --pid-file stubborn.pid')\n"
        "jobs = [Service(cluster='local', role='me', environment='test', name='stubborn',\n"
        "                task=Task(processes=[p], finalization_wait=20,\n"
        "                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)),\n"
        "                lifecycle=DisableLifecycle)]\n")
    return encode(load_job(path))


@pytest.mark.parametrize("task_policy, kill_policy", [(20.0, 0.3), (0.3, None)],
                         ids=["the KILL's policy overrides the TaskInfo's",
                              "the TaskInfo's policy when the KILL has none"])
def test_a_kill_takes_the_grace_the_agent_gave_and_an_unknown_task_s_kill_is_ignored(
        sim, tmp_path, figures, task_policy, kill_policy):
    sim.launch_executor(EXECUTOR, cwd=sim.sandbox)
    sim.wait_subscribed(timeout_secs=15)
    sim.launch(make_task_info("task-1", _stubborn(tmp_path), kill_policy_secs=task_policy))
    sim.wait_for_state("task-1", "TASK_RUNNING", 10)
    wait_for(lambda: (sim.sandbox / "stubborn.pid").exists(), 10)  # SIGTERM ignored from here
    sim.kill("task-9", grace_secs=0.0)  # a task this executor never had
    wait_for(lambda: "kill_ignored" in sim.executor_log(), 5)
    assert sim.states("task-1") == ["TASK_STARTING", "TASK_RUNNING"]
    assert sim.unknown_updates == []  # nothing was said about task-9
    killed_at = time.monotonic()
    sim.kill("task-1", grace_secs=kill_policy)
    sim.wait_for_state("task-1", "TASK_KILLED", 8)  # not the 20 s of the other grace
    took = time.monotonic() - killed_at
    figures.add("KILL to TASK_KILLED, grace 0.3 s", f"{took:.2f} s")
    assert took >= 0.3
    assert sim.wait_exit(10) == 0


def test_shutdown_ends_a_task_s_final_processes_within_the_grace(sim, tmp_path, figures):
    path = tmp_path / "final.aurora"
    path.write_text(
        "main = Process(name='main', cmdline='exec sleep 1000')\n"
        "fin = Process(name='fin', cmdline='trap \"\" TERM; sleep 60', final=True)\n"
        "jobs = [Service(cluster='local', role='me', environment='test', name='final',\n"
        "                task=Task(processes=[main, fin], finalization_wait=30,\n"
        "                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)),\n"
        "                lifecycle=DisableLifecycle)]\n")
    sim.launch_executor(EXECUTOR, cwd=sim.sandbox, shutdown_grace="1500ms")
    sim.wait_subscribed(timeout_secs=15)
    sim.launch(make_task_info("task-1", encode(load_job(path))))
    sim.wait_for_state("task-1", "TASK_RUNNING", 10)
    shut_at = time.monotonic()
    sim.shutdown()  # the agent destroys the container 1.5 s later
    killed = sim.wait_for_state("task-1", "TASK_KILLED", 5)
    figures.add("SHUTDOWN to TASK_KILLED, grace 1.5 s, a final process ignoring SIGTERM",
                f"{killed.at - shut_at:.2f} s")
    assert sim.wait_exit(5) == 0
    assert not sim.destroyed_after_grace
    assert sim.states("task-1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"]


def test_a_task_ending_while_the_agent_is_away_waits_for_it_and_a_signal_ends_the_wait(
        sim, tmp_path, figures):
    path = tmp_path / "short.aurora"
    path.write_text(
        "p = Process(name='short', cmdline='sleep 0.3')\n"
        "jobs = [Job(cluster='local', role='me', environment='test', name='short',\n"
        "            task=Task(processes=[p], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]\n")
    proc = sim.launch_executor(EXECUTOR, cwd=sim.sandbox, recovery_timeout="30secs",
                               backoff_max="200ms", shutdown_grace="700ms")
    sim.wait_subscribed(timeout_secs=15)
    sim.launch(make_task_info("task-1", encode(load_job(path))))
    sim.wait_for_state("task-1", "TASK_RUNNING", 10)
    sim.crash()  # the task finishes while the agent is away
    wait_for(lambda: "task_done" in sim.executor_log(), 10)
    with pytest.raises(TimeoutError):
        sim.wait_exit(0.3)  # not after a fixed wait: only the resubscription carries the update
    proc.send_signal(signal.SIGTERM)  # an operator stops it meanwhile
    stopped_at = time.monotonic()
    assert sim.wait_exit(5) == 5  # within the shutdown grace, the update unacknowledged
    figures.add("SIGTERM during the wait through an agent outage to exit",
                f"{time.monotonic() - stopped_at:.2f} s")


def test_a_subscribe_refused_403_ends_the_executor_at_once(sim):
    sim.claims_mismatch = True  # a token made for another executor or container
    started = time.monotonic()
    sim.launch_executor(EXECUTOR, cwd=sim.sandbox, recovery_timeout="10secs")
    assert sim.wait_exit(5) == 3  # never subscribed; not after MESOS_RECOVERY_TIMEOUT
    assert time.monotonic() - started < 5
    assert [r.status for r in sim.calls("SUBSCRIBE")] == [403]
    assert "mesos_giving_up executor_id=stoker-executor-1 reason=\"the agent rejected SUBSCRIBE: HTTP 403" in sim.executor_log()
