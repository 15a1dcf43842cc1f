"""HTTP transport to the Mesos agent's v1 executor endpoint: a thin adapter over the
standard library's `http.client`.

This module owns the two connections (one for the long-lived SUBSCRIBE stream, one kept
alive for the UPDATE/MESSAGE calls, which must not share the stream's; docs/mesos.md §3),
the URL, the exact headers and the classification of every HTTP outcome:

    2xx (calls) / 200 (SUBSCRIBE)           -> ACCEPTED
    403 (calls), 404, 503, other 5xx but 501,
    no answer                               -> TRANSIENT (retry with back-off)
    any other status                        -> REJECTED (a bug or a misconfiguration)

Where the connections go (`agentroute.py`): TCP to MESOS_AGENT_ENDPOINT, over TLS when
libprocess SSL is on (`agenttls.py`, loaded only then), or the agent's unix socket.

Why `http.client` and not `requests`: the agent is HTTP/1.1 on a known address, with no
redirects, proxies, cookies or encodings, and the stream must be read piece by piece as
chunks arrive; `http.client` does exactly that, while `requests` (with `urllib3`,
`charset_normalizer`, `idna` and `importlib.metadata`) would cost every executor about
9 MiB of memory and a hundred milliseconds of start for nothing it uses.

It never raises to its callers except `StreamBroken` while iterating a stream; it never
decides about retries, never touches the protocol state, never logs a header (the bearer
token must not reach any log line) and never logs at all: the driver logs state changes.
"""
from __future__ import annotations

import contextlib
import enum
import http.client
import math
import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import attrs

from executor.logs import no_room
from executor.mesos.agentroute import AgentRoute, split_endpoint

if TYPE_CHECKING:  # loaded only when SSL is on
    from executor.mesos.agenttls import AgentTls

CONNECT_TIMEOUT_SECS = 5.0
# Read timeout of a call (the stream has none: heartbeats come every 30 min). The agent answers
# a call before it acts on it; one it took and never answered must not hold the sender for the
# whole wait for the last acknowledgement (10 s, less after SHUTDOWN): it is POSTed again with
# the same uuid, which the agent deduplicates (docs/mesos.md §12). (Was 10 s: a TASK_KILLED
# whose first POST hung was never POSTed again, and the executor exited 5.)
CALL_TIMEOUT_SECS = 2.0
_MAX_DETAIL_BYTES = 1024  # a rejected call's body is quoted up to this many bytes
# The stream is read in pieces of at most this size: a 50 MB HTTP chunk is never held whole
# (the RecordIO decoder drops a record too large to hold as it passes). A smaller chunk still
# comes at once: a piece ends at the end of its HTTP chunk.
STREAM_READ_BYTES = 64 * 1024


class Outcome(enum.Enum):
    ACCEPTED = "accepted"
    TRANSIENT = "transient"
    REJECTED = "rejected"


@attrs.frozen(slots=True)
class CallResult:
    """How one POST ended; `detail` is the answer's body or the error, in words."""

    outcome: Outcome
    status: int | None  # None when no HTTP answer came back
    detail: str = ""
    no_room: bool = False  # no descriptor, thread or memory left to make the call (`logs.no_room`)

    def describe(self) -> str:
        if self.status is None:
            return self.detail
        return f"HTTP {self.status}" + (f": {self.detail}" if self.detail else "")


class StreamBroken(Exception):
    """The event stream ended without its terminating chunk (reset, truncation, abort)."""


class BadToken(ValueError):
    """The agent's token holds a character an HTTP header cannot carry. The message says
    which kind and where, never the token (http.client's own error would quote it)."""


def _bearer(token: str) -> str:
    """The Authorization value; BadToken unless every character is printable ASCII (a JWT
    is base64url and dots)."""
    for i, ch in enumerate(token):
        if not "\x21" <= ch <= "\x7e":
            what = ("a space" if ch == " " else "a non-ASCII character" if ord(ch) > 0x7f
                    else "a control character")
            raise BadToken(f"the token holds {what} at position {i + 1} of {len(token)}, "
                           "which an HTTP header cannot carry")
    return f"Bearer {token}"


def agent_url(endpoint: str) -> str:
    """`MESOS_AGENT_ENDPOINT` (`ip:port`, an IPv6 ip unbracketed) -> the executor API URL."""
    host, port = split_endpoint(endpoint)
    return AgentRoute(host=host, port=port).url


def _classify(status: int, accepted: int) -> Outcome:
    # A call answered with another 2xx (a proxy's 200) is taken as accepted: that keeps its
    # update owed until its ACKNOWLEDGED, where a rejection would drop it.
    if status == accepted or (accepted == 202 and 200 <= status < 300):
        return Outcome.ACCEPTED
    # 403 "Executor is not subscribed": the agent holds us as REGISTERING (it restarted and
    # has not seen our SUBSCRIBE yet). Keep the call and retry: dropping it would lose an
    # update, and the resubscription carries it anyway. A SUBSCRIBE (accepted: 200) never
    # gets that one: its 403 says the token's claims are not this executor's, for good.
    if status == 403:
        return Outcome.TRANSIENT if accepted == 202 else Outcome.REJECTED
    if status in (404, 503) or (status >= 500 and status != 501):
        return Outcome.TRANSIENT
    return Outcome.REJECTED


def _detail(body: bytes, token: str | None) -> str:
    """An answer's body for a log line: its first _MAX_DETAIL_BYTES, the token (which an error
    page quoting the request's headers holds) written `[token]`, even cut in two by the end."""
    text = body.decode("utf-8", "replace")
    if token:
        text = text.replace(token, "[token]")
    cut = text[:_MAX_DETAIL_BYTES]
    if token and len(cut) < len(text):
        cut = next((cut[:-n] for n in range(min(len(token), len(cut)), 0, -1)
                    if token.startswith(cut[-n:])), cut)
    return cut.strip() + (" ..." if len(text) > len(cut) else "")


def _answer_body(response: http.client.HTTPResponse, sock: socket.socket,
                 limit: int, deadline: float) -> tuple[bytes, bool]:
    """A call's answer body: at most `limit` bytes, read by `deadline` (each read's timeout
    is what is left); whether it was read whole, else its connection cannot carry another
    call. `sock` is the connection's socket as the request went out: an answer that says
    `Connection: close` takes it from its HTTPConnection (whose `sock` is None from then
    on), and its body must still be read (was: it was not, and its log line said nothing
    of why a call was refused). (Was `read()`: a body that never ended held the sender for good.)"""
    data = b""
    while len(data) < limit:
        left = deadline - time.monotonic()
        if left <= 0:
            return data, False
        sock.settimeout(left)
        piece = response.read1(limit - len(data))
        if not piece:  # its end (read1 of a Content-Length: 0 body leaves it open)
            response.close()
            return data, True
        data += piece
    return data, response.isclosed()


def _error_words(error: BaseException) -> str:
    """"ConnectionRefusedError: [Errno 111] Connection refused": the type, then the root
    cause (the first exception that caused or wrapped it, innermost)."""
    root, seen = error, set()
    while id(root) not in seen:
        seen.add(id(root))
        inner = root.__cause__ or root.__context__
        if not isinstance(inner, BaseException):
            break
        root = inner
    text = str(root).strip() or type(root).__name__
    return f"{type(error).__name__}: {text}"


class _UnixConnection(http.client.HTTPConnection):
    """HTTP on the agent's unix socket (MESOS_DOMAIN_SOCKET)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        """Connected, or an OSError. A unix socket's connect does not wait for a listener
        whose backlog is full: with a timeout set it fails at once, EAGAIN, said here as the
        refusal it is (EAGAIN's own words are a process limit's, `logs.no_room`)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        full = False
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
            self.sock = sock
        except BlockingIOError:
            full = True  # refused below, outside this handler: the words are not EAGAIN's
        finally:
            if self.sock is not sock:
                sock.close()
        if full:
            raise ConnectionRefusedError(f"{self._path}: the agent takes no connection now "
                                         "(its socket's backlog is full: is the agent stopped?)")


def _by_address(address: tuple[str, int], timeout: float | None,
                source_address: tuple[str, int] | None = None) -> socket.socket:
    """`socket.create_connection`, the host given as ASCII bytes: CPython's getaddrinfo
    encodes a str host with the `idna` codec, whatever it holds, and that codec loads
    `encodings.idna`, `stringprep` and `unicodedata`, which nothing else of the executor
    loads (an agent's address is an IP; a name beyond ASCII is still given as text)."""
    host, port = address
    name: str | bytes = host
    if host.isascii():
        name = host.encode("ascii")
    return socket.create_connection((name, port), timeout, source_address)  # type: ignore[arg-type]  # bytes too


def _connect(route: AgentRoute, tls: AgentTls | None, connect_timeout_secs: float,
             read_timeout_secs: float | None) -> http.client.HTTPConnection:
    """A connected HTTPConnection on `route`: `connect_timeout_secs` for the connect (and
    the TLS handshake), then `read_timeout_secs` for each read (None: as long as it takes)."""
    conn: http.client.HTTPConnection
    if route.socket_path is not None:
        conn = _UnixConnection(route.socket_path, connect_timeout_secs)
    elif tls is not None:
        from executor.mesos.agenttls import TlsConnection

        conn = TlsConnection(route.host, route.port, connect_timeout_secs, tls)
    else:  # (its connect() sets TCP_NODELAY)
        conn = http.client.HTTPConnection(route.host, route.port, timeout=connect_timeout_secs)
    if route.socket_path is None:
        conn._create_connection = _by_address  # type: ignore[attr-defined]  # connect()'s own
    try:
        conn.connect()
        assert conn.sock is not None
        conn.sock.settimeout(read_timeout_secs)
    except BaseException:
        conn.close()
        raise
    return conn


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """An idle kept-alive connection the agent has closed (or that has unread bytes, which
    an idle HTTP/1.1 connection never should): it must not carry the next call."""
    sock = conn.sock
    if sock is None:
        return True
    pending = getattr(sock, "pending", None)  # an SSLSocket's: bytes decrypted, unread
    if pending is not None and pending():
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    still_open = getattr(conn, "still_open", None)  # over TLS: perhaps records without data
    return bool(readable) and (still_open is None or not still_open())


STREAM_TYPES = ("application/json", "application/recordio")  # the agent's SUBSCRIBE answers


class AgentStream:
    """One open SUBSCRIBE response: iterate `chunks()`; `abort()` from any thread ends it."""

    def __init__(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse,
                 sock: socket.socket, settle_by: float | None = None) -> None:
        self._conn = conn
        self._response = response
        # the connection's socket as the request went out: an answer that ends with its
        # connection (no length, no chunks) takes it from `conn` (was: None, so that
        # abort() could not wake the reader, nor settle() end the read timeout)
        self._sock = sock
        self._aborted = False
        self._settle_by = settle_by  # until settle(): the first event must be whole by then
        said = response.getheader("Content-Type") or ""
        # For a stream that does not parse: the agent repeats the Accept's type (JSON); any
        # other is likely another server's page at MESOS_AGENT_ENDPOINT (a proxy's login).
        self.odd_type = "" if said.split(";")[0].strip().lower() in STREAM_TYPES else (
            f"; the answer's Content-Type is {said!r}, not the agent's application/json: "
            "is MESOS_AGENT_ENDPOINT a Mesos agent?")

    def chunks(self) -> Iterator[bytes]:
        """Yields the body as it arrives (at most STREAM_READ_BYTES at a time, never waiting
        for more than one read); returns on a clean end (the chunked body's last chunk),
        raises StreamBroken on a reset, a truncation or an abort."""
        try:
            while True:
                if self._settle_by is not None:  # bytes that never make an event (blank lines)
                    left = self._settle_by - time.monotonic()
                    if left <= 0:
                        raise StreamBroken("no event came within the outage's time left")
                    self._sock.settimeout(left)
                piece = self._response.read1(STREAM_READ_BYTES)
                if not piece:
                    break
                yield piece
        except (http.client.HTTPException, OSError, ValueError, AttributeError) as e:
            # ValueError/AttributeError: reading a connection that abort() closed under it
            raise StreamBroken("aborted" if self._aborted else _error_words(e)) from None
        if self._aborted:
            raise StreamBroken("aborted")

    def settle(self) -> None:
        """The agent has spoken on this stream: no read timeout from now on (its heartbeats
        come every 30 minutes at most, docs/mesos.md §7); never raises."""
        self._settle_by = None
        with contextlib.suppress(OSError):
            self._sock.settimeout(None)

    def abort(self) -> None:
        """Wakes a reader blocked in recv by shutting the socket down; never raises."""
        self._aborted = True
        with contextlib.suppress(OSError):  # shut already, or closed
            self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        try:
            self._response.close()
        finally:
            self._conn.close()


class AgentTransport:
    """POSTs to the agent: `subscribe()` opens the stream, `post()` sends one call."""

    def __init__(
        self,
        endpoint: str | AgentRoute,
        auth_token: str | None = None,
        call_timeout_secs: float = CALL_TIMEOUT_SECS,
    ) -> None:
        """`endpoint`: MESOS_AGENT_ENDPOINT (plain HTTP), or the route `agent_route` made;
        ValueError for a TLS file that cannot be used (`agenttls.client_context`), BadToken."""
        if isinstance(endpoint, str):
            host, port = split_endpoint(endpoint)
            endpoint = AgentRoute(host=host, port=port)
        self._route = endpoint
        self.url = endpoint.url
        self._tls: AgentTls | None = None
        if endpoint.tls is not None and endpoint.socket_path is None:
            from executor.mesos.agenttls import AgentTls

            self._tls = AgentTls.load(endpoint.tls)
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        self._token = auth_token or None
        # What is read of an answer: enough to find the token where the quoted part ends
        self._quoted_bytes = _MAX_DETAIL_BYTES + len(self._token or "") + 1
        if auth_token:
            self._headers["Authorization"] = _bearer(auth_token)  # BadToken
        self._call_timeout_secs = call_timeout_secs
        self._lock = threading.Lock()  # guards the call connection
        self._call_conn: http.client.HTTPConnection | None = None

    def subscribe(
        self, body: bytes, connect_timeout_secs: float = CONNECT_TIMEOUT_SECS,
        answer_timeout_secs: float | None = None,
    ) -> tuple[CallResult, AgentStream | None]:
        """POSTs SUBSCRIBE on a connection of its own; on 200 returns the open stream.

        `answer_timeout_secs` bounds the wait for the answer, and then for each read of the
        stream until `AgentStream.settle()` (None: as long as it takes): a frozen agent
        (stopped, deadlocked; the kernel still accepts the connection) must not hold the
        SUBSCRIBE past MESOS_RECOVERY_TIMEOUT (docs/mesos.md §15)."""
        conn = None
        started = time.monotonic()
        # an error answer's body, read only for the log line, gets no more than a call's
        body_by = started + min(answer_timeout_secs or math.inf, self._call_timeout_secs)
        try:
            conn = _connect(self._route, self._tls, connect_timeout_secs, answer_timeout_secs)
            sock = conn.sock
            assert sock is not None
            conn.request("POST", self._route.path, body=body, headers=self._headers)
            response = conn.getresponse()
        except (http.client.HTTPException, OSError) as e:
            if conn is not None:
                conn.close()
            if (short := no_room(e)) is not None:  # said as such, not as the module file it could not open
                return CallResult(Outcome.TRANSIENT, None, short, no_room=True), None
            return CallResult(Outcome.TRANSIENT, None, _error_words(e)), None
        if response.status == 200:
            settle_by = None if answer_timeout_secs is None else started + answer_timeout_secs
            return CallResult(Outcome.ACCEPTED, 200), AgentStream(conn, response, sock, settle_by)
        try:
            detail = _detail(_answer_body(response, sock, self._quoted_bytes, body_by)[0], self._token)
        except Exception as e:  # the error body is only for the log line
            detail = f"(body unreadable: {_error_words(e)})"
        finally:
            conn.close()
        return CallResult(_classify(response.status, 200), response.status, detail), None

    def post(self, body: bytes) -> CallResult:
        """POSTs one call (UPDATE, MESSAGE) on the kept-alive call connection; 202 is
        ACCEPTED. A connection the agent closed meanwhile is replaced before the call."""
        with self._lock:
            try:
                conn = self._open_call_conn()
                deadline = time.monotonic() + self._call_timeout_secs
                sock = conn.sock
                assert sock is not None
                sock.settimeout(self._call_timeout_secs)  # the last body's read shortened it
                conn.request("POST", self._route.path, body=body, headers=self._headers)
                response = conn.getresponse()
                content, whole = _answer_body(response, sock, self._quoted_bytes, deadline)
                if response.will_close or not whole:
                    self._drop_call_conn()
            except (http.client.HTTPException, OSError) as e:
                self._drop_call_conn()
                return CallResult(Outcome.TRANSIENT, None, _error_words(e))
        outcome = _classify(response.status, 202)
        detail = "" if outcome is Outcome.ACCEPTED else _detail(content, self._token)
        return CallResult(outcome, response.status, detail)

    def ready_calls(self) -> None:
        """Opens the call connection before the first call needs it (its connect and, over
        TLS, its handshake: about as long as the rest of a LAUNCH's way to TASK_STARTING),
        unless one is open. One that cannot be had is left to that call, which connects
        again and says why it could not."""
        with self._lock:
            try:
                self._open_call_conn()
            except (http.client.HTTPException, OSError):
                self._drop_call_conn()

    def _open_call_conn(self) -> http.client.HTTPConnection:
        """The call connection (lock held): the kept-alive one, or a new one in place of
        none or of one the agent closed."""
        conn = self._call_conn
        if conn is None or _dropped(conn):
            if conn is not None:
                conn.close()
            self._call_conn = None
            conn = self._call_conn = _connect(self._route, self._tls, CONNECT_TIMEOUT_SECS,
                                              self._call_timeout_secs)
        return conn

    def _drop_call_conn(self) -> None:
        conn, self._call_conn = self._call_conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Closes the call connection; a call in flight then fails (TRANSIENT) at once."""
        conn, self._call_conn = self._call_conn, None
        if conn is not None:
            conn.close()
