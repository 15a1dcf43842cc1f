"""The entry point's first lines that decide on what they are given (executor/cli/start.py):
the exit status of a stop while loading, which dropped exceptions are stops sent again,
systemd's variables taken from what the task inherits, which output stream writes out a
character its encoding lacks, and when the environment block at exec is read."""
from __future__ import annotations

import io
import signal

import pytest

import executor
from executor.cli import start

pytestmark = pytest.mark.timeout(30)


def test_a_ctrl_c_exits_130_and_a_stop_while_loading_with_its_own_status():
    assert start.exit_status(KeyboardInterrupt()) == 130
    assert start.exit_status(start.Stopped(143, int(signal.SIGTERM))) == 143
    assert start.exit_status(start.Stopped(0, int(signal.SIGHUP))) == 0  # `stoker observe`'s


def test_a_dropped_stop_is_noted_once_and_any_other_exception_not(monkeypatch):
    monkeypatch.setattr(executor, "DROPPED_STOPS", [])
    monkeypatch.setattr(start, "_statuses", {int(signal.SIGTERM): 143})
    assert start.note_dropped(start.Stopped(143, int(signal.SIGTERM))) == signal.SIGTERM
    assert start.note_dropped(start.Stopped(143, int(signal.SIGTERM))) == signal.SIGTERM
    assert start.note_dropped(start.Stopped(129, int(signal.SIGHUP))) == signal.SIGHUP
    assert start.note_dropped(ValueError("a finalizer's own")) == 0
    assert executor.DROPPED_STOPS == [signal.SIGTERM, signal.SIGHUP]


def test_a_keyboard_interrupt_is_a_dropped_sigint_only_under_python_s_own_handler(monkeypatch):
    monkeypatch.setattr(start, "_statuses", {int(signal.SIGTERM): 143})
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert start._dropped_signal(KeyboardInterrupt()) == signal.SIGINT
        assert start._dropped_signal(RuntimeError()) == 0

        class Subclass(KeyboardInterrupt):
            """A program's own interrupt, not the one Python's SIGINT handler raises."""

        assert start._dropped_signal(Subclass()) == 0  # not Python's handler's
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        assert start._dropped_signal(KeyboardInterrupt()) == 0
    finally:
        signal.signal(signal.SIGINT, previous)


def test_systemd_s_variables_are_taken_out_of_what_the_task_inherits(monkeypatch):
    monkeypatch.setattr(start, "from_systemd", {})
    environ = {"NOTIFY_SOCKET": "@unit", "WATCHDOG_USEC": "3000000", "PATH": "/bin", "LISTEN_FDS": "1"}
    start.take_systemd(environ)
    assert environ == {"PATH": "/bin", "LISTEN_FDS": "1"}
    assert start.from_systemd == {"NOTIFY_SOCKET": "@unit", "WATCHDOG_USEC": "3000000"}
    start.take_systemd(environ)  # none left: nothing changes
    assert start.from_systemd == {"NOTIFY_SOCKET": "@unit", "WATCHDOG_USEC": "3000000"}


@pytest.mark.parametrize(("encoding", "errors", "fails"), [
    ("utf-8", "strict", True),
    ("ascii", "strict", True),
    ("ascii", "surrogateescape", True),          # LC_ALL=C, PYTHONUTF8=0: `café` raised
    ("ANSI_X3.4-1968", "surrogateescape", True),
    ("utf-8", "surrogateescape", False),
    ("UTF_8", "surrogateescape", False),
    ("utf8", "surrogateescape", False),
    ("ascii", "backslashreplace", False),
])
def test_a_stream_fails_to_write_what_its_encoding_lacks_only_strict_or_escaping_outside_utf8(encoding, errors, fails):
    stream = io.TextIOWrapper(io.BytesIO(), encoding=encoding, errors=errors)
    assert start._fails_to_write(stream) is fails


def test_the_environment_at_exec_is_read_only_under_a_coerced_lc_ctype(monkeypatch):
    monkeypatch.setenv("LC_CTYPE", "en_US.UTF-8")
    assert start._exec_environ() is None
    monkeypatch.delenv("LC_CTYPE")
    assert start._exec_environ() is None
    with open("/proc/self/environ", "rb") as block:
        at_exec = block.read()
    for coerced in start.COERCED:
        monkeypatch.setenv("LC_CTYPE", coerced)
        assert start._exec_environ() == at_exec  # setenv changes os.environ, not the block
