"""The observer's server while others hold every connection slot with connections that say
nothing: a new connection is still accepted, and the connection that has been silent
longest (nothing being answered on it) is closed to make room, so a real request is
answered at once, not after the request deadline has closed the silent ones a slot-full at
a time (was: 500 silent connections on 64 slots made a request wait 78 s).

Real waitress servers on 127.0.0.1 in this process (`tests/support/observer_server.py`),
real sockets, every one closed on the way out. The deadline and the loop's wake-up are the
defaults (10 s), so the old way could not answer in under 10 s; each bound here is a few
seconds, many times what an answer on 127.0.0.1 takes."""
from __future__ import annotations

import contextlib
import select
import socket
import time
from collections.abc import Iterator

import pytest

from config.registry import RegistrySettings
from executor.observe.reader import Reader
from executor.observe.server import Limits
from tests.support.observer_server import serving

pytestmark = pytest.mark.timeout(120)

LIMITS = Limits(connections=8)  # request_secs and loop_secs: the defaults (10 s)
SILENT = 5 * LIMITS.connections  # silent connections: five times the slots
ANSWER_BOUND_SECS = 5.0  # an answer on 127.0.0.1 takes milliseconds; the old way at least 10 s
ASK = b"GET /api/tasks HTTP/1.0\r\nHost: localhost\r\n\r\n"


@pytest.fixture
def port(tmp_path):
    reader = Reader(RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=60))
    with serving(reader, LIMITS) as srv:
        yield srv.socket.getsockname()[1]


@contextlib.contextmanager
def _silent(port: int, count: int) -> Iterator[list[socket.socket]]:
    """`count` connections to `port` that send nothing, closed when the block ends."""
    opened: list[socket.socket] = []
    try:
        for _ in range(count):
            opened.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        yield opened
    finally:
        for sock in opened:
            sock.close()


def _answer_secs(port: int) -> tuple[bytes, float]:
    """A request's answer on a new connection, and how long it took (at most the bound and
    a little: the socket's timeout)."""
    started = time.monotonic()
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_BOUND_SECS) as sock:
        sock.sendall(ASK)
        try:
            while chunk := sock.recv(4096):
                answer += chunk
        except TimeoutError:
            return answer, time.monotonic() - started  # no answer, or not all of it, within the bound
    return answer, time.monotonic() - started


def test_a_request_is_answered_while_silent_connections_fill_every_slot(port):
    with _silent(port, SILENT):
        answer, took = _answer_secs(port)
    assert answer.startswith(b"HTTP/1.0 200"), f"no answer in {took:.1f} s: {answer[:80]!r}"
    assert took < ANSWER_BOUND_SECS


def test_requests_are_answered_while_a_client_keeps_opening_silent_connections(port):
    """Silent connections opened again and again, a slot-full at a time, between requests:
    each request is answered at once."""
    with contextlib.ExitStack() as held:
        for _ in range(3):
            held.enter_context(_silent(port, 2 * LIMITS.connections))
            answer, took = _answer_secs(port)
            assert answer.startswith(b"HTTP/1.0 200"), f"no answer in {took:.1f} s: {answer[:80]!r}"
            assert took < ANSWER_BOUND_SECS


def test_the_connection_closed_for_room_is_the_one_silent_longest(port):
    """The connection silent longest is closed for a new one; one that spoke after it (a
    request answered, kept alive) stays open. Waitress counts its listening socket and its
    wake-up pipe among the connections: `LIMITS.connections - 2` are clients'."""
    first = socket.create_connection(("127.0.0.1", port), timeout=10)
    kept = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        time.sleep(0.2)
        kept.sendall(ASK.replace(b"HTTP/1.0", b"HTTP/1.1"))
        answer = b""
        while not answer.endswith(b"\r\n\r\n[]"):  # the whole answer: nothing of it left to read
            chunk = kept.recv(4096)
            assert chunk, f"closed after {answer!r}"
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200")
        with _silent(port, LIMITS.connections - 2 - 2):  # every slot taken
            answer, _ = _answer_secs(port)
            assert answer.startswith(b"HTTP/1.0 200")
            assert first.recv(100) == b"", "the connection silent longest is still open"
            assert not select.select([kept], [], [], 0.5)[0], "a connection spoken on later was closed"
    finally:
        first.close()
        kept.close()
