"""The Mesos driver (`executor/mesos/driver.py`) in this process against the agent simulator:
the lines it says of the events it receives, of each SUBSCRIBE and each retry; an agent that
refuses the SUBSCRIBE itself; a bug in its stream thread; its acknowledgement wait cut short
or bounded through an outage; the launch timeout's decision; `join` while a callback runs.
Its callbacks, rejected updates and endings are in test_mesos_driver_callbacks.py; the driver
in the real executor's process, through echo_executor.py, in test_mesos_driver.py."""
from __future__ import annotations

import json
import logging
import re
import threading
import time

import pytest

from executor.events import TaskState
from executor.mesos.reconnect import Ending
from executor.mesos.recordio import MAX_RECORD_BYTES
from executor.mesos.transport import AgentTransport
from executor.mesos.wire import uuid_text
from tests.support.agent_sim import AGENT_ID, CONTAINER_ID, make_task_info
from tests.support.driver_rig import Recorder
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)

WHO = "executor_id=stoker-executor-1"
DRIVER = "executor.mesos.driver"


def lines(caplog: pytest.LogCaptureFixture, event: str) -> list[tuple[str, str]]:
    """The driver's `event` lines so far: (level name, text)."""
    return [(r.levelname, r.getMessage()) for r in caplog.records
            if r.name == DRIVER and r.getMessage().split(" ", 1)[0] == event]


def field(text: str, name: str) -> str:
    found = re.search(rf" {name}=(\"(?:[^\"\\]|\\.)*\"|\S+)", text)
    assert found, f"{name}= not in {text!r}"
    return found.group(1)


def subscribed(sim, driver_factory, recorder: Recorder | None = None, **kwargs):
    driver = driver_factory(recorder or Recorder(), **kwargs)
    sim.wait_subscribed()
    wait_for(lambda: driver.connected, 5)
    return driver


def test_each_event_the_driver_has_something_to_add_to_is_its_one_line(sim, driver_factory, caplog):
    caplog.set_level(logging.DEBUG, logger=DRIVER)
    recorder = Recorder()
    driver = subscribed(sim, driver_factory, recorder)
    sim.launch(make_task_info("task-1", b"{}"))
    uuid = driver.send_status_update("task-1", TaskState.RUNNING, "up")
    wait_for(lambda: lines(caplog, "status_update_acknowledged"), 5)
    sim.send_events([
        {"type": "HEARTBEAT"},
        {"type": "ERROR", "error": {"message": "the agent is unwell"}},
        {"type": "KILL", "kill": {"task_id": {"value": "task-1"},
                                  "kill_policy": {"grace_period": {"nanoseconds": -5}}}},
        {"type": "FROBNICATE"},
        {"type": "HEARTBEAT"},
    ])
    wait_for(lambda: len(lines(caplog, "mesos_heartbeat")) == 2, 10)
    [(level, said)] = lines(caplog, "mesos_subscribed")
    assert (level, said) == ("DEBUG", f"mesos_subscribed {WHO} agent_id={AGENT_ID} reregistered=False "
                                      f"container={CONTAINER_ID}")
    assert lines(caplog, "status_update_acknowledged") == [
        ("INFO", f"status_update_acknowledged {WHO} task_id=task-1 uuid={uuid_text(uuid)}")]
    assert lines(caplog, "mesos_heartbeat") == [("DEBUG", f"mesos_heartbeat {WHO}")] * 2
    assert lines(caplog, "mesos_error_event") == [("ERROR", f'mesos_error_event {WHO} message="the agent is unwell"')]
    [(level, kill)] = lines(caplog, "mesos_kill_grace_ignored")
    assert level == "WARNING" and kill.startswith(f"mesos_kill_grace_ignored {WHO} task_id=task-1 reason=")
    assert "grace_period.nanoseconds" in kill and kill.endswith('; the task\'s own grace applies"')
    assert lines(caplog, "mesos_event_ignored") == [
        ("INFO", f'mesos_event_ignored {WHO} type=FROBNICATE reason="unknown event type"')]
    # the task's own grace; its callback runs on the callbacks' thread, maybe after the lines
    assert wait_for(lambda: ("killTask", "task-1", None) in recorder.calls, 10, message="killTask called")
    assert driver.connected and len(sim.subscribes) == 1  # none of them broke the stream


def test_each_event_skipped_is_its_one_line_and_the_stream_goes_on(sim, driver_factory, caplog):
    caplog.set_level(logging.DEBUG, logger=DRIVER)
    driver = subscribed(sim, driver_factory)
    oversized = b"x" * (MAX_RECORD_BYTES + 1)
    sim.send_events([
        {"type": 5},
        {"type": "MESSAGE", "message": {"data": 5}},
        {"type": "MESSAGE", "message": {"data": oversized.decode()}},
        {"type": "LAUNCH", "launch": {"task": {"name": oversized.decode(), "task_id": {"value": "t-9"}}}},
        {"type": "HEARTBEAT"},
    ])
    wait_for(lambda: lines(caplog, "mesos_heartbeat"), 10)
    skipped = lines(caplog, "mesos_event_skipped")
    assert [level for level, _ in skipped] == ["ERROR"] * 4
    untyped, message, big, launch = (text for _, text in skipped)
    assert untyped.startswith(f"mesos_event_skipped {WHO} reason=") and "type" in untyped
    assert message.startswith(f"mesos_event_skipped {WHO} type=MESSAGE reason=") and "data" in message
    limit = f"larger than the limit of {MAX_RECORD_BYTES} bytes"
    assert big == f'mesos_event_skipped {WHO} type=MESSAGE bytes={field(big, "bytes")} reason="{limit}"'
    assert int(field(big, "bytes")) > MAX_RECORD_BYTES
    assert launch == (f'mesos_event_skipped {WHO} type=LAUNCH bytes={field(launch, "bytes")} '
                      f'reason="{limit}; its task id is not in its first bytes: it cannot be answered"')
    assert driver.connected and len(sim.subscribes) == 1


def test_an_oversized_launch_whose_task_id_is_read_is_the_callbacks_to_say(sim, driver_factory, caplog):
    caplog.set_level(logging.DEBUG, logger=DRIVER)
    recorder = Recorder()
    driver = subscribed(sim, driver_factory, recorder)
    task = {"task_id": {"value": "t-9"}, "name": "x" * (MAX_RECORD_BYTES + 1)}
    sim.send_events([{"type": "LAUNCH", "launch": {"task": task}}, {"type": "HEARTBEAT"}])
    wait_for(lambda: lines(caplog, "mesos_heartbeat"), 10)
    assert lines(caplog, "mesos_event_skipped") == []  # answered: the task's TASK_FAILED says it
    # the callback runs on the callbacks' thread: it may come after the heartbeat's line
    [(kind, task_id, size)] = wait_for(lambda: recorder.calls[1:], 10, message="launchTooLarge called")
    assert (kind, task_id) == ("launchTooLarge", "t-9") and size > MAX_RECORD_BYTES
    assert driver.connected


def test_each_subscribe_and_retry_says_its_attempt_and_what_it_carries(sim, driver_factory, caplog):
    """The first SUBSCRIBE is said at INFO, each later one at DEBUG after its `mesos_retry`
    line; the attempts count from 1 again after a disconnection."""
    caplog.set_level(logging.DEBUG, logger=DRIVER)
    recorder = Recorder()
    driver = subscribed(sim, driver_factory, recorder)
    sim.launch(make_task_info("task-1", b"{}"))
    sim.ack_mode = "hold"
    driver.send_status_update("task-1", TaskState.RUNNING, "up")
    sim.wait_for_state("task-1", "TASK_RUNNING")
    sim.crash()
    wait_for(lambda: len(lines(caplog, "mesos_retry")) >= 3, 5)
    sim.ack_mode = "immediate"
    sim.restart()
    sim.wait_subscribed(count=2)
    wait_for(lambda: driver.connected and driver.owed()[0] == 0, 5)

    subscribing = lines(caplog, "mesos_subscribing")
    url = f"url=http://{sim.endpoint}/api/v1/executor"
    assert subscribing[0] == ("INFO", f"mesos_subscribing {WHO} {url} attempt=1 unacked_updates=0 unacked_tasks=0")
    assert {level for level, _ in subscribing[1:]} == {"DEBUG"}
    attempts = [int(field(text, "attempt")) for _, text in subscribing[1:]]
    assert attempts == list(range(1, len(attempts) + 1)) and len(attempts) >= 3
    assert all(" unacked_updates=1 " in text for _, text in subscribing[1:])
    retries = lines(caplog, "mesos_retry")
    assert {level for level, _ in retries} == {"INFO"}
    assert [int(field(text, "next_attempt")) for _, text in retries] == attempts
    assert all(0 <= int(field(text, "in_ms")) <= 200 for _, text in retries)
    outages = [float(field(text, "outage_secs")) for _, text in retries]
    assert outages[0] == 0.0 and outages == sorted(outages)
    assert "reason=\"SUBSCRIBE failed: " in retries[-1][1]
    [(level, disconnected)] = lines(caplog, "mesos_disconnected")
    assert level == "WARNING" and disconnected.startswith(f"mesos_disconnected {WHO} reason=")
    assert field(retries[0][1], "reason") == field(disconnected, "reason")
    assert [field(text, "reregistered") for _, text in lines(caplog, "mesos_subscribed")] == ["False", "True"]
    wait_for(lambda: recorder.quiet == ["disconnected", "reregistered"], 5)


def test_a_subscribe_the_agent_refuses_is_an_error_and_the_end(sim, driver_factory, caplog):
    caplog.set_level(logging.INFO, logger=DRIVER)
    sim.claims_mismatch = True
    recorder = Recorder()
    driver = driver_factory(recorder)
    wait_for(lambda: driver.ending is not None, 5)
    assert driver.ending is Ending.NEVER_SUBSCRIBED
    wait_for(lambda: recorder.quiet == ["shutdown"], 5)
    [(kind, text)] = recorder.calls
    assert kind == "error" and text.startswith("the agent rejected SUBSCRIBE: HTTP 403")
    assert "the principal's claims do not match this executor" in text
    assert lines(caplog, "mesos_giving_up") == [("ERROR", f'mesos_giving_up {WHO} reason="{text}"')]
    assert lines(caplog, "mesos_retry") == []
    assert [r.call_type for r in sim.requests] == ["SUBSCRIBE"]


class _Broken(AgentTransport):
    def subscribe(self, *args, **kwargs):
        raise RuntimeError("a bug in the transport")


def test_a_bug_in_the_stream_thread_is_said_and_ends_the_driver_as_a_lost_agent(sim, driver_factory, caplog):
    caplog.set_level(logging.INFO, logger=DRIVER)
    recorder = Recorder()
    driver = driver_factory(recorder, transport=_Broken(sim.endpoint, None))
    wait_for(lambda: driver.ending is not None, 5)
    assert driver.ending is Ending.INTERNAL_ERROR
    wait_for(lambda: recorder.quiet == ["shutdown"], 5)
    [(level, text)] = lines(caplog, "mesos_stream_thread_failed")
    assert (level, text) == ("ERROR", f'mesos_stream_thread_failed {WHO} error="RuntimeError: a bug in the transport"')
    [record] = [r for r in caplog.records if r.getMessage() == text]
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError  # with its traceback
    assert driver.wait_for_acknowledgements(10) is True  # nothing owed, and the stream ended


def test_a_stopped_driver_says_no_disconnection_and_posts_no_shutdown(sim, driver_factory, caplog):
    caplog.set_level(logging.DEBUG, logger=DRIVER)
    recorder = Recorder()
    driver = subscribed(sim, driver_factory, recorder)
    with pytest.raises(RuntimeError, match="already started"):
        driver.start()
    driver.stop()
    assert driver.join(5)
    assert driver.ending is Ending.STOPPED
    assert recorder.quiet == [] and lines(caplog, "mesos_disconnected") == []
    assert lines(caplog, "mesos_retry") == [] and len(lines(caplog, "mesos_subscribing")) == 1


def test_a_framework_message_reaches_the_agent(sim, driver_factory):
    driver = subscribed(sim, driver_factory)
    driver.send_framework_message(b"status \x00 of task-1")
    sim.wait_for(lambda: sim.messages, 5, "the framework message")
    assert sim.messages == [b"status \x00 of task-1"]


def test_the_call_connection_is_made_as_subscribed_comes_and_carries_the_calls(sim, driver_factory):
    driver = subscribed(sim, driver_factory)
    sim.wait_for(lambda: sim.connections_made == 2, 5, "the call connection, before any call")
    assert [r.call_type for r in sim.requests] == ["SUBSCRIBE"]
    driver.send_framework_message(b"one")
    driver.send_status_update("task-1", TaskState.RUNNING)
    sim.wait_for(lambda: len(sim.calls("UPDATE")) == 1, 5, "the UPDATE")
    assert sim.connections_made == 2


def test_the_status_update_line_says_each_of_its_fields(sim, driver_factory, caplog):
    caplog.set_level(logging.INFO, logger=DRIVER)
    driver = subscribed(sim, driver_factory)
    sim.launch(make_task_info("task-1", b"{}"))
    uuid = driver.send_status_update("task-1", TaskState.RUNNING, "all good", healthy=True,
                                     reason="REASON_TASK_HEALTH_CHECK_STATUS_UPDATED", task="web.0")
    assert lines(caplog, "status_update") == [(
        "INFO", "status_update task=web.0 task_id=task-1 state=TASK_RUNNING healthy=True "
        f'mesos_reason=REASON_TASK_HEALTH_CHECK_STATUS_UPDATED uuid={uuid_text(uuid)} message="all good"')]
    record = sim.wait_for_state("task-1", "TASK_RUNNING")
    assert (record.message, record.healthy, record.reason) == (
        "all good", True, "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED")
    plain = driver.send_status_update("task-1", TaskState.FINISHED)
    assert lines(caplog, "status_update")[-1] == (
        "INFO", f'status_update task_id=task-1 state=TASK_FINISHED uuid={uuid_text(plain)} message=""')
    assert sim.wait_for_state("task-1", "TASK_FINISHED").message == ""


def _waiting(driver, **kwargs) -> tuple[threading.Thread, list]:
    """`wait_for_acknowledgements(**kwargs)` on a thread: (the thread, [its answer, its seconds])."""
    out: list = []

    def wait() -> None:
        started = time.monotonic()
        out.append(driver.wait_for_acknowledgements(**kwargs))
        out.append(time.monotonic() - started)

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    return thread, out


def _owing(sim, driver_factory):
    """A subscribed driver owing one update whose ACK the agent holds."""
    driver = subscribed(sim, driver_factory)
    sim.launch(make_task_info("task-1", b"{}"))
    sim.ack_mode = "hold"
    driver.send_status_update("task-1", TaskState.RUNNING, "up")
    sim.wait_for_state("task-1", "TASK_RUNNING")
    return driver


@pytest.mark.parametrize("cuts", [(0.2, 10.0), (10.0, 0.2)])
def test_a_cut_ends_the_acknowledgement_wait_at_the_earliest_cut(sim, driver_factory, cuts):
    driver = _owing(sim, driver_factory)
    thread, out = _waiting(driver, timeout_secs=20.0)
    time.sleep(0.05)
    for within in cuts:
        driver.cut_ack_wait(within)
    thread.join(5)
    assert out[0] is False and 0.15 <= out[1] < 1.0  # a second cut at most: no floor of its own
    assert driver.owed() == (1, 0)


def test_through_an_outage_the_wait_goes_on_past_its_timeout_until_cut(sim, driver_factory):
    driver = _owing(sim, driver_factory)
    sim.crash()
    wait_for(lambda: not driver.connected, 5)
    started = time.monotonic()
    assert driver.wait_for_acknowledgements(0.2, through_outage=False) is False
    assert 0.15 <= time.monotonic() - started < 3
    thread, out = _waiting(driver, timeout_secs=0.1)
    thread.join(0.6)
    assert thread.is_alive()  # its 0.1 s count only while subscribed
    driver.cut_ack_wait(0.0)
    thread.join(5)
    assert out[0] is False and 0.5 <= out[1] < 5


def test_the_launch_timeout_holds_while_no_launch_came(sim, driver_factory):
    assert subscribed(sim, driver_factory).close_launches() is True


def test_the_launch_timeout_is_abandoned_once_a_launch_came_first(sim, driver_factory):
    recorder = Recorder()
    driver = subscribed(sim, driver_factory, recorder)
    sim.launch(make_task_info("task-1", b"{}"))
    wait_for(lambda: recorder.launches == 1, 5)
    assert driver.close_launches() is False


def test_join_waits_for_a_callback_still_running(sim, driver_factory):
    held, release = threading.Event(), threading.Event()

    class Holding(Recorder):
        def frameworkMessage(self, driver, data):
            held.set()
            release.wait(10)

    driver = subscribed(sim, driver_factory, Holding())
    sim.message(b"hold on")
    assert held.wait(5)
    driver.stop()
    assert driver.join(0.2) is False
    release.set()
    assert driver.join(5) is True
    assert driver.ending is Ending.STOPPED


def test_a_record_split_over_chunks_is_one_event(sim, driver_factory, caplog):
    caplog.set_level(logging.DEBUG, logger=DRIVER)
    subscribed(sim, driver_factory)
    body = json.dumps({"type": "ERROR", "error": {"message": "split"}}).encode()
    record = b"%d\n%s" % (len(body), body)
    sim.send_raw(record[:5])
    sim.send_raw(record[5:])
    wait_for(lambda: lines(caplog, "mesos_error_event"), 5)
    assert lines(caplog, "mesos_error_event") == [("ERROR", f"mesos_error_event {WHO} message=split")]


def test_the_driver_s_threads_are_daemons_named_for_what_they_do(sim, driver_factory):
    subscribed(sim, driver_factory)
    mine = [t for t in threading.enumerate() if t.name.startswith("mesos-")]
    assert sorted(t.name for t in mine) == ["mesos-dispatch", "mesos-sender", "mesos-stream"]
    assert all(t.daemon for t in mine)  # a wedged agent never holds the executor's exit


def test_an_agent_that_answered_may_then_stay_silent_past_the_answer_s_timeout(sim, driver_factory):
    """The answer's timeout (at most the outage's time left: 0.5 s here) bounds the wait for
    the first event only; a stream that has said something may idle, as an agent's does
    between its heartbeats."""
    driver = subscribed(sim, driver_factory, recovery_timeout_secs=0.5)
    time.sleep(1.0)
    assert driver.connected and len(sim.subscribes) == 1


def test_a_stream_the_agent_ends_is_said_as_an_eof(sim, driver_factory, caplog):
    caplog.set_level(logging.INFO, logger=DRIVER)
    driver = subscribed(sim, driver_factory)
    sim.close_stream(graceful=True)
    wait_for(lambda: lines(caplog, "mesos_disconnected"), 5)
    assert lines(caplog, "mesos_disconnected") == [
        ("WARNING", f'mesos_disconnected {WHO} reason="the agent closed the event stream (EOF)"')]
    sim.wait_subscribed(count=2)
    wait_for(lambda: driver.connected, 5)


def test_once_the_driver_gave_up_the_acknowledgement_wait_ends_with_its_updates(sim, driver_factory):
    """Updates sent after the driver gave up can never be acknowledged: the sender drops each,
    and the wait ends as soon as none is left to send, not at its timeout."""
    sim.crash()
    driver = driver_factory(Recorder(), recovery_timeout_secs=0.3)
    wait_for(lambda: driver.ending is Ending.NEVER_SUBSCRIBED, 5)
    driver.send_status_update("task-1", TaskState.RUNNING)
    driver.send_status_update("task-1", TaskState.FAILED, "down")
    started = time.monotonic()
    assert driver.wait_for_acknowledgements(10) is False
    assert time.monotonic() - started < 5
    assert driver.owed() == (2, 0)


def test_the_end_after_shutdown_is_said_once_and_is_no_disconnection(sim, driver_factory, caplog):
    """The agent closes the stream after its SHUTDOWN: that is expected, said at INFO. Was: a
    WARNING `mesos_disconnected` as well, and the `disconnected` callback, at every shutdown."""
    caplog.set_level(logging.DEBUG, logger=DRIVER)
    recorder = Recorder()
    driver = subscribed(sim, driver_factory, recorder)
    sim.shutdown()
    sim.close_stream(graceful=True)
    wait_for(lambda: driver.ending is Ending.SHUTDOWN, 5)
    assert lines(caplog, "mesos_stream_ended") == [
        ("INFO", f'mesos_stream_ended {WHO} reason="after SHUTDOWN; not resubscribing '
                 '(the agent closed the event stream (EOF))"')]
    assert lines(caplog, "mesos_disconnected") == []
    assert lines(caplog, "mesos_shutdown_received") == [("DEBUG", f"mesos_shutdown_received {WHO}")]
    driver.stop()
    assert driver.join(5)
    assert recorder.quiet == ["shutdown"]


def test_a_malformed_stream_is_said_with_what_was_wrong_and_dropped(sim, driver_factory, caplog):
    caplog.set_level(logging.INFO, logger=DRIVER)
    driver = subscribed(sim, driver_factory)
    sim.send_raw(b"12x\n")  # not a RecordIO header: the agent's fault
    sim.wait_subscribed(count=2)
    wait_for(lambda: driver.connected, 5)
    [(level, text)] = lines(caplog, "mesos_protocol_error")
    assert (level, text) == ("ERROR", f'mesos_protocol_error {WHO} error="RemoteProtocolError: '
                                      "RecordIO header b'12x' is not a decimal size\"")
    assert field(lines(caplog, "mesos_retry")[0][1], "reason").startswith(
        '"the agent sent a malformed event stream (RecordIO header')
