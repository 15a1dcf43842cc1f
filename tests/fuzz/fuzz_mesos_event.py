"""The agent's JSON events (executor/mesos/wire.py) and the TaskInfo fields Stoker reads.

Contract: `parse_event` returns an event or raises RemoteProtocolError; a LAUNCH's TaskInfo
fields (data, ports, kill policy, agent id) are read or refused the same way; a KILL's
grace is None or a finite number of seconds, at least 0. `parse_oversized` on the same
bytes as the first bytes of a too-large record: an `Oversized` or RemoteProtocolError, and
on a whole JSON object without duplicate keys it finds the `type` that `json` reads.
"""
from __future__ import annotations

import json
import math
from typing import Any

from tests.fuzz.harness import Finding, expect, main

INSTRUMENT = ("executor.mesos",)


def load() -> None:
    global wire, RemoteProtocolError
    from executor.mesos import wire
    from executor.mesos.errors import RemoteProtocolError


def seeds() -> list[bytes]:
    from tests.fuzz.mesos_seeds import events

    return events()


def _task_fields(info: dict[str, Any]) -> None:
    expect(RemoteProtocolError, wire.task_data, info)
    expect(RemoteProtocolError, wire.ports_from_resources, info)
    grace = expect(RemoteProtocolError, wire.task_kill_grace_secs, info)
    _check_grace(grace)
    agent = wire.task_agent_id(info)
    if agent is not None and not isinstance(agent, str):
        raise Finding(f"agent id {agent!r}")


def _check_grace(grace: float | None) -> None:
    if grace is not None and not (math.isfinite(grace) and grace >= 0):
        raise Finding(f"a grace period of {grace!r} seconds")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate keys")
    return dict(pairs)


def _prefix_oracle(data: bytes) -> None:
    found = expect(RemoteProtocolError, wire.parse_oversized, 10**9, data, 1)
    try:
        doc = json.loads(data, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError):
        return
    if found is None or not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
        return
    if found.type != doc["type"]:
        raise Finding(f"the prefix reader found type {found.type!r}, json reads {doc['type']!r}")


def target(data: bytes) -> None:
    event = expect(RemoteProtocolError, wire.parse_event, data)
    if isinstance(event, wire.Launch):
        _task_fields(event.task_info)
    elif isinstance(event, wire.LaunchGroup):
        for info in event.task_infos:
            _task_fields(info)
    elif isinstance(event, wire.Kill):
        _check_grace(event.grace_secs)
    _prefix_oracle(data)


main(__name__)
