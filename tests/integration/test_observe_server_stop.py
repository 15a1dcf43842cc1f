"""The tests' in-process observer (tests/support/observer_server.py) stops cleanly while a
worker is still answering a connection: the case where stopping it by queueing its close on
its trigger (`server.trigger.pull_trigger(server.close)`) closed the trigger's pipe under
the worker, whose pull when its answer was ready then failed (EBADF), and where the
single-address server's close left that connection's channel to the loop."""
from __future__ import annotations

import logging
import socket
import threading

import pytest

from config.registry import RegistrySettings
from executor.observe.reader import Reader
from executor.observe.server import Limits, make_server
from tests.support.observer_server import serving, stop

pytestmark = pytest.mark.timeout(60)


class _HeldReader(Reader):
    """A reader whose task list waits until the test lets it go: a worker mid-answer."""

    def __init__(self, settings: RegistrySettings) -> None:
        super().__init__(settings)
        self.entered, self.release = threading.Event(), threading.Event()

    def tasks_and_unreadable(self, viewer=None):  # type: ignore[no-untyped-def, override]
        self.entered.set()
        assert self.release.wait(20)
        return [], []


def test_stopping_while_a_worker_answers_closes_the_pipe_only_after_the_worker(tmp_path, caplog):
    reader = _HeldReader(RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=60))
    caplog.set_level(logging.DEBUG, logger="waitress")
    server = make_server(reader, "127.0.0.1", 0, Limits(idle_secs=30, loop_secs=1))
    loop = threading.Thread(target=server.run, daemon=True)
    loop.start()
    stopping = threading.Thread(target=stop, args=(server, loop))
    try:
        with socket.create_connection(server.socket.getsockname()[:2], timeout=20) as client:
            client.sendall(b"GET /api/tasks HTTP/1.1\r\nHost: localhost\r\n\r\n")  # kept alive
            assert reader.entered.wait(20)
            stopping.start()
            loop.join(20)  # the loop left while the worker still answers
            assert not loop.is_alive()
    finally:
        reader.release.set()  # the worker's answer is ready: it pulls the trigger
        stopping.join(20)
    assert not stopping.is_alive()
    assert server.trigger._closed and server.socket is None
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]  # a worker's exception
    assert not failures, [(r.getMessage(), r.exc_info and r.exc_info[1]) for r in failures]


def test_serving_yields_a_server_that_answers_and_is_closed_after(tmp_path):
    reader = Reader(RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=60))
    with serving(reader, Limits(idle_secs=30, loop_secs=1)) as server:
        kept = socket.create_connection(server.socket.getsockname()[:2], timeout=20)  # open as the block ends
        kept.sendall(b"GET /api/tasks HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert kept.recv(12) == b"HTTP/1.1 200"
    with kept:  # the rest of the answer, then the end: the server closed it (no timeout)
        assert b"".join(iter(lambda: kept.recv(65536), b"")).endswith(b"\r\n\r\n[]")
    assert server.trigger._closed and server.socket is None
    assert not [t for t in threading.enumerate() if getattr(t, "_target", None) == server.run]
