"""The observer's server against clients that send a request slowly: a request not whole
within `Limits.request_secs` of its first byte (or of its connection, for a first request
never begun) is closed, however steadily it drips, so a few such clients cannot hold every
connection slot and shut every other client out; a kept-alive connection between two
requests waits the idle timeout, as before.

Real waitress servers on 127.0.0.1 in this process (`tests/support/observer_server.py`),
real sockets; the deadlines are short and each bound is many times what it needs."""
from __future__ import annotations

import socket
import time

import pytest

from config.registry import RegistrySettings
from executor.observe.reader import Reader
from executor.observe.server import Limits
from tests.support.observer_server import serving
from tests.support.raw_http import closed, one_answer

pytestmark = pytest.mark.timeout(90)

DRIP_SECS = 25  # how long a dripping client goes on: under the idle timeout, far past the deadline
LIMITS = Limits(connections=3, idle_secs=60, loop_secs=1, request_secs=2)
HEADER = b"GET /api/tasks HTTP/1.1\r\nHost: localhost\r\nX-Pad: " + b"a" * 4000


@pytest.fixture
def port(tmp_path):
    reader = Reader(RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=60))
    with serving(reader, LIMITS) as srv:
        yield srv.socket.getsockname()[1]


def _drip_until_closed(sock: socket.socket, first: bytes = b"") -> float | None:
    """Send `first`, then HEADER a byte every 0.2 s (never its end) until the server closes
    the connection: the seconds that took; None when it was still open after DRIP_SECS."""
    started = time.monotonic()
    sock.sendall(first)
    for byte in HEADER:
        if closed(sock):
            return time.monotonic() - started
        if time.monotonic() - started > DRIP_SECS:
            return None
        try:
            sock.send(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - started
        time.sleep(0.2)
    return None


def _answer(port: int, timeout: float) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"GET /api/tasks HTTP/1.0\r\nHost: localhost\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    return answer


def test_a_request_dripped_a_byte_at_a_time_is_closed_at_its_deadline(port):
    """Each byte is activity, so the idle timeout never comes: only the request's deadline
    ends it (was: held for as long as the client dripped)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        took = _drip_until_closed(sock)
    assert took is not None, f"still open after {DRIP_SECS} s of a request never whole"
    assert took < LIMITS.request_secs + 2 * LIMITS.loop_secs + 1  # its deadline, seen at a wake


def test_a_connection_that_sends_nothing_is_closed_at_the_request_deadline(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        started = time.monotonic()
        while not closed(sock) and time.monotonic() - started < DRIP_SECS:
            time.sleep(0.1)
        assert time.monotonic() - started < DRIP_SECS, "a silent connection waited for the idle timeout"
        assert time.monotonic() - started < LIMITS.request_secs + 2 * LIMITS.loop_secs + 1  # its deadline


def test_clients_dripping_on_every_connection_slot_do_not_shut_others_out(port):
    """Three dripping clients take the three slots; a fourth client's request is answered
    once the deadline closed one of them (was: it waited for as long as they dripped)."""
    drippers = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(LIMITS.connections)]
    try:
        for sock in drippers:
            sock.sendall(HEADER[:1])
        started = time.monotonic()
        answer = b""
        while not answer and time.monotonic() - started < DRIP_SECS:
            for sock in drippers:
                if not closed(sock):
                    sock.send(b"a")  # activity: never idle
            try:
                answer = _answer(port, timeout=0.5)
            except (TimeoutError, ConnectionResetError):
                answer = b""
        assert answer.startswith(b"HTTP/1.0 200"), f"no answer within {DRIP_SECS} s: {answer[:80]!r}"
    finally:
        for sock in drippers:
            sock.close()


def test_a_kept_alive_connection_waits_the_idle_timeout_between_requests(port):
    """After an answer the connection is idle, not late: past the request deadline a next
    request on it is answered."""
    ask = b"GET /api/tasks HTTP/1.1\r\nHost: localhost\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(ask)
        assert one_answer(sock) == b"[]"
        time.sleep(LIMITS.request_secs + 2 * LIMITS.loop_secs + 1)
        assert not closed(sock)
        sock.sendall(ask)
        assert one_answer(sock) == b"[]"
