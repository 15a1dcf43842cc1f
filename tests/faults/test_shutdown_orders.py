"""`stoker executor`'s SHUTDOWN in orders with the task's other events, its grace's end a
deadline of the task's owner (`kill_all_at`): after a KILL with a long grace, before one,
during the final processes of a task that ended, during a restart's back-off, before a stop
signal, while a failed health check stops the task, during the lifecycle endpoints' waits,
and handed to an owner made after that end. The real executor under the agent simulator,
real processes that ignore SIGTERM (a final one among them): each order ends with the
terminal update acknowledged before the executor exits on its own within the agent's
shutdown grace, and nothing of the task running as that update is sent.
"""
from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import time
from collections.abc import Callable

import pytest

from tests.support.agent_sim import AgentSimulator, make_task_info
from tests.support.agents import sandboxed_agent
from tests.support.executor_e2e import EXECUTOR, document
from tests.support.importhook import patched_at_load
from tests.support.ports import free_ports
from tests.support.shellwords import fake_sh
from tests.support.stoker_proc import REPO, checkpoint_records, live, task_pids
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]

GRACE = "2secs"  # the agent's shutdown grace: the task's kill_all_at 1 s before its end, 1 s after it began
IGNORES_TERM = 'trap "" TERM; exec sleep 1000'
NO_LIFECYCLE = "lifecycle=DisableLifecycle"
Act = Callable[[AgentSimulator, subprocess.Popen], None]


def _job(main: str, extra: str = NO_LIFECYCLE, kind: str = "Service", main_extra: str = "") -> str:
    """`main` and a final process that ignores SIGTERM, with a finalization_wait far past the grace."""
    return textwrap.dedent(f"""
        main = Process(name='main', cmdline={main!r}{main_extra})
        fin = Process(name='fin', cmdline='trap "" TERM; exec sleep 60', final=True)
        jobs = [{kind}(cluster='local', role='me', environment='test', name='j',
                       task=Task(processes=[main, fin], finalization_wait=30,
                                 resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)),
                       {extra})]
    """)


def _runs(agent: AgentSimulator, process: str, to: str) -> int:
    return sum(r.get("process") == process and r.get("to") == to for r in checkpoint_records(agent.sandbox))


def _ends_within_the_grace(tmp_path, body: str, act: Act, *, want: str = "TASK_KILLED",
                           running: bool = True) -> None:
    """Launch `body`, do `act`, and check the end: `want` acknowledged before the executor's
    own exit 0, the agent never destroying it, nothing of the task left at the update."""
    with sandboxed_agent(tmp_path) as agent:
        proc = agent.launch_executor(EXECUTOR, cwd=agent.sandbox, shutdown_grace=GRACE)
        agent.wait_subscribed(timeout_secs=10)
        agent.launch(make_task_info("task-1", document(tmp_path, body), ports=free_ports(2)))
        if running:
            agent.wait_for_state("task-1", "TASK_RUNNING", 10)
        left_at_the_end: list[set[int]] = []
        agent.on_terminal = lambda update: left_at_the_end.append(live(task_pids(agent.sandbox)))
        act(agent, proc)
        agent.wait_for_state("task-1", want, 10)
        status = agent.wait_exit(10)
        log = agent.executor_log()
    assert (status, agent.destroyed_after_grace) == (0, False), log[-3000:]
    assert agent.states("task-1")[-1] == want, agent.states("task-1")
    assert left_at_the_end == [set()], log[-3000:]
    exit_line = next(line for line in log.splitlines() if "executor_exit" in line)
    assert "acknowledged=True" in exit_line, exit_line


def test_a_kill_with_a_long_grace_then_shutdown(tmp_path):
    def act(agent, proc):
        agent.kill("task-1", grace_secs=30)
        wait_for(lambda: _runs(agent, None, "KILLING"), 10, message="the KILL taken")
        agent.shutdown()
    _ends_within_the_grace(tmp_path, _job(IGNORES_TERM), act)


def test_shutdown_then_a_kill_with_a_long_grace(tmp_path):
    def act(agent, proc):
        agent.shutdown()
        wait_for(lambda: _runs(agent, None, "KILLING"), 10, message="the SHUTDOWN taken")
        agent.kill("task-1", grace_secs=30)
    _ends_within_the_grace(tmp_path, _job(IGNORES_TERM), act)


def test_shutdown_while_the_final_processes_of_a_task_that_ended_run(tmp_path):
    def act(agent, proc):
        wait_for(lambda: _runs(agent, "fin", "RUNNING"), 10, message="the final process started")
        agent.shutdown()
    _ends_within_the_grace(tmp_path, _job("sleep 0.3", kind="Job"), act, running=False)


def test_shutdown_during_a_restarts_back_off(tmp_path):
    def act(agent, proc):
        wait_for(lambda: _runs(agent, "main", "WAITING"), 10, message="a run waiting for its restart")
        agent.shutdown()
    _ends_within_the_grace(tmp_path, _job("exit 1", main_extra=", max_failures=0, min_duration=30"), act,
                           running=False)


def test_shutdown_then_a_stop_signal_gives_no_more_time(tmp_path):
    def act(agent, proc):
        agent.shutdown()
        wait_for(lambda: _runs(agent, None, "KILLING"), 10, message="the SHUTDOWN taken")
        proc.send_signal(signal.SIGTERM)
    _ends_within_the_grace(tmp_path, _job(IGNORES_TERM), act)


def test_shutdown_while_a_failed_health_check_stops_the_task(tmp_path):
    health = ("health_check_config=HealthCheckConfig(health_checker=HealthCheckerConfig("
              "shell=ShellHealthChecker(shell_command='test -e ok')), initial_interval_secs=0.5,"
              " interval_secs=0.1, max_consecutive_failures=1), " + NO_LIFECYCLE)

    def act(agent, proc):
        wait_for(lambda: _runs(agent, None, "KILLING"), 15, message="the failed check stopping the task")
        agent.shutdown()
    _ends_within_the_grace(tmp_path, _job("touch ok; sleep 1.5; rm ok; " + IGNORES_TERM, health), act,
                           want="TASK_FAILED")


def test_shutdown_during_the_lifecycle_endpoints_waits(tmp_path):
    serve = f"exec {fake_sh()} --serve-health {{{{thermos.ports[health]}}}} --ignore-sigterm"
    lifecycle = ("health_check_config=HealthCheckConfig(initial_interval_secs=1.0, interval_secs=0.05),"
                 " lifecycle=LifecycleConfig(http=HttpLifecycleConfig(graceful_shutdown_wait_secs=30,"
                 " shutdown_wait_secs=30))")

    def act(agent, proc):
        agent.kill("task-1", grace_secs=30)
        wait_for(lambda: "stage=lifecycle" in agent.executor_log(), 10, message="the endpoints called")
        agent.shutdown()
    _ends_within_the_grace(tmp_path, _job(serve, lifecycle), act)


HELD_LAUNCH = patched_at_load("executor.mesos.executor", """
    def _patch(module):
        real = module.prepare_launch

        def prepare_launch(*args, **kwargs):  # until the test lets the launch go on
            go = os.path.join(os.environ["MESOS_SANDBOX"], "go")
            for _ in range(1500):
                if os.path.exists(go):
                    break
                time.sleep(0.02)
            return real(*args, **kwargs)

        module.prepare_launch = prepare_launch
""")


@pytest.mark.parametrize("kill_first", [False, True], ids=["SHUTDOWN", "KILL then SHUTDOWN"])
def test_a_shutdown_handed_to_the_owner_past_its_grace_end_starts_no_final_process(tmp_path, kill_first):
    """Was: the SHUTDOWN that waited for the owner (a launch slower than the grace less 1 s)
    stopped the task as any kill, which started its final process, and the bound's SIGKILL,
    in the same step, cut it at its first line (`fin` RUNNING, then KILLED); and so did a KILL
    that waited before it, the SHUTDOWN's bound given to the owner only after it. The agent's
    destroy is not enforced here: what is looked at is what ran, not how soon."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HELD_LAUNCH)
    with sandboxed_agent(tmp_path) as agent:
        agent.launch_executor(EXECUTOR, cwd=agent.sandbox, shutdown_grace=GRACE,
                              env_overrides={"PYTHONPATH": f"{hook}{os.pathsep}{REPO}"})
        agent.wait_subscribed(timeout_secs=10)
        agent.launch(make_task_info("task-1", document(tmp_path, _job(IGNORES_TERM)), ports=free_ports(2)))
        wait_for(lambda: "launch task_id=task-1" in agent.executor_log(), 10, message="the launch held")
        if kill_first:
            agent.kill("task-1", grace_secs=30)
            wait_for(lambda: " kill task_id=task-1" in agent.executor_log(), 10, message="the KILL taken")
        agent.shutdown(enforce_grace=False)
        wait_for(lambda: " shutdown task_id=task-1" in agent.executor_log(), 10, message="the SHUTDOWN taken")
        time.sleep(1.0 + 0.2)  # past its kill_all_at (1 s after it was taken, before this wait's end)
        (agent.sandbox / "go").write_text("")
        agent.wait_for_state("task-1", "TASK_KILLED", 10)
        assert agent.wait_exit(10) == 0
        records = checkpoint_records(agent.sandbox)
    assert not [r for r in records if r.get("process") == "fin" and r.get("to") == "RUNNING"], records
