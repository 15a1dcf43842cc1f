"""What the `stoker executor` end-to-end tests share: a job file made into the task document
a scheduler would send, a Service around one process, the agent simulator as a fixture
(`agent_for`: the executor's log must never hold the agent's token), and a LAUNCH as an agent
does it (the executor started, subscribed, the task offered two free ports)."""
from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

from config.document import encode
from config.loader import load_job
from tests.support.agent_sim import AgentSimulator, make_task_info
from tests.support.agents import sandboxed_agent
from tests.support.ports import free_ports

EXECUTOR = [sys.executable, "-m", "executor", "executor"]
TOKEN = "s3cr3t-jwt-token-value"


def document(tmp_path: Path, body: str, **kw) -> bytes:
    path = tmp_path / f"job{time.monotonic_ns()}.aurora"
    path.write_text(textwrap.dedent(body))
    return encode(load_job(path), **kw)


def service(process_cmdline: str, health: str = "", extra: str = "") -> str:
    return f"""
        p = Process(name='web', cmdline={process_cmdline!r})
        jobs = [Service(cluster='local', role='me', environment='test', name='web',
                        task=Task(processes=[p], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB),
                                  finalization_wait=1),
                        {health} {extra})]
    """


def agent_for(tmp_path):
    """The agent simulator as a fixture's body (`yield from agent_for(tmp_path)`)."""
    with sandboxed_agent(tmp_path, auth_token=TOKEN) as sim:
        yield sim
    assert TOKEN not in sim.executor_log(), "the auth token leaked into the executor log"




def launch(sim: AgentSimulator, data: bytes, task_id: str = "task-1", **kw) -> None:
    """Start the executor like an agent, then LAUNCH one task offering two free ports."""
    sim.launch_executor(EXECUTOR, cwd=sim.sandbox, **kw)
    sim.wait_subscribed(timeout_secs=10)
    sim.launch(make_task_info(task_id, data, ports=free_ports(2)))


HELLO = """
    hello = Process(name='hello', cmdline='while true; do echo hello world; sleep 10; done')
    jobs = [Service(task=SequentialTask(processes=[hello], resources=Resources(cpu=1.0, ram=128*MB, disk=128*MB)),
                    cluster='devcluster', role='www-data', environment='prod', name='hello')]
"""
