"""Mesos events and sessions for the sans-I/O protocol's unit tests (test_mesos_stream.py,
test_mesos_updates.py): events as the agent sends them, RecordIO streams of them, and sessions
ready to be fed.
"""
from __future__ import annotations

import base64
import json

from executor.mesos import recordio, session

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


def subscribing(**kwargs) -> session.ExecutorProtocol:
    """A session whose SUBSCRIBE was just sent: its stream may be fed."""
    proto = session.ExecutorProtocol(FRAMEWORK, EXECUTOR, **kwargs)
    proto.subscribing()
    return proto


def resubscribe(proto: session.ExecutorProtocol) -> dict:
    """The stream ends and the session subscribes again: the new SUBSCRIBE body."""
    proto.stream_ended()
    return json.loads(proto.subscribing())


def new_protocol(*events: dict) -> session.ExecutorProtocol:
    """A subscribing session fed `events`."""
    proto = subscribing()
    proto.feed(records(*events))
    return proto
