"""The observer's I/O loop sleeps while nothing is due by a time (`executor/observe/deadline.py`,
`QuietLoop`): with no connection open it does not wake at all; with one open it wakes every
`Limits.loop_secs`, and closes it once idle `idle_secs`. Was: waitress' loop woke every
`loop_secs` (10 s) whatever, 2-6 ms of CPU a wake on a VM whose idle CPUs were slow to wake."""
from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from config.registry import RegistrySettings
from executor.host.signals import kept_from_new_threads
from executor.observe.deadline import IDLE_WAIT_SECS, DeadlineChannel, QuietLoop, RoomMakingServer, timed
from executor.observe.reader import Reader
from executor.observe.server import Limits, make_server
from tests.integration.test_observe_server import resolver  # noqa: F401  (a fixture: observer.test)
from tests.support.observer_server import _loop_map, stop

pytestmark = pytest.mark.timeout(60)

LIMITS = Limits(idle_secs=2, loop_secs=1, request_secs=7)


@contextlib.contextmanager
def looping(tmp_path, host: str = "127.0.0.1") -> Iterator[tuple[Any, threading.Thread]]:
    """The observer's server and its loop's thread, which blocks every signal (a signal to
    this process would wake it: the wakes counted are the loop's own)."""
    reader = Reader(RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=60))
    server = make_server(reader, host, 0, LIMITS)
    with kept_from_new_threads(signal.valid_signals()):
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
    try:
        yield server, thread
    finally:
        stop(server, thread)


def wakes(thread: threading.Thread) -> int:
    """The times `thread` was switched out (each wait's end is one)."""
    with open(f"/proc/self/task/{thread.native_id}/status") as status:
        return sum(int(line.split()[1]) for line in status if "ctxt_switches" in line)


def counted(thread: threading.Thread, secs: float) -> int:
    before = wakes(thread)
    time.sleep(secs)
    return wakes(thread) - before


def test_with_no_connection_open_the_loop_does_not_wake(tmp_path):
    with looping(tmp_path) as (server, thread):
        time.sleep(0.2)  # the loop at its wait
        assert counted(thread, 2.5) == 0  # waitress' own loop: 2 (every loop_secs, 1 s)
        assert isinstance(server.asyncore, QuietLoop)


def test_a_server_of_several_addresses_has_each_listener_s_deadline_and_the_quiet_loop(tmp_path, resolver):  # noqa: F811
    with looping(tmp_path, "observer.test") as (server, thread):  # 127.0.0.1 and 127.0.0.2
        listeners = [d for d in _loop_map(server).values() if hasattr(d, "channel_class")]
        assert [type(d) for d in listeners] == [RoomMakingServer, RoomMakingServer]
        assert all(issubclass(d.channel_class, DeadlineChannel) and d.channel_class.request_secs == LIMITS.request_secs
                   for d in listeners)
        assert isinstance(server.asyncore, QuietLoop)
        time.sleep(0.2)
        assert counted(thread, 2.5) == 0


def test_with_a_connection_open_it_wakes_every_loop_secs_and_closes_it_once_idle(tmp_path):
    with looping(tmp_path) as (server, thread):
        with socket.create_connection(server.socket.getsockname()[:2], timeout=10) as client:
            time.sleep(0.2)  # accepted: a channel in the map
            assert counted(thread, 1.5) >= 1
            began = time.monotonic()
            assert client.recv(1) == b""  # closed by the observer: idle 2 s, seen within 1 s
            assert time.monotonic() - began < LIMITS.idle_secs + 2 * LIMITS.loop_secs
        time.sleep(0.2)
        assert counted(thread, 2.5) == 0  # none open again: no wake


def test_the_loop_is_timed_only_while_a_connection_is_open_or_a_listener_rests(tmp_path):
    reader = Reader(RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=60))
    server = make_server(reader, "127.0.0.1", 0, LIMITS)
    try:
        dispatchers = _loop_map(server).values()
        assert not timed(dispatchers)  # the listener and the trigger
        server.resting_until = time.monotonic() + 5  # no descriptor, not even the spare
        assert timed(dispatchers)
        server.resting_until = time.monotonic() - 0.001
        assert not timed(dispatchers)
    finally:
        server.close()
        server.task_dispatcher.shutdown()
    assert IDLE_WAIT_SECS >= 3600  # finite, and far past any wait the observer has to keep


def test_a_listener_that_is_not_waitress_tcp_one_is_refused_by_name(tmp_path):
    from waitress.server import create_server

    from executor.observe.deadline import with_deadline

    unix = create_server(lambda environ, start_response: [], unix_socket=str(tmp_path / "observe.sock"))
    try:
        with pytest.raises(TypeError, match="^not a TCP listener of waitress: UnixWSGIServer$"):
            with_deadline(unix, 5.0)
        assert not isinstance(unix.asyncore, QuietLoop)  # left as it was
    finally:
        unix.close()
        unix.task_dispatcher.shutdown()
