"""s6's readiness descriptor (`executor/host/readyfd.py`) on real pipes: what `--ready-fd`
accepts, and a newline whose reader is gone."""
from __future__ import annotations

import contextlib
import logging
import os

import pytest

from config.errors import SettingsError
from executor.host.readyfd import ready_fd
from executor.host.sdnotify import notifier
from tests.support.fake_clock import FakeClock
from tests.support.notify_socket import notify_socket


@pytest.mark.parametrize("fd", [2**31, 10**20])
def test_a_number_past_any_descriptor_is_a_usage_error(fd):
    with pytest.raises(SettingsError, match=f"descriptor {fd} is not open"):
        ready_fd(fd)


def test_a_reader_gone_loses_the_newline_and_nothing_else(caplog):
    """s6-supervise gone: EPIPE (Python ignores SIGPIPE), one WARNING, the descriptor closed."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    notifier = ready_fd(write_end)
    with caplog.at_level(logging.WARNING):
        notifier.ready("svc.0 RUNNING")
    assert notifier.fd is None and notifier.ready_sent
    assert [(r.levelname, r.stoker_event, r.stoker_fields) for r in caplog.records] == [  # type: ignore[attr-defined]
        ("WARNING", "ready_fd_failed",
         {"fd": write_end, "error": "Broken pipe", "reason": "the readiness newline was not written"})]
    with pytest.raises(OSError):
        os.fstat(write_end)


@pytest.fixture
def pipe():
    """A real pipe: the read end the test's, the write end what s6-supervise hands Stoker."""
    read_end, write_end = os.pipe()
    yield read_end, write_end
    for fd in (read_end, write_end):
        with contextlib.suppress(OSError):
            os.close(fd)


def test_a_descriptor_closed_or_open_for_reading_only_is_refused_with_its_number(pipe):
    read_end, write_end = pipe
    with pytest.raises(SettingsError) as refused:
        ready_fd(read_end)
    assert str(refused.value) == f"--ready-fd {read_end}: descriptor {read_end} is open for reading only"
    os.close(write_end)
    with pytest.raises(SettingsError) as closed:
        ready_fd(write_end)
    assert str(closed.value) == (f"--ready-fd {write_end}: descriptor {write_end} is not open (the service "
                                 "directory's notification-fd names the one s6-supervise opens)")


def test_one_newline_when_ready_then_the_descriptor_closed_and_held_by_no_child(pipe):
    read_end, write_end = pipe
    os.set_inheritable(write_end, True)  # as s6-supervise hands it over
    notifier = ready_fd(write_end)
    assert not os.get_inheritable(write_end)  # no process of the task keeps the pipe open
    assert notifier.watchdog_secs is None and notifier.heartbeat() is None
    assert not notifier.send("WATCHDOG=1")  # no systemd to tell
    notifier.status("svc.0 STARTING")
    notifier.ready("svc.0 RUNNING")
    notifier.ready("svc.0 RUNNING: again")  # once
    assert notifier.fd is None and notifier.ready_sent
    assert os.read(read_end, 16) == b"\n"
    assert os.read(read_end, 16) == b""  # closed: the reader's end of file
    notifier.stopping("stopped")
    notifier.close()


def test_a_descriptor_open_for_reading_and_writing_is_taken(tmp_path):
    fd = os.open(tmp_path / "ready", os.O_RDWR | os.O_CREAT)
    notifier = ready_fd(fd)
    notifier.close()
    assert notifier.fd is None and not notifier.ready_sent
    assert (tmp_path / "ready").read_bytes() == b""  # closed unwritten: the task never was ready
    with pytest.raises(OSError):
        os.fstat(fd)


def test_with_a_systemd_socket_too_systemd_hears_everything_and_s6_the_newline(pipe, tmp_path):
    """s6 under a systemd unit (or a `Type=notify` unit with the flag): READY=1, STATUS=, the
    watchdog's period and feed, STOPPING=1 go to systemd as without `--ready-fd`."""
    read_end, write_end = pipe
    with notify_socket(tmp_path.name) as (name, sock):
        systemd = notifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "4000000"})
        assert systemd is not None
        both = ready_fd(write_end, systemd)
        assert both.watchdog_secs == 4.0
        heartbeat = both.heartbeat(FakeClock())
        assert heartbeat is not None and heartbeat.every_secs == 2.0
        heartbeat.beat()
        both.status("svc.0 STARTING")
        both.ready("svc.0 RUNNING")
        assert os.read(read_end, 16) == b"\n"
        both.stopping("svc.0 stopping")
        both.close()
        assert systemd._sock is None  # closed with it
        assert [sock.recv(256) for _ in range(4)] == [
            b"WATCHDOG=1", b"STATUS=svc.0 STARTING", b"READY=1\nSTATUS=svc.0 RUNNING",
            b"STOPPING=1\nSTATUS=svc.0 stopping"]
