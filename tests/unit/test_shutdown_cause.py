"""`stoker executor` stopping its task: `StokerExecutor.shutdown`'s kill says why (the agent's
SHUTDOWN, a stop signal, the driver giving up on a lost agent) within the agent's grace less
SHUTDOWN_MARGIN_SECS, counted from the first; `process._wait_for_task` treats a signal as
SHUTDOWN and gives up at the launch timeout; `process._route` warns of an SSL_ and
LIBPROCESS_SSL_ variable set to two values. In this process, the kill caught as it is
requested (no task runs)."""
from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time

import pytest

from config.errors import SettingsError
from config.executorsettings import ExecutorSettings
from executor.mesos.executor import SHUTDOWN_MARGIN_SECS, PendingKill, StokerExecutor
from executor.mesos.process import Launched, Signalled, TaskDone, _route, _wait_for_task
from executor.mesos.reconnect import Ending

pytestmark = pytest.mark.timeout(10)  # (a wait that never ends: a mutant's, at once)

GRACE = 5.0
ENV = {"MESOS_AGENT_ENDPOINT": "127.0.0.1:5051", "MESOS_FRAMEWORK_ID": "f", "MESOS_EXECUTOR_ID": "e",
       "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": f"{GRACE:g}secs"}


class Driver:
    """What `shutdown` reads of the driver: whether the agent sent SHUTDOWN, why it ended."""

    def __init__(self, shutdown_received: bool, ending: Ending | None) -> None:
        self.shutdown_received, self.ending = shutdown_received, ending


def executor_of(task_id: str | None) -> tuple[StokerExecutor, list[PendingKill], list[bool]]:
    """An executor whose task `task_id` (None: none came) has no owner: its kills and its
    `on_done` calls are recorded."""
    done: list[bool] = []
    executor = StokerExecutor(ExecutorSettings.from_env(ENV), {}, on_done=lambda: done.append(True))
    executor._task_id = task_id
    kills: list[PendingKill] = []
    executor._kill = kills.append  # type: ignore[method-assign]
    return executor, kills, done


@pytest.mark.parametrize("received, ending, cause, reason", [
    (True, Ending.SHUTDOWN, None, "executor shutting down (SHUTDOWN)"),  # the agent's: its own word
    (True, None, None, "executor shutting down (SHUTDOWN)"),
    (False, Ending.AGENT_LOST, None, "executor shutting down (gave up on an agent it had been subscribed to)"),
    (False, Ending.NEVER_SUBSCRIBED, None, "executor shutting down (gave up before the agent ever answered SUBSCRIBED)"),
    (False, None, None, "executor shutting down (SHUTDOWN)"),  # the driver still talks to the agent
    (False, Ending.AGENT_LOST, "SIGTERM, treated as SHUTDOWN", "executor shutting down (SIGTERM, treated as SHUTDOWN)"),
    (True, Ending.SHUTDOWN, "SIGINT, treated as SHUTDOWN", "executor shutting down (SIGINT, treated as SHUTDOWN)"),
])
def test_the_shutdown_s_kill_says_why(received, ending, cause, reason):
    executor, kills, done = executor_of("task-1")
    executor.shutdown(Driver(received, ending), cause=cause)  # type: ignore[arg-type]
    assert [kill.reason for kill in kills] == [reason] and not done
    assert executor._exit.reason == reason  # (a wait the exit time ends says it too)


def test_the_kill_skips_the_lifecycle_and_ends_at_the_first_shutdown_s_grace_less_the_margin(caplog):
    executor, kills, _ = executor_of("task-1")
    driver = Driver(True, Ending.SHUTDOWN)
    with caplog.at_level(logging.INFO, logger="executor.mesos.executor"):
        executor.shutdown(driver)  # type: ignore[arg-type]
        first = executor.shutdown_at
        assert first is not None
        kill_all_at = first + GRACE - SHUTDOWN_MARGIN_SECS
        time.sleep(0.3)
        executor.shutdown(driver, cause="SIGTERM, treated as SHUTDOWN")  # type: ignore[arg-type]
    assert executor.shutdown_at == first
    assert [(k.use_lifecycle, k.kill_all_at) for k in kills] == [(False, kill_all_at), (False, kill_all_at)]
    graces = [k.grace_secs for k in kills]
    assert graces[0] is not None and graces[1] is not None
    assert GRACE - SHUTDOWN_MARGIN_SECS - 0.2 < graces[0] <= GRACE - SHUTDOWN_MARGIN_SECS  # its time left
    assert 0.3 <= graces[0] - graces[1] < 1.0  # the second's: what is left of the first's
    lines = [r.getMessage() for r in caplog.records if getattr(r, "stoker_event", "") == "shutdown"]
    assert lines == [f"shutdown task_id=task-1 kill_grace_secs={round(g, 3)}" for g in graces]  # (was 1.9997286360012367)


def test_a_shutdown_past_its_sigkill_time_kills_with_no_grace():
    executor, kills, _ = executor_of("task-1")
    executor.shutdown_at = time.monotonic() - GRACE  # the first came a whole grace ago
    executor.shutdown(Driver(True, None))  # type: ignore[arg-type]
    assert [k.grace_secs for k in kills] == [0.0]


def test_a_shutdown_with_no_task_is_done_at_once_and_kills_nothing(caplog):
    executor, kills, done = executor_of(None)
    with caplog.at_level(logging.INFO, logger="executor.mesos.executor"):
        executor.shutdown(Driver(True, None))  # type: ignore[arg-type]
    assert (kills, done) == ([], [True])
    (line,) = [r.getMessage() for r in caplog.records if getattr(r, "stoker_event", "") == "shutdown"]
    assert line.startswith("shutdown kill_grace_secs=")  # no task_id


class Waiting:
    """The executor and driver `_wait_for_task` talks to: the shutdowns asked for, whether a
    LAUNCH came (`launched`)."""

    def __init__(self, launched: bool = False) -> None:
        self.launched = launched
        self.shutdowns: list[tuple[object, str | None]] = []
        self.closed = 0  # the launch timeout's decisions taken (`close_launches`)

    def shutdown(self, driver: object, *, cause: str | None = None) -> None:
        self.shutdowns.append((driver, cause))

    def launch_timed_out(self) -> bool:
        return not self.launched

    def close_launches(self) -> bool:
        self.closed += 1
        return True


def waited(wakeups: list[tuple[float, object]], launch_timeout_secs: float,
           launched: bool = False) -> tuple[bool, Waiting, float]:
    """`_wait_for_task` given each wakeup after its delay (s, on a timer; 0: in the queue
    before it waits): its result, the executor double, and the time it took."""
    q: queue.SimpleQueue = queue.SimpleQueue()
    for wakeup in [wakeup for delay, wakeup in wakeups if delay == 0]:
        q.put(wakeup)
    timers = [threading.Timer(delay, q.put, [wakeup]) for delay, wakeup in wakeups if delay > 0]
    both = Waiting(launched)
    for timer in timers:
        timer.start()
    started = time.monotonic()
    try:
        result = _wait_for_task(q, both, both, launch_timeout_secs)  # type: ignore[arg-type]
    finally:
        for timer in timers:
            timer.cancel()
    return result, both, time.monotonic() - started


@pytest.mark.parametrize("timeout", [0.0, 5.0], ids=["no-launch-timeout", "a-launch-timeout-not-reached"])
def test_a_signal_is_a_shutdown_that_names_it_and_the_wait_ends_with_the_task(caplog, timeout):
    with caplog.at_level(logging.WARNING, logger="executor.mesos.process"):
        result, both, _ = waited([(0.05, Signalled(signal.SIGTERM)), (0.1, TaskDone())], timeout)
    assert result is True
    assert both.shutdowns == [(both, "SIGTERM, treated as SHUTDOWN")]
    assert [r.getMessage() for r in caplog.records] == ["signal signal=SIGTERM reason=\"treated as SHUTDOWN\""]
    assert [r.levelno for r in caplog.records] == [logging.WARNING]


def test_the_task_s_end_with_no_signal_is_no_signal():
    result, both, _ = waited([(0.0, TaskDone())], 0.0)
    assert (result, both.shutdowns) == (False, [])


def test_no_launch_by_the_launch_timeout_ends_the_wait_then_saying_so(caplog):
    with caplog.at_level(logging.WARNING, logger="executor.mesos.process"):
        result, _, took = waited([], 0.2)
    assert result is False and 0.2 <= took < 0.9
    assert [r.getMessage() for r in caplog.records] == [
        "launch_timeout reason=\"no task was launched within 0.2 s (--launch-timeout): exiting, as Thermos' "
        "executor does\""]


def test_a_launched_task_is_waited_for_past_the_launch_timeout():
    result, _, took = waited([(0.3, Signalled(signal.SIGINT)), (0.35, TaskDone())], 0.05, launched=True)
    assert result is True and took >= 0.3


def test_a_launch_taken_ends_the_launch_timeout_s_timer():
    # an executor whose task idles is never woken by it (it was, once, at the timeout)
    # (the timeout passed long before the task's end, at 0.4 s: no decision was taken meanwhile)
    result, both, _ = waited([(0, Launched()), (0.4, TaskDone())], 0.05, launched=True)
    assert (result, both.closed, both.shutdowns) == (False, 0, [])


def test_the_executor_says_a_launch_it_takes_once_before_its_task_runs_and_not_one_it_rejects(tmp_path):
    from executor.mesos.driver import ExecutorDriver
    from tests.support.agent_sim import make_task_info
    from tests.support.waiting import wait_for

    settings = ExecutorSettings(agent_endpoint="127.0.0.1:5051", framework_id="f", executor_id="e",
                                sandbox=str(tmp_path))
    said: list[str] = []
    executor = StokerExecutor(settings, {}, on_done=lambda: said.append("done"),
                              on_launched=lambda: said.append("launched"))
    driver = ExecutorDriver(executor, settings)
    executor.launchTask(driver, make_task_info("t", b'{"job": {}}'))  # taken; its document then refused
    assert wait_for(lambda: "done" in said, 10, message="the refused task's end")
    executor.launchTask(driver, make_task_info("u", b'{"job": {}}'))  # one task per executor: rejected
    assert said == ["launched", "done"]


def route_settings() -> ExecutorSettings:
    return ExecutorSettings(agent_endpoint="10.0.0.5:5051", framework_id="f", executor_id="e", sandbox="/")


def test_a_mismatched_ssl_variable_is_one_whole_warning_line(caplog):
    environ = {"SSL_KEY_FILE": "/a.key", "LIBPROCESS_SSL_KEY_FILE": "/b.key"}
    with caplog.at_level(logging.WARNING, logger="executor.mesos.process"):
        _route(route_settings(), environ)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(logging.WARNING, (
        "ssl_variables_mismatched ignored=SSL_KEY_FILE used=LIBPROCESS_SSL_KEY_FILE reason=\"SSL_KEY_FILE and "
        "LIBPROCESS_SSL_KEY_FILE have different values; libprocess uses LIBPROCESS_SSL_KEY_FILE's\""))]


def test_a_socket_path_too_long_is_a_settings_error_naming_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = "/" + "a" * 120
    with pytest.raises(SettingsError) as refused:
        _route(route_settings(), {"MESOS_DOMAIN_SOCKET": path})
    relative = "./" + os.path.relpath(path, tmp_path)
    assert str(refused.value) == (f"MESOS_DOMAIN_SOCKET='{path}' is 121 bytes long, and {len(relative)} relative "
                                  f"to '{tmp_path}': a unix socket's path must be shorter than 108")
