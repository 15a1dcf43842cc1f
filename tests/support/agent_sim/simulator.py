"""AgentSimulator: the executor it launches, crash and restart, inspection and waiting; its
events are in driving.py, its answers to calls in endpoint.py."""
from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import ssl
import subprocess
import tempfile
import threading
import time
import uuid as uuid_mod
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.support.agent_sim.driving import _Driver
from tests.support.agent_sim.endpoint import _Endpoint
from tests.support.agent_sim.records import (
    AGENT_ID,
    EXECUTOR_ID,
    FRAMEWORK_ID,
    RecordedRequest,
    UpdateRecord,
    _Task,
    parse_duration,
)
from tests.support.agent_sim.transport import _Server, _Stream, _UnixServer
from tests.support.stoker_proc import stop_signals_default


class AgentSimulator(_Driver, _Endpoint):
    """See the module docstring. Attributes meant to be set by tests: `ack_mode`,
    `ack_delay_secs`, `chunking`, `auth_token`, `unanswered_updates`,
    `endless_answers`, `error_pages`, `accepted_status`.

    `tls`: the TCP server speaks only TLS with this server context (libprocess SSL on, no
    downgrade; `tests/support/agent_tls.py` makes one like libprocess'), and the executor gets
    LIBPROCESS_SSL_ENABLED=true; `unix_socket`: the agent also listens on a unix socket in
    the sandbox, handed to the executor as MESOS_DOMAIN_SOCKET."""

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
        tls: ssl.SSLContext | None = None,
        unix_socket: bool = False,
    ) -> None:
        self.agent_id, self.framework_id, self.executor_id = agent_id, framework_id, executor_id
        self.auth_token = auth_token
        self.chunking = chunking
        self.ack_mode = "immediate"
        # "subscribed": SUBSCRIBED then events; "shutdown": the stream holds only SHUTDOWN and
        # is closed (MESOS-8411, --recover=cleanup); "silent": 200 and then nothing, like an
        # agent that froze right after answering; "blank_lines": 200, then a blank line (which
        # RecordIO skips) every 0.1 s and never an event; "html": 200 with an HTML page
        self.subscribe_reply = "subscribed"
        self.ack_delay_secs = 0.1
        self.capabilities = tuple(capabilities)
        self._rng = random.Random(seed)
        self._own_sandbox = sandbox is None
        self.sandbox = Path(sandbox) if sandbox else Path(tempfile.mkdtemp(prefix="agent-sim-"))
        self._cond = threading.Condition()
        self.requests: list[RecordedRequest] = []
        self.connections_made = 0  # connections accepted, on every listener it has had
        self.subscribes: list[dict] = []  # bodies of the accepted SUBSCRIBE calls
        self.messages: list[bytes] = []  # framework messages the executor sent
        self.acks_sent: list[tuple[str, bytes]] = []
        self.duplicates: list[UpdateRecord] = []
        self.dropped_updates: list[UpdateRecord] = []  # after a terminal update: ACKed, dropped
        self.unknown_updates: list[UpdateRecord] = []  # unknown task: recorded, never ACKed
        self.ignored_updates: list[UpdateRecord] = []  # wrong agent_id: 202, then ignored
        self.lost_events: list[bytes] = []  # written while no stream was open
        self.events_sent: list[dict] = []
        self.tls_failures: list[str] = []  # handshakes the TLS server refused, in words
        # The token's claims (framework, executor, container) do not match this executor:
        # 403 to every call, SUBSCRIBE included (docs/mesos.md §5, check 12).
        self.claims_mismatch = False
        # How many UPDATE calls to take and never answer nor process, like a wedged agent:
        # each holds its connection until close().
        self.unanswered_updates = 0
        # Call type -> how many of its calls to answer 503 with a body that never ends (a
        # byte every 0.1 s until close()), not processed.
        self.endless_answers: dict[str, int] = {}
        # Call type -> HTTP status: its next call is answered so, by an error page quoting
        # the request's headers (a proxy's, a debugging agent's); one call each.
        self.error_pages: dict[str, int] = {}
        self.accepted_status = 202  # what an accepted UPDATE or MESSAGE is answered (a proxy: 200)
        self._closing = threading.Event()
        self.reregistration_failed = False
        self.registration_timed_out = False
        self.destroyed_after_grace = False
        self.exit_code: int | None = None
        # Called with each terminal update as it arrives, before the agent answers it: what
        # the test looks at then is what an agent could destroy right after (nothing of the
        # task may still run).
        self.on_terminal: Callable[[UpdateRecord], None] | None = None
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
        self.tls = tls
        self.socket_path = self.sandbox / "agent.sock" if unix_socket else None
        self._server: _Server | None = None
        self._unix_server: _UnixServer | None = None
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
                server = _Server(("127.0.0.1", port), self, self.tls)
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
        if self.socket_path is not None:
            with contextlib.suppress(FileNotFoundError):  # a crashed agent's
                self.socket_path.unlink()
            self._unix_server = _UnixServer(str(self.socket_path), self)
            threading.Thread(target=self._unix_server.serve_forever, args=(0.02,),
                             name="agent-sim-unix", daemon=True).start()

    def _stop_listening(self, graceful: bool) -> None:
        with self._cond:
            streams, self._streams, self._stream = self._streams, [], None
            servers = [self._server, self._unix_server]
            self._server = self._unix_server = None
            for server in servers:
                if server is not None:
                    server.dead = True  # a call coming in from now on is not answered
        for stream in streams:
            stream.close(graceful)
        for server in servers:
            if server is not None:
                server.shutdown()
                server.server_close()
                server.drop_connections()
        if self.socket_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()

    def close(self) -> None:
        """Kills the executor's process group, stops listening, removes an own sandbox."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()
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
        """Starts the executor like an agent would: own session, MESOS_* environment, SIGHUP,
        SIGINT and SIGQUIT at their defaults (the executor keeps a signal it started with
        ignored: a test run under nohup, or as a script's `&` job, made the stray-signal test
        see no line for them), stderr appended to SANDBOX/executor.log, stdout to
        SANDBOX/executor.stdout."""
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
        if self.tls is not None:
            env["LIBPROCESS_SSL_ENABLED"] = "true"
        if self.socket_path is not None:
            env["MESOS_DOMAIN_SOCKET"] = str(self.socket_path)
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
        with stop_signals_default():  # an agent's are; a suite run under nohup ignores SIGHUP
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
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)

    def wait_exit(self, timeout_secs: float = 5.0) -> int:
        if self._proc is None:
            raise RuntimeError("no executor was launched")
        try:
            return self._proc.wait(timeout=timeout_secs)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"the executor did not exit within {timeout_secs}s; log:\n"
                               f"{self.executor_log()[-3000:]}") from None


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

    def refused_calls(self, timeout_secs: float = 5.0) -> list[RecordedRequest]:
        """The executor's SUBSCRIBE and UPDATE calls answered neither 200 nor 202 (the agent
        answers 400 to a call Mesos' executor.proto would not parse), once every one of them
        has its answer: an UPDATE's state is recorded (what `wait_for_state` sees) just
        before the call is answered."""
        def calls() -> list[RecordedRequest]:
            return [r for r in self.requests if r.call_type in ("SUBSCRIBE", "UPDATE")]

        self.wait_for(lambda: all(r.status is not None for r in calls()), timeout_secs,
                      "an answer to each SUBSCRIBE and UPDATE call")
        with self._cond:
            return [r for r in calls() if r.status not in (200, 202)]

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
