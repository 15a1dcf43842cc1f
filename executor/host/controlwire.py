"""The control socket's protocol: requests and replies as JSON lines. PURE.

A client (`stoker kill`, `stoker restart`) writes one request line and reads reply lines
until one says `done` (or the supervisor closes the connection):

    {"op": "kill", "grace_secs": 5.0}            grace_secs optional: the task's default
    {"op": "restart", "process": "web"}

    {"ok": true, "done": false, "message": "..."}                  accepted, under way
    {"ok": true, "done": true, "message": "...", "state": "KILLED"}      a kill's end
    {"ok": true, "done": true, "message": "...", "process": "web", "run": 4, "pid": 4321}
    {"ok": false, "done": true, "message": "why not"}

A request is at most `MAX_LINE` bytes; anything else is refused with a `ControlError` whose
message says what is wrong. Owns the encoding both ways; no I/O, no clock, no logging.
"""
from __future__ import annotations

import json
import math
from typing import Any, assert_never

import attrs

from config.words import quoted
from executor.events import ControlReply

MAX_LINE = 4096
MAX_GRACE_SECS = 7 * 86400.0


class ControlError(Exception):
    """A request that cannot be served; the message goes back to the client."""


@attrs.frozen(slots=True)
class KillControl:
    grace_secs: float | None = None  # None: the task's default grace


@attrs.frozen(slots=True)
class RestartControl:
    process: str


ControlRequest = KillControl | RestartControl


def encode_request(request: ControlRequest) -> bytes:
    match request:
        case KillControl():
            doc: dict[str, Any] = {"op": "kill"}
            if request.grace_secs is not None:
                doc["grace_secs"] = request.grace_secs
        case RestartControl():
            doc = {"op": "restart", "process": request.process}
        case _:
            assert_never(request)
    return json.dumps(doc).encode() + b"\n"


def parse_request(line: bytes) -> ControlRequest:
    """The request one line holds; raises ControlError."""
    if len(line) > MAX_LINE:
        raise ControlError(f"a request is at most {MAX_LINE} bytes")
    try:
        doc = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than json recurses
        raise ControlError("a request is one JSON object per line") from None
    if not isinstance(doc, dict):
        raise ControlError("a request is one JSON object per line")
    op = doc.get("op")
    if op == "kill":
        grace = doc.get("grace_secs")
        # An int is compared as it is: math.isfinite() of one past a float's 1.8e308 raised
        # OverflowError, which ended the control server (stoker kill and restart no longer
        # reached the supervisor) from one line any process of its user could send.
        if grace is not None and (isinstance(grace, bool) or not isinstance(grace, (int, float))
                                  or (isinstance(grace, float) and not math.isfinite(grace))
                                  or not 0 <= grace <= MAX_GRACE_SECS):
            shown = quoted(grace)
            shown = shown if len(shown) <= 40 else f"{shown[:20]}...({len(shown)} digits)"
            raise ControlError(f"grace_secs {shown} is not a number of seconds in 0..{MAX_GRACE_SECS:.0f}")
        return KillControl(None if grace is None else float(grace))
    if op == "restart":
        process = doc.get("process")
        if not isinstance(process, str) or not process or len(process) > 256:
            raise ControlError(f"process {quoted(process)} is not a process name")
        return RestartControl(process)
    raise ControlError(f"unknown op {quoted(op)} (kill or restart)")


def encode_reply(reply: ControlReply) -> bytes:
    doc = {k: v for k, v in attrs.asdict(reply).items() if v is not None}
    return json.dumps(doc).encode() + b"\n"


def parse_reply(line: bytes) -> ControlReply | None:
    """The reply one line holds; None for anything else."""
    try:
        doc = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("ok"), bool) \
            or not isinstance(doc.get("done"), bool) or not isinstance(doc.get("message"), str):
        return None

    def opt(key: str, kind: type) -> Any:
        value = doc.get(key)
        return value if isinstance(value, kind) and not isinstance(value, bool) else None

    return ControlReply(ok=doc["ok"], done=doc["done"], message=doc["message"],
                        state=opt("state", str), process=opt("process", str),
                        run=opt("run", int), pid=opt("pid", int))
