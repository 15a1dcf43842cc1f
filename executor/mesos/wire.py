"""The v1 executor API's JSON, both ways (pure): events in, call bodies out, TaskInfo fields.

This module owns the shapes on the wire: the event classes and their parsers (one table
entry per event type), the call bodies (SUBSCRIBE, UPDATE, MESSAGE) and the TaskStatus
inside an UPDATE, the few TaskInfo fields Stoker reads, and the only mapping from
`TaskState` to Mesos' `TASK_*` names. With `config/document.py` it is the only place raw
Mesos JSON dicts live. It keeps no state and does no I/O.

The agent's JSON rules it follows (docs/mesos.md §2): enums are names, `bytes` are standard
base64 (whitespace inside is skipped), int64 may come as a number or a numeric string,
unknown keys are ignored and unknown event types become `UnknownEvent`. Malformed agent input
raises `RemoteProtocolError` naming the path (`LAUNCH event: 'launch.task' is missing`);
misuse by Stoker (a state that is no TaskState, a reason that is no REASON_ name) raises
`LocalProtocolError`. A record too large to hold (docs/mesos.md §4) is read from its first
bytes only (`parse_oversized`): a LAUNCH, a MESSAGE or an unknown event becomes `Oversized`
(the LAUNCH with its task id, so that it can be answered); any other is a broken stream.
"""
from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from config.words import a_kind, quoted
from executor.events import TaskState
from executor.mesos import jsonprefix
from executor.mesos.errors import LocalProtocolError, RemoteProtocolError

SOURCE_EXECUTOR = "SOURCE_EXECUTOR"

_STATE_NAMES: dict[TaskState, str] = {
    TaskState.STARTING: "TASK_STARTING",
    TaskState.RUNNING: "TASK_RUNNING",
    TaskState.FINISHED: "TASK_FINISHED",
    TaskState.FAILED: "TASK_FAILED",
    TaskState.KILLED: "TASK_KILLED",
}


def mesos_state_name(state: TaskState) -> str:
    """`TaskState.RUNNING` -> "TASK_RUNNING"; the only place this mapping lives."""
    return _STATE_NAMES[state]


def uuid_text(raw: bytes) -> str:
    """A status update's uuid bytes as every log line shows them (hex)."""
    return raw.hex()


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
    # why a grace that was given could not be read (then grace_secs is None: the task's own)
    bad_grace: str | None = None


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


@attrs.frozen(slots=True)
class Unreadable:
    """A whole record that could not be read as an event the executor only logs (a MESSAGE,
    an ERROR, one whose `type` is no text): skipped, `type` None when it has none."""

    type: str | None
    reason: str


@attrs.frozen(slots=True)
class Oversized:
    """A record too large to hold, read from its first bytes; `task_id` for a LAUNCH whose
    first bytes name it."""

    type: str
    size_bytes: int
    task_id: str | None


Event = (Subscribed | Launch | LaunchGroup | Kill | Acknowledged | Message | Shutdown | Heartbeat
         | Error | UnknownEvent | Unreadable | Oversized)


def _field(obj: Any, path: str, kind: type | tuple[type, ...], what: str) -> Any:
    """Follows a dotted path through dicts; RemoteProtocolError naming the path when wrong.
    No field Stoker reads is a boolean, so `true` is never an int."""
    value = obj
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value or value[key] is None:
            raise RemoteProtocolError(f"{what}: '{path}' is missing")
        value = value[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise RemoteProtocolError(
            f"{what}: '{path}' is {a_kind(value)}, not {_names(kind)}")
    return value


def _names(kind: type | tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))


def _b64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise RemoteProtocolError(f"{what} is {a_kind(text)}, not base64 text")
    try:  # no copy of the text: the agent writes no whitespace, so this nearly always does
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        pass
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as e:
        raise RemoteProtocolError(f"{what} is not valid base64: {e}") from None


_INT64_TEXT = re.compile(r"-?[0-9]{1,19}")
_INT64_MAX = 2**63 - 1  # Mesos' Duration: int64 nanoseconds, about 292 years


def _duration_secs(nanoseconds: int | float | str, what: str) -> float:
    """Nanoseconds as `_field(..., (int, float, str), ...)` gave them, in seconds."""
    if isinstance(nanoseconds, str):  # Mesos' parser accepts numeric strings for int64
        if not _INT64_TEXT.fullmatch(nanoseconds):  # int() would take " 5", "1_0" and "١"
            raise RemoteProtocolError(f"{what} {quoted(nanoseconds[:40])} is not a number")
        nanoseconds = int(nanoseconds)
    # Python's json reads NaN and Infinity (Mesos writes neither); an int is compared as it is
    # (math.isfinite() of one past a float's 1.8e308 raised OverflowError: the stream broke)
    if isinstance(nanoseconds, float) and not math.isfinite(nanoseconds):
        raise RemoteProtocolError(f"{what} is {nanoseconds}, not a number of nanoseconds")
    if nanoseconds < 0:
        raise RemoteProtocolError(f"{what} is negative ({_bounded(nanoseconds)} ns)")
    if nanoseconds > _INT64_MAX:
        raise RemoteProtocolError(
            f"{what} is {_bounded(nanoseconds)}, more than Mesos' Duration holds ({_INT64_MAX} ns)")
    return nanoseconds / 1e9


def _bounded(number: int | float) -> str:
    """A number for a message: JSON may give an int of thousands of digits."""
    text = repr(number)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} digits)"


def parse_event(payload: bytes | bytearray) -> Event:
    """One RecordIO record (JSON) -> one event; RemoteProtocolError says what is malformed."""
    try:
        obj = json.loads(payload.decode())  # UTF-8
    except UnicodeDecodeError as e:
        raise RemoteProtocolError(f"event is not UTF-8: {e}") from None
    except json.JSONDecodeError as e:
        raise RemoteProtocolError(f"event is not JSON: {e} in {quoted(payload[:80])}") from None
    except ValueError:  # an integer of more digits than int() converts (4300)
        raise RemoteProtocolError(f"event holds a number too long to read: {quoted(payload[:80])}") from None
    except RecursionError:  # arrays or objects nested deeper than the parser recurses
        raise RemoteProtocolError(f"event is nested too deeply to read: {quoted(payload[:80])}") from None
    if not isinstance(obj, dict):
        raise RemoteProtocolError(f"event is a JSON {type(obj).__name__}, not an object")
    try:
        kind = _field(obj, "type", str, "event")
    except RemoteProtocolError as e:  # its framing was whole: nothing after it is lost
        return Unreadable(None, str(e))
    parser = _PARSERS.get(kind)
    if parser is None:
        return UnknownEvent(kind)
    if kind not in _SKIPPED_UNREAD:
        return parser(obj, f"{kind} event")
    try:
        return parser(obj, f"{kind} event")
    except RemoteProtocolError as e:
        return Unreadable(kind, str(e))


_SKIPPABLE = ("LAUNCH", "MESSAGE", "ERROR", "HEARTBEAT")  # and unknown types; any other oversized: broken
# Read wrong, skipped (`Unreadable`): nothing owed depends on them. Any other event read wrong
# breaks the stream, and the resubscription carries what is owed.
_SKIPPED_UNREAD = ("MESSAGE", "ERROR")
_TYPE = ("type",)
_LAUNCH_TASK_ID = ("launch", "task", "task_id", "value")


def parse_oversized(size_bytes: int, prefix: bytes, limit_bytes: int) -> Oversized:
    """A record of `size_bytes` over `limit_bytes`, from its first bytes: `Oversized`, or
    RemoteProtocolError for an event the session cannot do without (SUBSCRIBED, KILL ...)."""
    found = jsonprefix.string_values(prefix, (_TYPE, _LAUNCH_TASK_ID))
    kind = found.get(_TYPE)
    if kind is None or (kind in _PARSERS and kind not in _SKIPPABLE):
        raise RemoteProtocolError(
            f"{kind or 'an'} event of {size_bytes} bytes is larger than the limit of "
            f"{limit_bytes} bytes")
    return Oversized(kind, size_bytes, found.get(_LAUNCH_TASK_ID) if kind == "LAUNCH" else None)


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
            raise RemoteProtocolError(
                f"{what}: task {i} is {a_kind(info)}, not an object")
        task_id(info)
    return LaunchGroup(tuple(tasks))


def _parse_kill(obj: dict[str, Any], what: str) -> Kill:
    """A KILL whose task id is readable kills: a grace that is not (NaN, a negative or an
    absurd number, text Mesos would not parse, a wrong type) is reported in `bad_grace`, and
    the task's own grace applies, as for a KILL without a kill_policy (docs/mesos.md §9, KILL)."""
    tid = _field(obj, "kill.task_id.value", str, what)
    policy = obj["kill"].get("kill_policy")
    if policy is None or (isinstance(policy, dict) and policy.get("grace_period") is None):
        return Kill(tid, None)  # KillPolicy's grace_period is optional
    try:
        nanos = _field(obj, "kill.kill_policy.grace_period.nanoseconds", (int, float, str), what)
        return Kill(tid, _duration_secs(nanos, f"{what}: kill_policy.grace_period.nanoseconds"))
    except RemoteProtocolError as e:
        return Kill(tid, None, bad_grace=str(e))


def _parse_acknowledged(obj: dict[str, Any], what: str) -> Acknowledged:
    tid = _field(obj, "acknowledged.task_id.value", str, what)
    raw = _b64(_field(obj, "acknowledged.uuid", str, what), f"{what}: uuid")
    return Acknowledged(tid, raw)


def _parse_message(obj: dict[str, Any], what: str) -> Message:
    return Message(_b64(_field(obj, "message.data", str, what), f"{what}: data"))


def _parse_error(obj: dict[str, Any], what: str) -> Error:
    return Error(_field(obj, "error.message", str, what))


# A new event type is one row here, one class above, and one `case` in the driver.
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


# ---- TaskInfo fields ----


def task_id(task_info: Mapping[str, Any]) -> str:
    """The TaskInfo's task id value."""
    value: str = _field(task_info, "task_id.value", str, "TaskInfo")
    return value


def task_agent_id(task_info: Mapping[str, Any]) -> str | None:
    """The TaskInfo's `agent_id.value`, None when absent or not text."""
    agent = task_info.get("agent_id")
    value = agent.get("value") if isinstance(agent, dict) else None
    return value if isinstance(value, str) else None


def task_data(task_info: Mapping[str, Any]) -> bytes:
    """The TaskInfo's `data`, base64-decoded (b"" when absent)."""
    data = task_info.get("data")
    if data is None:
        return b""
    return _b64(data, f"TaskInfo {quoted(task_id(task_info))} data")


def ports_from_resources(task_info: Mapping[str, Any]) -> list[int]:
    """Every port of the TaskInfo's `ports` RANGES resources, expanded in order."""
    ports: list[int] = []
    resources = task_info.get("resources") or []
    if not isinstance(resources, list):
        raise RemoteProtocolError("TaskInfo 'resources' is not a list")
    for resource in resources:
        if not isinstance(resource, dict) or resource.get("name") != "ports":
            continue
        ranges = _field(resource, "ranges.range", list, "TaskInfo ports resource")
        for r in ranges:
            begin = _field(r, "begin", int, "TaskInfo ports range")
            end = _field(r, "end", int, "TaskInfo ports range")
            if not 0 < begin <= end <= 65535:
                raise RemoteProtocolError(f"TaskInfo ports range [{begin}, {end}] is not valid")
            ports.extend(range(begin, end + 1))
    return ports


def task_kill_grace_secs(task_info: Mapping[str, Any]) -> float | None:
    """The TaskInfo's own `kill_policy.grace_period` in seconds, None when it has none."""
    if not isinstance(task_info.get("kill_policy"), dict):
        return None
    nanos = _field(task_info, "kill_policy.grace_period.nanoseconds", (int, float, str),
                   "TaskInfo")
    return _duration_secs(nanos, "TaskInfo kill_policy.grace_period.nanoseconds")


# ---- calls ----


@attrs.frozen(slots=True)
class StatusFields:
    """What Stoker says in one status update; the TaskStatus JSON is built from it."""

    task_id: str
    state: TaskState
    message: str = ""
    healthy: bool | None = None
    reason: str | None = None  # a Mesos reason name, REASON_...

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.state, TaskState):
            raise LocalProtocolError(
                f"state must be a TaskState, not {type(self.state).__name__}")
        if self.reason is not None and not self.reason.startswith("REASON_"):
            raise LocalProtocolError(
                f"reason {quoted(self.reason)} is not a Mesos reason name (REASON_...)")


@attrs.frozen(slots=True)
class Calls:
    """Builds the call bodies of one executor (compact JSON, UTF-8)."""

    framework_id: str
    executor_id: str

    def _body(self, kind: str, **body: Any) -> bytes:
        call = {
            "type": kind,
            "framework_id": {"value": self.framework_id},
            "executor_id": {"value": self.executor_id},
            **body,
        }
        return json.dumps(call, separators=(",", ":")).encode()

    def subscribe(self, tasks: Iterable[dict[str, Any]],
                  statuses: Iterable[dict[str, Any]]) -> bytes:
        """SUBSCRIBE carrying the unacknowledged TaskInfos and TaskStatuses (`{}` when none);
        each status goes in as a Call.Update object, `{"status": ...}`."""
        tasks, statuses = list(tasks), list(statuses)
        subscribe: dict[str, Any] = {}
        if tasks or statuses:
            subscribe["unacknowledged_tasks"] = tasks
            subscribe["unacknowledged_updates"] = [{"status": s} for s in statuses]
        return self._body("SUBSCRIBE", subscribe=subscribe)

    def update(self, status: dict[str, Any]) -> bytes:
        return self._body("UPDATE", update={"status": status})

    def message(self, data: bytes) -> bytes:
        return self._body("MESSAGE", message={"data": base64.b64encode(data).decode()})

    def task_status(self, fields: StatusFields, uuid: bytes, agent_id: str | None,
                    now_wall: float) -> dict[str, Any]:
        """The TaskStatus object: every field the agent requires, optional ones when given.

        `agent_id` is left out when unknown (the agent fills it in); a wrong one would be
        accepted with 202 and then silently dropped.
        """
        status: dict[str, Any] = {
            "task_id": {"value": fields.task_id},
            "state": mesos_state_name(fields.state),
            "source": SOURCE_EXECUTOR,
            "executor_id": {"value": self.executor_id},
            "uuid": base64.b64encode(uuid).decode(),
            "timestamp": float(now_wall),
        }
        if agent_id is not None:
            status["agent_id"] = {"value": agent_id}
        if fields.message:
            status["message"] = fields.message
        if fields.healthy is not None:
            status["healthy"] = bool(fields.healthy)
        if fields.reason is not None:
            status["reason"] = fields.reason
        return status
