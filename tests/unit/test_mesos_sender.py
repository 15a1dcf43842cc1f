"""The sender's bookkeeping (executor/mesos/sender.py), its outbox emptied in the test's own
thread against a session (the real `ExecutorProtocol`) and an agent whose answers the test
scripts: an UPDATE retried with the same body until accepted, dropped from the session when
rejected for good, not POSTed once carried or with no connection to come; a framework MESSAGE
tried MESSAGE_ATTEMPTS times, then dropped with a warning, never retried once rejected; each
retry's line with its attempt and wait; the unsent count; a stop that ends the outbox."""
from __future__ import annotations

import json
import logging

import pytest

from executor.events import TaskState
from executor.mesos.reconnect import Ending
from executor.mesos.sender import MESSAGE_ATTEMPTS, CallSender, Shared
from executor.mesos.session import ExecutorProtocol
from executor.mesos.transport import CallResult, Outcome
from executor.mesos.wire import uuid_text
from tests.support.logevents import lines, records
from tests.unit.test_mesos_session import EXECUTOR, FRAMEWORK, SHUTDOWN, SUBSCRIBED

ACCEPTED = CallResult(Outcome.ACCEPTED, 202)
REFUSED = CallResult(Outcome.TRANSIENT, None, "connection refused")
UNAVAILABLE = CallResult(Outcome.TRANSIENT, 503, "agent recovering")
BAD = CallResult(Outcome.REJECTED, 400, "Not a valid UUID")


class Agent:
    """The transport: each POST's body kept, its answer the next scripted one."""

    def __init__(self, *answers: CallResult) -> None:
        self.answers = list(answers)
        self.bodies: list[dict] = []
        self.heard: list[str] = []  # "ready" (its call connection opened ahead) or the call's type

    def post(self, body: bytes) -> CallResult:
        self.bodies.append(json.loads(body))
        self.heard.append(self.bodies[-1]["type"])
        return self.answers.pop(0)

    def ready_calls(self) -> None:
        self.heard.append("ready")


class NoJitter:
    def random(self) -> float:
        return 0.0  # each retry waits half the cap: 25 ms for a back-off max of 0.05 s


def _sender(agent: Agent, subscribed: bool = True):
    protocol = ExecutorProtocol(FRAMEWORK, EXECUTOR)
    if subscribed:
        protocol.subscribing()
        protocol.feed(SUBSCRIBED)
    shared, rejections = Shared(protocol), []
    return CallSender(shared, agent, 0.05, NoJitter(), rejections.append, "ex-1"), shared, rejections


def _run(sender: CallSender, shared: Shared, *updates_and_messages) -> None:
    for item in updates_and_messages:
        if item == "ready":
            sender.ready()
        elif isinstance(item, bytes):
            sender.queue_message(item)
        else:
            shared.unsent += 1
            sender.queue_update(item)
    sender.close()
    sender.run()  # here: it returns at the closing None


def test_an_update_is_retried_with_the_same_body_until_accepted_each_retry_a_line(caplog):
    caplog.set_level(logging.DEBUG, "executor.mesos.sender")
    agent = Agent(REFUSED, UNAVAILABLE, ACCEPTED)
    sender, shared, rejections = _sender(agent)
    pending = shared.protocol.update("t1", TaskState.RUNNING, now_wall=1.0)
    _run(sender, shared, pending)
    assert [b["type"] for b in agent.bodies] == ["UPDATE"] * 3 and agent.bodies[0] == agent.bodies[2]
    assert shared.unsent == 0 and rejections == [] and shared.protocol.needs_post(pending.uuid)
    retries = lines(caplog, "status_update_retry")
    assert len(retries) == 2
    for attempt, (line, why) in enumerate(zip(retries, ("connection refused", "HTTP 503: agent recovering")), 1):
        assert f"attempt={attempt}" in line and "in_ms=25" in line and why in line
        assert "executor_id=ex-1" in line and "task_id=t1" in line and f"uuid={uuid_text(pending.uuid)}" in line and "TASK_RUNNING" in line
    [sent] = records(caplog, "status_update_sent")
    assert sent.levelno == logging.DEBUG
    assert all(said in sent.getMessage() for said in ("executor_id=ex-1", "attempt=3", "task_id=t1"))
    assert all(r.levelno == logging.WARNING for r in records(caplog, "status_update_retry"))


@pytest.mark.timeout(10)
def test_the_call_connection_is_readied_in_the_outbox_s_order_and_a_ready_that_raises_is_a_bug_said(caplog):
    agent = Agent(ACCEPTED, ACCEPTED)
    sender, shared, _ = _sender(agent)
    first, second = (shared.protocol.update("t1", state, now_wall=1.0) for state in (TaskState.STARTING,
                                                                                      TaskState.RUNNING))
    _run(sender, shared, "ready", first, "ready", second)
    assert agent.heard == ["ready", "UPDATE", "ready", "UPDATE"] and shared.unsent == 0

    def broken() -> None:
        raise RuntimeError("a bug")

    agent = Agent(ACCEPTED)
    agent.ready_calls = broken  # type: ignore[method-assign]
    sender, shared, _ = _sender(agent)
    _run(sender, shared, "ready", shared.protocol.update("t1", TaskState.RUNNING, now_wall=1.0))
    assert agent.heard == ["UPDATE"] and shared.unsent == 0
    [line] = lines(caplog, "mesos_sender_failed")
    assert "error=\"RuntimeError: a bug\"" in line and "executor_id=ex-1" in line


def test_an_update_rejected_for_good_is_reported_and_dropped_from_the_session(caplog):
    agent = Agent(BAD)
    sender, shared, rejections = _sender(agent)
    pending = shared.protocol.update("t1", TaskState.FAILED, now_wall=1.0)
    _run(sender, shared, pending)
    assert rejections == [f"the agent rejected UPDATE (task_id=t1 uuid={uuid_text(pending.uuid)} "
                          f"state=TASK_FAILED): HTTP 400: Not a valid UUID"]
    assert not shared.protocol.is_pending(pending.uuid) and shared.unsent == 0 and len(agent.bodies) == 1
    [line] = lines(caplog, "mesos_call_rejected")
    assert all(said in line for said in ("executor_id=ex-1", "call=UPDATE", "task_id=t1", "status=400",
                                         'body="Not a valid UUID"'))


def test_an_update_carried_by_an_answered_subscribe_is_not_posted():
    agent = Agent()
    sender, shared, _ = _sender(agent, subscribed=False)
    pending = shared.protocol.update("t1", TaskState.RUNNING, now_wall=1.0)
    shared.protocol.subscribing()
    shared.protocol.feed(SUBSCRIBED)  # the SUBSCRIBE carried it
    _run(sender, shared, pending)
    assert agent.bodies == [] and shared.unsent == 0


@pytest.mark.parametrize("subscribed, shutdown, posted", [
    (True, True, 1),  # the agent still takes calls from a subscribed executor it shut down
    (True, False, 0),
    (False, True, 0),  # SHUTDOWN as the first event: never subscribed
])
def test_with_the_stream_ended_an_update_is_posted_only_after_a_shutdown_to_a_subscribed_executor(
        subscribed, shutdown, posted):
    agent = Agent(ACCEPTED)
    sender, shared, _ = _sender(agent, subscribed)
    pending = shared.protocol.update("t1", TaskState.KILLED, now_wall=1.0)
    if not subscribed:
        shared.protocol.subscribing()
    if shutdown:
        shared.protocol.feed(SHUTDOWN)
    shared.protocol.stream_ended()
    shared.ending = Ending.SHUTDOWN
    _run(sender, shared, pending)
    assert len(agent.bodies) == posted and shared.unsent == 0


def test_a_message_is_tried_message_attempts_times_then_dropped_with_a_warning(caplog):
    agent = Agent(*[REFUSED] * MESSAGE_ATTEMPTS)
    sender, shared, rejections = _sender(agent)
    _run(sender, shared, b"ping")
    assert [b["type"] for b in agent.bodies] == ["MESSAGE"] * MESSAGE_ATTEMPTS and rejections == []
    retries = lines(caplog, "framework_message_retry")
    assert len(retries) == MESSAGE_ATTEMPTS - 1  # no wait after the last
    assert all(f"attempt={n}" in line and "bytes=4" in line and "in_ms=25" in line
               for n, line in enumerate(retries, 1))
    dropped = lines(caplog, "framework_message_dropped")
    assert len(dropped) == 1 and "executor_id=ex-1 bytes=4" in dropped[0]
    assert f"not accepted after {MESSAGE_ATTEMPTS} attempts or no connection" in dropped[0]


def test_a_message_accepted_or_rejected_is_not_tried_again(caplog):
    agent = Agent(UNAVAILABLE, ACCEPTED, BAD)
    sender, shared, rejections = _sender(agent)
    _run(sender, shared, b"one", b"second")
    assert len(agent.bodies) == 3 and lines(caplog, "framework_message_dropped") == []
    assert rejections == ["the agent rejected MESSAGE (bytes=6): HTTP 400: Not a valid UUID"]
    assert shared.unsent == 0  # (messages are not counted)


def test_a_message_with_no_connection_to_come_is_dropped_untried(caplog):
    agent = Agent()
    sender, shared, _ = _sender(agent, subscribed=False)
    shared.ending = Ending.SHUTDOWN
    _run(sender, shared, b"ping")
    assert agent.bodies == [] and len(lines(caplog, "framework_message_dropped")) == 1


def test_a_stop_ends_the_outbox_and_a_retry_s_wait(caplog):
    agent = Agent(REFUSED)
    sender, shared, _ = _sender(agent)
    pending = shared.protocol.update("t1", TaskState.RUNNING, now_wall=1.0)
    shared.stop.set()
    _run(sender, shared, pending)  # the outbox ends at once: nothing POSTed, the count kept
    assert agent.bodies == [] and shared.unsent == 1
    sender, shared, _ = _sender(agent)
    shared.stop.set()  # the wait before a retry ends at once, and the update with it
    assert sender._retry_wait("status_update_retry", {}, 1, REFUSED) is False


def test_a_failing_send_is_logged_and_the_update_still_leaves_the_count(caplog):
    sender, shared, _ = _sender(Agent())  # no answer scripted: the POST raises IndexError
    pending = shared.protocol.update("t1", TaskState.RUNNING, now_wall=1.0)
    _run(sender, shared, pending, b"ping")
    failed = records(caplog, "mesos_sender_failed")
    assert len(failed) == 2 and shared.unsent == 0
    for record in failed:  # with its traceback
        assert record.levelno == logging.ERROR and record.exc_info and record.exc_info[0] is IndexError
        assert "executor_id=ex-1" in record.getMessage() and "IndexError: pop from empty list" in record.getMessage()


def test_a_stop_during_a_message_s_retry_drops_it_with_the_warning(caplog):
    agent = Agent(REFUSED)
    sender, shared, _ = _sender(agent)
    posted = agent.post

    def post_then_stop(body):
        shared.stop.set()  # (as `stop()` would, from another thread, while the POST was out)
        return posted(body)

    agent.post = post_then_stop
    sender.queue_message(b"ping")
    sender.close()
    sender.run()
    assert len(agent.bodies) == 1 and len(lines(caplog, "framework_message_dropped")) == 1


def test_a_retry_s_wait_is_said_in_whole_milliseconds(caplog):
    class AllJitter:
        def random(self) -> float:
            return 1.0

    sender = CallSender(Shared(ExecutorProtocol(FRAMEWORK, EXECUTOR)), Agent(), 1.0, AllJitter(), print, "ex-1")
    sender._shared.stop.set()  # (the wait itself ends at once)
    assert sender._retry_wait("framework_message_retry", {"bytes": 4}, 2, REFUSED) is False
    assert lines(caplog, "framework_message_retry") == [
        'framework_message_retry executor_id=ex-1 bytes=4 attempt=2 in_ms=1000 reason="connection refused"']
