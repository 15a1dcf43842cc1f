"""The Mesos driver in a test's own process (tests/integration/test_mesos_driver_callbacks.py,
test_driver_in_process.py): callbacks that record what they got, and drivers made against
the agent simulator with tiny intervals, each stopped and joined when the test ends."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from config.executorsettings import ExecutorSettings
from executor.mesos.driver import ExecutorDriver
from tests.support.agent_sim import AgentSimulator

DriverFactory = Callable[..., ExecutorDriver]


class Recorder:
    """Callbacks that record what they got (the quiet ones only count); the first
    launchTask raises."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.quiet: list[str] = []
        self.launches = 0

    def registered(self, driver, executor_info, framework_info, agent_info):
        self.calls.append(("registered", agent_info["id"]["value"]))

    def reregistered(self, driver, agent_info):
        self.quiet.append("reregistered")

    def disconnected(self, driver):
        self.quiet.append("disconnected")

    def launchTaskGroup(self, driver, task_group):
        self.quiet.append("launchTaskGroup")

    def frameworkMessage(self, driver, data):
        self.quiet.append("frameworkMessage")

    def shutdown(self, driver):
        self.quiet.append("shutdown")

    def launchTask(self, driver, task_info):
        self.launches += 1
        if self.launches == 1:
            raise RuntimeError("boom in launchTask")
        self.calls.append(("launchTask", task_info["task_id"]["value"]))

    def launchTooLarge(self, driver, task_id, size_bytes):
        self.calls.append(("launchTooLarge", task_id, size_bytes))

    def killTask(self, driver, task_id, grace_secs):
        self.calls.append(("killTask", task_id, grace_secs))

    def error(self, driver, message):
        self.calls.append(("error", message))


@contextmanager
def driver_factory(sim: AgentSimulator) -> Iterator[DriverFactory]:
    """`make(callbacks, recovery_timeout_secs=5.0, **driver_kwargs)`: a started driver
    subscribing to `sim` (back-off max 0.2 s, checkpointing on); every one made is stopped and
    joined on leaving."""
    drivers: list[ExecutorDriver] = []

    def make(callbacks: Any, recovery_timeout_secs: float = 5.0, **kwargs: Any) -> ExecutorDriver:
        settings = ExecutorSettings(
            agent_endpoint=sim.endpoint, framework_id=sim.framework_id,
            executor_id=sim.executor_id, sandbox=str(sim.sandbox), checkpoint=True,
            recovery_timeout_secs=recovery_timeout_secs, subscription_backoff_max_secs=0.2)
        driver = ExecutorDriver(callbacks, settings, **kwargs)
        drivers.append(driver)
        driver.start()
        return driver

    try:
        yield make
    finally:
        for driver in drivers:
            driver.stop()
        for driver in drivers:
            assert driver.join(5), "driver threads still alive"
