"""The executor's side of its session with the agent (pure, sans-I/O).

Rule 1: everything that decides whether a status update is still owed to the agent lives
here: an update is recorded before anyone sends it, only its ACKNOWLEDGED (or the agent's
final rejection) drops it, and every SUBSCRIBE carries whatever is still owed.

Rule 2: this file never knows who sends the bytes. No sockets, threads, clocks, environment
or logging: the caller passes the wall-clock time in, feeds the bytes it read, sends the
bodies it is handed, and says when a stream ended.

Session states (`_ALLOWED` below is this drawing as data; a move it does not list raises
`LocalProtocolError`):

    DISCONNECTED                    ──subscribing()──────────►  SUBSCRIBING
    SUBSCRIBING                     ──feed(): SUBSCRIBED─────►  SUBSCRIBED
    SUBSCRIBING, SUBSCRIBED         ──feed(): malformed──────►  ERROR
    SUBSCRIBING, SUBSCRIBED, ERROR  ──stream_ended()─────────►  DISCONNECTED

`feed()` is legal only while a stream is open (SUBSCRIBING, SUBSCRIBED); in ERROR it raises,
so a half-consumed stream can never be read on. `stream_ended()` is the only way out of
ERROR, and it leaves a fresh RecordIO decoder for the next stream, which `subscribing()`
(legal only from DISCONNECTED) starts. A SHUTDOWN event is remembered for good
(`shutdown_received`).

Acknowledgement bookkeeping (docs/mesos.md §12):

    update() ──► owed (recorded BEFORE the caller sends it), in send order, by uuid bytes
                  │  ACKNOWLEDGED with the same uuid bytes
                  ▼
                dropped; its task leaves `unacknowledged_tasks` for good

A SUBSCRIBE carries every owed update and every TaskInfo none of whose updates was
acknowledged yet, byte for byte. Once the agent answers it with SUBSCRIBED, the updates it
carried need no separate UPDATE call (`needs_post`).
"""
from __future__ import annotations

import enum
import random
from collections.abc import Callable
from typing import Any, assert_never

import attrs

from config.words import quoted
from executor.events import TaskState
from executor.mesos import wire
from executor.mesos.errors import LocalProtocolError, RemoteProtocolError
from executor.mesos.recordio import (
    MAX_RECORD_BYTES,
    BrokenRecordIO,
    OversizedRecord,
    Record,
    RecordIODecoder,
)


class SessionState(enum.Enum):
    DISCONNECTED = "no stream is open"
    SUBSCRIBING = "SUBSCRIBE sent; SUBSCRIBED not seen yet on this stream"
    SUBSCRIBED = "the agent answered SUBSCRIBED on the open stream"
    ERROR = "the open stream carried malformed input; it must be dropped"


_S = SessionState
_ALLOWED: dict[SessionState, frozenset[SessionState]] = {
    _S.DISCONNECTED: frozenset({_S.SUBSCRIBING}),
    _S.SUBSCRIBING: frozenset({_S.SUBSCRIBED, _S.ERROR, _S.DISCONNECTED}),
    _S.SUBSCRIBED: frozenset({_S.ERROR, _S.DISCONNECTED}),
    _S.ERROR: frozenset({_S.DISCONNECTED}),
}


class BrokenStream(RemoteProtocolError):
    """The stream carried malformed input; `before`: the events that came whole before it
    in the same chunk, already booked, for the caller to act on still."""

    def __init__(self, message: str, before: list[wire.Event]) -> None:
        super().__init__(message)
        self.before = before


@attrs.frozen(slots=True)
class PendingUpdate:
    """A status update recorded as unacknowledged; `status` is the TaskStatus JSON object."""

    task_id: str
    uuid: bytes
    state: TaskState
    status: dict[str, Any] = attrs.field(eq=False, repr=False)


def _task_id_or_none(info: dict[str, Any]) -> str | None:
    try:
        return wire.task_id(info)
    except RemoteProtocolError:  # a group's task without an id: no update can name it
        return None


def random_uuid() -> bytes:
    """A random UUID's 16 bytes, version 4 and the RFC 4122 variant, as `uuid.uuid4().bytes`
    gives them (RFC 4122 §4.4: the system's random bits), without the `uuid` module (with its
    `_uuid` and `platform`), which nothing else of the executor loads."""
    bits = _SYSTEM_RANDOM.getrandbits(128) & ~(0xF << 76 | 0x3 << 62)  # all but the six below
    return (bits | 0x4 << 76 | 0x2 << 62).to_bytes(16, "big")  # version 4; variant 10 (binary)


_SYSTEM_RANDOM = random.SystemRandom()  # os.urandom's bits


def _parse(record: Record) -> wire.Event:
    if isinstance(record, OversizedRecord):
        return wire.parse_oversized(record.size, record.prefix, MAX_RECORD_BYTES)
    return wire.parse_event(record)


class ExecutorProtocol:
    """The executor's side of the agent session; see the module docstring."""

    def __init__(
        self,
        framework_id: str,
        executor_id: str,
        uuid_source: Callable[[], bytes] | None = None,
    ) -> None:
        self._calls = wire.Calls(framework_id, executor_id)
        self._new_uuid = uuid_source or random_uuid
        self._state = SessionState.DISCONNECTED
        self._decoder = RecordIODecoder()  # the next (or open) stream's; each stream gets its own
        self._agent_id: str | None = None
        self._subscriptions = 0
        self._shutdown_received = False
        self._tasks: dict[str, dict[str, Any]] = {}  # unacknowledged TaskInfos, in launch order
        self._acknowledged_tasks: set[str] = set()
        self._updates: dict[bytes, PendingUpdate] = {}  # insertion order = send order
        self.dropped_count = 0  # updates the agent refused for good (`discard`): it never got them
        self._offered: frozenset[bytes] = frozenset()  # uuids the latest SUBSCRIBE carried
        self._carried: frozenset[bytes] = frozenset()  # ... once answered with SUBSCRIBED
        self._launched = False  # a LAUNCH (or LAUNCH_GROUP, or an oversized LAUNCH) was booked
        self._launches_closed = False  # the launch timeout won: see close_launches()
        self._answer_owed: dict[str, None] = {}  # launched task ids with no update recorded yet
        self._answered: set[str] = set()  # task ids some update was recorded for

    # -- session facts --

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def agent_id(self) -> str | None:
        return self._agent_id

    @property
    def subscription_count(self) -> int:
        """How many SUBSCRIBED events were seen; more than 1 means re-registered."""
        return self._subscriptions

    @property
    def shutdown_received(self) -> bool:
        """A SHUTDOWN event arrived, on this stream or an earlier one."""
        return self._shutdown_received

    @property
    def all_acknowledged(self) -> bool:
        """Nothing is owed: every update recorded was acknowledged, and every task a LAUNCH
        named has had its answer recorded (a LAUNCH booked while its callback has not run
        yet is owed an update, which the executor must not exit without sending)."""
        return not self._updates and not self._answer_owed

    @property
    def launches_closed(self) -> bool:
        return self._launches_closed

    def close_launches(self) -> bool:
        """The launch timeout ran out: True when no LAUNCH was booked so far, and from now
        on none runs a task (each is still owed its TASK_FAILED, `all_acknowledged`); False
        when one was (it may not have reached its callback yet): the timeout is abandoned,
        that task runs. Booking and this decision happen under the caller's one lock, so
        whichever comes first wins."""
        if self._launched:
            return False
        self._launches_closed = True
        return True

    def unacknowledged_updates(self) -> tuple[PendingUpdate, ...]:
        return tuple(self._updates.values())

    def unacknowledged_tasks(self) -> tuple[dict[str, Any], ...]:
        return tuple(self._tasks.values())

    def is_pending(self, uuid: bytes) -> bool:
        return uuid in self._updates

    def needs_post(self, uuid: bytes) -> bool:
        """Still owed, and not carried by a SUBSCRIBE the agent answered: POST it."""
        return uuid in self._updates and uuid not in self._carried

    # -- the stream --

    def _move(self, to: SessionState) -> None:
        if to not in _ALLOWED[self._state]:
            raise LocalProtocolError(
                f"the session cannot go from {self._state.name} to {to.name}")
        self._state = to

    def subscribing(self) -> bytes:
        """DISCONNECTED -> SUBSCRIBING: the SUBSCRIBE body carrying everything still owed."""
        self._move(SessionState.SUBSCRIBING)
        self._offered = frozenset(self._updates)
        return self._calls.subscribe(self._tasks.values(),
                                     (u.status for u in self._updates.values()))

    def stream_ended(self) -> None:
        """The SUBSCRIBE failed or its stream ended (however): -> DISCONNECTED, with a fresh
        RecordIO decoder for the next stream (what is left of this one is forgotten)."""
        self._move(SessionState.DISCONNECTED)
        self._decoder = RecordIODecoder()

    def feed(self, chunk: bytes) -> list[wire.Event]:
        """Decodes, parses and books the events in `chunk` (any slice of the stream).

        Malformed input moves the session to ERROR and raises `BrokenStream`, which hands on
        the events that came whole before it in `chunk`, booked like any other (a KILL or an
        ACKNOWLEDGED before the fault still counts).
        """
        if self._state not in (SessionState.SUBSCRIBING, SessionState.SUBSCRIBED):
            raise LocalProtocolError(f"feed() while {self._state.name}: no readable stream")
        fault: RemoteProtocolError | None = None
        try:
            records = self._decoder.feed(chunk)
        except BrokenRecordIO as e:
            records, fault = e.before, e
        events: list[wire.Event] = []
        for record in records:
            try:
                events.append(_parse(record))
            except RemoteProtocolError as e:
                fault = e  # it came first
                break
        for event in events:
            self._book(event)
        if fault is not None:
            self._move(SessionState.ERROR)
            raise BrokenStream(str(fault), events) from None
        return events

    def _book(self, event: wire.Event) -> None:
        match event:
            case wire.Subscribed(agent_info=agent_info):
                self._subscriptions += 1
                self._carried = self._offered
                agent = agent_info.get("id")
                if isinstance(agent, dict) and isinstance(agent.get("value"), str):
                    self._agent_id = agent["value"]
                if self._state is SessionState.SUBSCRIBING:
                    self._move(SessionState.SUBSCRIBED)
            case wire.Launch(task_info=info):
                self._remember_task(info)
                self._owe_answer(wire.task_id(info))
            case wire.LaunchGroup(task_infos=infos):
                for info in infos:
                    self._remember_task(info)
                    self._owe_answer(_task_id_or_none(info))
                self._launched = True
            case wire.Oversized(type="LAUNCH", task_id=str() as tid):
                self._owe_answer(tid)
            case wire.Acknowledged(uuid=raw):
                pending = self._updates.pop(raw, None)
                if pending is not None:  # a duplicate or unknown ack changes nothing
                    self._acknowledged_tasks.add(pending.task_id)
                    self._tasks.pop(pending.task_id, None)
            case wire.Shutdown():
                self._shutdown_received = True
            case (wire.Kill() | wire.Message() | wire.Heartbeat() | wire.Error()
                  | wire.UnknownEvent() | wire.Unreadable() | wire.Oversized()):
                pass  # nothing owed changes: the driver turns these into callbacks
            case _:
                assert_never(event)

    def _owe_answer(self, tid: str | None) -> None:
        self._launched = True
        if tid is not None and tid not in self._answered:
            self._answer_owed[tid] = None

    def _remember_task(self, info: dict[str, Any]) -> None:
        tid = wire.task_id(info)
        if tid not in self._acknowledged_tasks:
            self._tasks[tid] = info

    # -- calls out --

    def update(
        self,
        task_id: str,
        state: TaskState,
        message: str = "",
        healthy: bool | None = None,
        reason: str | None = None,
        *,
        now_wall: float,
    ) -> PendingUpdate:
        """Builds a status update with a fresh uuid and records it as owed."""
        fields = wire.StatusFields(task_id, state, message, healthy, reason)
        raw = self._new_uuid()
        if len(raw) != 16 or raw in self._updates:
            raise LocalProtocolError(f"uuid source gave {quoted(raw)}: not 16 fresh bytes")
        agent_id = self._agent_id or wire.task_agent_id(self._tasks.get(task_id, {}))
        status = self._calls.task_status(fields, raw, agent_id, now_wall)
        pending = PendingUpdate(task_id, raw, state, status)
        self._updates[raw] = pending
        self._answered.add(task_id)
        self._answer_owed.pop(task_id, None)
        return pending

    def discard(self, uuid: bytes) -> PendingUpdate | None:
        """Drops an update the agent rejected for good (4xx): it can never be delivered."""
        dropped = self._updates.pop(uuid, None)
        self.dropped_count += dropped is not None
        return dropped

    def update_body(self, pending: PendingUpdate) -> bytes:
        return self._calls.update(pending.status)

    def message_body(self, data: bytes) -> bytes:
        return self._calls.message(data)
