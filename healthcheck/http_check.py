"""The HTTP health check (docs/contract.md §5): GET http://localhost:PORT/endpoint with the
standard library's `http.client`, connected to 127.0.0.1, else ::1 (`healthcheck.loopback`:
the name is never resolved; the Host header still says `localhost:PORT`), the whole
attempt bounded by timeout_secs (not counting time this process was stopped, `_Deadline`,
with no thread of its own), at most 64 KiB of body read, redirects not followed, judged as
Aurora does. Never raises out of check().

Why `http.client` and not `requests`: one GET to localhost, no redirects, proxies, cookies,
encodings or TLS; `requests` (with `urllib3`, `charset_normalizer`, `idna` and
`importlib.metadata`) would cost a health-checked task about 9 MiB of memory and a hundred
milliseconds at launch for nothing it uses. `request_path` is also the lifecycle endpoints'.
"""
from __future__ import annotations

import http.client
import socket
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote as url_quote

import attrs

from healthcheck import loopback
from healthcheck.base import MAX_BODY_BYTES, never_raises, quote, secs
from healthcheck.policy import Attempt

_T = TypeVar("_T")

# ---- HTTP ----


class _Deadline(loopback.Deadline):
    """The whole attempt's time (`loopback.Deadline`, with its pause rule), kept without a
    thread of its own.

    Every blocking step (connect, each send, each read) gets the socket timeout that is left
    of the attempt, so a server that drips a byte every 100 ms cannot keep a check alive
    past timeout_secs, and a step that ends by its timeout ends the attempt as a timeout.
    No watchdog thread: a task whose process limit is reached (the Mesos pids isolator's
    limit covers the executor too) can still be checked.
    """

    def step(self, sock: socket.socket, do: Callable[[], _T]) -> _T:
        """`do()`, a blocking step on `sock`, bounded by what is left of the attempt."""
        while True:
            sock.settimeout(self.left())
            try:
                return do()
            except TimeoutError:
                if not self.resumed():
                    self.expired = True
                    raise

    def connect(self, port: int) -> socket.socket:
        """A connection to `port` on a loopback address, every try within what is left of
        the attempt, its sends and reads bounded by it too."""
        return _DeadlineSocket.wrapping(super().connect(port), self)


class _DeadlineSocket(socket.socket):
    """A connected socket whose sends and reads (`http.client` reads through `makefile`,
    which calls `recv_into`) are each bounded by what is left of the attempt."""

    _deadline: _Deadline

    @classmethod
    def wrapping(cls, raw: socket.socket, deadline: _Deadline) -> _DeadlineSocket:
        sock = cls(fileno=raw.detach())  # its family, type and protocol read from the descriptor
        sock._deadline = deadline
        return sock

    def sendall(self, data: Any, flags: int = 0) -> None:
        self._deadline.step(self, lambda: super(_DeadlineSocket, self).sendall(data, flags))

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        return self._deadline.step(
            self, lambda: super(_DeadlineSocket, self).recv_into(buffer, nbytes, flags))


_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def request_path(endpoint: str) -> str:
    """What goes on the request line for `endpoint` (an absolute path, checked when the job
    was loaded): without its `#fragment`, and percent-encoded as browsers and `requests` do
    (non-ASCII as UTF-8; an escape of an unreserved character decoded; a `%` that starts no
    escape encoded), so `/héalth` asks for `/h%C3%A9alth`."""
    path = endpoint.split("#", 1)[0]
    parts = path.split("%")
    for i in range(1, len(parts)):
        hexa = parts[i][:2]
        if len(hexa) == 2 and all(c in "0123456789abcdefABCDEF" for c in hexa):
            char = chr(int(hexa, 16))
            parts[i] = char + parts[i][2:] if char in _UNRESERVED else "%" + parts[i]
        else:
            parts[i] = "%25" + parts[i]
    return url_quote("".join(parts), safe="!#$%&'()*+,/:;=?@[]~")


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception, its causes, contexts and exception arguments, depth first, each once."""
    seen: list[BaseException] = []
    stack = [exc]
    while stack:
        e = stack.pop()
        if e in seen:
            continue
        seen.append(e)
        stack.extend(a for a in e.args if isinstance(a, BaseException))
        for linked in (e.__cause__, e.__context__):
            if isinstance(linked, BaseException):
                stack.append(linked)
    return seen


def _describe_http_error(exc: BaseException) -> str:
    causes = _causes(exc)
    kinds = tuple(type(c) for c in causes)

    def has(*types: type) -> bool:
        return any(issubclass(k, types) for k in kinds)

    said = [c for c in causes if isinstance(c, (loopback.Unreachable, loopback.NoSocket))]
    if said:  # refused on each loopback address, none reachable, or no socket: it says which
        return said[0].reason
    if has(ConnectionRefusedError):
        return "connection refused"
    # RemoteDisconnected is a ConnectionResetError too: test it first.
    if has(http.client.RemoteDisconnected):
        return "connection closed without an answer"
    if has(ConnectionResetError):
        return "connection reset by peer"
    if has(TimeoutError):  # (socket.timeout is TimeoutError)
        return "timed out"
    if has(HeadCut):
        return str(next(c for c in causes if isinstance(c, HeadCut)))
    if has(http.client.IncompleteRead):
        return "connection closed before the whole body was sent"
    inner = causes[0]
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
        deadline = _Deadline(self.timeout_secs, self.describe())
        try:
            return self._exchange(deadline)
        except (http.client.HTTPException, OSError) as exc:
            if deadline.expired:
                return self._timed_out()
            what = _describe_http_error(exc)
            if what == "timed out":
                return self._timed_out()
            return Attempt.failed(f"{self.describe()}: {what}")

    def _timed_out(self) -> Attempt:
        return Attempt.failed(f"{self.describe()}: timed out after {secs(self.timeout_secs)} s")

    def _exchange(self, deadline: _Deadline) -> Attempt:
        # Each socket step waits at most what is left of the attempt (`_Deadline`).
        conn = http.client.HTTPConnection("localhost", self.port)  # (its socket is ours: no timeout of its own)
        conn.response_class = _WholeHeadResponse
        try:
            conn.sock = deadline.connect(self.port)  # 127.0.0.1, then ::1: no name resolved
            conn.putrequest("GET", request_path(self.endpoint), skip_accept_encoding=True)
            conn.putheader("Accept-Encoding", "identity")
            conn.putheader("Connection", "close")
            conn.endheaders()
            return self.answer(conn.getresponse())
        finally:
            conn.close()

    def answer(self, response: http.client.HTTPResponse) -> Attempt:
        """The attempt an answer makes, once its status line and headers are read: the body
        read (at most MAX_BODY_BYTES) and judged; HTTPException or OSError as `check` says."""
        status = response.status
        if 200 <= status < 300:
            body, truncated = _read_capped(response)
        else:
            body, truncated = b"", False  # Aurora: a non-2xx answer counts as an empty body
        return self._judge(status, response.getheader("Location"), body, truncated)

    def _judge(self, status: int, location: str | None, body: bytes, truncated: bool) -> Attempt:
        answered = f"{self.describe()} answered HTTP {status}"
        if 300 <= status < 400:
            where = quote(location.strip()) if location else "nowhere"  # one line, 1 KiB at most
            answered += f" (redirect to {where}, not followed)"
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


class HeadCut(http.client.HTTPException):
    """The connection ended inside the answer's headers, before the blank line that ends them."""


class _LastLine:
    """The answer's stream as `http.client` reads its status line and headers, keeping the
    last line read (b"": the end of the stream)."""

    def __init__(self, fp: Any) -> None:
        self._fp = fp
        self.last = b"\n"

    def readline(self, limit: int = -1) -> bytes:
        self.last = self._fp.readline(limit)
        return self.last

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fp, name)


class _WholeHeadResponse(http.client.HTTPResponse):
    """An answer whose headers end with their blank line. `http.client` takes the end of the
    stream for it, so an answer cut off inside its headers (its server died writing them)
    was judged whole, with an empty body: a pass when any body is expected. Raises HeadCut."""

    def begin(self) -> None:
        raw = self.fp
        watched = _LastLine(raw)
        self.fp = watched  # type: ignore[assignment]
        try:
            super().begin()
        finally:
            if self.fp is watched:  # else http.client closed it (a bad status line): None
                self.fp = raw
        if watched.last == b"":
            raise HeadCut("connection closed before the whole answer was sent (inside its headers)")


def _read_capped(response: http.client.HTTPResponse) -> tuple[bytes, bool]:
    """Read at most MAX_BODY_BYTES of the body; True when more was left unread. A body that
    ends before its Content-Length is an IncompleteRead (a chunked one raises it itself)."""
    chunks: list[bytes] = []
    size = 0
    while size < MAX_BODY_BYTES:
        try:
            chunk = response.read(min(16 * 1024, MAX_BODY_BYTES - size))
        except (ValueError, OverflowError) as exc:  # a chunk size below 0 (`-12`; `-1` and 40
            # zeros is below any index): http.client hands it on as a length to read
            raise http.client.HTTPException(f"a malformed chunked body ({exc})") from None
        if not chunk:
            if response.length:  # the length announced, less what came: cut short
                raise http.client.IncompleteRead(b"".join(chunks), response.length)
            return b"".join(chunks), False
        chunks.append(chunk)
        size += len(chunk)
    # The cap is reached: stop here; closing the connection drops the rest unread.
    return b"".join(chunks), True
