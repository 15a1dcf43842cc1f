"""The executor's session with the agent (executor/mesos/session.py) driven by the agent's
stream: chunks of RecordIO fed in, updates recorded for the tasks it launched, the stream
ended and SUBSCRIBE sent again, in the order the input says.

Contract: `feed` returns events or raises BrokenStream (a RemoteProtocolError), after which
the session is in ERROR until the stream ends; every SUBSCRIBE body is JSON that carries
exactly the updates still owed; an ACKNOWLEDGED for an owed uuid drops it.
"""
from __future__ import annotations

import base64
import json

from tests.fuzz.harness import Finding, main

INSTRUMENT = ("executor.mesos",)


def load() -> None:
    global session, wire, recordio, TaskState
    from executor.events import TaskState
    from executor.mesos import recordio, session, wire


def seeds() -> list[bytes]:
    from executor.mesos.recordio import encode_record
    from tests.fuzz.mesos_seeds import events

    stream = b"".join(encode_record(e) for e in events())
    return [b"".join(b"\x00" + bytes([min(255, len(stream) - i)]) + stream[i:i + 255]
                     for i in range(0, len(stream), 255)) + b"\x01\x02\x00\x05" + stream[:5]]


def _uuids():
    n = 0

    def source() -> bytes:
        nonlocal n
        n += 1
        return n.to_bytes(16, "big")
    return source


def _check_subscribe(proto, body: bytes) -> None:
    sub = json.loads(body)["subscribe"]
    carried = [u["status"]["uuid"] for u in sub.get("unacknowledged_updates", [])]
    owed = [base64.b64encode(p.uuid).decode() for p in proto.unacknowledged_updates()]
    if sorted(carried) != sorted(owed):
        raise Finding(f"SUBSCRIBE carries {carried}, the session owes {owed}")


def _feed(proto, chunk: bytes, launched: list[str]) -> None:
    try:
        events = proto.feed(chunk)
    except session.BrokenStream as exc:
        if proto.state is not session.SessionState.ERROR:
            raise Finding(f"BrokenStream ({exc}) left the session {proto.state}") from exc
        events = exc.before
    for event in events:
        if isinstance(event, wire.Launch):
            launched.append(wire.task_id(event.task_info))
        elif isinstance(event, wire.Acknowledged) and proto.is_pending(event.uuid):
            raise Finding(f"acknowledged {event.uuid!r} is still owed")


def target(data: bytes) -> None:
    proto = session.ExecutorProtocol("f", "e", uuid_source=_uuids())
    _check_subscribe(proto, proto.subscribing())
    launched: list[str] = []
    pos = 0
    while pos + 1 < len(data):
        op, size = data[pos] % 3, data[pos + 1]
        pos += 2
        if op == 0 and proto.state in (session.SessionState.SUBSCRIBING, session.SessionState.SUBSCRIBED):
            _feed(proto, data[pos:pos + size], launched)
            pos += size
        elif op == 1 and launched:
            proto.update(launched[size % len(launched)], TaskState.RUNNING, now_wall=1.7e9)
        elif op == 2:
            proto.stream_ended()
            _check_subscribe(proto, proto.subscribing())


main(__name__)
