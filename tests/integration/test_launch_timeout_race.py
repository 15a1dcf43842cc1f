"""A LAUNCH that arrives at the moment `--launch-timeout` runs out
(`executor/mesos/process._wait_for_task`, `ExecutorProtocol.close_launches`): the driver's
lock orders the two. Made deterministic by taking the decision by hand around a LAUNCH the
real driver reads from the agent simulator, and by holding the LAUNCH's callback (the real
`StokerExecutor`'s) until the test lets it run."""
from __future__ import annotations

import threading

import pytest

from config.executorsettings import ExecutorSettings
from executor.mesos.driver import ExecutorDriver
from executor.mesos.executor import LATE, StokerExecutor
from tests.support.agent_sim import AgentSimulator, make_task_info
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(20)


class HeldExecutor(StokerExecutor):
    """The real executor, whose launchTask waits for `release` (the dispatch thread's turn
    came late: the case the race is about)."""

    def __init__(self, settings: ExecutorSettings) -> None:
        super().__init__(settings, {}, on_done=lambda: None)
        self.entered, self.release = threading.Event(), threading.Event()

    def launchTask(self, driver, task_info):
        self.entered.set()
        self.release.wait(10)
        super().launchTask(driver, task_info)


@pytest.fixture
def wired(tmp_path):
    with AgentSimulator(sandbox=tmp_path) as sim:
        settings = ExecutorSettings.from_env({
            "MESOS_AGENT_ENDPOINT": sim.endpoint, "MESOS_FRAMEWORK_ID": sim.framework_id,
            "MESOS_EXECUTOR_ID": sim.executor_id, "MESOS_SANDBOX": str(tmp_path), "MESOS_CHECKPOINT": "1"})
        executor = HeldExecutor(settings)
        driver = ExecutorDriver(executor, settings)
        driver.start()
        try:
            sim.wait_subscribed()
            yield sim, executor, driver
        finally:
            executor.release.set()
            driver.stop()
            driver.join(5)


def test_a_launch_read_after_the_timeout_is_failed_and_acknowledged_before_the_exit(wired):
    """The exit's wait for acknowledgements found nothing owed and ended while the late
    LAUNCH's TASK_FAILED was still to be sent: the agent never got it acknowledged."""
    sim, executor, driver = wired
    assert driver.close_launches() is True and executor.launch_timed_out() is True  # the timeout won
    sim.launch(make_task_info("late", b'{"job": {}}'))
    wait_for(executor.entered.is_set, 5)  # read and booked; its callback not run yet
    threading.Timer(0.2, executor.release.set).start()
    assert driver.wait_for_acknowledgements(5.0) is True
    (update,) = sim.updates("late")  # sent and acknowledged before the wait ended
    assert (update.state, update.message) == ("TASK_FAILED", LATE)
    assert sim.acks_sent == [("late", update.uuid)]


def test_a_launch_read_before_the_timeout_wins_and_the_timeout_is_abandoned(wired):
    sim, executor, driver = wired
    sim.launch(make_task_info("first", b'{"job": {}}'))
    wait_for(executor.entered.is_set, 5)  # read, its callback not run yet: the timeout fires now
    assert driver.close_launches() is False  # abandoned: the task runs
    assert driver.wait_for_acknowledgements(0.05) is False  # its answer is owed
