"""systemd's notification variables read, and messages sent to a real AF_UNIX datagram
socket (executor/host/sdnotify.py; `stoker run` end to end: tests/e2e/test_systemd.py)."""
from __future__ import annotations

import logging
import os
import queue
import socket

import pytest

from executor.host.sdnotify import STATUS_CHARS, notifier, one_line
from tests.support.fake_clock import FakeClock
from tests.support.limits import descriptors, opened_since
from tests.support.notify_socket import notify_socket


@pytest.fixture
def abstract_socket(tmp_path):
    with notify_socket(tmp_path.name) as bound:
        yield bound


def test_an_at_sign_names_the_abstract_namespace(abstract_socket):
    name, sock = abstract_socket
    told = notifier({"NOTIFY_SOCKET": "@" + name})
    assert told is not None
    told.ready("svc.0 RUNNING: up")
    told.ready("svc.0 RUNNING: again")  # READY=1 once: later ones only say the status
    told.stopping("stopped by SIGTERM")
    told.close()
    assert [sock.recv(4096) for _ in range(3)] == [
        b"READY=1\nSTATUS=svc.0 RUNNING: up", b"STATUS=svc.0 RUNNING: again",
        b"STOPPING=1\nSTATUS=stopped by SIGTERM"]


def test_an_abstract_name_that_is_not_utf8_is_its_own_bytes(tmp_path):
    """`NOTIFY_SOCKET=@NAME` with a byte that is not UTF-8 (held as its surrogate escape): the
    name's bytes, not a UnicodeEncodeError ending `stoker run` with a traceback."""
    name = f"stoker-test-{os.getpid()}-{tmp_path.name}-".encode() + b"\xff"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name)
        told = notifier({"NOTIFY_SOCKET": "@" + os.fsdecode(name)})
        assert told is not None and told.send("READY=1")
        assert sock.recv(64) == b"READY=1"


def test_the_watchdog_is_fed_at_half_its_period_only_for_the_pid_it_names(abstract_socket):
    name, sock = abstract_socket
    clock = FakeClock()
    told = notifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "42"}, pid=42)
    assert told is not None
    heartbeat = told.heartbeat(clock)
    assert heartbeat is not None and heartbeat.every_secs == 1.0
    assert heartbeat.beat() == clock() + 1.0  # the first turn feeds it
    clock.advance(0.5)
    assert heartbeat.beat() == clock() + 0.5  # not due: nothing sent
    clock.advance(0.6)
    heartbeat.beat()
    assert [sock.recv(64), sock.recv(64)] == [b"WATCHDOG=1", b"WATCHDOG=1"]
    sock.settimeout(0)
    with pytest.raises(BlockingIOError):
        sock.recv(64)
    for other in ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "7"}, {"WATCHDOG_USEC": "0"},
                  {"WATCHDOG_USEC": "soon"}, {}):
        told = notifier({"NOTIFY_SOCKET": "@" + name, **other}, pid=42)
        assert told is not None and told.heartbeat(clock) is None, other


@pytest.mark.parametrize(("usec", "every"), [("31536000000000000000", 3600.0), ("1", 0.01)])
def test_a_period_of_centuries_or_microseconds_is_fed_hourly_or_every_10ms(abstract_socket, usec, every):
    """`WatchdogSec=1000y`: the next feed is a deadline the owner's loop can wait for (a
    queue's timeout of centuries is an OverflowError, which failed the task); `WatchdogSec=1us`:
    no loop spinning to feed it."""
    clock = FakeClock()
    told = notifier({"NOTIFY_SOCKET": "@" + abstract_socket[0], "WATCHDOG_USEC": usec})
    assert told is not None
    heartbeat = told.heartbeat(clock)
    assert heartbeat is not None and heartbeat.every_secs == every
    events: queue.SimpleQueue[str] = queue.SimpleQueue()
    events.put("event")
    assert events.get(timeout=heartbeat.beat() - clock()) == "event"  # the owner's wait


def _warnings(caplog: pytest.LogCaptureFixture) -> list[tuple[str, dict]]:
    return [(r.stoker_event, r.stoker_fields) for r in caplog.records]  # type: ignore[attr-defined]


@pytest.mark.parametrize("where", ["path", "abstract"])
def test_a_socket_stoker_cannot_reach_is_one_warning_and_no_error(tmp_path, caplog, where):
    name = str(tmp_path / "gone") if where == "path" else f"@stoker-test-{os.getpid()}-{tmp_path.name}-gone\xff"
    told = notifier({"NOTIFY_SOCKET": os.fsdecode(name.encode("latin-1"))})
    assert told is not None
    with caplog.at_level(logging.WARNING):
        assert not told.send("READY=1")
        assert not told.send("STATUS=x")
    error = "No such file or directory" if where == "path" else "Connection refused"
    shown = name if where == "path" else name.replace("\xff", "\ufffd")  # its bytes, as they read
    assert _warnings(caplog) == [
        ("systemd_notify_failed", {"socket": shown, "error": error, "reason": "later failures are not logged"})]


def test_a_socket_of_another_kind_is_one_warning_and_none_is_no_notifier(caplog):
    with caplog.at_level(logging.WARNING):
        assert notifier({"NOTIFY_SOCKET": "vsock:2:1234"}) is None
        assert notifier({"WATCHDOG_USEC": "1000"}) is None  # no socket named: nothing to say
    assert _warnings(caplog) == [("systemd_notify_unsupported", {
        "socket": "vsock:2:1234", "reason": "Stoker speaks to AF_UNIX sockets only: no notifications are sent"})]


def test_a_message_is_sent_without_blocking_on_a_socket_no_child_inherits(abstract_socket):
    name, sock = abstract_socket
    told = notifier({"NOTIFY_SOCKET": "@" + name})
    assert told is not None and told.ready_sent is False
    fds = descriptors()
    assert told.send("STATUS=a\udcffb")  # what UTF-8 cannot encode (callers escape it first) is "?"
    assert sock.recv(64) == b"STATUS=a?b"
    assert told._sock is not None and not told._sock.getblocking() and not os.get_inheritable(told._sock.fileno())
    told.stopping("stopped before it was ready")  # no READY=1 with it
    assert sock.recv(64) == b"STOPPING=1\nSTATUS=stopped before it was ready"
    assert told.ready_sent is False
    told.close()
    assert opened_since(fds) == {}  # its socket closed
    told.status("after the close")  # a late one (another thread's) opens it again
    assert sock.recv(64) == b"STATUS=after the close"
    told.close()


def test_a_ready_lost_to_a_full_queue_goes_with_the_next_message(abstract_socket):
    """systemd's queue full (EAGAIN: the send never blocks): READY=1 lost then would have left
    the unit `activating` until TimeoutStartSec= killed it."""
    name, sock = abstract_socket
    told = notifier({"NOTIFY_SOCKET": "@" + name})
    assert told is not None
    queued = 0
    while told.send("STATUS=filling"):  # nobody reads: the receiver's queue fills
        queued += 1
        assert queued < 100_000, "the queue never filled: a send that cannot be sent must say False"
    told.ready("svc.0 RUNNING: up")
    sock.settimeout(0)
    assert {sock.recv(64) for _ in range(queued)} == {b"STATUS=filling"}
    with pytest.raises(BlockingIOError):
        sock.recv(64)  # READY=1 was lost
    told.send("WATCHDOG=1")
    told.status("svc.0 RUNNING: still")
    assert [sock.recv(64), sock.recv(64)] == [b"READY=1\nWATCHDOG=1", b"STATUS=svc.0 RUNNING: still"]
    told.close()


def test_a_status_is_one_short_line():
    assert one_line("a\nb\tc  d") == "a b c d"
    assert one_line("x" * STATUS_CHARS) == "x" * STATUS_CHARS  # at the limit: whole
    long = one_line("x" * 1000)
    assert len(long) == STATUS_CHARS and long.endswith("…")


def test_a_status_holds_no_control_character(abstract_socket):
    """A health check's output in a task's reason (`health command exited with status 1:
    bad\\x00x`): systemd ignores a whole message holding a NUL byte (and, sent with READY=1,
    would never have heard READY)."""
    assert one_line("exited: bad\0x\x1b[31m\x9b") == "exited: bad\\x00x\\x1b[31m\\u009b"
    # nor a format character, as stoker run's state line of the same change writes it out:
    # a right-to-left override in the reason turned the rest of `systemctl status`'s line around
    assert one_line("FAILED: health: b\u202ead \U000e0001") == "FAILED: health: b\\u202ead \\U000e0001"
    name, sock = abstract_socket
    told = notifier({"NOTIFY_SOCKET": "@" + name})
    assert told is not None
    told.ready("svc.0 RUNNING: healthy: ok\0READY=1")
    assert b"\0" not in sock.recv(4096)


def test_the_wait_between_attempts_feeds_the_watchdog(abstract_socket):
    """`stoker run`'s restart delay (`UnitState.wait`): fed all along, and cut by a stop."""
    import threading

    from executor.local.unitstate import UnitState

    name, sock = abstract_socket
    told = notifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "100000"})
    assert told is not None
    unit, stop = UnitState(told), threading.Event()
    assert unit.wait(stop.wait, 0.26) is False
    sock.settimeout(0)
    pings = []
    with pytest.raises(BlockingIOError):
        while True:
            pings.append(sock.recv(64))
    assert set(pings) == {b"WATCHDOG=1"} and 3 <= len(pings) <= 6, pings  # at 0, 0.05, ..., 0.25 s
    stop.set()
    assert unit.wait(stop.wait, 10) is True
