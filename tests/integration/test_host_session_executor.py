"""An operator's request under `stoker executor` (no agent: a driver double takes the
updates): a kill as the executor launches its task stops it, as an agent's KILL and SHUTDOWN
then do; an internal error logs one traceback."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from config.registry import RegistrySettings
from executor.events import ControlReply
from executor.host.controlwire import KillControl
from executor.host.entry import FrontEnd
from executor.host.registry import Registry
from executor.host.registrylookup import find_sandbox
from executor.host.session import OPERATOR_KILL, HostSession
from tests.support.control_socket import ask_all

pytestmark = pytest.mark.timeout(30)


class _Driver:
    """The agent's side of an executor under test: the updates it was sent (a `shutdown` is
    the agent's SHUTDOWN)."""

    shutdown_received = True
    ending = None

    def __init__(self) -> None:
        self.updates: list[tuple[str, object, str]] = []

    def send_status_update(self, tid, state, message, **_):
        self.updates.append((tid, state, message))


def _executor_for_a_sleep(tmp_path: Path, on_done, **env: str):
    """A `stoker executor`'s front end in a sandbox of its own (no agent: `_Driver` takes
    its updates; `env`: more of its settings), and a LAUNCH of a task that sleeps."""
    from config.document import encode
    from config.executorsettings import ExecutorSettings
    from config.loader import load_job
    from executor.mesos import executor as mesos_executor
    from tests.support.agent_sim import make_task_info

    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    config = tmp_path / "long.aurora"
    config.write_text(
        "jobs = [Job(cluster='c', role='r', environment='test', name='long',\n"
        "            task=Task(processes=[Process(name='p', cmdline='exec sleep 60')],\n"
        "                      resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]\n")
    settings = ExecutorSettings.from_env({
        "MESOS_AGENT_ENDPOINT": "127.0.0.1:9", "MESOS_FRAMEWORK_ID": "f", "MESOS_EXECUTOR_ID": "e",
        "MESOS_SANDBOX": str(sandbox), **env})
    executor = mesos_executor.StokerExecutor(settings, {"PATH": "/usr/bin:/bin"}, on_done=on_done)
    return executor, sandbox, make_task_info("task-1", encode(load_job(config)))


def test_an_operators_kill_as_the_executor_launches_its_task_stops_it(tmp_path, monkeypatch):
    """Under `stoker executor`, `stoker kill` as a LAUNCH's task was prepared and its owner
    not yet listening (a window of milliseconds) was answered "no task is running under this
    supervisor", exit 1, and the task started. Now it waits for the owner, as an agent's KILL
    that comes then does: the task ends KILLED before any process starts. One once the task
    has ended is not told that it was starting."""
    from executor.events import TaskState
    from executor.mesos import executor as mesos_executor

    done = threading.Event()
    executor, sandbox, launch = _executor_for_a_sleep(tmp_path, done.set)
    session = HostSession.open(sandbox, front_end=FrontEnd.EXECUTOR, on_operator_kill=executor.operator_kill)
    (idle,) = ask_all(sandbox, KillControl())  # no LAUNCH yet: nothing to stop
    answers: list[ControlReply] = []
    late: list[ControlReply] = []
    real_owner_for = mesos_executor.owner_for

    def owner_for(*args, **kwargs):  # the task is prepared; its owner does not exist yet
        answers.extend(ask_all(sandbox, KillControl()))
        owner = real_owner_for(*args, **kwargs)
        real_run = owner.run

        def ran():  # the task has ended; the LAUNCH's thread has not
            final = real_run()
            late.extend(ask_all(sandbox, KillControl()))
            return final

        owner.run = ran
        return owner

    monkeypatch.setattr(mesos_executor, "owner_for", owner_for)
    driver = _Driver()
    try:
        executor.launchTask(driver, launch)
        assert done.wait(10), "the task did not end"
    finally:
        session.close()
    assert (idle.ok, idle.message) == (False, "no task is running under this supervisor")
    assert [(a.ok, a.message) for a in answers] == [(True, "the task was starting; it stops")]
    assert [(a.ok, a.message) for a in late] == [(False, "no task is running under this supervisor")]
    assert driver.updates[-1] == ("task-1", TaskState.KILLED, OPERATOR_KILL), driver.updates
    assert "RUNNING" not in (sandbox / ".stoker" / "checkpoint.jsonl").read_text()  # nothing started
    # its end was recorded before the executor let go, and its entry says so (`stoker ps`)
    listed = find_sandbox(Registry(RegistrySettings.from_env(os.environ)).read(), str(sandbox))
    assert listed is not None and (listed.entry.end_recorded, listed.entry.ended_state) == (True, "KILLED")


def test_an_internal_error_under_the_executor_logs_one_traceback(tmp_path, monkeypatch, caplog):
    """A bug in the task's owner under `stoker executor`: the owner logged its traceback
    (`owner_failed`) and the task thread logged the same one again
    (`executor_internal_error`). Now the second line names the error without it."""
    import logging

    from executor.events import TaskState
    from executor.mesos import executor as mesos_executor

    done = threading.Event()
    executor, sandbox, launch = _executor_for_a_sleep(tmp_path, done.set)
    real_owner_for = mesos_executor.owner_for

    def owner_for(*args, **kwargs):
        owner = real_owner_for(*args, **kwargs)

        def step() -> bool:
            raise RuntimeError("a bug")

        owner.step = step
        return owner

    monkeypatch.setattr(mesos_executor, "owner_for", owner_for)
    driver = _Driver()
    session = HostSession.open(sandbox, front_end=FrontEnd.EXECUTOR)
    try:
        with caplog.at_level(logging.ERROR):
            executor.launchTask(driver, launch)
            assert done.wait(10), "the task did not end"
    finally:
        session.close()
    assert driver.updates[-1] == ("task-1", TaskState.FAILED, "executor internal error: RuntimeError: a bug")
    tracebacks = [r.getMessage() for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1, tracebacks
    assert any("executor_internal_error" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("first", ["KILL", "SHUTDOWN"])
def test_an_agent_s_kill_and_shutdown_as_the_task_is_prepared_both_reach_its_owner(tmp_path, monkeypatch, first):
    """A KILL and a SHUTDOWN that both came as a LAUNCH's task was prepared (its owner not made
    yet): the second replaced the first, so the owner heard only the later one (a KILL after a
    SHUTDOWN took back its short grace and its skipped endpoints, a SHUTDOWN after a KILL
    named itself as the cause). Both reach the owner now, in order: the first cause wins."""
    from executor.events import TaskState
    from executor.mesos import executor as mesos_executor

    done = threading.Event()
    # a grace longer than the test: the SHUTDOWN's grace end (SIGKILL to all) does not come during it
    executor, sandbox, launch = _executor_for_a_sleep(tmp_path, done.set, MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD="10mins")
    real_owner_for = mesos_executor.owner_for
    driver = _Driver()
    requests = {"KILL": lambda: executor.killTask(driver, "task-1"), "SHUTDOWN": lambda: executor.shutdown(driver)}

    def owner_for(*args, **kwargs):  # the task is prepared; its owner does not exist yet
        requests[first]()
        requests["SHUTDOWN" if first == "KILL" else "KILL"]()
        return real_owner_for(*args, **kwargs)

    monkeypatch.setattr(mesos_executor, "owner_for", owner_for)
    executor.launchTask(driver, launch)
    assert done.wait(10), "the task did not end"
    reasons = {"KILL": "killed by the agent (KILL)", "SHUTDOWN": "executor shutting down (SHUTDOWN)"}
    assert driver.updates[-1] == ("task-1", TaskState.KILLED, reasons[first]), driver.updates
    # each handed to the owner in its turn, the SHUTDOWN with its grace's end (600 s less 1 s)
    assert executor.shutdown_at is not None
    ends = {"KILL": None, "SHUTDOWN": executor.shutdown_at + 599.0}
    order = [first, "SHUTDOWN" if first == "KILL" else "KILL"]
    assert [(k.reason, k.kill_all_at) for k in executor._pending_kills] == [(reasons[r], ends[r]) for r in order]
