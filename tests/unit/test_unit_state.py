"""`executor/local/unitstate.py`: what `stoker run` tells systemd as a `Type=notify` unit's
main process, read back from a real AF_UNIX datagram socket: READY=1 with the first RUNNING
update, a STATUS= line for each other task state, STOPPING=1, and the wait between attempts
cut in pieces to feed the watchdog (a period of 0.1 s here)."""
from __future__ import annotations

import os
import socket
import time

import pytest

from executor.events import ProcessState, ProcessTransition, TaskStage, TaskState, TaskTransition
from executor.host.sdnotify import notifier
from executor.local.unitstate import UnitState
from executor.task.status import Update
from tests.support.fake_ports import HeardReporter
from tests.support.notify_socket import notify_socket


@pytest.fixture
def bound(tmp_path):
    with notify_socket(tmp_path.name) as pair:
        yield pair


def _received(sock: socket.socket) -> list[bytes]:
    sock.settimeout(0)
    got = []
    while True:
        try:
            got.append(sock.recv(4096))
        except BlockingIOError:
            return got


def test_the_task_s_states_go_to_systemd_and_to_the_console(bound):
    name, sock = bound
    told = notifier({"NOTIFY_SOCKET": "@" + name})
    assert told is not None
    unit, inner = UnitState(told), HeardReporter()
    assert unit.beat is None  # no WatchdogSec=
    reporter = unit.reporter(inner, "svc.0")
    starting = TaskTransition(TaskStage.NEW, TaskStage.STARTING, "task launched")
    running = TaskTransition(TaskStage.STARTING, TaskStage.RUNNING, "processes started")
    process = ProcessTransition("web", 0, ProcessState.WAITING, ProcessState.RUNNING, "starting run 0")
    up = Update(TaskState.RUNNING, "processes started")
    for t in (starting, process, running):
        reporter.on_transition(t)
    reporter.on_update(Update(TaskState.STARTING, "task launched"))
    reporter.on_update(up)
    unit.status("restarting in 1.0 s")
    unit.stopping("SIGTERM")
    unit.close()
    assert inner.heard == [starting, process, running, Update(TaskState.STARTING, "task launched"), up]
    assert _received(sock) == [b"STATUS=svc.0 STARTING: task launched",  # RUNNING's own: with READY=1
                               b"READY=1\nSTATUS=svc.0 RUNNING: processes started",
                               b"STATUS=restarting in 1.0 s", b"STOPPING=1\nSTATUS=stopping: SIGTERM"]


def test_the_wait_between_attempts_feeds_the_watchdog(bound):
    name, sock = bound
    told = notifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())})
    assert told is not None
    unit = UnitState(told)
    assert unit.beat is not None
    waits: list[float] = []

    def stop(secs: float) -> bool:
        waits.append(secs)
        time.sleep(secs)
        return False

    started = time.monotonic()
    assert unit.wait(stop, 0.35) is False
    assert 0.35 <= time.monotonic() - started < 5
    assert all(secs <= 0.1 + 1e-9 for secs in waits) and waits[-1] == 0  # in pieces, then the last look
    feeds = [d for d in _received(sock) if d == b"WATCHDOG=1"]
    assert 3 <= len(feeds) <= 5
    assert unit.wait(lambda secs: True, 10.0) is True  # a stop ends it at once
    unit.close()


def test_without_a_watchdog_the_wait_is_one_wait(bound):
    name, _ = bound
    told = notifier({"NOTIFY_SOCKET": "@" + name})
    assert told is not None
    unit = UnitState(told)
    waits: list[float] = []
    assert unit.wait(lambda secs: waits.append(secs) or False, 2.5) is False and waits == [2.5]
    unit.close()
