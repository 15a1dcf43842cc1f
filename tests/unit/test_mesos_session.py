"""The session's state machine (session.py): DISCONNECTED, SUBSCRIBING, SUBSCRIBED, ERROR.

Each test drives an `ExecutorProtocol` with bytes and calls only: no threads, no sockets.
"""
from __future__ import annotations

import base64
import json
import re

import pytest

from executor.events import TaskState
from executor.mesos import session, wire
from executor.mesos.errors import LocalProtocolError, RemoteProtocolError
from executor.mesos.recordio import encode_record
from executor.mesos.session import ExecutorProtocol, SessionState

S = SessionState
FRAMEWORK = "fw-1"
EXECUTOR = "ex-1"


def record(event: dict) -> bytes:
    return encode_record(json.dumps(event).encode())


SUBSCRIBED = record({"type": "SUBSCRIBED", "subscribed": {
    "executor_info": {}, "framework_info": {}, "agent_info": {"id": {"value": "agent-S1"}}}})
HEARTBEAT = record({"type": "HEARTBEAT"})
SHUTDOWN = record({"type": "SHUTDOWN"})
GARBAGE = b"12x\n"


def ack(raw: bytes) -> bytes:
    return record({"type": "ACKNOWLEDGED", "acknowledged": {
        "task_id": {"value": "t"}, "uuid": base64.b64encode(raw).decode()}})


def in_state(state: SessionState) -> ExecutorProtocol:
    """A fresh session driven into `state` by the legal path."""
    proto = ExecutorProtocol(FRAMEWORK, EXECUTOR)
    if state is S.DISCONNECTED:
        return proto
    proto.subscribing()
    if state is S.SUBSCRIBED:
        proto.feed(SUBSCRIBED)
    elif state is S.ERROR:
        with pytest.raises(RemoteProtocolError):
            proto.feed(GARBAGE)
    assert proto.state is state
    return proto


def _subscribing(p: ExecutorProtocol) -> None:
    p.subscribing()


def _feed_subscribed(p: ExecutorProtocol) -> None:
    p.feed(SUBSCRIBED)


def _feed_heartbeat(p: ExecutorProtocol) -> None:
    p.feed(HEARTBEAT)


def _feed_garbage(p: ExecutorProtocol) -> None:
    p.feed(GARBAGE)


def _stream_ended(p: ExecutorProtocol) -> None:
    p.stream_ended()


# (state, call, state after it, or the error it raises)
TABLE = [
    (S.DISCONNECTED, _subscribing, S.SUBSCRIBING),
    (S.DISCONNECTED, _feed_heartbeat, LocalProtocolError),
    (S.DISCONNECTED, _stream_ended, LocalProtocolError),
    (S.SUBSCRIBING, _subscribing, LocalProtocolError),
    (S.SUBSCRIBING, _feed_heartbeat, S.SUBSCRIBING),
    (S.SUBSCRIBING, _feed_subscribed, S.SUBSCRIBED),
    (S.SUBSCRIBING, _feed_garbage, RemoteProtocolError),  # and the state is ERROR
    (S.SUBSCRIBING, _stream_ended, S.DISCONNECTED),
    (S.SUBSCRIBED, _subscribing, LocalProtocolError),
    (S.SUBSCRIBED, _feed_heartbeat, S.SUBSCRIBED),
    (S.SUBSCRIBED, _feed_subscribed, S.SUBSCRIBED),
    (S.SUBSCRIBED, _feed_garbage, RemoteProtocolError),
    (S.SUBSCRIBED, _stream_ended, S.DISCONNECTED),
    (S.ERROR, _subscribing, LocalProtocolError),
    (S.ERROR, _feed_heartbeat, LocalProtocolError),
    (S.ERROR, _feed_subscribed, LocalProtocolError),
    (S.ERROR, _stream_ended, S.DISCONNECTED),
]


@pytest.mark.parametrize("start, call, expected", TABLE,
                         ids=[f"{s.name}-{c.__name__.strip('_')}" for s, c, _ in TABLE])
def test_every_call_in_every_state(start, call, expected):
    proto = in_state(start)
    if isinstance(expected, SessionState):
        call(proto)
        assert proto.state is expected
        return
    with pytest.raises(expected):
        call(proto)
    if expected is RemoteProtocolError:
        assert proto.state is S.ERROR  # the agent's fault: the stream must be dropped
    else:
        assert proto.state is start  # misuse changes nothing


def test_the_docstring_drawing_and_the_transition_table_agree():
    drawn: dict[SessionState, set[SessionState]] = {s: set() for s in S}
    for line in session.__doc__.splitlines():
        match = re.match(r"^\s{4}([A-Z, ]+?)\s+──.*►\s+([A-Z]+)$", line)
        if match:
            for source in match.group(1).split(","):
                drawn[S[source.strip()]].add(S[match.group(2)])
    assert drawn == {s: set(to) for s, to in session._ALLOWED.items()}


def test_error_is_sticky_until_the_stream_ends_and_a_new_subscription_starts_clean():
    proto = in_state(S.SUBSCRIBING)
    with pytest.raises(RemoteProtocolError, match="not a decimal size"):
        proto.feed(SUBSCRIBED[:3] + GARBAGE)
    with pytest.raises(LocalProtocolError, match="feed\\(\\) while ERROR"):
        proto.feed(SUBSCRIBED)  # even good bytes: the half-read stream is gone
    proto.stream_ended()
    proto.subscribing()
    assert proto.feed(SUBSCRIBED) == [wire.parse_event(SUBSCRIBED.split(b"\n", 1)[1])]
    assert proto.state is S.SUBSCRIBED


def test_a_malformed_event_also_moves_to_error():
    proto = in_state(S.SUBSCRIBED)
    with pytest.raises(RemoteProtocolError, match="LAUNCH event"):
        proto.feed(record({"type": "LAUNCH"}))
    assert proto.state is S.ERROR


def test_subscribing_returns_the_subscribe_body():
    proto = ExecutorProtocol(FRAMEWORK, EXECUTOR)
    assert json.loads(proto.subscribing()) == {
        "type": "SUBSCRIBE", "framework_id": {"value": FRAMEWORK},
        "executor_id": {"value": EXECUTOR}, "subscribe": {}}


def test_shutdown_is_remembered_across_streams():
    proto = in_state(S.SUBSCRIBED)
    assert not proto.shutdown_received
    proto.feed(SHUTDOWN)
    proto.stream_ended()
    assert proto.shutdown_received and proto.state is S.DISCONNECTED


def test_a_stream_that_starts_with_shutdown_never_subscribes():
    proto = in_state(S.SUBSCRIBING)
    proto.feed(SHUTDOWN)
    assert proto.state is S.SUBSCRIBING and proto.shutdown_received
    assert proto.subscription_count == 0


def test_an_update_needs_a_post_until_a_subscribe_the_agent_answered_carries_it():
    proto = in_state(S.SUBSCRIBED)
    carried = proto.update("t", TaskState.RUNNING, now_wall=1).uuid
    assert proto.needs_post(carried)
    proto.stream_ended()
    proto.subscribing()  # carries it...
    later = proto.update("t", TaskState.FINISHED, now_wall=2).uuid  # ...but not this one
    assert proto.needs_post(carried), "not carried until the agent answers SUBSCRIBED"
    proto.feed(SUBSCRIBED)
    assert not proto.needs_post(carried)
    assert proto.needs_post(later)
    proto.feed(ack(later))
    assert not proto.needs_post(later) and not proto.is_pending(later)


def test_a_subscribe_answered_only_with_shutdown_carries_nothing():
    proto = in_state(S.SUBSCRIBED)
    owed = proto.update("t", TaskState.KILLED, now_wall=1).uuid
    proto.stream_ended()
    proto.subscribing()
    proto.feed(SHUTDOWN)  # the agent did not take the SUBSCRIBE's updates: POST it
    proto.stream_ended()
    assert proto.needs_post(owed)


def test_subscription_count_and_agent_id_follow_subscribed_events():
    proto = in_state(S.SUBSCRIBED)
    assert (proto.subscription_count, proto.agent_id) == (1, "agent-S1")
    proto.stream_ended()
    proto.subscribing()
    proto.feed(SUBSCRIBED)
    assert proto.subscription_count == 2


# ---- the rules `make mutation` found unstated ----


def test_a_fresh_session_knows_no_agent_no_shutdown_and_owes_a_post_for_every_update():
    proto = ExecutorProtocol(FRAMEWORK, EXECUTOR, uuid_source=lambda: b"u" * 16)
    assert (proto.agent_id, proto.shutdown_received, proto.subscription_count) == (None, False, 0)
    pending = proto.update("t", TaskState.RUNNING, "processes started", now_wall=1.0)
    assert (pending.task_id, pending.uuid, pending.state) == ("t", b"u" * 16, TaskState.RUNNING)
    assert proto.needs_post(pending.uuid)


def test_an_agent_info_without_an_id_leaves_the_agent_unknown():
    proto = in_state(S.SUBSCRIBING)
    proto.feed(record({"type": "SUBSCRIBED", "subscribed": {
        "executor_info": {}, "framework_info": {}, "agent_info": {"hostname": "agent-7"}}}))
    assert (proto.state, proto.agent_id, proto.subscription_count) == (S.SUBSCRIBED, None, 1)


def test_a_move_the_drawing_does_not_list_says_which():
    proto = in_state(S.SUBSCRIBED)
    with pytest.raises(LocalProtocolError) as caught:
        proto.subscribing()
    assert str(caught.value) == "the session cannot go from SUBSCRIBED to SUBSCRIBING"


def oversized(event: dict, pad_bytes: int) -> bytes:
    """`event` with a padding field that makes the record larger than the decoder holds."""
    body = json.dumps({**event, "padding": "x" * pad_bytes}).encode()
    return encode_record(body)


def test_a_launch_too_large_to_hold_reaches_the_caller_with_its_size_and_task_id():
    launch = {"type": "LAUNCH", "launch": {"task": {"task_id": {"value": "big-1"}, "name": "big"}}}
    data = oversized(launch, session.MAX_RECORD_BYTES)
    proto = in_state(S.SUBSCRIBED)
    events = proto.feed(data)
    size = len(data.split(b"\n", 1)[1])
    assert events == [wire.Oversized("LAUNCH", size, "big-1")]
    assert proto.unacknowledged_tasks() == ()  # only a whole LAUNCH is remembered


def test_a_subscribed_too_large_to_hold_breaks_the_stream_naming_both_sizes():
    data = oversized({"type": "SUBSCRIBED", "subscribed": {}}, session.MAX_RECORD_BYTES)
    size = len(data.split(b"\n", 1)[1])
    proto = in_state(S.SUBSCRIBING)
    with pytest.raises(RemoteProtocolError) as caught:
        proto.feed(data)
    assert str(caught.value) == (f"SUBSCRIBED event of {size} bytes is larger than the limit of "
                                 f"{8 * 1024 * 1024} bytes")
    assert proto.state is S.ERROR


def launch(tid: str) -> bytes:
    return record({"type": "LAUNCH", "launch": {"task": {"task_id": {"value": tid}, "name": tid,
                                                         "agent_id": {"value": "agent-S1"}}}})


def test_a_launch_booked_before_the_launch_timeout_wins_and_the_timeout_is_abandoned():
    """The LAUNCH the stream read first runs its task, even before its callback ran."""
    proto = in_state(S.SUBSCRIBED)
    proto.feed(launch("t1"))
    assert proto.close_launches() is False and not proto.launches_closed
    assert proto.all_acknowledged is False  # its answer is owed from the moment it is booked
    raw = proto.update("t1", TaskState.STARTING, now_wall=1.0).uuid
    proto.feed(ack(raw))
    assert proto.all_acknowledged is True


def test_a_launch_booked_after_the_launch_timeout_is_owed_its_answer_until_acknowledged():
    """A LAUNCH that came at the timeout's moment: its TASK_FAILED was sent after the
    executor stopped waiting for acknowledgements (all_acknowledged was already true)."""
    proto = in_state(S.SUBSCRIBED)
    assert proto.all_acknowledged is True
    assert proto.close_launches() is True and proto.launches_closed
    proto.feed(launch("late"))
    assert proto.all_acknowledged is False  # booked: the exit waits for its answer
    raw = proto.update("late", TaskState.FAILED, "too late", now_wall=1.0).uuid
    assert proto.all_acknowledged is False  # recorded, not yet acknowledged
    proto.feed(ack(raw))
    assert proto.all_acknowledged is True
    proto.feed(launch("late"))  # a retry of an answered task owes nothing more
    assert proto.all_acknowledged is True
