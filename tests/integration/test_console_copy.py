"""The log pump's console copies (`executor/procs/consolecopy.py`, `ConsoleCopy`) in this
process, the console a pipe read here or a pseudo-terminal: whole lines per stream, a line
past `HOLD_BYTES` copied as it comes, a stream's end, the queue's bound and what it dropped,
a write that fails, the close's drain, text that cannot drive a terminal, and the copies
written by the caller when no thread can start.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator

import pytest

from executor.logs import keep_screen_line
from executor.procs import consolecopy
from executor.procs.consolecopy import HOLD_BYTES, ConsoleCopy, RawConsole, stream_fields
from executor.spool import Spool
from tests.support.liveview import MarkedView
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)

OUT = "task=web.0 process=web run=0 stream=stdout"
ERR = "task=web.0 process=web run=0 stream=stderr"


class Console:
    """A console: `fd` its side the copies are written to, what reaches `read_end` (a
    pipe's, or a pseudo-terminal's other side) read here on a thread."""

    def __init__(self, read_end: int, fd: int) -> None:
        self.read_end, self.fd = read_end, fd
        self.got = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            while chunk := os.read(self.read_end, 65536):
                self.got += chunk
        except OSError:  # a pseudo-terminal whose console side closed: EIO
            return

    def shows(self, expected: bytes, at_end: bool = False) -> bool:
        """Whether it shows `expected` (all it got, or its end) within 10 s."""
        deadline = time.monotonic() + 10
        while not self._showing(expected, at_end) and time.monotonic() < deadline:
            time.sleep(0.005)
        return self._showing(expected, at_end)

    def _showing(self, expected: bytes, at_end: bool) -> bool:
        return self.got.endswith(expected) if at_end else bytes(self.got) == expected

    def __repr__(self) -> str:  # what an assert on `shows` prints
        return f"<console that got {bytes(self.got[-200:])!r}>"

    def close(self) -> None:
        os.close(self.fd)
        self._reader.join(10)
        os.close(self.read_end)


@pytest.fixture
def console() -> Iterator[Console]:
    one = Console(*os.pipe())
    try:
        yield one
    finally:
        one.close()


@pytest.fixture
def copies(caplog: pytest.LogCaptureFixture) -> Iterator[ConsoleCopy]:
    caplog.set_level(logging.INFO, logger=consolecopy.__name__)
    copy = ConsoleCopy("web.0")
    try:
        yield copy
    finally:
        copy.close(5)


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, dict[str, object]]]:
    return [(r.levelname, r.stoker_event, r.stoker_fields) for r in caplog.records
            if getattr(r, "stoker_event", "")]


def test_whole_lines_are_copied_each_stream_holding_its_own_last_line(copies, console):
    copies.put(console.fd, b"one\ntw", OUT)
    copies.put(console.fd, b"err", ERR)
    assert console.shows(b"one\n")
    copies.put(console.fd, b"o\nthr", OUT)
    copies.put(console.fd, b"or\n", ERR)
    assert console.shows(b"one\ntwo\nerror\n")
    copies.end(console.fd, OUT)  # its last line, without a newline
    assert console.shows(b"one\ntwo\nerror\nthr")
    copies.end(console.fd, ERR)  # nothing held: nothing written
    copies.put(console.fd, b"\n", ERR)
    assert console.shows(b"one\ntwo\nerror\nthr\n")


def test_a_line_longer_than_the_hold_is_copied_as_it_comes(copies, console):
    held = b"x" * HOLD_BYTES
    copies.put(console.fd, held, OUT)  # as long as the hold: still held
    copies.put(console.fd, b"y\n", ERR)
    assert console.shows(b"y\n")
    copies.put(console.fd, b"x", OUT)  # one byte past it
    assert console.shows(b"y\n" + held + b"x")
    copies.put(console.fd, b"z\n", OUT)
    assert console.shows(b"y\n" + held + b"xz\n")


def test_past_its_bound_a_copy_is_dropped_counted_and_said_once_the_console_reads(caplog):
    caplog.set_level(logging.INFO, logger=consolecopy.__name__)
    read_end, fd = os.pipe()
    copy = ConsoleCopy("web.0", limit=100)
    try:
        room = os.write(fd, b"\0" * 65536)  # a console full: the thread's next write waits
        copy.put(fd, b"a" * 59 + b"\n", OUT)
        wait_for(lambda: copy._queued == 0, 10, message="the thread in its write")
        copy.put(fd, b"b" * 59 + b"\n", OUT)  # queued: 60 of 100
        copy.put(fd, b"c" * 40 + b"\n", OUT)  # 101: dropped
        copy.put(fd, b"d" * 39 + b"\n", ERR)  # 100: queued
        assert copy._queued == 100 and lines(caplog) == []
        got = bytearray()
        while len(got) < room + 160:
            got += os.read(read_end, 65536)
        assert bytes(got[room:]) == b"a" * 59 + b"\n" + b"b" * 59 + b"\n" + b"d" * 39 + b"\n"
        wait_for(lambda: lines(caplog), 10, message="the drop said")
        assert lines(caplog) == [("WARNING", "console_copy_dropped", {
            **stream_fields(OUT), "console": fd, "dropped_bytes": 41,
            "reason": "the console was not reading; the log file has them"})]
    finally:
        copy.close(5)
        os.close(read_end)
        os.close(fd)


def test_what_was_dropped_and_never_said_is_said_at_close(caplog):
    caplog.set_level(logging.INFO, logger=consolecopy.__name__)
    read_end, fd = os.pipe()
    os.set_blocking(fd, False)
    copy = ConsoleCopy("web.0", limit=10)
    try:
        os.write(fd, b"\0" * 65536)
        copy.put(fd, b"a\n", OUT)  # the thread's write fails: the pipe is full, non-blocking
        copy.put(fd, b"b" * 20 + b"\n", ERR)
        copy.close(0.1)
    finally:
        os.close(read_end)
        os.close(fd)
    said = [(event, fields.get("dropped_bytes")) for _, event, fields in lines(caplog)]
    assert ("console_copy_dropped", 21) in said, said


def test_a_failed_write_is_one_error_per_stream(copies, caplog):
    read_end, fd = os.pipe()
    os.close(read_end)  # EPIPE (SIGPIPE is ignored under Python)
    try:
        for _ in range(3):
            copies.put(fd, b"lost\n", OUT)
        copies.put(fd, b"lost\n", ERR)
        copies.close(5)
    finally:
        os.close(fd)
    failed = [(fields["stream"], fields["console"], fields["error"])
              for _, event, fields in lines(caplog) if event == "log_write_failed"]
    assert failed == [("stdout", fd, "BrokenPipeError: [Errno 32] Broken pipe"),
                      ("stderr", fd, "BrokenPipeError: [Errno 32] Broken pipe")]
    assert lines(caplog)[0][2]["reason"] == "dropping what cannot be copied there"


def test_the_close_writes_what_is_queued_and_ends_its_thread(console):
    copy = ConsoleCopy("web.0")
    for n in range(100):
        copy.put(console.fd, b"%d\n" % n, OUT)
    copy.close(5)
    assert copy._thread is not None and not copy._thread.is_alive()
    assert console.shows(b"".join(b"%d\n" % n for n in range(100)))


def test_the_close_gives_up_on_a_console_that_does_not_read():
    read_end, fd = os.pipe()
    copy = ConsoleCopy("web.0")
    try:
        os.set_blocking(fd, False)
        os.write(fd, b"\0" * 65536)
        os.set_blocking(fd, True)
        copy.put(fd, b"stuck\n", OUT)
        copy.close(0.1)  # returns: the thread is left in its write
        assert copy._thread is not None and copy._thread.is_alive()
    finally:
        os.close(read_end)  # the write fails (EPIPE): the thread ends
        copy._thread.join(10)
        os.close(fd)


def test_with_no_thread_to_be_had_the_caller_writes_the_copy(console, monkeypatch):
    def refused(thread: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(consolecopy, "start_thread", refused)
    copy = ConsoleCopy("web.0")
    copy.put(console.fd, b"here\n", OUT)
    assert copy._thread is None
    assert console.shows(b"here\n")
    copy.close(5)


def test_a_stream_s_fields_are_its_label_s_words():
    assert stream_fields("task=web.0 process=a=b run=0 stray stream=stdout") == {
        "task": "web.0", "process": "a=b", "run": "0", "stream": "stdout"}


# ---- a terminal


@pytest.fixture
def terminal() -> Iterator[tuple[int, Console]]:
    """A pseudo-terminal: its console side, and what its other side reads."""
    one = Console(*os.openpty())
    try:
        yield one.fd, one
    finally:
        one.close()


def test_on_a_terminal_escapes_and_bytes_not_utf8_are_shown_as_text(copies, terminal):
    slave, screen = terminal
    copies.put(slave, b"\x1b[2Jclear \xff \xc3", OUT)  # a character cut between two copies
    copies.put(slave, b"\xa9\n", OUT)
    assert screen.shows(b"\\x1b[2Jclear \\xff \xc3\xa9\r\n")


def test_on_a_terminal_a_character_cut_at_the_stream_s_end_is_shown_as_its_bytes(copies, terminal):
    slave, screen = terminal
    copies.put(slave, b"ok\n", OUT)
    copies.put(slave, b"\xe2\x82", ERR)  # no newline: held
    copies.end(slave, ERR)
    copies.end(slave, OUT)  # its text ends too: nothing held, nothing shown
    assert screen.shows(b"ok\r\n\\xe2\\x82")


def test_to_a_pipe_the_copies_are_the_process_s_bytes(copies, console):
    copies.put(console.fd, b"\x1b[2J\xff\xc3\n", OUT)
    assert console.shows(b"\x1b[2J\xff\xc3\n")


def test_the_terminal_s_encoding_is_its_stream_s_and_utf8_elsewhere(monkeypatch):
    class Stream:
        def __init__(self, encoding: str | None) -> None:
            self.encoding = encoding

    monkeypatch.setattr("sys.stdout", Stream("latin-1"))
    monkeypatch.setattr("sys.stderr", Stream("cp1252"))
    assert [consolecopy._terminal_encoding(fd) for fd in (1, 2, 3)] == ["latin-1", "cp1252", "utf-8"]
    monkeypatch.setattr("sys.stdout", Stream(None))
    assert consolecopy._terminal_encoding(1) == "utf-8"


def test_a_raw_console_writes_its_text_as_latin1_bytes(terminal, console):
    slave, _ = terminal
    raw = RawConsole(console.fd)
    assert raw.write("\xe9\x1b[0m\n") == 6 and raw.fileno() == console.fd
    raw.flush()
    assert console.shows(b"\xe9\x1b[0m\n")
    assert not raw.isatty() and RawConsole(slave).isatty()


# ---- under `stoker run`'s live view


@pytest.fixture
def live_view(monkeypatch: pytest.MonkeyPatch, console: Console) -> Iterator[Console]:
    """`stoker run`'s live view on the console (a pipe): a spool of the test's, of 64
    characters, and a view whose hide and show are marks in it."""
    monkeypatch.setattr("executor.spool._spool", Spool(limit=64))
    keep_screen_line(MarkedView(console.fd))
    try:
        yield console
    finally:
        keep_screen_line(None)


def test_under_the_live_view_each_copy_goes_above_it_a_line_without_end_ended(copies, live_view):
    copies.put(live_view.fd, b"one\ntw", OUT)
    copies.end(live_view.fd, OUT)
    assert live_view.shows(b"[hide]one\n[show][hide]tw\n[show]")


def test_under_the_live_view_a_copy_its_spool_has_no_room_for_is_missed_and_said(copies, live_view, caplog):
    copies.put(live_view.fd, b"x" * 64 + b"\n", OUT)  # 65 characters, and its marks: no room
    copies.put(live_view.fd, b"w" * 99 + b"\n", OUT)
    copies.put(live_view.fd, b"y" * 10 + b"\n", OUT)
    copies.put(live_view.fd, b"z" * 70 + b"\n", ERR)
    assert live_view.shows(b"[hide]" + b"y" * 10 + b"\n[show]")
    wait_for(lambda: any(e == "console_copy_dropped" for _, e, _ in lines(caplog)), 10, message="the miss said")
    copies.close(5)
    said = [(f["stream"], f["dropped_bytes"]) for _, e, f in lines(caplog) if e == "console_copy_dropped"]
    assert said == [("stdout", 165), ("stderr", 71)], said


def test_under_the_live_view_a_character_cut_before_a_missed_copy_is_lost_with_it(copies, terminal, monkeypatch):
    # A line past the hold is copied as it comes, its last character cut (its text holds
    # it for the next copy); the next copy is missed (no room): the copy after it starts
    # its text again, its bytes shown as such, not glued to the one cut before the gap.
    slave, screen = terminal
    monkeypatch.setattr("executor.spool._spool", Spool(limit=HOLD_BYTES + 100))
    keep_screen_line(MarkedView(slave))
    try:
        copies.put(slave, b"a" * HOLD_BYTES + b"\xc3", OUT)
        copies.put(slave, b"b" * (HOLD_BYTES + 101), OUT)  # no room: missed
        copies.put(slave, b"\xa9\n", OUT)
        assert screen.shows(b"[hide]\\xa9\r\n[show]", at_end=True)
    finally:
        keep_screen_line(None)
