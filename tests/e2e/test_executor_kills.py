"""`stoker executor` end to end, kills: an operator's `stoker kill`, a KILL whose grace cannot
be read, a shell check in flight at a KILL, and a KILL while a task that failed for good
stops; the real executor under the agent simulator."""
from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from tests.support import pidnames
from tests.support.executor_e2e import EXECUTOR, HELLO, agent_for, document, launch, service
from tests.support.importhook import patched_at_load
from tests.support.proc_scan import kill_carrying, pids_carrying
from tests.support.stoker_proc import (
    REPO,
    checkpoint_records,
    live,
    task_pids,
)
from tests.support.waiting import wait_for


@pytest.fixture
def agent(tmp_path):
    yield from agent_for(tmp_path)


def test_an_operator_s_kill_reaches_the_agent_as_task_killed(agent, tmp_path):
    """Under `stoker executor`, `stoker kill` is a KILL the operator asked for: the same staged
    kill, then TASK_KILLED to the agent saying who asked; `stoker ps` lists the task."""
    launch(agent, document(tmp_path, HELLO))
    agent.wait_for_state("task-1", "TASK_RUNNING", 10)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    listed = subprocess.run([*EXECUTOR[:-1], "ps", "--json"], capture_output=True, text=True,
                            timeout=30, env=env)
    (row,) = [r for r in json.loads(listed.stdout) if r["sandbox"] == str(agent.sandbox)]
    assert (row["task_id"], row["state"], row["front_end"]) == ("task-1", "RUNNING", "executor")
    done = subprocess.run([*EXECUTOR[:-1], "kill", "task-1", "--grace", "1"], capture_output=True,
                          text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == ("stoker kill: task hello.0 KILLED: killed by the "
                                            "operator (stoker kill)")
    killed = agent.wait_for_state("task-1", "TASK_KILLED", 10)
    assert killed.message == "killed by the operator (stoker kill)"
    assert agent.states("task-1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"]
    assert agent.wait_exit(10) == 0


def test_a_kill_whose_grace_cannot_be_read_still_kills_the_task(agent, tmp_path):
    """A KILL with `"nanoseconds": NaN` (Python's json writes it; Mesos never does) used to
    break the event stream: the executor reconnected, the agent never sends a KILL again, and
    the task ran on. It is a KILL with the task's own grace, and one WARNING names the value."""
    launch(agent, document(tmp_path, service("exec sleep 1000", extra="lifecycle=DisableLifecycle,")))
    agent.wait_for_state("task-1", "TASK_RUNNING", 10)
    agent.send_events([{"type": "KILL", "kill": {"task_id": {"value": "task-1"}, "kill_policy": {
        "grace_period": {"nanoseconds": float("nan")}}}}])
    killed = agent.wait_for_state("task-1", "TASK_KILLED", 10)
    assert "KILL" in killed.message
    assert agent.wait_exit(10) == 0
    assert len(agent.subscribes) == 1  # the stream was not broken
    (warning,) = [line for line in agent.executor_log().splitlines() if "mesos_kill_grace_ignored" in line]
    assert "WARNING" in warning and "task_id=task-1" in warning
    assert "kill_policy.grace_period.nanoseconds is nan, not a number of nanoseconds" in warning


def test_a_shell_check_in_flight_at_a_kill_is_gone_before_task_killed(agent, tmp_path):
    """Nothing of a task may run once its terminal update is out (the agent may destroy the
    container right after): a shell health check running when the KILL comes (its bash and
    a child it started) is killed and gone before TASK_KILLED is sent."""
    check = "echo $$ >> check.pids; sleep 30 & echo $! >> check.pids; wait"
    launch(agent, document(tmp_path, service(
        "exec sleep 1000",
        "health_check_config=HealthCheckConfig(health_checker=HealthCheckerConfig("
        f"shell=ShellHealthChecker(shell_command='{check}')), timeout_secs=60, interval_secs=0.1),",
        "lifecycle=DisableLifecycle,")))
    pids_file = agent.sandbox / "check.pids"
    pids = wait_for(lambda: (found if len(found := pidnames.pid_file(pids_file)) == 2 else None), timeout_secs=10)
    assert live(pids) == pids
    at_terminal: list[set[int]] = []
    agent.on_terminal = lambda record: at_terminal.append(live(pids))
    agent.kill("task-1", grace_secs=1.0)
    agent.wait_for_state("task-1", "TASK_KILLED", 10)
    assert at_terminal == [set()]
    assert agent.wait_exit(10) == 0


def test_a_kill_while_a_failed_task_stops_ends_it_killed_with_the_kill_s_reason(agent, tmp_path):
    """A process failed for good and the task stops its other process (it ignores SIGTERM, so
    the stop waits for SIGKILL at finalization_wait); the agent's KILL comes before the
    task's end was reported. The kill's verdict wins, as Aurora's kill manager beats a runner
    that has not exited yet: one terminal update, TASK_KILLED with the kill's words, and the
    KILL's grace brings the SIGKILL forward (30 s otherwise)."""
    launch(agent, document(tmp_path, """
        keep = Process(name='keep', cmdline='''trap '' TERM; touch keep.ready; while true; do sleep 0.05; done''')
        fail = Process(name='fail', max_failures=1,
                       cmdline='while [ ! -e keep.ready ]; do sleep 0.02; done; exit 3')
        jobs = [Job(cluster='local', role='me', environment='test', name='failing',
                    task=Task(processes=[keep, fail], finalization_wait=30,
                              resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
    """))
    wait_for(lambda: any(r.get("kind") == "phase" and r.get("to") == "CLEANING"
                         for r in checkpoint_records(agent.sandbox)), timeout_secs=10)
    agent.kill("task-1", grace_secs=0.2)
    killed = agent.wait_for_state("task-1", "TASK_KILLED", 10)
    assert killed.message == "killed by the agent (KILL)"
    terminal = [s for s in agent.states("task-1") if s in ("TASK_FINISHED", "TASK_FAILED", "TASK_KILLED")]
    assert terminal == ["TASK_KILLED"]
    records = checkpoint_records(agent.sandbox)
    assert [r["reason"] for r in records if r.get("kind") == "process" and r.get("process") == "fail"
            and r.get("to") == "FAILED"], "the failure that began the stop was not recorded"
    assert not live(task_pids(agent.sandbox))
    assert agent.wait_exit(10) == 0


# A SIGTERM that comes once the executor's relay has closed, as it writes its last lines and
# exits (an agent's destroy of its container as the task's last update is acknowledged).
SIGTERM_AFTER_THE_RELAY = patched_at_load("executor.host.signals", """
    def _patch(module):
        real = module.SignalRelay.close

        def close(self, *args, **kwargs):
            real(self, *args, **kwargs)
            import threading
            with open(os.environ["RELAY_THREADS"], "w") as out:  # the threads its exit would wait for
                out.write(" ".join(t.name for t in threading.enumerate()
                                   if not t.daemon and t is not threading.main_thread()))
            os.kill(os.getpid(), 15)

        module.SignalRelay.close = close
    """)


def test_a_sigterm_after_the_relay_closed_leaves_the_exit_status_as_it_was(agent, tmp_path):
    """Was: exit 3 (`never subscribed`, the handler the entry point had while loading, put
    back by the relay), for an executor whose task was killed and acknowledged (0). Ignored
    there, the SIGTERM cannot stop it: it then waits for no thread (every other is a daemon),
    so it exits by itself (contract §9)."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SIGTERM_AFTER_THE_RELAY)
    threads = tmp_path / "threads"
    launch(agent, document(tmp_path, service("exec sleep 1000", extra="lifecycle=DisableLifecycle,")),
           env_overrides={"PYTHONPATH": f"{hook}{os.pathsep}{REPO}", "RELAY_THREADS": str(threads)})
    agent.wait_for_state("task-1", "TASK_RUNNING", 10)
    agent.kill("task-1")
    agent.wait_for_state("task-1", "TASK_KILLED", 10)
    assert agent.wait_exit(10) == 0
    assert "Traceback" not in agent.executor_log()
    assert threads.read_text() == ""


# 100 processes at once, each a sleep whose environment names MARK (this test's own): found in /proc whether
# the checkpoint has its pid yet or not
BURST = """
    ps = [Process(name='p%d' % i, cmdline='exec env BURST=MARK sleep 600')
          for i in range(COUNT)]
    jobs = [Service(cluster='local', role='me', environment='test', name='burst',
                    task=Task(processes=ps, resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB),
                              finalization_wait=1))]
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_in_the_first_burst_of_spawns_kills_every_process_started_or_not(agent, tmp_path, sig):
    """The moment the first of a task's 100 processes has started and the rest are being
    forked: a SIGTERM (the agent's own stop) or SIGINT to `stoker executor` ends the task
    KILLED, acknowledged, exit 0 (docs/contract.md §9), with none of the 100 left running,
    whether it had started as the signal came or not, and no traceback."""
    mark = tmp_path / "burst"
    launch(agent, document(tmp_path, BURST.replace("MARK", str(mark)).replace("COUNT", "100")))
    try:
        wait_for(lambda: pids_carrying(f"BURST={mark}"), 20, message="the first process of the burst started")
        agent._proc.send_signal(sig)
        assert agent.wait_exit(20) == 0, agent.executor_log()[-3000:]
        assert agent.states("task-1")[-1] == "TASK_KILLED"
        assert [r["to"] for r in checkpoint_records(agent.sandbox) if r["kind"] == "task"][-1] == "KILLED"
        assert not live(task_pids(agent.sandbox))
        assert not pids_carrying(f"BURST={mark}")
        assert "Traceback" not in agent.executor_log()
    finally:
        kill_carrying(f"BURST={mark}")


def test_a_shutdown_amid_a_start_of_thousands_is_taken_between_two_batches(agent, tmp_path):
    """A SHUTDOWN that came while a task's 2,000 processes were being forked waited for the last
    fork (about 1 ms each: 2.1 s here, 20,000 outlived the agent's 5 s grace), and the agent
    heard TASK_RUNNING before TASK_KILLED. The owner now takes it between two batches of
    starts (planner.START_BATCH): TASK_KILLED without TASK_RUNNING, most never started."""
    mark = tmp_path / "burst"
    launch(agent, document(tmp_path, BURST.replace("MARK", str(mark)).replace("COUNT", "2000")))
    try:
        agent.wait_for_state("task-1", "TASK_STARTING", 20)
        agent.shutdown()
        assert agent.wait_exit(20) == 0, agent.executor_log()[-3000:]
        assert agent.states("task-1") == ["TASK_STARTING", "TASK_KILLED"]
        records = checkpoint_records(agent.sandbox)
        ran = [r for r in records if r["kind"] == "process" and r.get("from") == "RUNNING"]
        assert 0 < len(ran) < 1000, len(ran)  # a batch or a few, not the 2,000
        assert not live(task_pids(agent.sandbox)) and not pids_carrying(f"BURST={mark}")
    finally:
        kill_carrying(f"BURST={mark}")
