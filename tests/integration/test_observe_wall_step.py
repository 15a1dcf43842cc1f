"""The observer's idle connections across a step of the wall clock (NTP stepping it, a VM
resumed and its clock set): a kept-alive connection is closed `Limits.idle_secs` after its
last byte, counted on a clock no step moves.

Waitress counts a connection's silence on the wall clock (`time.time()`), and the observer's
loop scheduled its look for idle connections on it too: a step back of an hour kept every
idle connection open for that hour (no look was due, and each one's last byte looked an
hour ahead), and a step forward closed every kept-alive connection at once, between two
requests of a client that had been silent a moment.

A real observer server (`tests/support/observer_server.py`) in a child process whose wall
clock the test steps (`tests/support/wallclock.py`: an LD_PRELOAD library, the host's clock
untouched); real sockets on 127.0.0.1.
"""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.raw_http import closed, one_answer
from tests.support.stoker_proc import REPO
from tests.support.waiting import readline_within, wait_for
from tests.support.wallclock import WallClock

pytestmark = pytest.mark.timeout(60)

HOUR = 3600.0
ASK = b"GET /api/tasks HTTP/1.1\r\nHost: localhost\r\n\r\n"

SERVER = """
import sys
from config.registry import RegistrySettings
from executor.observe.reader import Reader
from executor.observe.server import Limits
from tests.support.observer_server import serving
reader = Reader(RegistrySettings(registry_root=sys.argv[1], registry_retention_secs=60))
limits = Limits(connections=8, idle_secs=int(sys.argv[2]), loop_secs=1, request_secs=60)
with serving(reader, limits) as server:
    print(server.socket.getsockname()[1], flush=True)
    sys.stdin.readline()
"""


def _serving(tmp_path: Path, clock: WallClock, idle_secs: int) -> Iterator[int]:
    env = clock.env()
    env["PYTHONPATH"] = str(REPO)
    child = subprocess.Popen([sys.executable, "-c", SERVER, str(tmp_path / "root"), str(idle_secs)],
                             cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        yield int(readline_within(child, 30))
    finally:
        child.kill()
        child.wait(10)


def _kept_alive(port: int) -> socket.socket:
    """A connection on which one request was answered, kept alive."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(ASK)
    assert one_answer(sock) == b"[]"
    return sock


def test_an_idle_connection_is_closed_on_time_after_the_wall_clock_steps_back(tmp_path):
    clock = WallClock(tmp_path)
    idle_secs = 1
    for port in _serving(tmp_path, clock, idle_secs):
        with _kept_alive(port) as sock:
            clock.step_to(-HOUR)
            started = time.monotonic()
            # Its idle time and two turns of the loop (1 s each) close it; it stayed open an hour.
            wait_for(lambda: closed(sock), idle_secs + 6, 0.05,
                     message="the idle connection was closed")
            assert time.monotonic() - started >= idle_secs - 0.1


def test_a_kept_alive_connection_stays_open_when_the_wall_clock_steps_forward(tmp_path):
    clock = WallClock(tmp_path)
    for port in _serving(tmp_path, clock, idle_secs=10):
        with _kept_alive(port) as sock:
            clock.step_to(HOUR)
            time.sleep(2.5)  # two turns of the loop at least: each would have looked
            assert not closed(sock), "a connection silent 2.5 s was closed as idle (10 s)"
            sock.sendall(ASK)
            assert one_answer(sock) == b"[]"
