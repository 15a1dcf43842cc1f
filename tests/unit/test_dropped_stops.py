"""Which exceptions a finalizer drops count as a stop signal sent again once the command's
signal relay is up (`executor.cli.start.note_dropped`), and how the log's hook says each."""
from __future__ import annotations

import logging
import signal
import types

import executor
from executor.cli import logsetup, start


def _dropped(exc: BaseException) -> types.SimpleNamespace:
    return types.SimpleNamespace(exc_value=exc, exc_type=type(exc), exc_traceback=None,
                                 err_msg="Exception ignored in", object=None)


def _ctrl_c_dropped(caplog, monkeypatch) -> None:
    """A Ctrl-C's KeyboardInterrupt (Python's own SIGINT handler) dropped by a finalizer, through
    the unraisable hook Stoker installs, the dropped stops noted afresh."""
    monkeypatch.setattr(executor, "DROPPED_STOPS", [])
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with caplog.at_level(logging.DEBUG):
            logsetup._ignored(_dropped(KeyboardInterrupt()))
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_ctrl_c_dropped_in_a_command_that_never_sends_it_again_is_not_said_deferred(caplog, monkeypatch):
    """`stoker status` (no WHILE_LOADING handlers, no signal relay): a Ctrl-C a finalizer dropped
    was noted as a stop to send again and logged as an INFO `stop_deferred` "acted on once the
    signal relay is up"; nothing acts on it there. It is an ignored exception, as before."""
    monkeypatch.setattr(start, "_statuses", {})
    _ctrl_c_dropped(caplog, monkeypatch)
    assert executor.DROPPED_STOPS == []
    events = [r.getMessage() for r in caplog.records]
    assert not any("stop_deferred" in e for e in events), events
    assert any("exception_ignored" in e for e in events), events


def test_a_ctrl_c_dropped_as_a_run_loads_is_deferred_to_its_relay(caplog, monkeypatch):
    """The same Ctrl-C in a command with WHILE_LOADING handlers (`stoker run`) is the relay's to
    send again, and said in one INFO line."""
    monkeypatch.setattr(start, "_statuses", {int(signal.SIGTERM): 143})
    _ctrl_c_dropped(caplog, monkeypatch)
    assert executor.DROPPED_STOPS == [int(signal.SIGINT)]
    events = [r.getMessage() for r in caplog.records]
    assert any("stop_deferred" in e for e in events), events
    assert not any("exception_ignored" in e for e in events), events
