"""The agent's vocabulary and what tests build and read: the ids, the task states, Mesos
durations, `make_task_info` (a TaskInfo to LAUNCH), and the records of requests and updates."""
from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

AGENT_ID = "0f8e2b9a-1c3d-4e5f-8a7b-6c5d4e3f2a10-S3"
FRAMEWORK_ID = "7c1c2a4e-5b7d-4f0e-9a51-3e2f9d6c1b20-0000"
EXECUTOR_ID = "stoker-executor-1"
CONTAINER_ID = "a1b2c3d4-e5f6-47a8-b9c0-d1e2f3a4b5c6"

TERMINAL_STATES = frozenset({"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR",
                             "TASK_LOST", "TASK_DROPPED", "TASK_GONE", "TASK_GONE_BY_OPERATOR"})
TASK_STATES = TERMINAL_STATES | {"TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING",
                                 "TASK_UNREACHABLE", "TASK_UNKNOWN"}
CALL_TYPES = frozenset({"UNKNOWN", "SUBSCRIBE", "UPDATE", "MESSAGE", "HEARTBEAT"})
ACK_MODES = frozenset({"immediate", "delay", "hold", "duplicate", "unknown_uuid"})
CHUNKING_MODES = frozenset({"record", "packed", "fuzz"})

_DURATION = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)(ns|us|ms|secs|mins|hrs|days|weeks)$")
_UNIT_SECS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "secs": 1.0, "mins": 60.0, "hrs": 3600.0,
              "days": 86400.0, "weeks": 604800.0}


def parse_duration(text: str) -> float:
    """Mesos duration text ("500ms", "10secs") -> seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a Mesos duration")
    return float(match.group(1)) * _UNIT_SECS[match.group(2)]


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _value(obj: Any, key: str) -> str | None:
    inner = obj.get(key) if isinstance(obj, dict) else None
    value = inner.get("value") if isinstance(inner, dict) else None
    return value if isinstance(value, str) else None


def make_task_info(
    task_id: str,
    data: bytes,
    ports: Sequence[int] = (),
    name: str | None = None,
    kill_policy_secs: float | None = None,
    *,
    agent_id: str = AGENT_ID,
    executor_id: str = EXECUTOR_ID,
    framework_id: str = FRAMEWORK_ID,
    extra: Mapping[str, Any] | None = None,
) -> dict:
    """A TaskInfo like docs/mesos.md §18: resources with a `ports` RANGES, `executor`, base64 data."""
    ranges: list[dict] = []
    for port in ports:  # consecutive ports share a range; the order is kept
        if ranges and ranges[-1]["end"] == port - 1:
            ranges[-1]["end"] = port
        else:
            ranges.append({"begin": port, "end": port})
    resources = [
        {"name": name, "type": "SCALAR", "scalar": {"value": value},
         "allocation_info": {"role": "*"}}
        for name, value in (("cpus", 0.5), ("mem", 128.0), ("disk", 256.0))
    ]
    if ranges:
        resources.append({"name": "ports", "type": "RANGES", "ranges": {"range": ranges},
                          "allocation_info": {"role": "*"}})
    info: dict[str, Any] = {
        "name": name or task_id,
        "task_id": {"value": task_id},
        "agent_id": {"value": agent_id},
        "resources": resources,
        "executor": {
            "type": "CUSTOM",
            "executor_id": {"value": executor_id},
            "framework_id": {"value": framework_id},
            "command": {"shell": True, "value": "stoker executor"},
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                          {"name": "mem", "type": "SCALAR", "scalar": {"value": 32.0}}],
        },
        "data": _b64(data),
        "labels": {"labels": [{"key": "sim", "value": "1"}, {"key": "tier"}]},
    }
    if kill_policy_secs is not None:
        info["kill_policy"] = {"grace_period": {"nanoseconds": round(kill_policy_secs * 1e9)}}
    info.update(extra or {})
    return info


@attrs.define
class RecordedRequest:
    """One raw request as the simulator received it, and what it answered."""

    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    at: float  # time.monotonic() when it was read
    status: int | None = None
    answer: str = ""
    json: Any = None
    call_type: str | None = None

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


@attrs.frozen
class UpdateRecord:
    task_id: str
    state: str
    uuid: bytes
    message: str
    healthy: bool | None
    reason: str | None
    source: str
    via: str  # "UPDATE", "SUBSCRIBE" (carried by a resubscription) or "AGENT"
    at: float  # time.monotonic()
    status: dict = attrs.field(eq=False, repr=False, factory=dict)


@attrs.define
class _Task:
    info: dict
    delivered: bool
    history: list[UpdateRecord] = attrs.Factory(list)

    @property
    def terminal(self) -> bool:
        return any(r.state in TERMINAL_STATES for r in self.history)

