"""The agent's side of the v1 executor API: each call validated in the agent's order with its
status codes (docs/mesos.md §5), SUBSCRIBE and its stream, and the agent's update rules
(docs/mesos.md §13)."""
from __future__ import annotations

import base64
import binascii
import contextlib
import json
import socket
import threading
import time
import uuid as uuid_mod
from collections.abc import Mapping
from typing import Any

from tests.support.agent_sim.records import (
    CALL_TYPES,
    CONTAINER_ID,
    TASK_STATES,
    TERMINAL_STATES,
    RecordedRequest,
    UpdateRecord,
    _value,
)
from tests.support.agent_sim.transport import _Dead, _Handler, _Reject, _Stream


class _Endpoint:
    """AgentSimulator's answers to the executor's calls (its state is set up by
    AgentSimulator.__init__)."""

    def _handle(self, h: _Handler) -> None:
        body = self._read_body(h)
        rec = RecordedRequest(h.command, h.path, list(h.headers.items()), body, time.monotonic())
        with contextlib.suppress(ValueError):  # best effort: rejected calls found by type too
            rec.json = json.loads(body)
            rec.call_type = rec.json.get("type") if isinstance(rec.json, dict) else None
        with self._cond:
            self.requests.append(rec)
            self._cond.notify_all()
        try:
            self._error_page(h, rec)
            call = self._validate(h, rec)
            kind = call["type"]
            if self._unanswered(h, rec, kind):
                return
            if kind == "SUBSCRIBE":
                return self._subscribe(h, rec, call)
            if kind == "UPDATE":
                self._update(call["update"]["status"], "UPDATE")
            elif kind == "MESSAGE":
                with self._cond:
                    self.messages.append(base64.b64decode(call["message"]["data"]))
            elif kind == "UNKNOWN":
                raise _Reject(501, "Unsupported call type")
            status = self.accepted_status
            self._answer(h, rec, status, "" if status == 202 else "<html><body>OK</body></html>")
        except _Reject as r:
            self._answer(h, rec, r.status, r.text, r.headers)
        except _Dead:  # a crashing agent answers nothing: the connection is cut
            with self._cond:
                rec.answer = "no answer: the agent crashed"
            h.close_connection = True
            with contextlib.suppress(OSError):
                h.connection.shutdown(socket.SHUT_RDWR)

    def _error_page(self, h: _Handler, rec: RecordedRequest) -> None:
        """Raises the `error_pages` answer this call is due, if any."""
        with self._cond:
            status = self.error_pages.pop(rec.call_type or "", None)
        if status is not None:
            raise _Reject(status, "<html><body>Request headers: " + "; ".join(
                f"{key}: {value}" for key, value in h.headers.items()) + "</body></html>")

    def _unanswered(self, h: _Handler, rec: RecordedRequest, kind: str) -> bool:
        """Takes one of `unanswered_updates` (no answer) or `endless_answers` (503, its body
        never ending) due to this call: nothing done, the connection held until close()
        (True); False when none is."""
        with self._cond:
            silent = kind == "UPDATE" and self.unanswered_updates > 0
            endless = not silent and self.endless_answers.get(kind, 0) > 0
            if not (silent or endless):
                return False
            if endless:
                self.endless_answers[kind] -= 1
            else:
                self.unanswered_updates -= 1
            rec.status, rec.answer = (503, "endless") if endless else (None, "never answered")
            self._cond.notify_all()
        h.close_connection = True
        if endless:
            h.send_response(503)
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
        with contextlib.suppress(OSError):  # the executor gave up on it
            while not self._closing.wait(0.1 if endless else None):
                h.wfile.write(b"1\r\nx\r\n")
                h.wfile.flush()
        return True

    def _read_body(self, h: _Handler) -> bytes:
        if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    h.rfile.readline()
                    return data
                data += h.rfile.read(size)
                h.rfile.readline()
        return h.rfile.read(int(h.headers.get("Content-Length") or 0))

    def _answer(self, h: _Handler, rec: RecordedRequest, status: int, text: str = "",
                headers: Mapping[str, str] | None = None) -> None:
        data = text.encode()
        with self._cond:
            rec.status, rec.answer = status, text
            self._cond.notify_all()
        h.send_response(status)
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        if data:
            h.send_header("Content-Type", "text/plain; charset=utf-8")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)

    def _validate(self, h: _Handler, rec: RecordedRequest) -> dict:
        """The agent's checks in its order (docs/mesos.md §5); raises _Reject, or _Dead
        while the agent crashes."""
        with self._cond:
            if h.server.dead:
                raise _Dead()
        if h.server.paths is not None and h.path not in h.server.paths:
            raise _Reject(403, "")  # the agent's unix socket serves its executor API only
        if self.auth_token is not None:
            auth = h.headers.get("Authorization")
            if auth != f"Bearer {self.auth_token}":
                challenge = 'Bearer realm="mesos-agent-executor"'
                if auth is not None:
                    challenge += ', error="invalid_token"'
                raise _Reject(401, "", {"WWW-Authenticate": challenge})
        if time.monotonic() < self._recovering_until:
            raise _Reject(503, "Agent has not finished recovery")
        if h.command != "POST":
            raise _Reject(405, f"Expecting 'POST', received '{h.command}'", {"Allow": "POST"})
        content_type = h.headers.get("Content-Type")
        if content_type is None:
            raise _Reject(400, "Expecting 'Content-Type' to be present")
        if content_type != "application/json":
            raise _Reject(415, f"Expecting 'Content-Type' of application/json or "
                               f"application/x-protobuf, got '{content_type}'")
        try:
            call = json.loads(rec.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise _Reject(400, f"Failed to parse body into JSON: {e}") from None
        if not isinstance(call, dict):
            raise _Reject(400, "Failed to convert JSON into Call protobuf: not an object")
        rec.json = call
        missing = [f for f in ("executor_id", "framework_id") if _value(call, f) is None]
        if missing:
            raise _Reject(400, "Failed to convert JSON into Call protobuf: Missing required "
                               f"fields: {', '.join(missing)}")
        kind = call.get("type")
        if kind not in CALL_TYPES:
            raise _Reject(400, "Failed to validate Executor::Call: Expecting 'type' to be present")
        rec.call_type = kind
        self._validate_call(call)
        if kind == "SUBSCRIBE" and not _accepts_json(h.headers.get("Accept")):
            raise _Reject(406, "Expecting 'Accept' to allow application/json")
        if kind == "HEARTBEAT":
            raise _Reject(202)
        with self._cond:
            if kind != "SUBSCRIBE" and time.monotonic() < self._window_until:
                raise _Reject(503, "Agent has not finished recovery")
            if self._forgotten or _value(call, "framework_id") != self.framework_id:
                raise _Reject(400, "Framework cannot be found")
            if _value(call, "executor_id") != self.executor_id:
                raise _Reject(400, "Executor cannot be found")
            if self.claims_mismatch:
                raise _Reject(403, "Received unauthorized request: the principal's claims do "
                                   "not match this executor")
            if kind != "SUBSCRIBE" and not self._subscribed:
                raise _Reject(403, "Executor is not subscribed")
        return call

    def _validate_call(self, call: dict) -> None:
        kind = call["type"]
        fail = "Failed to validate Executor::Call: "
        if kind == "SUBSCRIBE":
            subscribe = call.get("subscribe")
            if not isinstance(subscribe, dict):
                raise _Reject(400, fail + "Expecting 'subscribe' to be present")
            for update in subscribe.get("unacknowledged_updates") or []:
                _check_status(update.get("status") if isinstance(update, dict) else None,
                              call, full=False)
        elif kind == "UPDATE":
            update = call.get("update")
            if not isinstance(update, dict):
                raise _Reject(400, fail + "Expecting 'update' to be present")
            _check_status(update.get("status"), call, full=True)
        elif kind == "MESSAGE":
            data = (call.get("message") or {}).get("data") if isinstance(
                call.get("message"), dict) else None
            if not isinstance(data, str):
                raise _Reject(400, fail + "Expecting 'message' to be present")
            try:
                base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                raise _Reject(400, "Failed to convert JSON into Call protobuf: "
                                   "message.data is not base64") from None

    def _subscribe(self, h: _Handler, rec: RecordedRequest, call: dict) -> None:
        stream = _Stream(h, self.chunking, self._rng)
        subscribe = call["subscribe"]
        if self.subscribe_reply == "shutdown":
            return self._shutdown_only(h, rec, call, stream)
        if self.subscribe_reply in ("silent", "blank_lines", "html"):
            return self._silent(h, rec, call, stream)
        subscribed = self._subscribed_event()
        stream.send([self._event(subscribed)])  # first on the wire, whatever comes next
        listed = {_value(t, "task_id") for t in subscribe.get("unacknowledged_tasks") or []}
        with self._cond:  # all of it before the SUBSCRIBE is visible to waiting tests
            if h.server.dead:  # crash() took the streams already: this one would outlive it
                raise _Dead()
            self.events_sent.append(subscribed)
            old, self._stream = self._stream, stream
            self._streams.append(stream)
            self._subscribed = True
            self._subscribed_since_restart = True
            for update in subscribe.get("unacknowledged_updates") or []:
                self._update(update["status"], "SUBSCRIBE")  # like fresh UPDATEs, ACKed
            if self.subscribes:
                self._drop_unlisted_staging(listed)
            queued, self._undelivered = self._undelivered, []
            for tid in queued:  # tasks launched before the executor subscribed
                self._tasks[tid].delivered = True
                self.send_events([{"type": "LAUNCH", "launch": {"task": self._tasks[tid].info}}])
            self.subscribes.append(call)
            rec.status = 200
            self._cond.notify_all()
        if old is not None:
            old.close(graceful=True)  # a new subscription replaces the old stream
        stream.begin()
        h.close_connection = True
        stream.serve()

    def _shutdown_only(self, h: _Handler, rec: RecordedRequest, call: dict,
                       stream: _Stream) -> None:
        with self._cond:
            self.subscribes.append(call)
            self.events_sent.append({"type": "SHUTDOWN"})
            rec.status = 200
            self._cond.notify_all()
        stream.begin()
        stream.send([self._event({"type": "SHUTDOWN"})])
        stream.close(graceful=True)
        h.close_connection = True
        stream.serve()

    def _silent(self, h: _Handler, rec: RecordedRequest, call: dict, stream: _Stream) -> None:
        with self._cond:
            self.subscribes.append(call)
            self._streams.append(stream)  # closed (cut) by crash() and close()
            rec.status = 200
            self._cond.notify_all()
        html = self.subscribe_reply == "html"  # another server's page: a proxy's login, say
        stream.begin("text/html; charset=utf-8" if html else "application/json")
        h.close_connection = True
        if html:
            stream.send([b"<html><body>Please log in</body></html>\n"], raw=True)
            stream.close(graceful=True)
        if self.subscribe_reply == "blank_lines":  # no event ever: a blank line each 0.1 s
            threading.Thread(target=self._blank_lines, args=(stream,), daemon=True).start()
        stream.serve()

    def _blank_lines(self, stream: _Stream) -> None:
        while stream.open and not self._closing.wait(0.1):
            stream.send([b"\n"], raw=True)

    def _drop_unlisted_staging(self, listed: set[str | None]) -> None:
        for tid, task in self._tasks.items():
            if task.delivered and not task.history and tid not in listed:
                task.history.append(UpdateRecord(
                    tid, "TASK_DROPPED", uuid_mod.uuid4().bytes,
                    "Task launched during agent restart", None, "REASON_AGENT_RESTARTED",
                    "SOURCE_AGENT", "AGENT", time.monotonic()))

    def _subscribed_event(self) -> dict:
        return {"type": "SUBSCRIBED", "subscribed": {
            "executor_info": {
                "type": "CUSTOM",
                "executor_id": {"value": self.executor_id},
                "framework_id": {"value": self.framework_id},
                "command": {"shell": True, "value": "stoker executor"},
                "shutdown_grace_period": {"nanoseconds": round(self._grace_secs * 1e9)},
            },
            "framework_info": {
                "user": "sim", "name": "agent-sim", "id": {"value": self.framework_id},
                "failover_timeout": 0.0, "checkpoint": self._checkpoint,
                "capabilities": [{"type": c} for c in self.capabilities],
            },
            "agent_info": {"hostname": "localhost", "port": self.port,
                           "id": {"value": self.agent_id}},
            "container_id": {"value": CONTAINER_ID},
        }}

    def _update(self, status: dict, via: str) -> None:
        """The agent's handling of one status update (docs/mesos.md §13)."""
        raw = base64.b64decode(status["uuid"])
        tid = status["task_id"]["value"]
        record = UpdateRecord(tid, status["state"], raw, status.get("message", ""),
                              status.get("healthy"), status.get("reason"),
                              status.get("source", ""), via, time.monotonic(), status)
        if self.on_terminal is not None and record.state in TERMINAL_STATES:
            self.on_terminal(record)
        with self._cond:
            try:
                agent_id = _value(status, "agent_id")
                if agent_id is not None and agent_id != self.agent_id:
                    self.ignored_updates.append(record)
                    return
                task = self._tasks.get(tid)
                if raw in self._seen_uuids:
                    self.duplicates.append(record)
                    if task is None:
                        return
                elif task is None:
                    self._seen_uuids.add(raw)
                    self.unknown_updates.append(record)
                    return
                else:
                    self._seen_uuids.add(raw)
                    if task.terminal:
                        self.dropped_updates.append(record)
                    else:
                        task.history.append(record)
            finally:
                self._cond.notify_all()
        self._ack(tid, raw)


def _check_status(status: Any, call: dict, full: bool) -> None:
    fail = "Failed to validate Executor::Call: "
    convert = "Failed to convert JSON into Call protobuf: Missing required fields: "
    if not isinstance(status, dict):
        raise _Reject(400, convert + "update.status")
    if _value(status, "task_id") is None:
        raise _Reject(400, convert + "update.status.task_id")
    if status.get("state") not in TASK_STATES:  # unknown enum names are dropped by the agent
        raise _Reject(400, convert + "update.status.state")
    if not full:
        return
    if "uuid" not in status:
        raise _Reject(400, fail + "Expecting 'uuid' to be present")
    try:
        raw = base64.b64decode(status["uuid"], validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise _Reject(400, "Failed to convert JSON into Call protobuf: "
                           "update.status.uuid is not base64") from None
    if len(raw) != 16 or not 1 <= raw[6] >> 4 <= 5:
        raise _Reject(400, fail + "Not a valid UUID")
    executor_id = _value(status, "executor_id")
    if executor_id is not None and executor_id != _value(call, "executor_id"):
        raise _Reject(400, fail + f"ExecutorID in Call: {_value(call, 'executor_id')} does not "
                                  f"match ExecutorID in TaskStatus: {executor_id}")
    if status.get("source") != "SOURCE_EXECUTOR":
        raise _Reject(400, fail + "Received Call from executor with wrong source")
    if status["state"] == "TASK_STAGING":
        raise _Reject(400, fail + "Received TASK_STAGING from executor")
    check = status.get("check_status")
    if check is not None:
        kind = check.get("type") if isinstance(check, dict) else None
        if kind not in ("COMMAND", "HTTP", "TCP") or kind.lower() not in check:
            raise _Reject(400, fail + "'check_status' is invalid")


def _accepts_json(accept: str | None) -> bool:
    if accept is None:
        return True
    for part in accept.split(","):
        media, *params = [p.strip() for p in part.split(";")]
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if media in ("application/json", "application/*", "*/*") and q > 0:
            return True
    return False
