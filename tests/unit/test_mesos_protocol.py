"""The sans-I/O Mesos protocol: RecordIO (recordio.py), event parsing and call bodies
(wire.py), the unacknowledged buffers (session.py).

Bytes in, events and bodies out; no threads, sockets or sleeps. The session's state machine
has its own tests (test_mesos_session.py).
"""
from __future__ import annotations

import ast
import base64
import json
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from executor.events import TaskState
from executor.mesos import recordio, session, wire
from executor.mesos.errors import LocalProtocolError, RemoteProtocolError

FRAMEWORK = "7c1c2a4e-5b7d-4f0e-9a51-3e2f9d6c1b20-0000"
EXECUTOR = "my-executor-1"
AGENT = "0f8e2b9a-1c3d-4e5f-8a7b-6c5d4e3f2a10-S3"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def task_info(tid: str, **extra) -> dict:
    info = {
        "name": "sleeper",
        "task_id": {"value": tid},
        "agent_id": {"value": AGENT},
        "resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5}},
            {"name": "ports", "type": "RANGES",
             "ranges": {"range": [{"begin": 31000, "end": 31002}, {"begin": 30000, "end": 30000}]}},
        ],
        "data": b64(b'{"job": {}}'),
        "labels": {"labels": [{"key": "team", "value": "batch"}, {"key": "tier"}]},
        "health_check": {"type": "HTTP", "http": {"port": 31000, "path": "/health"}},
        "kill_policy": {"grace_period": {"nanoseconds": 3000000000}},
    }
    info.update(extra)
    return info


def subscribed(agent_id: str = AGENT) -> dict:
    return {
        "type": "SUBSCRIBED",
        "subscribed": {
            "executor_info": {"executor_id": {"value": EXECUTOR}},
            "framework_info": {"id": {"value": FRAMEWORK}, "checkpoint": True},
            "agent_info": {"hostname": "agent-7", "id": {"value": agent_id}},
            "container_id": {"value": "a1b2c3d4"},
        },
    }


def launch(tid: str) -> dict:
    return {"type": "LAUNCH", "launch": {"task": task_info(tid)}}


def ack(tid: str, raw: bytes) -> dict:
    return {"type": "ACKNOWLEDGED", "acknowledged": {"task_id": {"value": tid}, "uuid": b64(raw)}}


def records(*events: dict) -> bytes:
    return b"".join(recordio.encode_record(json.dumps(e).encode("utf-8")) for e in events)


STREAM_EVENTS = [
    subscribed(),
    launch("task-42"),
    {"type": "HEARTBEAT"},
    # data with a newline and a multi-byte character: sizes are bytes, not characters
    {"type": "MESSAGE", "message": {"data": b64("line1\nline2 é".encode())}},
    {"type": "KILL", "kill": {"task_id": {"value": "task-42"},
                              "kill_policy": {"grace_period": {"nanoseconds": 5000000000}}}},
    {"type": "SOMETHING_NEW", "something_new": {"x": "ünïcödé"}},
    ack("task-42", bytes(range(16))),
    {"type": "SHUTDOWN"},
]
STREAM = records(*STREAM_EVENTS)
EXPECTED = [
    wire.Subscribed(
        executor_info={"executor_id": {"value": EXECUTOR}},
        framework_info={"id": {"value": FRAMEWORK}, "checkpoint": True},
        agent_info={"hostname": "agent-7", "id": {"value": AGENT}},
        container_id="a1b2c3d4",
    ),
    wire.Launch(task_info("task-42")),
    wire.Heartbeat(),
    wire.Message("line1\nline2 é".encode()),
    wire.Kill("task-42", 5.0),
    wire.UnknownEvent("SOMETHING_NEW"),
    wire.Acknowledged("task-42", bytes(range(16))),
    wire.Shutdown(),
]


def subscribing(**kwargs) -> session.ExecutorProtocol:
    """A session whose SUBSCRIBE was just sent: its stream may be fed."""
    proto = session.ExecutorProtocol(FRAMEWORK, EXECUTOR, **kwargs)
    proto.subscribing()
    return proto


def resubscribe(proto: session.ExecutorProtocol) -> dict:
    """The stream ends and the session subscribes again: the new SUBSCRIBE body."""
    proto.stream_ended()
    return json.loads(proto.subscribing())


def decode_in_pieces(data: bytes, cuts: list[int]) -> list[wire.Event]:
    proto = subscribing()
    events: list[wire.Event] = []
    bounds = [0, *sorted(cuts), len(data)]
    for start, end in zip(bounds, bounds[1:]):
        events.extend(proto.feed(data[start:end]))
    return events


# ---- RecordIO ----


def test_whole_stream_in_one_chunk_gives_every_event():
    assert decode_in_pieces(STREAM, []) == EXPECTED


def test_stream_split_at_every_byte_offset_gives_the_same_events():
    for offset in range(len(STREAM) + 1):
        assert decode_in_pieces(STREAM, [offset]) == EXPECTED, f"split at byte {offset}"


def test_stream_fed_one_byte_at_a_time_gives_the_same_events():
    assert decode_in_pieces(STREAM, list(range(1, len(STREAM)))) == EXPECTED


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=30))
def test_stream_split_anywhere_gives_the_same_events(cuts):
    assert decode_in_pieces(STREAM, cuts) == EXPECTED


def test_encoded_size_counts_bytes_not_characters():
    assert recordio.encode_record("é".encode()) == b"2\n\xc3\xa9"


def test_empty_header_lines_and_empty_records_are_skipped():
    decoder = recordio.RecordIODecoder()
    assert decoder.feed(b"\n\n0\n3\nabc\n0\n\n2\nde") == [b"abc", b"de"]


def test_records_are_returned_only_once_complete():
    decoder = recordio.RecordIODecoder()
    assert decoder.feed(b"1") == []
    assert decoder.feed(b"0\n01234") == []
    assert decoder.feed(b"56789") == [b"0123456789"]


@pytest.mark.parametrize("garbage", [
    b"abc\n", b"12x\n", b"-5\n", b" 5\n", b"18\r\n", b"0x10\n", b"{\"type\":\"HEARTBEAT\"}",
])
def test_garbage_header_raises_protocol_error(garbage):
    with pytest.raises(RemoteProtocolError, match="not a decimal size"):
        recordio.RecordIODecoder().feed(garbage)


def test_absurd_record_size_is_refused_before_buffering_it():
    with pytest.raises(RemoteProtocolError, match="larger than the limit of 1073741824 bytes"):
        recordio.RecordIODecoder().feed(b"1073741825\n")
    with pytest.raises(RemoteProtocolError, match="larger than the limit"):
        recordio.RecordIODecoder().feed(b"9999999999")  # even before the newline arrives
    with pytest.raises(RemoteProtocolError):
        recordio.RecordIODecoder().feed(b"0" * 21)


def test_a_record_over_the_limit_is_dropped_as_it_passes_and_its_first_bytes_kept():
    decoder = recordio.RecordIODecoder(max_record_bytes=10)
    body = b"x" * (recordio.PREFIX_BYTES + 500)
    stream = b"3\nabc" + str(len(body)).encode() + b"\n" + body + b"2\nde"
    for cut in (0, 1, 4, 7, 9, 1000, len(stream) - 3, len(stream) - 1):
        decoder = recordio.RecordIODecoder(max_record_bytes=10)
        got = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
        assert got == [b"abc", recordio.OversizedRecord(len(body), body[:recordio.PREFIX_BYTES]),
                       b"de"], f"cut at {cut}"
    assert decoder._record is None and decoder._prefix is None  # nothing left held


def test_a_record_spanning_chunks_is_gathered_in_one_buffer_of_its_size():
    decoder = recordio.RecordIODecoder()
    assert decoder.feed(b"10\n0123") == []
    held = decoder._record
    assert held is not None and len(held) == 10
    assert decoder.feed(b"4567") == []
    assert decoder._record is held  # filled in place, never reallocated
    [record] = decoder.feed(b"89")
    assert record is held and record == b"0123456789"


def test_an_oversized_event_is_read_from_its_first_bytes():
    launch = json.dumps({"type": "LAUNCH", "launch": {"task": {
        "name": "big", "task_id": {"value": "t-1"}, "data": "A" * 100}}}).encode()
    assert wire.parse_oversized(9_000_000, launch[:90], 10) == wire.Oversized("LAUNCH", 9_000_000, "t-1")
    assert wire.parse_oversized(9_000_000, launch[:40], 10) == wire.Oversized("LAUNCH", 9_000_000, None)
    message = b'{"type":"MESSAGE","message":{"data":"AAAA'
    assert wire.parse_oversized(20, message, 10) == wire.Oversized("MESSAGE", 20, None)
    assert wire.parse_oversized(20, b'{"type":"FROM_THE_FUTURE"', 10).type == "FROM_THE_FUTURE"
    # Only a LAUNCH's task id is read: another event's path that looks like one is not.
    future = b'{"type":"FROM_THE_FUTURE","launch":{"task":{"task_id":{"value":"t-9"}}}}'
    assert wire.parse_oversized(20, future, 10) == wire.Oversized("FROM_THE_FUTURE", 20, None)
    for prefix, kind in ((b'{"type":"SUBSCRIBED","subscribed":{', "SUBSCRIBED"), (b'{"type":"KILL"', "KILL"),
                         (b'{"typ', "an"), (b"junk", "an")):
        with pytest.raises(RemoteProtocolError) as caught:
            wire.parse_oversized(20, prefix, 10)
        assert str(caught.value) == f"{kind} event of 20 bytes is larger than the limit of 10 bytes"


def test_protocol_error_in_stream_reaches_the_caller_of_feed():
    proto = subscribing()
    with pytest.raises(RemoteProtocolError):
        proto.feed(records(subscribed()) + b"xx\n")


@pytest.mark.parametrize("fault", [
    b'5\n{"type":"HEARTBEAT"}',  # a length that lies short: the rest is read as a header
    b'30\n{"type":"HEARTBEAT"}' + records({"type": "HEARTBEAT"}),  # long: it swallows the next
    b"12x\n",  # not a size
    b'2\n{}',  # not an event
], ids=["length too short", "length too long", "header not a size", "record not an event"])
def test_events_before_a_fault_in_the_same_chunk_are_booked_and_handed_on(fault):
    """The stream is broken from the fault on, not before it: a KILL or an ACKNOWLEDGED
    that came whole before it, in the same chunk, still counts (the agent sends neither
    again)."""
    proto = new_protocol(subscribed(), launch("task-42"))
    owed = proto.update("task-42", TaskState.RUNNING, now_wall=1)
    kill = {"type": "KILL", "kill": {"task_id": {"value": "task-42"}}}
    with pytest.raises(RemoteProtocolError) as caught:
        proto.feed(records(kill, ack("task-42", owed.uuid)) + fault)
    assert caught.value.before == [wire.Kill("task-42", None), wire.Acknowledged("task-42", owed.uuid)]
    assert proto.all_acknowledged and proto.state is session.SessionState.ERROR


def test_a_new_subscription_forgets_a_partial_record():
    proto = subscribing()
    assert proto.feed(records({"type": "HEARTBEAT"})[:5]) == []
    resubscribe(proto)
    assert proto.feed(records({"type": "SHUTDOWN"})) == [wire.Shutdown()]


# ---- event parsing ----


def test_kill_without_policy_has_no_grace_and_string_nanoseconds_are_accepted():
    assert wire.parse_event(b'{"type":"KILL","kill":{"task_id":{"value":"t"}}}') == wire.Kill("t", None)
    raw = b'{"type":"KILL","kill":{"task_id":{"value":"t"},' \
          b'"kill_policy":{"grace_period":{"nanoseconds":"1500000000"}}}}'
    assert wire.parse_event(raw) == wire.Kill("t", 1.5)


def test_launch_group_and_error_and_subscribed_without_container_parse():
    group = {"type": "LAUNCH_GROUP", "launch_group": {"task_group": {
        "tasks": [task_info("task-50"), task_info("task-51")]}}}
    assert wire.parse_event(json.dumps(group).encode()) == wire.LaunchGroup(
        (task_info("task-50"), task_info("task-51")))
    assert wire.parse_event(b'{"type":"ERROR","error":{"message":"boom"}}') == wire.Error("boom")
    event = subscribed()
    del event["subscribed"]["container_id"]
    assert wire.parse_event(json.dumps(event).encode()).container_id is None


KILL_T = b'{"type": "KILL", "kill": {"task_id": {"value": "t"}, "kill_policy": {"grace_period": {"nanoseconds": %s}}}}'
SUBSCRIBED_WITH = b'{"type": "SUBSCRIBED", "subscribed": {%s}}'
NANOS = "kill.kill_policy.grace_period.nanoseconds"

# Each row: a malformed event -> the whole message, naming the event and the field's path.
MALFORMED = [
    (b"[1, 2]", "event is a JSON list, not an object"),
    (b'{"launch": {}}', "event: 'type' is missing"),
    (b'{"type": 7}', "event: 'type' is a int, not str"),
    (b'{"type": true}', "event: 'type' is a bool, not str"),
    (b'{"type": "LAUNCH"}', "LAUNCH event: 'launch.task' is missing"),
    (b'{"type": "LAUNCH", "launch": {"task": null}}', "LAUNCH event: 'launch.task' is missing"),
    (b'{"type": "LAUNCH", "launch": {"task": []}}', "LAUNCH event: 'launch.task' is a list, not dict"),
    (b'{"type": "LAUNCH", "launch": {"task": {"name": "x"}}}', "TaskInfo: 'task_id.value' is missing"),
    (b'{"type": "KILL", "kill": {}}', "KILL event: 'kill.task_id.value' is missing"),
    # Found by the fuzz harness (tests/fuzz/fuzz_mesos_event.py): an event nested past the
    # parser's recursion raised RecursionError out of the session (no BrokenStream, the events
    # before it lost).
    (b"[" * 100_000, f"event is nested too deeply to read: {b'[' * 80!r}"),
    # Python reads no integer of more than 4300 digits: its ValueError ended the stream's
    # thread, and with it the executor and the task.
    (KILL_T % (b"1" * 5000), f"event holds a number too long to read: {(KILL_T % b'1')[:80]!r}"),
    (b'{"type": "ACKNOWLEDGED", "acknowledged": {"task_id": {"value": "t"}, "uuid": 5}}',
     "ACKNOWLEDGED event: 'acknowledged.uuid' is a int, not str"),
    (b'{"type": "ACKNOWLEDGED", "acknowledged": {"uuid": "AAAA"}}',
     "ACKNOWLEDGED event: 'acknowledged.task_id.value' is missing"),
    (b'{"type": "MESSAGE", "message": {}}', "MESSAGE event: 'message.data' is missing"),
    (b'{"type": "ERROR", "error": {"message": 3}}', "ERROR event: 'error.message' is a int, not str"),
    (SUBSCRIBED_WITH % b'"framework_info": {}, "agent_info": {}', "SUBSCRIBED event: 'subscribed.executor_info' is missing"),
    (SUBSCRIBED_WITH % b'"executor_info": {}, "agent_info": {}', "SUBSCRIBED event: 'subscribed.framework_info' is missing"),
    (SUBSCRIBED_WITH % b'"executor_info": {}, "framework_info": {}', "SUBSCRIBED event: 'subscribed.agent_info' is missing"),
    (SUBSCRIBED_WITH % b'"executor_info": {}, "framework_info": {}, "agent_info": {}, "container_id": {"value": 1}',
     "SUBSCRIBED event: 'subscribed.container_id.value' is a int, not str"),
    (b'{"type": "LAUNCH_GROUP", "launch_group": {"task_group": {}}}',
     "LAUNCH_GROUP event: 'launch_group.task_group.tasks' is missing"),
    (b'{"type": "LAUNCH_GROUP", "launch_group": {"task_group": {"tasks": [3]}}}',
     "LAUNCH_GROUP event: task 0 is a int, not an object"),
    (b'{"type": "LAUNCH_GROUP", "launch_group": {"task_group": {"tasks": [{"task_id": {}}]}}}',
     "TaskInfo: 'task_id.value' is missing"),
]


@pytest.mark.parametrize("payload, message", MALFORMED)
def test_malformed_events_raise_protocol_error_saying_what_is_wrong(payload, message):
    with pytest.raises(RemoteProtocolError) as caught:
        wire.parse_event(payload)
    assert str(caught.value) == message


# Each row: a KILL whose grace cannot be read -> why, in `bad_grace`. Such a KILL used to
# break the stream, and the agent never sends a KILL again: the task ran on. Now it kills
# with the task's own grace, as a KILL without kill_policy. Found by the fuzz harness
# (tests/fuzz/fuzz_mesos_event.py): Python's json reads NaN and Infinity, and int() takes
# "1_000", " 5" and other digits than 0-9.
BAD_GRACE = [
    (b"-1", "KILL event: kill_policy.grace_period.nanoseconds is negative (-1 ns)"),
    (b'"soon"', "KILL event: kill_policy.grace_period.nanoseconds 'soon' is not a number"),
    (b"true", f"KILL event: '{NANOS}' is a bool, not int or float or str"),
    (b"[1]", f"KILL event: '{NANOS}' is a list, not int or float or str"),
    (b"NaN", "KILL event: kill_policy.grace_period.nanoseconds is nan, not a number of nanoseconds"),
    (b"Infinity", "KILL event: kill_policy.grace_period.nanoseconds is inf, not a number of nanoseconds"),
    (b'"1_000"', "KILL event: kill_policy.grace_period.nanoseconds '1_000' is not a number"),
    (b'" 5"', "KILL event: kill_policy.grace_period.nanoseconds ' 5' is not a number"),
    (('"%s"' % ("9" * 20)).encode(),
     f"KILL event: kill_policy.grace_period.nanoseconds '{'9' * 20}' is not a number"),
    (b"1e300", "KILL event: kill_policy.grace_period.nanoseconds is 1e+300, more than Mesos' "
     "Duration holds (9223372036854775807 ns)"),
    (b'"9223372036854775808"', "KILL event: kill_policy.grace_period.nanoseconds is "
     "9223372036854775808, more than Mesos' Duration holds (9223372036854775807 ns)"),
    (b"1" * 100, "KILL event: kill_policy.grace_period.nanoseconds is 11111111111111111111...(100 "
     "digits), more than Mesos' Duration holds (9223372036854775807 ns)"),
]


@pytest.mark.parametrize("nanos, why", BAD_GRACE)
def test_a_kill_whose_grace_cannot_be_read_still_kills_with_the_tasks_own_grace(nanos, why):
    assert wire.parse_event(KILL_T % nanos) == wire.Kill("t", None, bad_grace=why)


def test_a_kill_policy_without_grace_period_is_a_kill_with_the_tasks_own_grace():
    # KillPolicy's grace_period is optional in Mesos: nothing to warn about.
    kill = b'{"type": "KILL", "kill": {"task_id": {"value": "t"}, "kill_policy": %s}}'
    assert wire.parse_event(kill % b"{}") == wire.Kill("t", None)
    assert wire.parse_event(kill % b'{"grace_period": {}}') == wire.Kill(
        "t", None, bad_grace=f"KILL event: '{NANOS}' is missing")
    assert wire.parse_event(KILL_T % b'"9223372036854775807"').grace_secs == pytest.approx(9223372036.854776)


def test_an_event_nested_too_deeply_breaks_the_stream_after_the_events_before_it():
    # A RecordIO record of 100,000 `[` used to raise RecursionError out of feed(): the KILL
    # before it in the same chunk was lost and the session never moved to ERROR.
    proto = subscribing()
    kill = b'{"type": "KILL", "kill": {"task_id": {"value": "t"}}}'
    with pytest.raises(session.BrokenStream, match="nested too deeply") as caught:
        proto.feed(recordio.encode_record(kill) + recordio.encode_record(b"[" * 100_000))
    assert caught.value.before == [wire.Kill("t", None)]
    assert proto.state is session.SessionState.ERROR


# Each row: input the standard library reads first -> our part of the message, then its own.
UNREADABLE = [
    (b"{not json" + b"x" * 100, "event is not JSON: Expecting property name enclosed in double quotes",
     f" in {(b'{not json' + b'x' * 100)[:80]!r}"),  # the first 80 bytes shown
    (b"\xff\xfe", "event is not UTF-8: 'utf-8' codec can't decode byte 0xff", "invalid start byte"),
    (b'{"type": "ACKNOWLEDGED", "acknowledged": {"task_id": {"value": "t"}, "uuid": "%%%"}}',
     "ACKNOWLEDGED event: uuid is not valid base64: ", ""),
    (b'{"type": "MESSAGE", "message": {"data": "%%"}}', "MESSAGE event: data is not valid base64: ", ""),
]


@pytest.mark.parametrize("payload, ours, end", UNREADABLE)
def test_unreadable_events_say_what_could_not_be_read(payload, ours, end):
    with pytest.raises(RemoteProtocolError) as caught:
        wire.parse_event(payload)
    assert str(caught.value).startswith(ours) and str(caught.value).endswith(end)


# ---- status updates and the unacknowledged buffers ----


def new_protocol(*events: dict) -> session.ExecutorProtocol:
    proto = subscribing()
    proto.feed(records(*events))
    return proto


def test_update_is_recorded_as_unacknowledged_before_it_is_sent():
    proto = new_protocol(subscribed(), launch("task-42"))
    pending = proto.update("task-42", TaskState.RUNNING, now_wall=1732700000.125)
    assert proto.unacknowledged_updates() == (pending,)
    assert not proto.all_acknowledged
    assert proto.is_pending(pending.uuid)


def test_update_status_has_every_field_the_agent_requires():
    proto = new_protocol(subscribed(), launch("task-42"))
    pending = proto.update("task-42", TaskState.RUNNING, "started pid 4242", healthy=True,
                           reason="REASON_TASK_HEALTH_CHECK_STATUS_UPDATED",
                           now_wall=1732700000.125)
    body = json.loads(proto.update_body(pending))
    assert body == {
        "type": "UPDATE",
        "framework_id": {"value": FRAMEWORK},
        "executor_id": {"value": EXECUTOR},
        "update": {"status": {
            "task_id": {"value": "task-42"},
            "state": "TASK_RUNNING",
            "source": "SOURCE_EXECUTOR",
            "executor_id": {"value": EXECUTOR},
            "agent_id": {"value": AGENT},
            "uuid": b64(pending.uuid),
            "timestamp": 1732700000.125,
            "message": "started pid 4242",
            "healthy": True,
            "reason": "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED",
        }},
    }


def test_every_uuid_is_fresh_16_bytes_rfc4122_version_4():
    proto = new_protocol(subscribed())
    uuids = [proto.update("t", TaskState.RUNNING, now_wall=1.0).uuid for _ in range(50)]
    assert len(set(uuids)) == 50
    for raw in uuids:
        parsed = uuid.UUID(bytes=raw)
        assert len(raw) == 16 and parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_optional_fields_are_left_out_when_not_given():
    proto = session.ExecutorProtocol(FRAMEWORK, EXECUTOR)
    status = proto.update("unknown-task", TaskState.STARTING, now_wall=5).status
    assert set(status) == {"task_id", "state", "source", "executor_id", "uuid", "timestamp"}
    assert isinstance(status["timestamp"], float)


def test_agent_id_comes_from_the_task_info_when_not_yet_subscribed():
    proto = subscribing()
    proto.feed(records(launch("task-42")))
    assert proto.update("task-42", TaskState.STARTING, now_wall=1).status["agent_id"] == {
        "value": AGENT}


def test_agent_id_is_exactly_the_subscribed_agent_id():
    proto = new_protocol(subscribed("other-agent-S9"), launch("task-42"))
    assert proto.agent_id == "other-agent-S9"
    assert proto.update("task-42", TaskState.RUNNING, now_wall=1).status["agent_id"] == {
        "value": "other-agent-S9"}


@pytest.mark.parametrize("state, name", [
    (TaskState.STARTING, "TASK_STARTING"), (TaskState.RUNNING, "TASK_RUNNING"),
    (TaskState.FINISHED, "TASK_FINISHED"), (TaskState.FAILED, "TASK_FAILED"),
    (TaskState.KILLED, "TASK_KILLED"),
])
def test_task_states_map_to_mesos_names(state, name):
    assert wire.mesos_state_name(state) == name
    assert new_protocol().update("t", state, now_wall=0).status["state"] == name


def test_update_refuses_bad_state_reason_and_uuid_source():
    proto = session.ExecutorProtocol(FRAMEWORK, EXECUTOR, uuid_source=lambda: b"short")
    with pytest.raises(LocalProtocolError, match="must be a TaskState"):
        proto.update("t", "TASK_RUNNING", now_wall=0)
    with pytest.raises(LocalProtocolError, match="REASON_"):
        proto.update("t", TaskState.RUNNING, reason="unhealthy", now_wall=0)
    with pytest.raises(LocalProtocolError, match="not 16 fresh bytes"):
        proto.update("t", TaskState.RUNNING, now_wall=0)
    assert proto.all_acknowledged


def test_injected_uuid_source_is_used():
    fixed = iter([bytes([i]) * 16 for i in range(1, 4)])
    proto = session.ExecutorProtocol(FRAMEWORK, EXECUTOR, uuid_source=lambda: next(fixed))
    assert proto.update("t", TaskState.RUNNING, now_wall=0).uuid == b"\x01" * 16
    assert proto.update("t", TaskState.RUNNING, now_wall=0).uuid == b"\x02" * 16


def test_ack_removes_exactly_the_matching_update_and_keeps_order():
    proto = new_protocol(subscribed(), launch("task-42"), launch("task-43"))
    a = proto.update("task-42", TaskState.STARTING, now_wall=1)
    b = proto.update("task-42", TaskState.RUNNING, now_wall=2)
    c = proto.update("task-43", TaskState.STARTING, now_wall=3)
    proto.feed(records(ack("task-42", b.uuid)))
    assert proto.unacknowledged_updates() == (a, c)


def test_duplicate_and_unknown_acks_are_ignored():
    proto = new_protocol(subscribed(), launch("task-42"))
    a = proto.update("task-42", TaskState.STARTING, now_wall=1)
    b = proto.update("task-42", TaskState.RUNNING, now_wall=2)
    events = proto.feed(records(ack("task-42", a.uuid), ack("task-42", a.uuid),
                                ack("task-42", uuid.uuid4().bytes)))
    assert len(events) == 3
    assert proto.unacknowledged_updates() == (b,)


def test_ack_matches_on_decoded_bytes_not_base64_text():
    proto = new_protocol(subscribed(), launch("task-42"))
    a = proto.update("task-42", TaskState.RUNNING, now_wall=1)
    text = b64(a.uuid)
    spaced = text[:8] + "\n" + text[8:]  # Mesos' base64 parser skips whitespace
    event = {"type": "ACKNOWLEDGED", "acknowledged": {"task_id": {"value": "task-42"},
                                                      "uuid": spaced}}
    proto.feed(records(event))
    assert proto.all_acknowledged


def test_task_leaves_unacknowledged_tasks_once_any_of_its_updates_is_acked():
    proto = new_protocol(subscribed(), launch("task-42"), launch("task-43"))
    assert [wire.task_id(t) for t in proto.unacknowledged_tasks()] == ["task-42", "task-43"]
    a = proto.update("task-42", TaskState.STARTING, now_wall=1)
    proto.update("task-42", TaskState.RUNNING, now_wall=2)
    proto.update("task-43", TaskState.STARTING, now_wall=3)
    assert len(proto.unacknowledged_tasks()) == 2  # sending is not enough
    proto.feed(records(ack("task-42", a.uuid)))
    assert [wire.task_id(t) for t in proto.unacknowledged_tasks()] == ["task-43"]
    proto.feed(records(launch("task-42")))  # a replayed LAUNCH does not bring it back
    assert [wire.task_id(t) for t in proto.unacknowledged_tasks()] == ["task-43"]


def test_ack_for_an_update_of_another_task_id_uses_the_update_task():
    proto = new_protocol(subscribed(), launch("task-42"))
    a = proto.update("task-42", TaskState.RUNNING, now_wall=1)
    proto.feed(records(ack("mislabelled", a.uuid)))
    assert proto.unacknowledged_tasks() == () and proto.all_acknowledged


def test_launch_group_tasks_are_all_unacknowledged():
    group = {"type": "LAUNCH_GROUP", "launch_group": {"task_group": {
        "tasks": [task_info("task-50"), task_info("task-51")]}}}
    proto = new_protocol(subscribed(), group)
    assert proto.unacknowledged_tasks() == (task_info("task-50"), task_info("task-51"))


def test_discard_drops_a_rejected_update():
    proto = new_protocol(subscribed())
    a = proto.update("t", TaskState.RUNNING, now_wall=1)
    assert proto.discard(a.uuid) == a
    assert proto.discard(a.uuid) is None and proto.all_acknowledged


def test_subscription_count_tells_reregistration():
    proto = new_protocol(subscribed())
    assert proto.subscription_count == 1
    proto.feed(records(subscribed()))
    assert proto.subscription_count == 2


# ---- SUBSCRIBE, MESSAGE bodies ----


def test_first_subscribe_has_an_empty_subscribe_object():
    body = session.ExecutorProtocol(FRAMEWORK, EXECUTOR).subscribing()
    assert json.loads(body) == {
        "type": "SUBSCRIBE",
        "framework_id": {"value": FRAMEWORK},
        "executor_id": {"value": EXECUTOR},
        "subscribe": {},
    }


def test_subscribe_carries_unacked_tasks_exactly_and_updates_in_send_order():
    proto = new_protocol(subscribed(), launch("task-42"))
    running = proto.update("task-42", TaskState.RUNNING, now_wall=1)
    proto.feed(records(ack("task-42", running.uuid)))
    finished = proto.update("task-42", TaskState.FINISHED, "exit status 0", now_wall=2)
    proto.feed(records(launch("task-43")))
    starting = proto.update("task-43", TaskState.STARTING, now_wall=3)
    body = resubscribe(proto)
    subscribe = body["subscribe"]
    assert subscribe["unacknowledged_tasks"] == [task_info("task-43")]  # round-tripped unchanged
    updates = subscribe["unacknowledged_updates"]
    assert [set(u) for u in updates] == [{"status"}, {"status"}]  # Call.Update objects
    assert [base64.b64decode(u["status"]["uuid"]) for u in updates] == [finished.uuid,
                                                                         starting.uuid]
    assert [u["status"] for u in updates] == [finished.status, starting.status]
    assert updates[0]["status"]["message"] == "exit status 0"


def test_subscribe_with_only_unacked_tasks_still_lists_both():
    proto = new_protocol(subscribed(), launch("task-42"))
    subscribe = resubscribe(proto)["subscribe"]
    assert subscribe == {"unacknowledged_tasks": [task_info("task-42")],
                         "unacknowledged_updates": []}


def test_message_body_is_base64():
    body = json.loads(session.ExecutorProtocol(FRAMEWORK, EXECUTOR).message_body(b"\x00progress"))
    assert body["type"] == "MESSAGE"
    assert base64.b64decode(body["message"]["data"]) == b"\x00progress"


# ---- TaskInfo helpers ----


def test_ports_from_resources_expands_ranges_in_order():
    assert wire.ports_from_resources(task_info("t")) == [31000, 31001, 31002, 30000]
    assert wire.ports_from_resources({"task_id": {"value": "t"}}) == []
    bad = task_info("t", resources=[{"name": "ports", "type": "RANGES",
                                     "ranges": {"range": [{"begin": 5, "end": 4}]}}])
    with pytest.raises(RemoteProtocolError, match=r"\[5, 4\] is not valid"):
        wire.ports_from_resources(bad)


def test_task_data_id_and_kill_grace():
    info = task_info("task-42")
    assert wire.task_id(info) == "task-42"
    assert wire.task_data(info) == b'{"job": {}}'
    assert wire.task_data({"task_id": {"value": "t"}}) == b""
    assert wire.task_kill_grace_secs(info) == 3.0
    assert wire.task_kill_grace_secs({"task_id": {"value": "t"}}) is None
    with pytest.raises(RemoteProtocolError, match="data is not valid base64"):
        wire.task_data(task_info("t", data="not base64!"))
    with pytest.raises(RemoteProtocolError, match="task_id.value"):
        wire.task_id({"task_id": {"value": 42}})


def ports_range(begin, end) -> dict:
    return {"task_id": {"value": "t"},
            "resources": [{"name": "ports", "ranges": {"range": [{"begin": begin, "end": end}]}}]}


@pytest.mark.parametrize("begin, end, ports", [(1, 1, [1]), (65535, 65535, [65535]), (7, 9, [7, 8, 9])])
def test_a_ports_range_from_1_to_65535_is_every_port_in_it(begin, end, ports):
    assert wire.ports_from_resources(ports_range(begin, end)) == ports


@pytest.mark.parametrize("info, message", [
    (ports_range(0, 1), "TaskInfo ports range [0, 1] is not valid"),
    (ports_range(65535, 65536), "TaskInfo ports range [65535, 65536] is not valid"),
    (ports_range(True, 2), "TaskInfo ports range: 'begin' is a bool, not int"),
    (ports_range(1, "2"), "TaskInfo ports range: 'end' is a str, not int"),
    ({"resources": 5}, "TaskInfo 'resources' is not a list"),
    ({"resources": [{"name": "ports"}]}, "TaskInfo ports resource: 'ranges.range' is missing"),
    ({"resources": [{"name": "ports", "ranges": {"range": 3}}]},
     "TaskInfo ports resource: 'ranges.range' is a int, not list"),
])
def test_a_bad_ports_resource_is_named(info, message):
    with pytest.raises(RemoteProtocolError) as caught:
        wire.ports_from_resources(info)
    assert str(caught.value) == message


@pytest.mark.parametrize("info, message", [
    ({"task_id": {"value": "t-1"}, "data": 5}, "TaskInfo 't-1' data is a int, not base64 text"),
    ({"task_id": {"value": "t-1"}, "data": "%%"}, "TaskInfo 't-1' data is not valid base64: "),
    ({"kill_policy": {"grace_period": {"nanoseconds": "x"}}},
     "TaskInfo kill_policy.grace_period.nanoseconds 'x' is not a number"),
    ({"kill_policy": {"grace_period": {}}}, "TaskInfo: 'kill_policy.grace_period.nanoseconds' is missing"),
])
def test_bad_task_info_data_and_kill_grace_are_named(info, message):
    read = wire.task_data if "data" in info else wire.task_kill_grace_secs
    with pytest.raises(RemoteProtocolError) as caught:
        read(info)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize("nanos, secs", [(0, 0.0), ("1500000000", 1.5), (2.5e9, 2.5)])
def test_a_kill_grace_may_be_0_a_numeric_string_or_a_float(nanos, secs):
    assert wire.task_kill_grace_secs({"kill_policy": {"grace_period": {"nanoseconds": nanos}}}) == secs


@pytest.mark.parametrize("info, agent_id", [
    ({"agent_id": {"value": "a-1"}}, "a-1"), ({"agent_id": {"value": 5}}, None), ({"agent_id": "a-1"}, None), ({}, None),
])
def test_the_task_info_agent_id_is_text_or_none(info, agent_id):
    assert wire.task_agent_id(info) == agent_id


def test_call_bodies_are_compact_json():
    calls = wire.Calls("f", "e")
    head = b'{"type":"%s","framework_id":{"value":"f"},"executor_id":{"value":"e"},'
    assert calls.message(b"\x00hi") == head % b"MESSAGE" + b'"message":{"data":"AGhp"}}'
    assert calls.update({"a": 1}) == head % b"UPDATE" + b'"update":{"status":{"a":1}}}'
    assert calls.subscribe([], []) == head % b"SUBSCRIBE" + b'"subscribe":{}}'


def test_a_state_that_is_no_task_state_is_stokers_own_mistake():
    with pytest.raises(LocalProtocolError) as caught:
        wire.StatusFields("t", "TASK_RUNNING")  # type: ignore[arg-type]
    assert str(caught.value) == "state must be a TaskState, not str"


@pytest.mark.parametrize("module", [recordio, wire, session])
def test_protocol_modules_are_pure(module):
    source = Path(module.__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    forbidden = {"requests", "psutil", "subprocess", "socket", "threading", "os", "time",
                 "logging", "urllib3"}
    assert imported & forbidden == set()
