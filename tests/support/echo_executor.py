"""A tiny executor on top of `executor.mesos.driver`, for testing the driver and the simulator.

It runs no processes. LAUNCH -> TASK_STARTING then TASK_RUNNING; KILL -> TASK_KILLED;
LAUNCH_GROUP -> TASK_FAILED for each task; SHUTDOWN (or the driver giving up) ->
TASK_KILLED for every live task, a bounded wait for the acknowledgements, exit 0; a framework
message is echoed back. It logs to stderr (the simulator keeps it as SANDBOX/executor.log).

Run by the simulator as `[sys.executable, "tests/support/echo_executor.py"]`; it reads the
usual MESOS_* environment. Test-only: never used by Stoker itself.
"""
from __future__ import annotations

import logging
import os
import re
import sys
import threading
import types
from collections.abc import Mapping

from executor.events import TaskState
from executor.mesos.driver import ExecutorDriver
from executor.mesos.protocol import task_id as task_id_of

logger = logging.getLogger("echo_executor")

_DURATION = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)(ns|us|ms|secs|mins|hrs|days|weeks)$")
_UNIT_SECS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "secs": 1.0, "mins": 60.0, "hrs": 3600.0,
              "days": 86400.0, "weeks": 604800.0}


def _duration(text: str) -> float:
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a Mesos duration (e.g. 15mins, 500ms)")
    return float(match.group(1)) * _UNIT_SECS[match.group(2)]


def load_settings(environ: Mapping[str, str]):
    """config.settings.ExecutorSettings when it exists, else the same fields read here."""
    try:
        from config.settings import ExecutorSettings
    except ImportError:
        ExecutorSettings = None
    if ExecutorSettings is not None and hasattr(ExecutorSettings, "from_env"):
        return ExecutorSettings.from_env(environ)
    checkpoint = environ.get("MESOS_CHECKPOINT") == "1"
    return types.SimpleNamespace(
        agent_endpoint=environ["MESOS_AGENT_ENDPOINT"],
        framework_id=environ["MESOS_FRAMEWORK_ID"],
        executor_id=environ["MESOS_EXECUTOR_ID"],
        agent_id=environ.get("MESOS_SLAVE_ID"),
        sandbox=environ.get("MESOS_SANDBOX") or environ.get("MESOS_DIRECTORY") or os.getcwd(),
        checkpoint=checkpoint,
        recovery_timeout_secs=_duration(environ.get("MESOS_RECOVERY_TIMEOUT", "15mins")),
        subscription_backoff_max_secs=_duration(
            environ.get("MESOS_SUBSCRIPTION_BACKOFF_MAX", "2secs")),
        shutdown_grace_secs=_duration(environ.get("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD",
                                                  "5secs")),
        auth_token=environ.get("MESOS_EXECUTOR_AUTHENTICATION_TOKEN"),
        log_level=environ.get("STOKER_LOG_LEVEL", "INFO"),
    )


class EchoExecutor:
    def __init__(self, shutdown_grace_secs: float) -> None:
        self._ack_wait_secs = max(0.5, shutdown_grace_secs - 1.0)
        self._live: list[str] = []
        self.done = threading.Event()

    def registered(self, driver, executor_info, framework_info, agent_info) -> None:
        logger.info("echo_registered agent=%s", agent_info.get("id", {}).get("value"))

    def reregistered(self, driver, agent_info) -> None:
        logger.info("echo_reregistered agent=%s", agent_info.get("id", {}).get("value"))

    def disconnected(self, driver) -> None:
        logger.info("echo_disconnected")

    def launchTask(self, driver, task_info) -> None:
        tid = task_id_of(task_info)
        self._live.append(tid)
        driver.send_status_update(tid, TaskState.STARTING, "echo starting")
        driver.send_status_update(tid, TaskState.RUNNING, "echo running")

    def launchTaskGroup(self, driver, task_group) -> None:
        for info in task_group["tasks"]:
            driver.send_status_update(task_id_of(info), TaskState.FAILED,
                                      "task groups are not supported by this executor")

    def killTask(self, driver, task_id, grace_secs) -> None:
        if task_id in self._live:
            self._live.remove(task_id)
            driver.send_status_update(task_id, TaskState.KILLED, f"killed (grace {grace_secs})")

    def frameworkMessage(self, driver, data) -> None:
        driver.send_framework_message(data)

    def shutdown(self, driver) -> None:
        for tid in self._live:
            driver.send_status_update(tid, TaskState.KILLED, "killed by shutdown")
        self._live.clear()
        acked = driver.wait_for_acknowledgements(self._ack_wait_secs)
        logger.info("echo_exiting all_acknowledged=%s unacknowledged=%d", acked,
                    driver.unacknowledged_count)
        self.done.set()

    def error(self, driver, message) -> None:
        logger.error("echo_error message=%r", message)


def main() -> int:
    settings = load_settings(os.environ)
    logging.basicConfig(
        stream=sys.stderr, level=getattr(settings, "log_level", "INFO") or "INFO",
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    executor = EchoExecutor(settings.shutdown_grace_secs)
    driver = ExecutorDriver(executor, settings)
    driver.start()
    executor.done.wait()
    driver.stop()
    driver.join(5.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
