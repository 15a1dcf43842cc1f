"""Health checkers: each runs ONE attempt and turns every outcome into an `Attempt`.

Owns the HTTP, TCP and shell checks (CONTRACT.md §5): how one attempt is made, bounded in
time and judged, and the reason sentence for each way it can fail. Never raises out of
`check()` (an unexpected exception becomes "internal health check error: ..."), never decides
STARTING/RUNNING/FAILED (that is `healthcheck.policy`), never schedules attempts (that is
`healthcheck.loop`), and never talks to anything but localhost. Reasons quote at most 1 KiB
of any body or output.
"""
from __future__ import annotations

import contextvars
import functools
import http.client
import logging
import os
import select
import signal
import socket
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Callable, Mapping, Protocol

import attrs
import psutil
import requests
import urllib3
from requests.adapters import HTTPAdapter

from config.spec import CheckKind, HealthSpec
from healthcheck.policy import Attempt

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024  # HTTP bodies are read up to this much, then the check stops reading
QUOTE_CHARS = 1024  # a reason quotes at most this much of a body or of a command's output


class Checker(Protocol):
    def check(self) -> Attempt:
        """Run one attempt; never raises."""
        ...

    def describe(self) -> str:
        """What is checked, e.g. "HTTP GET http://localhost:31000/health"."""
        ...


def _secs(value: float) -> str:
    return str(round(float(value), 3))


def _quote(text: str, limit: int = QUOTE_CHARS) -> str:
    """One line, at most `limit` characters of `text` (the head), marked when cut."""
    text = text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")
    if len(text) > limit:
        return text[:limit] + f"... ({len(text) - limit} more characters)"
    return text


def _tail_quote(text: str, limit: int = QUOTE_CHARS) -> str:
    """One line, at most the last `limit` characters of `text`, marked when cut."""
    text = text.strip().replace("\r", "\\r").replace("\n", "\\n")
    if not text:
        return "(no output)"
    if len(text) > limit:
        return "..." + text[-limit:]
    return text


def _never_raises(check: Callable[..., Attempt]) -> Callable[..., Attempt]:
    @functools.wraps(check)
    def wrapper(self: object) -> Attempt:
        try:
            return check(self)
        except Exception as exc:  # noqa: BLE001 - a checker turns everything into an Attempt
            logger.error(
                "health_check_internal_error check=%r error=%s: %s",
                getattr(self, "describe", lambda: "?")(),
                type(exc).__name__,
                exc,
                exc_info=True,
            )
            return Attempt.failed(f"internal health check error: {type(exc).__name__}: {exc}")

    return wrapper


# ---- HTTP ----


class _Deadline:
    """Shuts the attempt's socket down when the whole attempt's time is up.

    `requests` timeouts bound each socket operation, not the exchange, so a server that
    drips a byte every 100 ms would keep a check alive forever; this watchdog bounds connect,
    headers and body together.
    """

    def __init__(self, timeout_secs: float) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._done = False
        self.expired = False
        self._timer = threading.Timer(timeout_secs, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> "_Deadline":
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._done = True
        self._timer.cancel()

    def attach(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            if self.expired:
                self._shutdown()

    def _expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            self._shutdown()

    def _shutdown(self) -> None:
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


_current_deadline: contextvars.ContextVar[_Deadline | None] = contextvars.ContextVar(
    "_current_deadline", default=None
)


class _DeadlineConnection(urllib3.connection.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        deadline = _current_deadline.get()
        if deadline is not None and self.sock is not None:
            deadline.attach(self.sock)


class _DeadlinePool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _DeadlineConnection


class _DeadlineAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: object, **kwargs: object) -> None:
        super().init_poolmanager(*args, **kwargs)  # type: ignore[arg-type]
        self.poolmanager.pool_classes_by_scheme = {"http": _DeadlinePool}


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception, its causes, contexts and exception arguments, depth first."""
    seen: list[BaseException] = []
    stack = [exc]
    while stack:
        e = stack.pop()
        if e in seen:
            continue
        seen.append(e)
        stack.extend(a for a in e.args if isinstance(a, BaseException))
        for linked in (getattr(e, "reason", None), e.__cause__, e.__context__):
            if isinstance(linked, BaseException):
                stack.append(linked)
    return seen


def _describe_http_error(exc: BaseException) -> str:
    causes = _causes(exc)
    kinds = tuple(type(c) for c in causes)

    def has(*types: type) -> bool:
        return any(issubclass(k, types) for k in kinds)

    if has(ConnectionRefusedError):
        return "connection refused"
    # RemoteDisconnected is a ConnectionResetError too: test it first.
    if has(http.client.RemoteDisconnected):
        return "connection closed without an answer"
    if has(ConnectionResetError):
        return "connection reset by peer"
    if has(TimeoutError, socket.timeout, requests.exceptions.Timeout):
        return "timed out"
    if has(http.client.IncompleteRead):
        return "connection closed before the whole body was sent"
    # The most specific cause: the first one that is not a requests/urllib3 wrapper.
    wrappers = (requests.RequestException, urllib3.exceptions.HTTPError)
    inner = next((c for c in causes if not isinstance(c, wrappers)), causes[-1])
    what = "HTTP protocol error" if has(http.client.HTTPException) else "connection error"
    return f"{what}: {type(inner).__name__}: {_quote(str(inner).strip())}"


@attrs.frozen(slots=True)
class HttpChecker:
    """GET http://localhost:PORT{endpoint}, judged as Aurora does (CONTRACT §5)."""

    port: int
    endpoint: str = "/health"
    expected_response: str = "ok"
    expected_response_code: int = 0  # 0: any code
    timeout_secs: float = 1.0

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}{self.endpoint}"

    def describe(self) -> str:
        return f"HTTP GET {self.url}"

    @_never_raises
    def check(self) -> Attempt:
        deadline = _Deadline(self.timeout_secs)
        token = _current_deadline.set(deadline)
        try:
            with deadline, requests.Session() as session:
                session.trust_env = False  # no proxies from the environment: localhost only
                session.mount("http://", _DeadlineAdapter(max_retries=0))
                try:
                    return self._exchange(session)
                except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                    if deadline.expired:
                        return self._timed_out()
                    what = _describe_http_error(exc)
                    if what == "timed out":
                        return self._timed_out()
                    return Attempt.failed(f"{self.describe()}: {what}")
        finally:
            _current_deadline.reset(token)

    def _timed_out(self) -> Attempt:
        return Attempt.failed(f"{self.describe()}: timed out after {_secs(self.timeout_secs)} s")

    def _exchange(self, session: requests.Session) -> Attempt:
        headers = {"Connection": "close", "Accept-Encoding": "identity"}
        timeout = (self.timeout_secs, self.timeout_secs)
        with session.get(
            self.url, headers=headers, timeout=timeout, allow_redirects=False, stream=True
        ) as response:
            status = response.status_code
            if 200 <= status < 300:
                body, truncated = _read_capped(response)
            else:
                body, truncated = b"", False  # Aurora: a non-2xx answer counts as an empty body
            return self._judge(status, response.headers.get("Location"), body, truncated)

    def _judge(self, status: int, location: str | None, body: bytes, truncated: bool) -> Attempt:
        answered = f"{self.describe()} answered HTTP {status}"
        if 300 <= status < 400:
            answered += f" (redirect to {location or 'nowhere'}, not followed)"
        text = body.decode("utf-8", errors="replace")
        expected = self.expected_response
        if expected and text.strip().lower() != expected.lower():
            if not 200 <= status < 300:
                return Attempt.failed(
                    f'{answered}, which counts as an empty body, expected "{_quote(expected)}"'
                )
            cut = f" (only the first {MAX_BODY_BYTES} bytes read)" if truncated else ""
            return Attempt.failed(
                f'{answered} with body "{_quote(text.strip())}"{cut}, '
                f'expected "{_quote(expected)}"'
            )
        if self.expected_response_code and status != self.expected_response_code:
            return Attempt.failed(f"{answered}, expected {self.expected_response_code}")
        return Attempt.passed(answered)


def _read_capped(response: requests.Response) -> tuple[bytes, bool]:
    """Read at most MAX_BODY_BYTES of the body; True when more was left unread."""
    chunks: list[bytes] = []
    size = 0
    while size < MAX_BODY_BYTES:
        chunk = response.raw.read(min(16 * 1024, MAX_BODY_BYTES - size), decode_content=False)
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)
        size += len(chunk)
    # The cap is reached: stop here; closing the response drops the rest unread.
    return b"".join(chunks), True


# ---- TCP ----


@attrs.frozen(slots=True)
class TcpChecker:
    """A TCP connect to localhost:PORT, closed at once."""

    port: int
    timeout_secs: float = 1.0

    def describe(self) -> str:
        return f"TCP connect to localhost:{self.port}"

    @_never_raises
    def check(self) -> Attempt:
        try:
            with socket.create_connection(("localhost", self.port), timeout=self.timeout_secs):
                return Attempt.passed(f"{self.describe()} succeeded")
        except ConnectionRefusedError:
            return Attempt.failed(f"{self.describe()}: connection refused")
        except (TimeoutError, socket.timeout):
            return Attempt.failed(
                f"{self.describe()}: timed out after {_secs(self.timeout_secs)} s"
            )
        except OSError as exc:
            return Attempt.failed(f"{self.describe()}: {exc.strerror or exc}")


# ---- shell ----


@attrs.frozen(slots=True)
class CommandResult:
    """How one health command ended. `error` is set only when it could not be started."""

    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool = False
    output: str = ""  # the tail of stdout and stderr together
    error: str | None = None


RunCommand = Callable[[str, float], CommandResult]


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


@attrs.frozen(slots=True)
class ShellChecker:
    """`/bin/bash -c COMMAND`: exit status 0 passes. Spawning is injected (`run_command`)."""

    command: str
    timeout_secs: float
    run_command: RunCommand

    def describe(self) -> str:
        return f"shell: {self.command}"

    @_never_raises
    def check(self) -> Attempt:
        result = self.run_command(self.command, self.timeout_secs)
        output = _tail_quote(result.output)
        if result.error is not None:
            return Attempt.failed(f"health command could not be started: {result.error}")
        if result.timed_out:
            reason = (
                f"health command timed out after {_secs(self.timeout_secs)} s "
                f"(process group killed)"
            )
            return Attempt.failed(reason if not result.output.strip() else f"{reason}: {output}")
        if result.signal is not None:
            return Attempt.failed(
                f"health command was killed by {_signal_name(result.signal)}: {output}"
            )
        if result.exit_code == 0:
            return Attempt.passed("health command exited with status 0")
        return Attempt.failed(f"health command exited with status {result.exit_code}: {output}")


def subprocess_runner(cwd: Path, env: Mapping[str, str]) -> RunCommand:
    """The standalone RunCommand: `/bin/bash -c COMMAND` in `cwd` with exactly `env`.

    The command gets its own session and process group, and writes stdout and stderr to a
    temporary file rather than a pipe, so a grandchild that keeps the output open cannot hang
    the check. When the command ends or times out, whatever is left of its process group is
    SIGKILLed (on a timeout, every descendant found too), so checks never leave processes
    behind. Never raises. Not for use inside the executor, whose supervisor reaps every child.
    """
    cwd = Path(cwd)
    env = dict(env)

    def run(command: str, timeout_secs: float) -> CommandResult:
        try:
            return _run_once(command, timeout_secs, cwd, env)
        except Exception as exc:  # noqa: BLE001 - a RunCommand reports, never raises
            return CommandResult(error=f"{type(exc).__name__}: {exc}")

    return run


def _run_once(command: str, timeout_secs: float, cwd: Path, env: dict[str, str]) -> CommandResult:
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.Popen(
                ["/bin/bash", "-c", command],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            return CommandResult(
                error=f"cannot run /bin/bash in {cwd}: {exc.strerror or exc} (errno {exc.errno})"
            )
        try:
            exited = _wait_exited(proc, timeout_secs)
            descendants: list[psutil.Process] = []
            if not exited:
                try:
                    descendants = psutil.Process(proc.pid).children(recursive=True)
                except psutil.Error:
                    pass
            # The command is still a zombie (not yet reaped) when it exited, so its pid, the
            # group id, cannot have been reused: killing the group is safe.
            _kill_group(proc.pid)
            for child in descendants:
                try:
                    child.kill()
                except psutil.Error:
                    pass
        finally:
            proc.wait()
        code = proc.returncode
        return CommandResult(
            exit_code=code if code >= 0 else None,
            signal=-code if code < 0 else None,
            timed_out=not exited,
            output=_read_tail(out),
        )


def _wait_exited(proc: subprocess.Popen, timeout_secs: float) -> bool:
    """Wait until `proc` exits, without reaping it; False when `timeout_secs` passed."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        try:
            proc.wait(timeout=timeout_secs)  # no pidfd: reaps, the group kill is best effort
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        readable, _, _ = select.select([pidfd], [], [], max(timeout_secs, 0.0))
        return bool(readable)
    finally:
        os.close(pidfd)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _read_tail(out) -> str:  # noqa: ANN001 - a binary temporary file
    out.seek(0, os.SEEK_END)
    size = out.tell()
    out.seek(max(0, size - QUOTE_CHARS))
    return out.read(QUOTE_CHARS).decode("utf-8", errors="replace")


# ---- factory ----


def make_checker(spec: HealthSpec, run_command: RunCommand | None) -> Checker | None:
    """The checker `spec` asks for; None for CheckKind.NONE.

    A shell check without `run_command` runs through `subprocess_runner` in the current
    directory with the current environment (standalone use only).
    """
    if spec.kind is CheckKind.NONE:
        return None
    if spec.kind is CheckKind.SHELL:
        if run_command is None:
            run_command = subprocess_runner(Path.cwd(), os.environ)
        return ShellChecker(spec.shell_command, spec.timeout_secs, run_command)
    if spec.port is None:
        raise ValueError(f"a {spec.kind.value} health check needs a port, and none is bound")
    if spec.kind is CheckKind.HTTP:
        return HttpChecker(
            port=spec.port,
            endpoint=spec.endpoint,
            expected_response=spec.expected_response,
            expected_response_code=spec.expected_response_code,
            timeout_secs=spec.timeout_secs,
        )
    if spec.kind is CheckKind.TCP:
        return TcpChecker(port=spec.port, timeout_secs=spec.timeout_secs)
    raise ValueError(f"unknown health check kind {spec.kind!r}")
