"""An AgentSimulator that also records which event stream every event went out on, and the
accounting of status updates across agent restarts that the fault suite checks.

Owns `RecordingAgent` (the simulator plus `batches`: every batch of events with the stream it
was queued on, None when no stream was open and it was lost; a crash that never answers a call
in flight; and a switch to answer 403 as to an unsubscribed executor) and `audit_updates`, which
compares what the executor produced (its log) with what the agent recorded, and finds
updates re-sent after their acknowledgement was provably delivered.

"Provably delivered": events on one stream arrive in order, and the executor books an
ACKNOWLEDGED before it reads the next event. So once the update answering a probe task (a
LAUNCH the executor rejects at once) reached the agent, every ACK queued on the same stream
before that LAUNCH had been booked by the executor. A request carrying an acknowledged update
that the agent received after that moment, or that carries the probe's own update, was
built after the ACK was booked: a re-send after acknowledgement. Talks to nothing itself.
"""
from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from tests.support.agent_sim import AgentSimulator, RecordedRequest

_QUEUED = re.compile(r"status_update .*?task_id=(\S+) state=(\S+) .*?uuid=([0-9a-f]{32})")
_ACKED = re.compile(r"status_update_acknowledged .*?uuid=([0-9a-f]{32})")


class RecordingAgent(AgentSimulator):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.batches: list[tuple[float, object | None, list[dict]]] = []
        super().__init__(*args, **kwargs)

    def crash(self) -> None:
        """The agent dies. Unlike `AgentSimulator.crash`, which marks the executor unsubscribed
        before it stops listening (so a call in flight at that moment is answered 403 "Executor
        is not subscribed", which a dying agent never sends), this stops listening and cuts
        every connection first: a call in flight is either handled in full or never answered."""
        self._stop_listening(graceful=False)
        with self._cond:
            self._held_acks.clear()
            self._subscribed = False

    def answer_as_unsubscribed(self) -> None:
        """From now until the next SUBSCRIBE, calls other than SUBSCRIBE get 403 "Executor is
        not subscribed" (the agent's answer while it holds the executor as REGISTERING)."""
        with self._cond:
            self._subscribed = False

    def send_events(self, events: Sequence[dict]) -> None:
        with self._cond:  # re-entrant: the parent takes it again and picks the same stream
            stream = self._stream if self._stream is not None and self._stream.open else None
            self.batches.append((time.monotonic(), stream, list(events)))
            super().send_events(events)


def produced_updates(executor_log: str) -> dict[bytes, tuple[str, str]]:
    """uuid -> (task id, state) of every update the executor queued."""
    return {bytes.fromhex(m.group(3)): (m.group(1), m.group(2)) for m in _QUEUED.finditer(executor_log)}


def acknowledged_updates(executor_log: str) -> set[bytes]:
    return {bytes.fromhex(m.group(1)) for m in _ACKED.finditer(executor_log)}


def _carried(request: RecordedRequest) -> list[bytes]:
    body = request.json if isinstance(request.json, dict) else {}
    if request.call_type == "UPDATE":
        statuses = [(body.get("update") or {}).get("status") or {}]
    elif request.call_type == "SUBSCRIBE":
        statuses = [(u or {}).get("status") or {}
                    for u in (body.get("subscribe") or {}).get("unacknowledged_updates") or []]
    else:
        return []
    found = []
    for status in statuses:
        try:
            found.append(base64.b64decode(status["uuid"]))
        except (KeyError, TypeError, ValueError):
            pass
    return found


@attrs.frozen
class UpdateAudit:
    produced: int
    recorded: int
    lost: list[bytes]
    unexpected: list[bytes]  # recorded by the agent, never produced by the executor
    twice_in_history: list[bytes]
    duplicates_before_ack: int  # re-sent while still unacknowledged: allowed
    after_ack: list[str]  # re-sent after the ACK was provably delivered: never allowed
    proven_acks: int  # ACKs whose delivery a probe proved


def audit_updates(sim: RecordingAgent, task_ids: Iterable[str], probes: Iterable[str]) -> UpdateAudit:
    log = sim.executor_log()
    produced = produced_updates(log)
    with sim._cond:
        first_seen: dict[bytes, float] = {}
        in_history: dict[bytes, int] = {}
        for tid in task_ids:
            for record in sim.updates(tid):
                if record.source == "SOURCE_EXECUTOR":
                    in_history[record.uuid] = in_history.get(record.uuid, 0) + 1
                    first_seen.setdefault(record.uuid, record.at)
        for record in sim.dropped_updates + sim.unknown_updates:
            first_seen.setdefault(record.uuid, record.at)
        duplicates = len(sim.duplicates)
        requests = list(sim.requests)
        batches = list(sim.batches)
    probe_set = set(probes)
    probe_updates = {u: tid for u, (tid, _state) in produced.items() if tid in probe_set}
    probe_delivered = {probe_updates[u]: (u, at) for u, at in first_seen.items() if u in probe_updates}
    # For each acknowledged uuid: the probes launched after its ACK on the same stream.
    witnesses: dict[bytes, list[tuple[bytes, float]]] = {}
    for i, (_at, stream, events) in enumerate(batches):
        if stream is None:
            continue
        for event in events:
            if event.get("type") != "ACKNOWLEDGED":
                continue
            acked = base64.b64decode(event["acknowledged"]["uuid"])
            for _at2, stream2, later in batches[i + 1:]:
                if stream2 is not stream:
                    continue
                for launch in later:
                    if launch.get("type") != "LAUNCH":
                        continue
                    tid = launch["launch"]["task"]["task_id"]["value"]
                    if tid in probe_delivered:
                        witnesses.setdefault(acked, []).append(probe_delivered[tid])
    after_ack = []
    for request in requests:
        carried = _carried(request)
        for uuid in carried:
            for probe_uuid, delivered_at in witnesses.get(uuid, ()):
                if request.at > delivered_at or probe_uuid in carried:
                    after_ack.append(f"{request.call_type} answered {request.status} carried "
                                     f"{uuid.hex()} after its ACK was delivered")
                    break
    after = len(after_ack)
    return UpdateAudit(
        produced=len(produced), recorded=len(first_seen),
        lost=sorted(set(produced) - set(first_seen)),
        unexpected=sorted(set(first_seen) - set(produced)),
        twice_in_history=sorted(u for u, n in in_history.items() if n > 1),
        duplicates_before_ack=max(0, duplicates - after), after_ack=after_ack,
        proven_acks=len(witnesses),
    )
