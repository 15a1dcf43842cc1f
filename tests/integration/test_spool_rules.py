"""`stoker run`'s spool, rule by rule: a line put with no thread to be had is written at
once, its failure told to the writer; the note on dropped lines clears the terminal's line
only on a terminal (a stream that cannot say is none); `drain_spool` at exit. In-memory
streams, the spool's real thread."""
from __future__ import annotations

import io
import threading

import pytest

from executor import spool as spooling
from executor.spool import Spool

NOTE = "[stoker: 1 lines not shown: their reader was not reading]\n"


class _Unsure(io.StringIO):
    """A stream whose isatty raises (a closed or odd one)."""

    def isatty(self) -> bool:
        raise OSError("no such device")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _no_thread(thread: threading.Thread) -> None:
    raise RuntimeError("can't start new thread")


def test_with_no_thread_to_be_had_a_line_is_written_at_once_and_its_failure_told(monkeypatch):
    monkeypatch.setattr(spooling, "start_thread", _no_thread)
    stream, errors = io.StringIO(), []
    Spool().put(stream, "now\n", errors.append)
    assert (stream.getvalue(), errors) == ("now\n", [])
    stream.close()
    Spool().put(stream, "lost\n", errors.append)
    [error] = errors
    assert isinstance(error, ValueError) and "closed file" in str(error)


@pytest.mark.parametrize("kind, cleared", [(_Unsure, ""), (io.StringIO, ""), (_Terminal, "\r\x1b[2K")])
def test_the_note_on_dropped_lines_clears_the_line_on_a_terminal_only(kind, cleared):
    spool, stream = Spool(limit=5), kind()
    spool.put(stream, "123456\n", lambda exc: None)  # past the limit: dropped
    spool.put(stream, "ok\n", lambda exc: None)
    assert spool.drain(5.0)
    assert stream.getvalue() == f"{cleared}{NOTE}ok\n"


class _Stuck(io.StringIO):
    """A reader that does not read until `go` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()

    def write(self, text: str) -> int:
        self.go.wait(10.0)
        return super().write(text)


def test_drain_spool_is_true_with_no_spool_and_else_says_whether_all_was_written(monkeypatch):
    monkeypatch.setattr(spooling, "_spool", None)
    assert spooling.drain_spool(0.1) is True
    spool, stream = Spool(), _Stuck()
    monkeypatch.setattr(spooling, "_spool", spool)
    spool.put(stream, "held\n", lambda exc: None)
    try:
        assert spooling.drain_spool(0.1) is False
    finally:
        stream.go.set()
    assert spooling.drain_spool(5.0) is True and stream.getvalue() == "held\n"
