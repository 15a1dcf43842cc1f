"""The Mesos driver in this process against the agent simulator: its callbacks (one that
raises), updates the agent rejects, the acknowledgement waits, malformed streams, and why
it says it ended."""
from __future__ import annotations

import json
import logging
import threading
import time

import pytest

from executor.events import TaskState
from executor.mesos.reconnect import Ending
from tests.support.agent_sim import AGENT_ID, make_task_info
from tests.support.driver_rig import Recorder
from tests.support.mesos_driving import run_task, start, uuids_of
from tests.support.waiting import wait_for


@pytest.mark.timeout(20)
def test_a_raising_callback_is_logged_and_the_driver_keeps_going(sim, driver_factory, caplog):
    caplog.set_level(logging.INFO, logger="executor.mesos.driver")
    recorder = Recorder()
    driver = driver_factory(recorder)
    sim.wait_subscribed()
    wait_for(lambda: driver.connected, 5)
    sim.launch(make_task_info("task-1", b"{}"))
    sim.launch(make_task_info("task-2", b"{}"))
    sim.kill("task-2", grace_secs=1.5)
    wait_for(lambda: ("killTask", "task-2", 1.5) in recorder.calls, 5)
    assert recorder.calls == [("registered", AGENT_ID), ("launchTask", "task-2"),
                              ("killTask", "task-2", 1.5)]
    assert "mesos_callback_failed executor_id=stoker-executor-1 callback=launchTask " \
           'error="RuntimeError: boom in launchTask"' in caplog.text
    [failed] = [r for r in caplog.records if r.getMessage().startswith("mesos_callback_failed ")]
    assert failed.exc_info is not None and failed.exc_info[0] is RuntimeError  # with its traceback


@pytest.mark.timeout(20)
def test_an_update_the_agent_rejects_is_reported_and_dropped(sim, driver_factory, caplog):
    bad_uuid = bytes(16)  # version nibble 0: "Not a valid UUID"
    recorder = Recorder()
    driver = driver_factory(recorder, uuid_source=lambda: bad_uuid)
    sim.wait_subscribed()
    wait_for(lambda: driver.connected, 5)
    sim.launch(make_task_info("task-1", b"{}"))
    assert driver.send_status_update("task-1", TaskState.RUNNING) == bad_uuid
    wait_for(lambda: any(c[0] == "error" for c in recorder.calls), 5)
    error = next(c[1] for c in recorder.calls if c[0] == "error")
    assert "the agent rejected UPDATE" in error and "HTTP 400" in error
    assert "Not a valid UUID" in error
    wait_for(lambda: driver.owed()[0] == 0, 5)
    assert "mesos_call_rejected" in caplog.text and "status=400" in caplog.text
    assert [r.status for r in sim.calls("UPDATE")] == [400]


@pytest.mark.timeout(20)
def test_wait_for_acknowledgements_follows_the_agent_acks(sim, driver_factory):
    driver = driver_factory(Recorder())
    sim.wait_subscribed()
    wait_for(lambda: driver.connected, 5)
    sim.launch(make_task_info("task-1", b"{}"))
    sim.ack_mode = "hold"
    driver.send_status_update("task-1", TaskState.RUNNING, "up")
    driver.send_status_update("task-1", TaskState.FINISHED, "done")
    sim.wait_for_state("task-1", "TASK_FINISHED")
    assert driver.owed()[0] == 2
    assert driver.wait_for_acknowledgements(0.2) is False
    sim.release_acks()
    assert driver.wait_for_acknowledgements(5) is True
    assert driver.owed()[0] == 0


@pytest.mark.timeout(20)
def test_the_acknowledgement_wait_outlasts_an_agent_restart(sim, driver_factory):
    """A terminal update the agent has not acknowledged when it goes down can only be
    delivered by the resubscription: the bounded wait counts while subscribed, not while
    the driver reconnects (MESOS_RECOVERY_TIMEOUT bounds that). Exiting meanwhile turned a
    task that finished during an agent restart into the agent's TASK_FAILED/GONE."""
    driver = driver_factory(Recorder())
    sim.wait_subscribed()
    wait_for(lambda: driver.connected, 5)
    sim.launch(make_task_info("task-1", b"{}"))
    sim.ack_mode = "hold"
    finished = driver.send_status_update("task-1", TaskState.FINISHED, "done")
    sim.wait_for_state("task-1", "TASK_FINISHED")
    sim.crash()
    wait_for(lambda: not driver.connected, 5)
    sim.ack_mode = "immediate"
    restart = threading.Timer(0.4, sim.restart)
    restart.start()
    try:
        started = time.monotonic()
        assert driver.wait_for_acknowledgements(0.1) is True  # longer than 0.1 s: the outage
        assert time.monotonic() - started >= 0.3
    finally:
        restart.cancel()
        restart.join()
    assert uuids_of(sim.wait_subscribed(count=2)) == [finished]


@pytest.mark.timeout(20)
def test_a_malformed_stream_is_dropped_and_the_resubscription_carries_what_is_owed(sim):
    start(sim)
    sim.wait_subscribed()
    sim.ack_mode = "hold"
    run_task(sim, "task-42")
    held = [r.uuid for r in sim.updates("task-42")]
    sim.send_raw(b"12x\n")  # not a RecordIO header: the agent's fault
    body = sim.wait_subscribed(count=2, timeout_secs=5)
    assert uuids_of(body) == held
    assert 'mesos_protocol_error executor_id=stoker-executor-1 error="RemoteProtocolError: ' \
           "RecordIO header b'12x' is not a decimal size" in sim.executor_log()
    sim.ack_mode = "immediate"
    sim.shutdown()
    assert sim.wait_exit(5) == 0
    assert sim.states("task-42") == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"]


@pytest.mark.timeout(20)
def test_a_kill_in_the_chunk_of_a_malformed_record_still_reaches_the_callback(sim, driver_factory):
    recorder = Recorder()
    driver = driver_factory(recorder)
    sim.wait_subscribed()
    wait_for(lambda: driver.connected, 5)
    kill = json.dumps({"type": "KILL", "kill": {"task_id": {"value": "task-2"}}}).encode()
    sim.send_raw(b"%d\n%s" % (len(kill), kill) + b"12x\n")  # one chunk: the KILL, then garbage
    wait_for(lambda: ("killTask", "task-2", None) in recorder.calls, 5)
    sim.wait_subscribed(count=2)  # the broken stream was dropped and replaced


@pytest.mark.timeout(20)
def test_an_agent_silent_after_answering_subscribe_still_ends_at_the_recovery_timeout(
        sim, driver_factory):
    """Only the first event lifts the wait's bound; an agent that answered 200 and froze
    must not hold the driver past MESOS_RECOVERY_TIMEOUT (docs/mesos.md §15)."""
    sim.subscribe_reply = "silent"
    recorder = Recorder()
    started = time.monotonic()
    driver = driver_factory(recorder, recovery_timeout_secs=0.5)
    wait_for(lambda: driver.ending is Ending.NEVER_SUBSCRIBED, 5)
    assert 0.5 <= time.monotonic() - started < 5
    assert len(sim.subscribes) >= 1
    # `ending` is set first; the shutdown callback is posted after it, to the callbacks' thread
    wait_for(lambda: recorder.quiet == ["shutdown"], 5)


@pytest.mark.timeout(20)
def test_the_driver_says_why_it_ended(sim, driver_factory):
    stopped = driver_factory(Recorder())
    sim.wait_subscribed()
    wait_for(lambda: stopped.connected, 5)
    assert stopped.ending is None and stopped.ever_subscribed
    stopped.stop()
    wait_for(lambda: stopped.ending is Ending.STOPPED, 5)

    told_to = Recorder()
    driver = driver_factory(told_to)
    sim.wait_subscribed(count=2)
    wait_for(lambda: driver.connected, 5)
    sim.shutdown()
    sim.close_stream(graceful=True)
    wait_for(lambda: driver.ending is Ending.SHUTDOWN, 5)
    assert driver.shutdown_received
    wait_for(lambda: told_to.quiet.count("shutdown") == 1, 5)  # run on the callbacks' thread

    lost = Recorder()
    driver = driver_factory(lost, recovery_timeout_secs=0.5)
    sim.wait_subscribed(count=3)
    wait_for(lambda: driver.connected, 5)
    sim.crash()
    wait_for(lambda: driver.ending is Ending.AGENT_LOST, 5)
    wait_for(lambda: lost.quiet == ["disconnected", "shutdown"], 5)
    assert not driver.shutdown_received


@pytest.mark.timeout(20)
def test_a_driver_that_never_reaches_the_agent_ends_never_subscribed(sim, driver_factory):
    sim.crash()
    recorder = Recorder()
    driver = driver_factory(recorder, recovery_timeout_secs=0.5)
    wait_for(lambda: driver.ending is Ending.NEVER_SUBSCRIBED, 5)
    wait_for(lambda: recorder.quiet == ["shutdown"], 5)
    assert not driver.ever_subscribed and recorder.calls == []


@pytest.mark.timeout(20)
def test_the_reporter_sends_each_update_and_knows_once_a_terminal_one_went(sim, driver_factory, caplog):
    """`MesosReporter`: each task update one status update, the health reason only on one that
    says whether the task is healthy, and `ended` once a terminal one was sent: what
    `stoker executor` reads to know whether the task still owes the agent its TASK_FAILED (a
    task whose owner could not be made, no descriptor left, owed it and never sent it)."""
    from executor.mesos.reporter import REASON_HEALTH, MesosReporter
    from executor.task.status import Update

    caplog.set_level(logging.INFO, logger="executor.mesos.driver")
    driver = driver_factory(Recorder())
    sim.wait_subscribed()
    wait_for(lambda: driver.connected, 5)
    sim.launch(make_task_info("task-1", b"{}"))
    reporter = MesosReporter(driver, "task-1", "web.0")
    seen = []
    for update in (Update(TaskState.STARTING, "starting"), Update(TaskState.RUNNING, "healthy", healthy=True),
                   Update(TaskState.FAILED, "down", healthy=False)):
        reporter.on_update(update)
        seen.append(reporter.ended)
    sim.wait_for_state("task-1", "TASK_FAILED")
    assert seen == [False, False, True]
    assert [(u.state, u.message, u.healthy, u.reason) for u in sim.updates("task-1")] == [
        ("TASK_STARTING", "starting", None, None), ("TASK_RUNNING", "healthy", True, REASON_HEALTH),
        ("TASK_FAILED", "down", False, REASON_HEALTH)]
    assert "status_update task=web.0 task_id=task-1 state=TASK_FAILED" in caplog.text
    reporter.on_update(Update(TaskState.RUNNING, "late"))  # (none comes after a terminal one; ended stays)
    assert reporter.ended
