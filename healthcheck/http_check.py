"""The HTTP health check (docs/contract.md §5): GET http://localhost:PORT/endpoint with `requests`,
the whole attempt bounded by timeout_secs, at most 64 KiB of body read, redirects not
followed, judged as Aurora does. Imported only when a task has an HTTP check, so a task
without one never pays for `requests` (and `ssl`) in memory. Never raises out of check().
"""
from __future__ import annotations

import contextvars
import http.client
import socket
import threading

import attrs
import requests
import urllib3
from requests.adapters import HTTPAdapter

from healthcheck.base import MAX_BODY_BYTES, never_raises, quote, secs
from healthcheck.policy import Attempt

# ---- HTTP ----


class _Deadline:
    """Shuts the attempt's socket down when the whole attempt's time is up.

    `requests` timeouts bound each socket operation, not the exchange, so a server that
    drips a byte every 100 ms would keep a check alive forever; this watchdog bounds connect,
    headers and body together. The shutdown reads as an EOF, so whatever was read by then
    may look like a whole answer (a body without a length ends at EOF): an attempt whose
    deadline fired is a timeout, whatever was read (`finish`).
    """

    def __init__(self, timeout_secs: float) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._done = False
        self.expired = False
        self._timer = threading.Timer(timeout_secs, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()

    def finish(self) -> bool:
        """The exchange is over: stop the watchdog. True when the deadline fired first."""
        with self._lock:
            self._done = True
            expired = self.expired
        self._timer.cancel()
        return expired

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
    return f"{what}: {type(inner).__name__}: {quote(str(inner).strip())}"


@attrs.frozen(slots=True)
class HttpChecker:
    """GET http://localhost:PORT{endpoint}, judged as Aurora does (docs/contract.md §5)."""

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

    @never_raises
    def check(self) -> Attempt:
        deadline = _Deadline(self.timeout_secs)
        token = _current_deadline.set(deadline)
        try:
            with deadline, requests.Session() as session:
                session.trust_env = False  # no proxies from the environment: localhost only
                session.mount("http://", _DeadlineAdapter(max_retries=0))
                try:
                    attempt = self._exchange(session)
                    # A hung answer cut short by the deadline reads as complete: it is not.
                    return self._timed_out() if deadline.finish() else attempt
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
        return Attempt.failed(f"{self.describe()}: timed out after {secs(self.timeout_secs)} s")

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
                    f'{answered}, which counts as an empty body, expected "{quote(expected)}"'
                )
            cut = f" (only the first {MAX_BODY_BYTES} bytes read)" if truncated else ""
            return Attempt.failed(
                f'{answered} with body "{quote(text.strip())}"{cut}, '
                f'expected "{quote(expected)}"'
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

