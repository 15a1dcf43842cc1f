"""HTTP transport to the Mesos agent's v1 executor endpoint: a thin adapter over `requests`.

This module owns the two `requests` Sessions (one for the long-lived SUBSCRIBE stream, one
for the UPDATE/MESSAGE calls, which must not share the stream's connection; docs/mesos.md §3),
the URL, the exact headers and the classification of every HTTP outcome:

    202 (calls) / 200 (SUBSCRIBE)           -> ACCEPTED
    403, 404, 503, other 5xx but 501, none   -> TRANSIENT (retry with back-off)
    any other status                        -> REJECTED (a bug or a misconfiguration)

It never raises to its callers except `StreamBroken` while iterating a stream; it never
decides about retries, never touches the protocol state, never logs a header (the bearer
token must not reach any log line) and never logs at all: the driver logs state changes.
"""
from __future__ import annotations

import enum
import socket
from collections.abc import Iterator

import attrs
import requests
import urllib3

API_PATH = "/api/v1/executor"
CONNECT_TIMEOUT_SECS = 5.0
CALL_TIMEOUT_SECS = 10.0  # read timeout of a call; the stream has none (heartbeats: 30 min)
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

    def describe(self) -> str:
        if self.status is None:
            return self.detail
        return f"HTTP {self.status}" + (f": {self.detail}" if self.detail else "")


class StreamBroken(Exception):
    """The event stream ended without its terminating chunk (reset, truncation, abort)."""


def agent_url(endpoint: str) -> str:
    """`MESOS_AGENT_ENDPOINT` (`ip:port`, an IPv6 ip unbracketed) -> the executor API URL."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"agent endpoint {endpoint!r} is not host:port")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}{API_PATH}"


def _classify(status: int, accepted: int) -> Outcome:
    if status == accepted:
        return Outcome.ACCEPTED
    # 403 "Executor is not subscribed": the agent holds us as REGISTERING (it restarted and
    # has not seen our SUBSCRIBE yet). Keep the call and retry: dropping it would lose an
    # update, and the resubscription carries it anyway.
    if status in (403, 404, 503) or (status >= 500 and status != 501):
        return Outcome.TRANSIENT
    return Outcome.REJECTED


def _detail(body: bytes) -> str:
    text = body[:_MAX_DETAIL_BYTES].decode("utf-8", "replace").strip()
    return text + (" ..." if len(body) > _MAX_DETAIL_BYTES else "")


def _error_words(error: BaseException) -> str:
    """"ConnectionError: [Errno 111] Connection refused": the outer type, the root cause."""
    root, seen = error, set()
    while id(root) not in seen:
        seen.add(id(root))
        inner = getattr(root, "reason", None)  # urllib3's MaxRetryError
        if not isinstance(inner, BaseException) and root.args and isinstance(
                root.args[0], BaseException):
            inner = root.args[0]  # requests wraps urllib3's error as its first argument
        if not isinstance(inner, BaseException):
            inner = root.__cause__ or root.__context__
        if not isinstance(inner, BaseException):
            break
        root = inner
    return f"{type(error).__name__}: {root}"


class AgentStream:
    """One open SUBSCRIBE response: iterate `chunks()`; `abort()` from any thread ends it."""

    def __init__(self, response: requests.Response) -> None:
        self._response = response
        self._aborted = False

    def chunks(self) -> Iterator[bytes]:
        """Yields HTTP chunks as they arrive; returns on a clean EOF, raises StreamBroken."""
        try:
            for chunk in self._response.iter_content(chunk_size=STREAM_READ_BYTES):
                if chunk:
                    yield chunk
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError,
                ValueError, AttributeError) as e:
            # AttributeError/ValueError: urllib3 reading a connection closed under it by abort()
            raise StreamBroken("aborted" if self._aborted else _error_words(e)) from None
        if self._aborted:
            raise StreamBroken("aborted")

    def abort(self) -> None:
        """Wakes a reader blocked in recv by shutting the socket down; never raises."""
        self._aborted = True
        sock = _socket_of(self._response)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        try:
            self._response.close()
        except Exception:  # closing a broken connection may fail in many ways; it is gone
            pass


def _socket_of(response: requests.Response) -> socket.socket | None:
    raw = getattr(response, "raw", None)
    connection = getattr(raw, "_connection", None)  # urllib3 2.x keeps it while streaming
    sock = getattr(connection, "sock", None)
    if isinstance(sock, socket.socket):
        return sock
    fp = getattr(getattr(raw, "_fp", None), "fp", None)  # http.client's buffered socket file
    sock = getattr(getattr(fp, "raw", None), "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


class AgentTransport:
    """POSTs to the agent: `subscribe()` opens the stream, `post()` sends one call."""

    def __init__(
        self,
        endpoint: str,
        auth_token: str | None = None,
        call_timeout_secs: float = CALL_TIMEOUT_SECS,
    ) -> None:
        self.url = agent_url(endpoint)
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth_token:
            self._headers["Authorization"] = f"Bearer {auth_token}"
        self._call_timeout_secs = call_timeout_secs
        self._stream_session = requests.Session()
        self._call_session = requests.Session()
        for session in (self._stream_session, self._call_session):
            session.trust_env = False  # no proxies or netrc between an executor and its agent

    def subscribe(
        self, body: bytes, connect_timeout_secs: float = CONNECT_TIMEOUT_SECS
    ) -> tuple[CallResult, AgentStream | None]:
        """POSTs SUBSCRIBE; on 200 returns the open stream (no read timeout)."""
        try:
            response = self._stream_session.post(
                self.url, data=body, headers=self._headers, stream=True,
                timeout=(connect_timeout_secs, None),
            )
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as e:
            return CallResult(Outcome.TRANSIENT, None, _error_words(e)), None
        if response.status_code == 200:
            return CallResult(Outcome.ACCEPTED, 200), AgentStream(response)
        try:
            detail = _detail(response.raw.read(_MAX_DETAIL_BYTES + 1, decode_content=True) or b"")
        except Exception as e:  # the error body is only for the log line
            detail = f"(body unreadable: {_error_words(e)})"
        finally:
            response.close()
        return CallResult(_classify(response.status_code, 200), response.status_code, detail), None

    def post(self, body: bytes) -> CallResult:
        """POSTs one call (UPDATE, MESSAGE); 202 is ACCEPTED."""
        try:
            response = self._call_session.post(
                self.url, data=body, headers=self._headers,
                timeout=(CONNECT_TIMEOUT_SECS, self._call_timeout_secs),
            )
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as e:
            return CallResult(Outcome.TRANSIENT, None, _error_words(e))
        outcome = _classify(response.status_code, 202)
        detail = "" if outcome is Outcome.ACCEPTED else _detail(response.content)
        return CallResult(outcome, response.status_code, detail)

    def close(self) -> None:
        self._stream_session.close()
        self._call_session.close()
