"""A loopback Mesos agent that speaks the v1 executor HTTP API (docs/mesos.md §19), for tests and
bench scripts.

It owns one HTTP/1.1 server on 127.0.0.1 (a given port or an ephemeral one), the executor it
launches (in its own process group, with an agent's environment, stderr kept as
SANDBOX/executor.log), the event stream(s) it writes by hand as chunked RecordIO, and the
agent-side record of every request, every status update and every acknowledgement.

What it reproduces (docs/mesos.md §5, §13, §19): validation in the agent's order with its
status codes; SUBSCRIBED then queued events; one current stream (a new SUBSCRIBE closes the
old one gracefully); the agent's update rules (duplicates re-ACKed, nothing after a terminal
update, unknown tasks not ACKed, a wrong agent_id silently ignored); ACK modes (immediate,
delay, hold, duplicate, unknown_uuid); chunking modes (record, packed, fuzz); crash and
restart on the same port with a 503 recovery period and a re-registration window; the
shutdown grace; the agent's own updates when the executor dies with live tasks.

Usage:
    with AgentSimulator() as sim:
        sim.launch_executor([sys.executable, "tests/support/echo_executor.py"])
        sim.wait_subscribed()
        sim.launch(make_task_info("task-42", b"{}"))
        sim.wait_for_state("task-42", "TASK_RUNNING")

It must never reach beyond 127.0.0.1 and never leave a process or a port behind after
`close()` (also called by `__exit__`).
"""
from __future__ import annotations

import base64
import binascii
import json
import os
import queue
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid as uuid_mod
from collections.abc import Callable, Iterable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
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


class _Reject(Exception):
    def __init__(self, status: int, text: str = "", headers: Mapping[str, str] | None = None):
        super().__init__(text)
        self.status, self.text, self.headers = status, text, dict(headers or {})


class _Stream:
    """One open SUBSCRIBE response, written by its handler thread from a queue."""

    def __init__(self, handler: BaseHTTPRequestHandler, chunking: str, rng: random.Random):
        self.handler = handler
        self.chunking = chunking
        self.rng = rng
        self.queue: queue.Queue = queue.Queue()
        self.open = True

    def send(self, records: list[bytes], raw: bool = False) -> None:
        self.queue.put(("raw" if raw else "records", records))

    def close(self, graceful: bool) -> None:
        self.queue.put(("close", graceful))
        if not graceful:
            self._kill_socket()

    def _kill_socket(self) -> None:
        try:
            self.handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _write_chunk(self, data: bytes) -> None:
        self.handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def serve(self) -> None:
        try:
            while True:
                items = [self.queue.get()]
                while True:
                    try:
                        items.append(self.queue.get_nowait())
                    except queue.Empty:
                        break
                if self._write(items):
                    return
        except OSError:
            pass  # the executor went away; the agent only notices when writing, like here
        finally:
            self.open = False

    def _write(self, items: list[tuple[str, Any]]) -> bool:
        """Writes what was queued; True once the stream is closed."""
        pending: list[bytes] = []
        for kind, payload in items:
            if kind == "records":
                pending.extend(payload)
                continue
            self._flush(pending)
            pending = []
            if kind == "raw":
                for data in payload:
                    self._write_chunk(data)
            elif kind == "close":
                if payload:
                    self.handler.wfile.write(b"0\r\n\r\n")
                else:
                    self._kill_socket()
                return True
        self._flush(pending)
        return False

    def _flush(self, records: list[bytes]) -> None:
        if not records:
            return
        if self.chunking == "record":
            for record in records:
                self._write_chunk(record)
            return
        data = b"".join(records)
        if self.chunking == "packed":
            self._write_chunk(data)
            return
        offset = 0  # fuzz: records split across chunks and several packed in one
        while offset < len(data):
            size = self.rng.randint(1, 48)
            self._write_chunk(data[offset:offset + size])
            offset += size


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sim: AgentSimulator) -> None:
        self.sim = sim
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request, client_address) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address) -> None:
        # An executor that exits (or is destroyed) with an idle keep-alive connection open
        # resets it: that is a peer going away, not a simulator bug worth a traceback.
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)

    def drop_connections(self) -> None:
        with self.connections_lock:
            connections = list(self.connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read records
        pass

    def _any(self) -> None:
        self.server.sim._handle(self)

    do_POST = do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _any


class AgentSimulator:
    """See the module docstring. Attributes meant to be set by tests: `ack_mode`,
    `ack_delay_secs`, `chunking`, `auth_token`."""

    def __init__(
        self,
        port: int = 0,
        *,
        agent_id: str = AGENT_ID,
        framework_id: str = FRAMEWORK_ID,
        executor_id: str = EXECUTOR_ID,
        auth_token: str | None = None,
        sandbox: str | os.PathLike | None = None,
        chunking: str = "record",
        seed: int = 5,
        capabilities: Iterable[str] = ("MULTI_ROLE", "TASK_KILLING_STATE", "PARTITION_AWARE"),
    ) -> None:
        self.agent_id, self.framework_id, self.executor_id = agent_id, framework_id, executor_id
        self.auth_token = auth_token
        self.chunking = chunking
        self.ack_mode = "immediate"
        # "subscribed": SUBSCRIBED then events; "shutdown": the stream holds only SHUTDOWN and
        # is closed (MESOS-8411, --recover=cleanup); "silent": 200 and then nothing, like an
        # agent that froze right after answering
        self.subscribe_reply = "subscribed"
        self.ack_delay_secs = 0.1
        self.capabilities = tuple(capabilities)
        self._rng = random.Random(seed)
        self._own_sandbox = sandbox is None
        self.sandbox = Path(sandbox) if sandbox else Path(tempfile.mkdtemp(prefix="agent-sim-"))
        self._cond = threading.Condition()
        self.requests: list[RecordedRequest] = []
        self.subscribes: list[dict] = []  # bodies of the accepted SUBSCRIBE calls
        self.messages: list[bytes] = []  # framework messages the executor sent
        self.acks_sent: list[tuple[str, bytes]] = []
        self.duplicates: list[UpdateRecord] = []
        self.dropped_updates: list[UpdateRecord] = []  # after a terminal update: ACKed, dropped
        self.unknown_updates: list[UpdateRecord] = []  # unknown task: recorded, never ACKed
        self.ignored_updates: list[UpdateRecord] = []  # wrong agent_id: 202, then ignored
        self.lost_events: list[bytes] = []  # written while no stream was open
        self.events_sent: list[dict] = []
        # The token's claims (framework, executor, container) do not match this executor:
        # 403 to every call, SUBSCRIBE included (docs/mesos.md §5, check 12).
        self.claims_mismatch = False
        self.reregistration_failed = False
        self.registration_timed_out = False
        self.destroyed_after_grace = False
        self.exit_code: int | None = None
        self._tasks: dict[str, _Task] = {}
        self._undelivered: list[str] = []  # launched before the executor subscribed
        self._seen_uuids: set[bytes] = set()
        self._held_acks: list[tuple[str, bytes]] = []
        self._stream: _Stream | None = None
        self._streams: list[_Stream] = []
        self._subscribed = False
        self._forgotten = False
        self._recovering_until = 0.0
        self._window_until = 0.0
        self._subscribed_since_restart = True
        self._restarts = 0  # generation of the latest restart(), so old windows can't fire
        self._timers: list[threading.Timer] = []
        self._proc: subprocess.Popen | None = None
        self._log_files: list[Any] = []
        self._checkpoint = True
        self._backoff_max_secs = 2.0
        self._grace_secs = 5.0
        self._closed = False
        self.port = port
        self._server: _Server | None = None
        self._serve_thread: threading.Thread | None = None
        self._listen(port)

    # ---- lifecycle ----

    def __enter__(self) -> AgentSimulator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.sandbox / "executor.log"

    def executor_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _listen(self, port: int) -> None:
        deadline = time.monotonic() + 5.0
        while True:
            try:
                server = _Server(("127.0.0.1", port), self)
                break
            except OSError:
                if port == 0 or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        self._server = server
        self.port = server.server_address[1]
        self._serve_thread = threading.Thread(target=server.serve_forever, args=(0.02,),
                                              name="agent-sim", daemon=True)
        self._serve_thread.start()

    def _stop_listening(self, graceful: bool) -> None:
        with self._cond:
            streams, self._streams, self._stream = self._streams, [], None
            server, self._server = self._server, None
        for stream in streams:
            stream.close(graceful)
        if server is not None:
            server.shutdown()
            server.server_close()
            server.drop_connections()

    def close(self) -> None:
        """Kills the executor's process group, stops listening, removes an own sandbox."""
        if self._closed:
            return
        self._closed = True
        for timer in self._timers:
            timer.cancel()
        self.destroy()
        self._stop_listening(graceful=True)
        for f in self._log_files:
            f.close()
        if self._own_sandbox:
            shutil.rmtree(self.sandbox, ignore_errors=True)

    def crash(self) -> None:
        """The agent dies: streams cut without their last chunk, connections refused.

        It stops listening first: a dying agent answers nothing, so a call in flight must
        not get the 403 'Executor is not subscribed' of a live agent."""
        self._stop_listening(graceful=False)
        with self._cond:
            self._held_acks.clear()
            self._subscribed = False

    def restart(self, recovering_secs: float = 0.0,
                reregistration_window_secs: float | None = None) -> None:
        """Listens again on the same port: 503 to everything for `recovering_secs`, then a
        re-registration window (503 to all but SUBSCRIBE) after which an executor that has
        not resubscribed is destroyed."""
        window = self._backoff_max_secs if reregistration_window_secs is None \
            else reregistration_window_secs
        now = time.monotonic()
        with self._cond:
            self._recovering_until = now + recovering_secs
            self._window_until = now + recovering_secs + window
            self._subscribed_since_restart = False
            self._restarts += 1
            generation = self._restarts
        self._listen(self.port)
        self._after(recovering_secs + window, lambda: self._window_closed(generation))

    def _window_closed(self, generation: int) -> None:
        with self._cond:
            alive = self._proc is not None and self._proc.poll() is None
            # Only this restart's window counts: a later restart opened a window of its own.
            if self._subscribed_since_restart or not alive or generation != self._restarts:
                return
            self.reregistration_failed = True
            self._agent_updates("TASK_GONE", "REASON_EXECUTOR_REREGISTRATION_TIMEOUT",
                                "executor did not re-register within the window")
        self.destroy()

    def forget_executor(self) -> None:
        """The agent lost this executor (no checkpointing, or wiped): 400 to its calls."""
        with self._cond:
            self._forgotten = True

    def _after(self, secs: float, action: Callable[[], None]) -> None:
        timer = threading.Timer(secs, action)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    # ---- the executor process ----

    def launch_executor(
        self,
        argv: Sequence[str],
        env_overrides: Mapping[str, str | None] | None = None,
        checkpoint: bool = True,
        recovery_timeout: str = "10secs",
        backoff_max: str = "500ms",
        shutdown_grace: str = "3secs",
        token: str | None = None,
        cwd: str | os.PathLike | None = None,
        registration_timeout_secs: float | None = None,
    ) -> subprocess.Popen:
        """Starts the executor like an agent would: own session, MESOS_* environment,
        stderr appended to SANDBOX/executor.log, stdout to SANDBOX/executor.stdout."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("MESOS_", "LIBPROCESS_", "STOKER_")) or k == "STOKER_ROOT"}
        env.update({
            "MESOS_AGENT_ENDPOINT": self.endpoint,
            "MESOS_SLAVE_PID": f"slave(1)@{self.endpoint}",
            "MESOS_SLAVE_ID": self.agent_id,
            "MESOS_FRAMEWORK_ID": self.framework_id,
            "MESOS_EXECUTOR_ID": self.executor_id,
            "MESOS_DIRECTORY": str(self.sandbox),
            "MESOS_SANDBOX": str(self.sandbox),
            "MESOS_CHECKPOINT": "1" if checkpoint else "0",
            "MESOS_HTTP_COMMAND_EXECUTOR": "0",
            "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": shutdown_grace,
            "LIBPROCESS_PORT": "0",
        })
        if checkpoint:
            env["MESOS_RECOVERY_TIMEOUT"] = recovery_timeout
            env["MESOS_SUBSCRIPTION_BACKOFF_MAX"] = backoff_max
        token = token if token is not None else self.auth_token
        if token:
            env["MESOS_EXECUTOR_AUTHENTICATION_TOKEN"] = token
        for key, value in (env_overrides or {}).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        self._checkpoint = checkpoint
        self._backoff_max_secs = parse_duration(backoff_max)
        self._grace_secs = parse_duration(shutdown_grace)
        stderr = open(self.log_path, "ab")
        stdout = open(self.sandbox / "executor.stdout", "ab")
        self._log_files += [stderr, stdout]
        proc = subprocess.Popen(list(argv), env=env, cwd=str(cwd or self.sandbox),
                                stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                start_new_session=True)
        self._proc = proc
        threading.Thread(target=self._watch_exit, args=(proc,), name="agent-sim-reaper",
                         daemon=True).start()
        if registration_timeout_secs is not None:
            self._after(registration_timeout_secs, self._registration_deadline)
        return proc

    def _registration_deadline(self) -> None:
        with self._cond:
            if self.subscribes or self._proc is None or self._proc.poll() is not None:
                return
            self.registration_timed_out = True
            self._agent_updates("TASK_FAILED", "REASON_EXECUTOR_REGISTRATION_TIMEOUT",
                                "executor did not register in time")
        self.destroy()

    def _watch_exit(self, proc: subprocess.Popen) -> None:
        code = proc.wait()
        with self._cond:
            self.exit_code = code
            self._agent_updates("TASK_FAILED", "REASON_EXECUTOR_TERMINATED",
                                f"Executor terminated (exit code {code})")
            self._cond.notify_all()

    def _agent_updates(self, state: str, reason: str, message: str) -> None:
        """The agent's own update for every launched task that is not terminal (lock held)."""
        for tid, task in self._tasks.items():
            if not task.terminal:
                task.history.append(UpdateRecord(tid, state, uuid_mod.uuid4().bytes, message,
                                                 None, reason, "SOURCE_AGENT", "AGENT",
                                                 time.monotonic()))
        self._cond.notify_all()

    def destroy(self) -> None:
        """SIGKILLs the executor's process group, like a containerizer destroy."""
        proc = self._proc
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def wait_exit(self, timeout_secs: float = 5.0) -> int:
        if self._proc is None:
            raise RuntimeError("no executor was launched")
        try:
            return self._proc.wait(timeout=timeout_secs)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"the executor did not exit within {timeout_secs}s; log:\n"
                               f"{self.executor_log()[-3000:]}") from None

    # ---- driving the executor ----

    @staticmethod
    def _event(event: dict) -> bytes:
        data = json.dumps(event, separators=(",", ":")).encode("utf-8")
        return str(len(data)).encode("ascii") + b"\n" + data

    def send_events(self, events: Sequence[dict]) -> None:
        """Queues events on the current stream as one batch (packed/fuzz chunk them together)."""
        records = [self._event(e) for e in events]
        with self._cond:
            self.events_sent.extend(events)
            if self._stream is None or not self._stream.open:
                self.lost_events.extend(records)
                return
            self._stream.send(records)

    def send_raw(self, data: bytes) -> None:
        """Writes bytes as one HTTP chunk, verbatim (garbage, partial records ...)."""
        with self._cond:
            if self._stream is not None:
                self._stream.send([data], raw=True)

    def launch(self, task_info: dict, deliver: bool = True) -> None:
        """LAUNCH now, or after the next SUBSCRIBED when none is open; `deliver=False` loses
        it, as a LAUNCH sent during a disconnection is lost."""
        tid = task_info["task_id"]["value"]
        with self._cond:
            online = self._stream is not None and self._stream.open
            self._tasks[tid] = _Task(task_info, delivered=deliver and online)
            if deliver and not online:
                self._undelivered.append(tid)
                return
        if deliver:
            self.send_events([{"type": "LAUNCH", "launch": {"task": task_info}}])

    def launch_many(self, task_infos: Sequence[dict]) -> None:
        """LAUNCHes several tasks in one batch (packed/fuzz chunking mixes their records)."""
        with self._cond:
            for info in task_infos:
                self._tasks[info["task_id"]["value"]] = _Task(info, delivered=True)
        self.send_events([{"type": "LAUNCH", "launch": {"task": info}} for info in task_infos])

    def launch_group(self, task_infos: Sequence[dict]) -> None:
        with self._cond:
            for info in task_infos:
                self._tasks[info["task_id"]["value"]] = _Task(info, delivered=True)
        self.send_events([{"type": "LAUNCH_GROUP",
                           "launch_group": {"task_group": {"tasks": list(task_infos)}}}])

    def kill(self, task_id: str, grace_secs: float | None = None) -> None:
        kill: dict[str, Any] = {"task_id": {"value": task_id}}
        if grace_secs is not None:
            kill["kill_policy"] = {"grace_period": {"nanoseconds": round(grace_secs * 1e9)}}
        self.send_events([{"type": "KILL", "kill": kill}])

    def shutdown(self, enforce_grace: bool = True) -> None:
        """SHUTDOWN; after the grace period a still-running executor is destroyed."""
        self.send_events([{"type": "SHUTDOWN"}])
        if enforce_grace and self._proc is not None:
            self._after(self._grace_secs, self._grace_expired)

    def _grace_expired(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self.destroyed_after_grace = True
            self.destroy()

    def message(self, data: bytes) -> None:
        self.send_events([{"type": "MESSAGE", "message": {"data": _b64(data)}}])

    def heartbeat(self) -> None:
        self.send_events([{"type": "HEARTBEAT"}])

    def close_stream(self, graceful: bool = True) -> None:
        """Ends the current stream (terminating chunk, or cut) while still listening."""
        with self._cond:
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.close(graceful)

    def send_ack(self, task_id: str, uuid: bytes) -> None:
        self.acks_sent.append((task_id, uuid))
        self.send_events([{"type": "ACKNOWLEDGED",
                           "acknowledged": {"task_id": {"value": task_id}, "uuid": _b64(uuid)}}])

    def release_acks(self) -> None:
        """Sends every ACK held back in "hold" mode."""
        with self._cond:
            held, self._held_acks = self._held_acks, []
        for tid, raw in held:
            self.send_ack(tid, raw)

    def _ack(self, task_id: str, raw: bytes) -> None:
        mode = self.ack_mode
        if mode == "hold":
            with self._cond:
                self._held_acks.append((task_id, raw))
            return
        if mode == "delay":
            self._after(self.ack_delay_secs, lambda: self.send_ack(task_id, raw))
            return
        if mode == "unknown_uuid":
            self.send_ack(task_id, uuid_mod.uuid4().bytes)
        self.send_ack(task_id, raw)
        if mode == "duplicate":
            self.send_ack(task_id, raw)

    # ---- inspection ----

    def updates(self, task_id: str) -> list[UpdateRecord]:
        with self._cond:
            task = self._tasks.get(task_id)
            return list(task.history) if task else []

    def states(self, task_id: str) -> list[str]:
        return [r.state for r in self.updates(task_id)]

    def calls(self, call_type: str) -> list[RecordedRequest]:
        with self._cond:
            return [r for r in self.requests if r.call_type == call_type]

    def wait_for(self, predicate: Callable[[], Any], timeout_secs: float, what: str) -> Any:
        with self._cond:
            result = self._cond.wait_for(predicate, timeout_secs)
        if not result:
            raise TimeoutError(f"timed out after {timeout_secs}s waiting for {what}; executor "
                               f"log:\n{self.executor_log()[-3000:]}")
        return result

    def wait_subscribed(self, timeout_secs: float = 5.0, count: int = 1) -> dict:
        """Waits until `count` SUBSCRIBE calls were accepted; returns the last one's body."""
        self.wait_for(lambda: len(self.subscribes) >= count, timeout_secs,
                      f"SUBSCRIBE number {count}")
        with self._cond:
            return self.subscribes[count - 1]

    def wait_for_state(self, task_id: str, state: str, timeout_secs: float = 5.0) -> UpdateRecord:
        def found() -> UpdateRecord | None:
            task = self._tasks.get(task_id)
            return next((r for r in task.history if r.state == state), None) if task else None

        return self.wait_for(found, timeout_secs, f"{state} for {task_id}")

    # ---- the endpoint ----

    def _handle(self, h: _Handler) -> None:
        body = self._read_body(h)
        rec = RecordedRequest(h.command, h.path, list(h.headers.items()), body, time.monotonic())
        try:  # best effort, so that rejected calls can be found by type too
            rec.json = json.loads(body)
            rec.call_type = rec.json.get("type") if isinstance(rec.json, dict) else None
        except ValueError:
            pass
        with self._cond:
            self.requests.append(rec)
            self._cond.notify_all()
        try:
            call = self._validate(h, rec)
            kind = call["type"]
            if kind == "SUBSCRIBE":
                return self._subscribe(h, rec, call)
            if kind == "UPDATE":
                self._update(call["update"]["status"], "UPDATE")
            elif kind == "MESSAGE":
                with self._cond:
                    self.messages.append(base64.b64decode(call["message"]["data"]))
            elif kind == "UNKNOWN":
                raise _Reject(501, "Unsupported call type")
            self._answer(h, rec, 202)
        except _Reject as r:
            self._answer(h, rec, r.status, r.text, r.headers)

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
        """The agent's checks in its order (docs/mesos.md §5); raises _Reject."""
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
        if self.subscribe_reply == "silent":
            return self._silent(h, rec, call, stream)
        subscribed = self._subscribed_event()
        stream.send([self._event(subscribed)])  # first on the wire, whatever comes next
        listed = {_value(t, "task_id") for t in subscribe.get("unacknowledged_tasks") or []}
        with self._cond:  # all of it before the SUBSCRIBE is visible to waiting tests
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
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        h.close_connection = True
        stream.serve()

    def _shutdown_only(self, h: _Handler, rec: RecordedRequest, call: dict,
                       stream: _Stream) -> None:
        with self._cond:
            self.subscribes.append(call)
            self.events_sent.append({"type": "SHUTDOWN"})
            rec.status = 200
            self._cond.notify_all()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
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
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        h.close_connection = True
        stream.serve()

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
