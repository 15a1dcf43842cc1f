"""The sans-I/O Mesos protocol, update side: status updates and the unacknowledged buffers
(session.py), SUBSCRIBE and MESSAGE bodies and the TaskInfo helpers (wire.py). No threads,
sockets or sleeps. RecordIO and event parsing: test_mesos_stream.py; the session's state
machine: test_mesos_session.py.
"""
from __future__ import annotations

import ast
import base64
import json
import uuid
from pathlib import Path

import pytest

from executor.events import TaskState
from executor.mesos import recordio, session, wire
from executor.mesos.errors import LocalProtocolError, RemoteProtocolError
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

# ---- status updates and the unacknowledged buffers ----


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


@pytest.mark.timeout(10)
def test_a_uuid_keeps_every_random_bit_but_the_six_of_its_version_and_variant():
    """`session.random_uuid` (os.urandom, not the `uuid` module): over 400 of them each of
    the 122 other bits is seen both set and clear (chance of a miss: about 122 in 2**399)."""
    made = [int.from_bytes(session.random_uuid(), "big") for _ in range(400)]
    ones = zeros = 0
    for value in made:
        ones |= value
        zeros |= ~value & (2 ** 128 - 1)
    fixed = (0xF << 76) | (0x3 << 62)  # the version's four bits, the variant's two
    assert ones & zeros == (2 ** 128 - 1) & ~fixed
    assert {(v >> 76) & 0xF for v in made} == {4} and {(v >> 62) & 0x3 for v in made} == {2}


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
     "TaskInfo ports resource: 'ranges.range' is an int, not list"),
])
def test_a_bad_ports_resource_is_named(info, message):
    with pytest.raises(RemoteProtocolError) as caught:
        wire.ports_from_resources(info)
    assert str(caught.value) == message


@pytest.mark.parametrize("info, message", [
    ({"task_id": {"value": "t-1"}, "data": 5}, "TaskInfo 't-1' data is an int, not base64 text"),
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
