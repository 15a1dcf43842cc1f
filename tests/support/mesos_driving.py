"""The Mesos driver tests' pieces (tests/integration/test_mesos_*.py): echo_executor.py started
under the agent simulator with tiny intervals, a task run, and what the agent recorded read
back (the UPDATE calls of an update, the updates a SUBSCRIBE carried, the retries logged)."""
from __future__ import annotations

import base64
import sys
from pathlib import Path

from tests.support.agent_sim import AgentSimulator, make_task_info
from tests.support.waiting import wait_for

ECHO = str(Path(__file__).resolve().parents[1] / "support" / "echo_executor.py")
TOKEN = "s3cr3t-t0ken-value"
BACKOFF_MAX_SECS = 0.3
# The agent's re-registration window after a restart (Mesos' default is 2 s; the real
# executor's restart tests, tests/e2e/test_executor.py and tests/faults/test_agent_restarts.py,
# give it 1 s too): an executor retrying at most BACKOFF_MAX_SECS apart is back well inside it,
# even when the machine is loaded. An update is answered 503 until the window closes, so each
# restart of a test costs its window: five restarts in a row took 12 s with 2 s windows.
WINDOW_SECS = 1.0


def start(sim: AgentSimulator, **kwargs) -> None:
    kwargs.setdefault("backoff_max", f"{round(BACKOFF_MAX_SECS * 1000)}ms")
    kwargs.setdefault("recovery_timeout", "10secs")
    kwargs.setdefault("env_overrides", {"STOKER_LOG_LEVEL": "DEBUG"})
    sim.launch_executor([sys.executable, ECHO], **kwargs)


def run_task(sim: AgentSimulator, tid: str) -> None:
    sim.launch(make_task_info(tid, b'{"job": {}}', ports=[31000, 31001]))
    sim.wait_for_state(tid, "TASK_RUNNING")


def uuids_of(body: dict) -> list[bytes]:
    return [base64.b64decode(u["status"]["uuid"])
            for u in body["subscribe"].get("unacknowledged_updates", [])]


def update_calls(sim: AgentSimulator, raw: bytes) -> list:
    return [r for r in sim.calls("UPDATE")
            if base64.b64decode(r.json["update"]["status"]["uuid"]) == raw]


def retries_logged(sim: AgentSimulator) -> int:
    return sim.executor_log().count("mesos_retry ")


def wait_for_retries(sim: AgentSimulator, more_than: int, count: int = 2) -> None:
    """Until the executor has logged `count` more SUBSCRIBE retries (refused connections
    leave no trace at the simulator)."""
    # Polled: the simulator is not notified when the executor writes its log, so its own
    # wait_for would only look again at its timeout.
    wait_for(lambda: retries_logged(sim) >= more_than + count, 5,
             message=f"{count} more retries")
