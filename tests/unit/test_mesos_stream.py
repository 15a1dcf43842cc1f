"""The sans-I/O Mesos protocol, stream side: RecordIO (recordio.py) and event parsing
(wire.py). Bytes in, events out; no threads, sockets or sleeps. Status updates and call
bodies: test_mesos_updates.py; the session's state machine: test_mesos_session.py.
"""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from executor.events import TaskState
from executor.mesos import recordio, session, wire
from executor.mesos.errors import RemoteProtocolError
from tests.support.mesos_protocol import (
    AGENT,
    EXECUTOR,
    FRAMEWORK,
    ack,
    b64,
    launch,
    new_protocol,
    records,
    resubscribe,
    subscribed,
    subscribing,
    task_info,
)

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
    # events only logged: skipped too (an oversized ERROR broke the stream: with checkpointing
    # off, the executor ended and its task was killed)
    assert wire.parse_oversized(20, b'{"type":"ERROR","error":{"message":"x', 10) == wire.Oversized("ERROR", 20, None)
    assert wire.parse_oversized(20, b'{"type":"HEARTBEAT"', 10) == wire.Oversized("HEARTBEAT", 20, None)
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
    b'2\n[]',  # not an event
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
     "ACKNOWLEDGED event: 'acknowledged.uuid' is an int, not str"),
    (b'{"type": "ACKNOWLEDGED", "acknowledged": {"uuid": "AAAA"}}',
     "ACKNOWLEDGED event: 'acknowledged.task_id.value' is missing"),
    (SUBSCRIBED_WITH % b'"framework_info": {}, "agent_info": {}', "SUBSCRIBED event: 'subscribed.executor_info' is missing"),
    (SUBSCRIBED_WITH % b'"executor_info": {}, "agent_info": {}', "SUBSCRIBED event: 'subscribed.framework_info' is missing"),
    (SUBSCRIBED_WITH % b'"executor_info": {}, "framework_info": {}', "SUBSCRIBED event: 'subscribed.agent_info' is missing"),
    (SUBSCRIBED_WITH % b'"executor_info": {}, "framework_info": {}, "agent_info": {}, "container_id": {"value": 1}',
     "SUBSCRIBED event: 'subscribed.container_id.value' is an int, not str"),
    (b'{"type": "LAUNCH_GROUP", "launch_group": {"task_group": {}}}',
     "LAUNCH_GROUP event: 'launch_group.task_group.tasks' is missing"),
    (b'{"type": "LAUNCH_GROUP", "launch_group": {"task_group": {"tasks": [3]}}}',
     "LAUNCH_GROUP event: task 0 is an int, not an object"),
    (b'{"type": "LAUNCH_GROUP", "launch_group": {"task_group": {"tasks": [{"task_id": {}}]}}}',
     "TaskInfo: 'task_id.value' is missing"),
]


# Each row: a whole record the executor only logs, read wrong -> `Unreadable`, skipped: it
# used to break the stream, and with checkpointing off the executor ended, killing its task.
SKIPPED = [
    (b'{"launch": {}}', None, "event: 'type' is missing"),
    (b'{"type": 7}', None, "event: 'type' is an int, not str"),
    (b'{"type": true}', None, "event: 'type' is a bool, not str"),
    (b'{"type": "MESSAGE", "message": {}}', "MESSAGE", "MESSAGE event: 'message.data' is missing"),
    (b'{"type": "MESSAGE", "message": {"data": "%%"}}', "MESSAGE",
     "MESSAGE event: data is not valid base64: Only base64 data is allowed"),
    (b'{"type": "ERROR", "error": {"message": 3}}', "ERROR", "ERROR event: 'error.message' is an int, not str"),
]


@pytest.mark.parametrize("payload, kind, why", SKIPPED)
def test_an_unreadable_event_only_logged_is_skipped_and_the_stream_read_on(payload, kind, why):
    assert wire.parse_event(payload) == wire.Unreadable(kind, why)
    proto = subscribing()
    kill = {"type": "KILL", "kill": {"task_id": {"value": "t"}}}
    assert proto.feed(recordio.encode_record(payload) + records(kill)) == [
        wire.Unreadable(kind, why), wire.Kill("t", None)]
    assert proto.state is session.SessionState.SUBSCRIBING


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
    (b"1" * 400, "KILL event: kill_policy.grace_period.nanoseconds is 11111111111111111111...(400 "
     "digits), more than Mesos' Duration holds (9223372036854775807 ns)"),  # no float holds it
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
]


@pytest.mark.parametrize("payload, ours, end", UNREADABLE)
def test_unreadable_events_say_what_could_not_be_read(payload, ours, end):
    with pytest.raises(RemoteProtocolError) as caught:
        wire.parse_event(payload)
    assert str(caught.value).startswith(ours) and str(caught.value).endswith(end)
