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
import sys
import threading

from config.executorsettings import ExecutorSettings
from executor.events import TaskState
from executor.mesos import wire
from executor.mesos.driver import ExecutorDriver

logger = logging.getLogger("echo_executor")


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
        tid = wire.task_id(task_info)
        self._live.append(tid)
        driver.send_status_update(tid, TaskState.STARTING, "echo starting")
        driver.send_status_update(tid, TaskState.RUNNING, "echo running")

    def launchTaskGroup(self, driver, task_group) -> None:
        for info in task_group["tasks"]:
            driver.send_status_update(wire.task_id(info), TaskState.FAILED,
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
                    driver.owed()[0])
        self.done.set()

    def error(self, driver, message) -> None:
        logger.error("echo_error message=%r", message)


def main() -> int:
    settings = ExecutorSettings.from_env(os.environ)
    logging.basicConfig(
        stream=sys.stderr, level=settings.log_level,
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
