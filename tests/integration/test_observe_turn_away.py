"""The observer's server with no descriptor left, served in this process
(`RoomMakingServer._turn_away`, executor/observe/deadline.py): each connection waiting to be
accepted is answered 503 on the descriptor kept for it, its request read first, with one
WARNING line until an accept works again; with not even that descriptor, the listener rests
until the loop's next wake-up instead of spinning. tests/integration/test_observe_no_descriptor.py
checks the same of an observer in a child, with its CPU; here the clients' sockets are made
before the descriptors run out, so server and clients can share this process's limit."""
from __future__ import annotations

import fcntl
import logging
import os
import socket
import time

import pytest

from config.registry import RegistrySettings
from executor.observe.reader import Reader
from executor.observe.server import Limits
from tests.support.limits import no_descriptor_left
from tests.support.observer_server import serving

pytestmark = pytest.mark.timeout(60)

ASK = b"GET /api/tasks HTTP/1.0\r\nHost: localhost\r\n\r\n"
TURNED_AWAY = b"the observer has no file descriptor left (ulimit -n); try again\n"


def _answer(client: socket.socket, secs: float = 10) -> bytes:
    data = b""
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        chunk = client.recv(65536)
        if not chunk:
            return data
        data += chunk
    raise AssertionError(f"no whole answer in 10 s: {data[:200]!r}")


@pytest.fixture
def server(tmp_path):
    reader = Reader(RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=60))
    with serving(reader, Limits()) as served:
        yield served


def _refused(server, count: int, **short) -> list[bytes]:
    """`count` connections made while no descriptor is left, each answer whole."""
    port = server.socket.getsockname()[1]
    clients = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for client in clients:
            client.settimeout(10)
        with no_descriptor_left(**short):
            for client in clients:
                client.connect(("127.0.0.1", port))
                client.sendall(ASK + b"x" * 100_000)  # more than a socket's buffer holds: read, or reset
            return [_answer(client) for client in clients]
    finally:
        for client in clients:
            client.close()


def test_each_connection_with_no_descriptor_left_is_answered_503_and_said_once(server, caplog):
    caplog.set_level(logging.INFO, logger="executor.observe")
    answers = _refused(server, 4)
    head = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(TURNED_AWAY))
    assert answers == [head + TURNED_AWAY] * 4
    said = [r.getMessage() for r in caplog.records if "observer_connection_refused" in r.getMessage()]
    assert said == ["observer_connection_refused error=\"Too many open files (EMFILE)\" reason=\"no descriptor is "
                    "left for a new connection (ulimit -n): each is answered 503 until one is\""], said
    port = server.socket.getsockname()[1]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:  # served again
        client.sendall(ASK)
        assert _answer(client).startswith(b"HTTP/1.0 200 OK")
    assert server.spare >= 0 and not server.short
    assert os.readlink(f"/proc/self/fd/{server.spare}") == os.devnull
    assert fcntl.fcntl(server.spare, fcntl.F_GETFD) & fcntl.FD_CLOEXEC  # never a child's
    _refused(server, 1)
    said = [r for r in caplog.records if "observer_connection_refused" in r.getMessage()]
    assert len(said) == 2, "a new shortage is said again"


def test_the_kept_descriptor_is_closed_with_the_server(tmp_path):
    reader = Reader(RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=60))
    with serving(reader, Limits()) as served:
        assert served.spare >= 0
    assert served.spare < 0


@pytest.fixture
def quick_server(tmp_path):
    """An observer whose loop wakes every second (`Limits.loop_secs`; waitress keeps whole seconds), its rest as long."""
    reader = Reader(RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=60))
    with serving(reader, Limits(loop_secs=1)) as served:
        yield served


def test_with_not_even_the_kept_descriptor_the_listener_rests_then_keeps_one_again(quick_server):
    """The kept descriptor taken meanwhile (a worker thread's file opened between its close and
    the accept): the listener rests until the loop's next wake-up, then accepts the connection;
    the descriptor is kept again as an accept works (was: lost for good, every later
    shortage a rest of the loop's interval instead of a 503 at once)."""
    server = quick_server
    os.close(server.spare)
    server.spare = -1
    port = server.socket.getsockname()[1]
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.settimeout(10)
    try:
        with no_descriptor_left():
            client.connect(("127.0.0.1", port))
            client.sendall(ASK)
            deadline = time.monotonic() + 5
            while server.resting_until == 0.0 and time.monotonic() < deadline:
                time.sleep(0.01)
            rested = server.resting_until - time.monotonic()
        assert 0 < rested <= 1
        assert _answer(client).startswith(b"HTTP/1.0 200 OK")  # accepted once it woke with a descriptor free
    finally:
        client.close()
    assert server.spare >= 0 and not server.short
    assert _refused(server, 1)[0].startswith(b"HTTP/1.0 503 ")  # the next shortage: answered at once
