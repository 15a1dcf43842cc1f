"""The Mesos v1 executor protocol, sans-I/O: RecordIO bytes in, events out, call bodies out.

This module owns the executor's session state with the agent: the RecordIO decoder of the
current event stream, the agent id learnt from SUBSCRIBED, the TaskInfos not yet
acknowledged and the status updates not yet acknowledged (in send order, keyed by their uuid
bytes). It also owns the only mapping from `TaskState` to Mesos' `TASK_*` names, and is the
only place (with `config/document.py`) where raw Mesos JSON dicts live.

It must never do I/O: no sockets, threads, clocks, environment or logging. The caller passes
the wall-clock time in, feeds the bytes it read, and sends the bodies it is handed. Malformed
agent input raises `ProtocolError`, which names what is wrong.

Acknowledgement bookkeeping (docs/mesos.md §12):

    update() ──► pending (recorded BEFORE the caller sends it)
                  │  ACKNOWLEDGED with the same uuid bytes
                  ▼
                dropped; its task leaves `unacknowledged_tasks` for good

Every SUBSCRIBE carries whatever is still pending, in send order, byte for byte.
"""
from __future__ import annotations

import base64
import binascii
import json
import uuid as _uuid
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from executor.events import TaskState

MAX_RECORD_BYTES = 64 * 1024 * 1024  # a record bigger than this is refused as absurd
_MAX_HEADER_DIGITS = 20  # an unsigned 64-bit size has at most 20 digits
SOURCE_EXECUTOR = "SOURCE_EXECUTOR"

_STATE_NAMES: dict[TaskState, str] = {
    TaskState.STARTING: "TASK_STARTING",
    TaskState.RUNNING: "TASK_RUNNING",
    TaskState.FINISHED: "TASK_FINISHED",
    TaskState.FAILED: "TASK_FAILED",
    TaskState.KILLED: "TASK_KILLED",
}


class ProtocolError(Exception):
    """The agent sent bytes or JSON that do not follow the v1 executor API."""


def mesos_state_name(state: TaskState) -> str:
    """`TaskState.RUNNING` -> "TASK_RUNNING"; the only place this mapping lives."""
    return _STATE_NAMES[state]


# ---- RecordIO ----


class RecordIODecoder:
    """Splits a RecordIO byte stream (`size LF data`, size in bytes) into records.

    Chunk boundaries mean nothing: partial headers and partial records are buffered. Empty
    header lines are skipped and size-0 records ignored (both lenient, like the reference
    decoder); any other non-digit in a header, or a size above `max_record_bytes`, raises
    `ProtocolError` and the stream must be treated as broken.
    """

    def __init__(self, max_record_bytes: int = MAX_RECORD_BYTES) -> None:
        self._max = max_record_bytes
        self._buffer = bytearray()
        self._size: int | None = None  # size of the record being read, once its header is in

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        records: list[bytes] = []
        while True:
            if self._size is None:
                newline = self._buffer.find(b"\n")
                if newline < 0:
                    self._check_header(bytes(self._buffer), complete=False)
                    return records
                header = bytes(self._buffer[:newline])
                del self._buffer[: newline + 1]
                if header == b"":
                    continue  # empty header line: tolerated
                self._size = self._check_header(header, complete=True)
            if len(self._buffer) < self._size:
                return records
            record = bytes(self._buffer[: self._size])
            del self._buffer[: self._size]
            self._size = None
            if record:
                records.append(record)

    def _check_header(self, header: bytes, complete: bool) -> int:
        if header and not header.isdigit():
            raise ProtocolError(f"RecordIO header {header[:40]!r} is not a decimal size")
        if len(header) > _MAX_HEADER_DIGITS:
            raise ProtocolError(
                f"RecordIO header has {len(header)} digits, more than {_MAX_HEADER_DIGITS}"
            )
        size = int(header) if header else 0
        if size > self._max:
            raise ProtocolError(
                f"RecordIO record of {size} bytes is larger than the limit of {self._max} bytes"
            )
        return size if complete else 0


def encode_record(payload: bytes) -> bytes:
    """Frames one record: the byte count in ASCII decimal, LF, the bytes."""
    return str(len(payload)).encode("ascii") + b"\n" + payload


# ---- events ----


@attrs.frozen(slots=True)
class Subscribed:
    executor_info: dict[str, Any]
    framework_info: dict[str, Any]
    agent_info: dict[str, Any]
    container_id: str | None


@attrs.frozen(slots=True)
class Launch:
    task_info: dict[str, Any]


@attrs.frozen(slots=True)
class LaunchGroup:
    task_infos: tuple[dict[str, Any], ...]


@attrs.frozen(slots=True)
class Kill:
    task_id: str
    grace_secs: float | None  # from kill.kill_policy.grace_period; None when not given


@attrs.frozen(slots=True)
class Acknowledged:
    task_id: str
    uuid: bytes


@attrs.frozen(slots=True)
class Message:
    data: bytes


@attrs.frozen(slots=True)
class Shutdown:
    pass


@attrs.frozen(slots=True)
class Heartbeat:
    pass


@attrs.frozen(slots=True)
class Error:
    message: str


@attrs.frozen(slots=True)
class UnknownEvent:
    type: str


Event = (Subscribed | Launch | LaunchGroup | Kill | Acknowledged | Message | Shutdown | Heartbeat
         | Error | UnknownEvent)


def _field(obj: Any, path: str, kind: type | tuple[type, ...], what: str) -> Any:
    """Follows a dotted path through dicts; ProtocolError naming the path when it is wrong."""
    value = obj
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value or value[key] is None:
            raise ProtocolError(f"{what}: '{path}' is missing")
        value = value[key]
    if not isinstance(value, kind) or isinstance(value, bool) and bool not in _kinds(kind):
        raise ProtocolError(f"{what}: '{path}' is a {type(value).__name__}, not {_names(kind)}")
    return value


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _names(kind: type | tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in _kinds(kind))


def _b64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise ProtocolError(f"{what} is a {type(text).__name__}, not base64 text")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ProtocolError(f"{what} is not valid base64: {e}") from None


def _duration_secs(nanoseconds: Any, what: str) -> float:
    if isinstance(nanoseconds, str):  # Mesos' parser accepts numeric strings for int64
        try:
            nanoseconds = int(nanoseconds)
        except ValueError:
            raise ProtocolError(f"{what} {nanoseconds!r} is not a number") from None
    if isinstance(nanoseconds, bool) or not isinstance(nanoseconds, (int, float)):
        raise ProtocolError(f"{what} is a {type(nanoseconds).__name__}, not a number")
    if nanoseconds < 0:
        raise ProtocolError(f"{what} is negative ({nanoseconds} ns)")
    return nanoseconds / 1e9


def parse_event(payload: bytes) -> Event:
    """One RecordIO record (JSON) -> one event; ProtocolError says what is malformed."""
    try:
        obj = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ProtocolError(f"event is not UTF-8: {e}") from None
    except json.JSONDecodeError as e:
        raise ProtocolError(f"event is not JSON: {e} in {payload[:80]!r}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"event is a JSON {type(obj).__name__}, not an object")
    kind = _field(obj, "type", str, "event")
    what = f"{kind} event"
    parser = _PARSERS.get(kind)
    if parser is None:
        return UnknownEvent(kind)
    return parser(obj, what)


def _parse_subscribed(obj: dict[str, Any], what: str) -> Subscribed:
    executor_info = _field(obj, "subscribed.executor_info", dict, what)
    container_id = None
    if obj["subscribed"].get("container_id") is not None:  # present since Mesos 1.1
        container_id = _field(obj, "subscribed.container_id.value", str, what)
    return Subscribed(
        executor_info=executor_info,
        framework_info=_field(obj, "subscribed.framework_info", dict, what),
        agent_info=_field(obj, "subscribed.agent_info", dict, what),
        container_id=container_id,
    )


def _parse_launch(obj: dict[str, Any], what: str) -> Launch:
    info = _field(obj, "launch.task", dict, what)
    task_id(info)  # validates
    return Launch(info)


def _parse_launch_group(obj: dict[str, Any], what: str) -> LaunchGroup:
    tasks = _field(obj, "launch_group.task_group.tasks", list, what)
    for i, info in enumerate(tasks):
        if not isinstance(info, dict):
            raise ProtocolError(f"{what}: task {i} is a {type(info).__name__}, not an object")
        task_id(info)
    return LaunchGroup(tuple(tasks))


def _parse_kill(obj: dict[str, Any], what: str) -> Kill:
    tid = _field(obj, "kill.task_id.value", str, what)
    grace = None
    policy = obj["kill"].get("kill_policy")
    if policy is not None:
        nanos = _field(obj, "kill.kill_policy.grace_period.nanoseconds", (int, float, str), what)
        grace = _duration_secs(nanos, f"{what}: kill_policy.grace_period.nanoseconds")
    return Kill(tid, grace)


def _parse_acknowledged(obj: dict[str, Any], what: str) -> Acknowledged:
    tid = _field(obj, "acknowledged.task_id.value", str, what)
    raw = _b64(_field(obj, "acknowledged.uuid", str, what), f"{what}: uuid")
    return Acknowledged(tid, raw)


def _parse_message(obj: dict[str, Any], what: str) -> Message:
    return Message(_b64(_field(obj, "message.data", str, what), f"{what}: data"))


def _parse_error(obj: dict[str, Any], what: str) -> Error:
    return Error(_field(obj, "error.message", str, what))


_PARSERS: dict[str, Callable[[dict[str, Any], str], Event]] = {
    "SUBSCRIBED": _parse_subscribed,
    "LAUNCH": _parse_launch,
    "LAUNCH_GROUP": _parse_launch_group,
    "KILL": _parse_kill,
    "ACKNOWLEDGED": _parse_acknowledged,
    "MESSAGE": _parse_message,
    "SHUTDOWN": lambda obj, what: Shutdown(),
    "HEARTBEAT": lambda obj, what: Heartbeat(),
    "ERROR": _parse_error,
}


# ---- TaskInfo helpers ----


def task_id(task_info: Mapping[str, Any]) -> str:
    """The TaskInfo's task id value."""
    value: str = _field(task_info, "task_id.value", str, "TaskInfo")
    return value


task_id_of = task_id  # the name executor/mesos/executor.py imports


def task_data(task_info: Mapping[str, Any]) -> bytes:
    """The TaskInfo's `data`, base64-decoded (b"" when absent)."""
    data = task_info.get("data")
    if data is None:
        return b""
    return _b64(data, f"TaskInfo {task_info.get('task_id', {}).get('value')!r} data")


def ports_from_resources(task_info: Mapping[str, Any]) -> list[int]:
    """Every port of the TaskInfo's `ports` RANGES resources, expanded in order."""
    ports: list[int] = []
    resources = task_info.get("resources") or []
    if not isinstance(resources, list):
        raise ProtocolError("TaskInfo 'resources' is not a list")
    for resource in resources:
        if not isinstance(resource, dict) or resource.get("name") != "ports":
            continue
        ranges = _field(resource, "ranges.range", list, "TaskInfo ports resource")
        for r in ranges:
            begin = _field(r, "begin", int, "TaskInfo ports range")
            end = _field(r, "end", int, "TaskInfo ports range")
            if not 0 < begin <= end <= 65535:
                raise ProtocolError(f"TaskInfo ports range [{begin}, {end}] is not valid")
            ports.extend(range(begin, end + 1))
    return ports


def task_kill_grace_secs(task_info: Mapping[str, Any]) -> float | None:
    """The TaskInfo's own `kill_policy.grace_period` in seconds, None when it has none."""
    if not isinstance(task_info.get("kill_policy"), dict):
        return None
    nanos = _field(task_info, "kill_policy.grace_period.nanoseconds", (int, float, str),
                   "TaskInfo")
    return _duration_secs(nanos, "TaskInfo kill_policy.grace_period.nanoseconds")


# ---- the session ----


@attrs.frozen(slots=True)
class PendingUpdate:
    """A status update recorded as unacknowledged; `status` is the TaskStatus JSON object."""

    task_id: str
    uuid: bytes
    state: TaskState
    status: dict[str, Any] = attrs.field(eq=False, repr=False)


class ExecutorProtocol:
    """The executor's side of one agent session; see the module docstring."""

    def __init__(
        self,
        framework_id: str,
        executor_id: str,
        uuid_source: Callable[[], bytes] | None = None,
    ) -> None:
        self._framework_id = framework_id
        self._executor_id = executor_id
        self._new_uuid = uuid_source or (lambda: _uuid.uuid4().bytes)
        self._decoder = RecordIODecoder()
        self._agent_id: str | None = None
        self._subscriptions = 0
        self._tasks: dict[str, dict[str, Any]] = {}  # unacknowledged TaskInfos, in launch order
        self._acknowledged_tasks: set[str] = set()
        self._updates: dict[bytes, PendingUpdate] = {}  # insertion order = send order

    # -- session facts --

    @property
    def agent_id(self) -> str | None:
        return self._agent_id

    @property
    def subscription_count(self) -> int:
        """How many SUBSCRIBED events were seen; more than 1 means re-registered."""
        return self._subscriptions

    @property
    def all_acknowledged(self) -> bool:
        return not self._updates

    def unacknowledged_updates(self) -> tuple[PendingUpdate, ...]:
        return tuple(self._updates.values())

    def unacknowledged_tasks(self) -> tuple[dict[str, Any], ...]:
        return tuple(self._tasks.values())

    def is_pending(self, uuid: bytes) -> bool:
        return uuid in self._updates

    # -- bytes in --

    def new_stream(self) -> None:
        """Forgets any partial record: call before reading each new event stream."""
        self._decoder = RecordIODecoder()

    def feed(self, chunk: bytes) -> list[Event]:
        """Decodes, parses and books the events in `chunk` (any slice of the stream)."""
        events = [parse_event(record) for record in self._decoder.feed(chunk)]
        for event in events:
            self._book(event)
        return events

    def _book(self, event: Event) -> None:
        if isinstance(event, Subscribed):
            self._subscriptions += 1
            agent = event.agent_info.get("id")
            if isinstance(agent, dict) and isinstance(agent.get("value"), str):
                self._agent_id = agent["value"]
        elif isinstance(event, Launch):
            self._remember_task(event.task_info)
        elif isinstance(event, LaunchGroup):
            for info in event.task_infos:
                self._remember_task(info)
        elif isinstance(event, Acknowledged):
            pending = self._updates.pop(event.uuid, None)
            if pending is not None:  # a duplicate or unknown ack changes nothing
                self._acknowledged_tasks.add(pending.task_id)
                self._tasks.pop(pending.task_id, None)

    def _remember_task(self, info: dict[str, Any]) -> None:
        tid = task_id(info)
        if tid not in self._acknowledged_tasks:
            self._tasks[tid] = info

    # -- calls out --

    def _call(self, kind: str, **body: Any) -> bytes:
        call = {
            "type": kind,
            "framework_id": {"value": self._framework_id},
            "executor_id": {"value": self._executor_id},
            **body,
        }
        return json.dumps(call, separators=(",", ":")).encode("utf-8")

    def subscribe_body(self) -> bytes:
        """SUBSCRIBE carrying every unacknowledged task and update (`{}` when none)."""
        subscribe: dict[str, Any] = {}
        if self._tasks or self._updates:
            subscribe["unacknowledged_tasks"] = list(self._tasks.values())
            subscribe["unacknowledged_updates"] = [
                {"status": u.status} for u in self._updates.values()
            ]
        return self._call("SUBSCRIBE", subscribe=subscribe)

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
        """Builds a status update with a fresh uuid and records it as unacknowledged."""
        if not isinstance(state, TaskState):
            raise TypeError(f"state must be a TaskState, not {type(state).__name__}")
        if reason is not None and not reason.startswith("REASON_"):
            raise ValueError(f"reason {reason!r} is not a Mesos reason name (REASON_...)")
        raw = self._new_uuid()
        if len(raw) != 16 or raw in self._updates:
            raise ValueError(f"uuid source gave {raw!r}: not 16 fresh bytes")
        status: dict[str, Any] = {
            "task_id": {"value": task_id},
            "state": mesos_state_name(state),
            "source": SOURCE_EXECUTOR,
            "executor_id": {"value": self._executor_id},
            "uuid": base64.b64encode(raw).decode("ascii"),
            "timestamp": float(now_wall),
        }
        agent_id = self._agent_id or self._task_agent_id(task_id)
        if agent_id is not None:
            status["agent_id"] = {"value": agent_id}
        if message:
            status["message"] = message
        if healthy is not None:
            status["healthy"] = bool(healthy)
        if reason is not None:
            status["reason"] = reason
        pending = PendingUpdate(task_id, raw, state, status)
        self._updates[raw] = pending
        return pending

    def _task_agent_id(self, tid: str) -> str | None:
        agent = self._tasks.get(tid, {}).get("agent_id")
        value = agent.get("value") if isinstance(agent, dict) else None
        return value if isinstance(value, str) else None

    def discard(self, uuid: bytes) -> PendingUpdate | None:
        """Drops an update the agent rejected for good (4xx): it can never be delivered."""
        return self._updates.pop(uuid, None)

    def update_body(self, pending: PendingUpdate) -> bytes:
        return self._call("UPDATE", update={"status": pending.status})

    def message_body(self, data: bytes) -> bytes:
        return self._call("MESSAGE", message={"data": base64.b64encode(data).decode("ascii")})
