"""The runs' logs against what an operator meets: a console that stops reading, a burst of
rotations under `stoker tail -f`, a process whose logger keeps no file.

- The log pump copied `destination='both'` output to the console itself. A console that
  stopped reading (Ctrl-S, a frozen SSH session, `stoker run | less` at a full screen)
  stopped the pump in that write: every rotating log of the task stopped with it (their
  processes then blocked on full pipes), and at close what was still in the pipes was cut
  off the files. The copies now go through a queue of their own (bounded; what does not
  fit is dropped from the console and counted, never from the file).
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from executor.logs import keep_screen_line
from executor.procs import rotation
from executor.procs.consolecopy import HOLD_BYTES
from executor.procs.logpump import LogFile, LogPump, make_pipe
from executor.procs.terminaltext import TextForTerminal
from executor.spool import Spool, spool
from tests.support.liveview import MarkedView
from tests.support.waiting import log_pump_threads_ended, wait_for

MiB = 1024 * 1024

pytestmark = pytest.mark.timeout(30)


def _open_dir(path: Path) -> int:
    path.mkdir(parents=True)
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY)


def _read_more(fd: int, seen: bytearray) -> bytes:
    """What `fd` (non-blocking) has given so far."""
    with contextlib.suppress(BlockingIOError):
        seen += os.read(fd, 65536)
    return bytes(seen)


@contextlib.contextmanager
def _console_and_run_dir(tmp_path: Path, task_label: str) -> Iterator[tuple[int, Callable[[], bytes], int]]:
    """A console (a pipe) and the run's log directory: yields the console's writing end,
    what has reached the console so far (a call), and the directory's fd; all closed after,
    once the threads of `task_label`'s pump are gone (none writes to a number reused)."""
    console_r, console_w = os.pipe()
    os.set_blocking(console_r, False)
    seen = bytearray()
    run_dir = _open_dir(tmp_path / "run")
    try:
        yield console_w, lambda: _read_more(console_r, seen), run_dir
    finally:
        log_pump_threads_ended(task_label, 30)
        os.close(console_r)
        os.close(console_w)
        os.close(run_dir)


def test_a_console_that_does_not_read_holds_up_neither_the_pump_nor_the_files(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="executor.procs")
    console_r, console_w = os.pipe()  # a console nobody reads: full at 64 KiB
    both_dir, rotate_dir = _open_dir(tmp_path / "both"), _open_dir(tmp_path / "rotate")
    pump = LogPump("web.0")
    both_r, both_w = make_pipe()
    rotate_r, rotate_w = make_pipe()
    big = b"x" * (3 * MiB)
    writer = threading.Thread(target=lambda: os.write(both_w, big) and None, daemon=True)
    try:
        pump.add(both_r, LogFile(both_dir, "stdout", tmp_path / "both/stdout"), console_w,
                 "task=web.0 process=both run=0 stream=stdout")
        pump.add(rotate_r, LogFile(rotate_dir, "stdout", tmp_path / "rotate/stdout",
                                   max_bytes=MiB, backups=1),
                 None, "task=web.0 process=rotate run=0 stream=stdout")
        writer.start()  # blocks on its full pipe while the pump does not read it
        wait_for(lambda: (tmp_path / "both/stdout").stat().st_size > 128 * 1024, 5)
        os.write(rotate_w, b"hello\n")
        wait_for(lambda: (tmp_path / "rotate/stdout").read_bytes() == b"hello\n", 10,
                 message="the rotating log is copied while the console does not read")
        wait_for(lambda: (tmp_path / "both/stdout").stat().st_size == len(big), 5,
                 message="the `both` file has every byte")
    finally:
        os.close(console_r)  # the console's reader goes: a write still stuck fails (EPIPE)
        writer.join(5)
        os.close(both_w)
        os.close(rotate_w)
        pump.stop(drain_secs=1.0)
        log_pump_threads_ended("web.0", 30)  # its console copy may still write (each fails, EPIPE)
        os.close(console_w)
        os.close(both_dir)
        os.close(rotate_dir)
    assert "console_copy_dropped task=web.0 process=both run=0 stream=stdout" in caplog.text


def test_console_copies_are_whole_lines_whoever_else_writes_there(tmp_path: Path) -> None:
    """A process writing into a pipe writes in blocks cut anywhere: the copies went to the
    console as the pump read them, so another process's line (or `stoker run`'s own) landed
    in the middle of one (`helXX` / `lo`). A line's start now waits for its end; a last
    line without a newline is copied when its stream ends."""
    with _console_and_run_dir(tmp_path, "web.0") as (console_w, console, run_dir):
        pump = LogPump("web.0")
        (a_r, a_w), (b_r, b_w) = make_pipe(), make_pipe()
        try:
            for name, read_fd in (("a", a_r), ("b", b_r)):
                pump.add(read_fd, LogFile(run_dir, name, tmp_path / "run" / name), console_w,
                         f"task=web.0 process={name} run=0 stream=stdout")
            for fd, data, name, whole in ((a_w, b"hel", "a", b"hel"), (b_w, b"XX\n", "b", b"XX\n"),
                                          (a_w, b"lo\nwor", "a", b"hello\nwor")):
                os.write(fd, data)
                wait_for(lambda: (tmp_path / "run" / name).read_bytes() == whole, 5)  # noqa: B023
            os.close(a_w)
            a_w = -1
            wait_for(lambda: console() == b"XX\nhello\nwor", 5)
        finally:
            for fd in (a_w, b_w):
                if fd >= 0:
                    os.close(fd)
            pump.stop(drain_secs=1.0)
    # the files have each stream's bytes as written, the held line's start included
    assert [(tmp_path / "run" / n).read_bytes() for n in "ab"] == [b"hello\nwor", b"XX\n"]


def test_console_copies_go_above_stoker_runs_live_view(tmp_path: Path) -> None:
    """`stoker run` keeps a live view on the terminal's last line, without a newline: the
    pump wrote after it, so the first copied line was glued to the view, and left with it
    in the scroll-back (`[live.0 RUNNING] a:RUNNING[0]out-1`)."""
    with _console_and_run_dir(tmp_path, "live.0") as (console_w, console, run_dir):
        pump = LogPump("live.0")
        read_fd, write_fd = make_pipe()
        keep_screen_line(MarkedView(console_w))
        try:
            pump.add(read_fd, LogFile(run_dir, "stdout", tmp_path / "run/stdout"), console_w,
                     "task=live.0 process=a run=0 stream=stdout")
            os.write(write_fd, b"out-1\n\xff\n")
            wait_for(lambda: console() == b"[hide]out-1\n\xff\n[show]", 5)
            os.write(write_fd, b"no end")
            os.close(write_fd)
            write_fd = -1
            wait_for(lambda: console().endswith(b"[show][hide]no end\n[show]"), 5,
                     message="a last line without end is ended on the terminal (not in the file)")
        finally:
            keep_screen_line(None)
            if write_fd >= 0:
                os.close(write_fd)
            pump.stop(drain_secs=1.0)
    assert (tmp_path / "run/stdout").read_bytes() == b"out-1\n\xff\nno end"  # not ended in the file


def test_console_copies_to_a_terminal_are_text_that_cannot_drive_it(tmp_path: Path) -> None:
    """A `destination='both'` process's output reached `stoker run`'s terminal byte for
    byte: a screen clear, a title set, an OSC 52 clipboard write and bytes that are not
    UTF-8 were acted on by the operator's terminal (where `stoker tail` writes them out).
    On a terminal the copies are now that text; a character a long line's copy cut in two
    is shown whole, and one its stream's end cut is written out."""
    main, term = os.openpty()
    tty.setraw(term)  # no newline made \r\n: the bytes as the copy wrote them
    os.set_blocking(main, False)
    seen = bytearray()
    run_dir = _open_dir(tmp_path / "run")
    pump = LogPump("tty.0")
    read_fd, write_fd = make_pipe()
    try:
        pump.add(read_fd, LogFile(run_dir, "stdout", tmp_path / "run/stdout"), term,
                 "task=tty.0 process=a run=0 stream=stdout")
        hostile = b"A\x1b]52;c;aGVsbG8=\x07B\x1b[2J\x1b]0;title\x07\xff\x9b\r\n"
        long_cut = b"x" * HOLD_BYTES + b"\xc3"  # past HOLD_BYTES: copied as it comes
        for data in (hostile, long_cut, b"\xa9\n\x1b[31m\xe6\x97"):
            os.write(write_fd, data)
        os.close(write_fd)
        write_fd = -1
        shown = (b"A\\x1b]52;c;aGVsbG8=\\x07B\\x1b[2J\\x1b]0;title\\x07\\xff\\x9b\\r\n"
                 + b"x" * HOLD_BYTES + "\u00e9\n".encode() + b"\\x1b[31m\\xe6\\x97")
        wait_for(lambda: _read_more(main, seen) == shown, 10,
                 message="the terminal shows the task's output as text")
    finally:
        if write_fd >= 0:
            os.close(write_fd)
        pump.stop(drain_secs=1.0)
        os.close(main)  # a copy still stuck in its write fails (EIO)
        log_pump_threads_ended("tty.0", 30)
        os.close(term)
        os.close(run_dir)
    assert (tmp_path / "run/stdout").read_bytes() == hostile + long_cut + b"\xa9\n\x1b[31m\xe6\x97"


@pytest.fixture
def converted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The bytes made into text for a terminal while the test runs, counted."""
    counted_bytes = [0]
    convert = TextForTerminal.convert

    def counted(text: TextForTerminal, data: bytes, final: bool = False) -> bytes:
        counted_bytes[0] += len(data)
        return convert(text, data, final)

    monkeypatch.setattr(TextForTerminal, "convert", counted)
    return counted_bytes


def test_copies_a_live_view_s_spool_has_no_room_for_are_not_made_into_text(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, converted: list[int]) -> None:
    """Under `stoker run`'s live view the copies go through its spool, which drops what is
    past its limit while the terminal does not read; each copy was made into text for the
    terminal first all the same, so a task writing 200 MB to a `both` logger kept the
    copier converting with the GIL held, and the pump and the task waited for it
    (bench/console_copy_ab.py: 2-5 times as long). Now a copy the spool has no room for is
    counted as the console's miss, not converted."""
    monkeypatch.setattr("executor.spool._spool", Spool())  # its drops counted by stream are this test's
    main, term = os.openpty()  # a terminal nobody reads (Ctrl-S): the spool fills
    tty.setraw(term)
    os.set_blocking(main, False)
    run_dir = _open_dir(tmp_path / "run")
    pump = LogPump("full.0")
    read_fd, write_fd = make_pipe()
    keep_screen_line(MarkedView(term))
    piece, written = b"GET /index.html 200\n" * 13000, 0
    try:
        pump.add(read_fd, LogFile(run_dir, "stdout", tmp_path / "run/stdout"), term,
                 "task=full.0 process=a run=0 stream=stdout")
        while written < 4 * MiB:  # paced by the file, so that the copier keeps up as it can
            written += os.write(write_fd, piece)
            wait_for(lambda size=written: (tmp_path / "run/stdout").stat().st_size == size, 10)
        os.close(write_fd)
        write_fd = -1
    finally:
        keep_screen_line(None)
        if write_fd >= 0:
            os.close(write_fd)
        pump.stop(drain_secs=1.0)
        os.close(main)  # what the spool holds for the terminal fails (EIO), and it goes on
        assert spool().drain(10)
        log_pump_threads_ended("full.0", 30)
        os.close(term)
        os.close(run_dir)
    assert converted[0] < 2.5 * MiB, converted  # the spool's 1 MiB and the terminal's buffer, at most


def test_close_copies_what_the_pipes_hold_without_waiting_for_a_writer_that_outlived_the_kill(
        tmp_path: Path) -> None:
    """At the supervisor's close every process of the task is killed; a pipe still open then
    is held by something Stoker could not kill (here: the test). The pump waited up to
    `drain_secs` (0.5 s at every close) for an EOF that never came; now it copies what the
    pipe holds, both the rotating file's and the console copy's, and closes at once."""
    with _console_and_run_dir(tmp_path, "web.0") as (console_w, console, run_dir):
        pump = LogPump("web.0")
        read_fd, write_fd = make_pipe()
        stopped = threading.Thread(target=pump.stop, kwargs={"drain_secs": 20.0})
        try:
            pump.add(read_fd, LogFile(run_dir, "stdout", tmp_path / "run/stdout", max_bytes=MiB, backups=1),
                     console_w, "task=web.0 process=web run=0 stream=stdout")
            os.write(write_fd, b"first\n")
            wait_for(lambda: (tmp_path / "run/stdout").read_bytes() == b"first\n", 5)
            os.write(write_fd, b"last words\nno end")  # still in the pipe as the close begins
            stopped.start()
            stopped.join(10)  # a guard against a hang: the old pump waited the whole 20 s
            assert not stopped.is_alive(), "the close waited for a writer that outlived the kill"
            assert (tmp_path / "run/stdout").read_bytes() == b"first\nlast words\nno end"
            assert console() == b"first\nlast words\nno end"
        finally:
            os.close(write_fd)
            if stopped.ident is not None:
                stopped.join(20)


EURO = "€".encode()  # e2 82 ac
CHARACTER_CUTS = {
    "a write that would fill the file inside a character": (
        [b"a" * 9 + EURO + b"b"], [b"a" * 9, EURO + b"b"]),
    "a character begun by one write and ended by the next, at the boundary": (
        [b"a" * 8 + EURO[:1], EURO[1:] + b"b"], [b"a" * 8, EURO + b"b"]),
    "a character that ends the file exactly stays in it": ([b"a" * 7 + EURO + b"b"], [b"a" * 7 + EURO, b"b"]),
    "bytes that are not UTF-8 are cut at the size": ([b"\xff" * 25], [b"\xff" * 10] * 2 + [b"\xff" * 5]),
    "a character its process never ended is written at the close": ([b"ab" + EURO[:2]], [b"ab" + EURO[:2]]),
}


@pytest.mark.parametrize("writes, files", CHARACTER_CUTS.values(), ids=CHARACTER_CUTS)
def test_a_rotation_never_cuts_a_utf8_character(tmp_path: Path, writes: list[bytes], files: list[bytes]) -> None:
    """The pump cut at exactly log_size: a character across the boundary showed as U+FFFD at
    the end of one file and the start of the next (`stoker tail`, the observer's page)."""
    run_dir = _open_dir(tmp_path / "run")
    log = LogFile(run_dir, "stdout", tmp_path / "run/stdout", max_bytes=10, backups=5)
    try:
        for data in writes:
            log.write(data)
    finally:
        log.close()
        os.close(run_dir)
    names = [f"stdout.{n}" for n in range(len(files) - 1, 0, -1)] + ["stdout"]
    assert [(tmp_path / "run" / name).read_bytes() for name in names] == files
    assert not (tmp_path / "run" / f"stdout.{len(files)}").exists()


# Where the task put a directory (with a file in it) among a rotating log's backups: at the
# last one kept, which the next oldest is renamed over; at `.1` of a log keeping one backup.
BLOCKED_BACKUPS = {"the last backup kept": (3, "stdout.3"), "the only backup": (1, "stdout.1")}


@pytest.mark.parametrize("backups, planted", BLOCKED_BACKUPS.values(), ids=BLOCKED_BACKUPS)
def test_a_backup_the_task_replaced_with_a_directory_does_not_stop_the_rotation(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, backups: int, planted: str) -> None:
    """Was: each rotation failed at that rename (a file is not renamed over a directory, nor
    a directory over a file), for good: every later write raised (one ERROR), and the run's
    output was dropped to its end. The rotation goes on (one WARNING); the directory stays."""
    run = tmp_path / "run"
    run_dir = _open_dir(run)
    log = LogFile(run_dir, "stdout", run / "stdout", max_bytes=10, backups=backups)
    try:
        for letter in b"abcd":
            log.write(bytes([letter]) * 10)
        (run / planted).unlink()
        (run / planted).mkdir()
        (run / planted / "keep").write_bytes(b"the task's")
        with caplog.at_level(logging.WARNING, logger="executor.procs.logpump"):
            for letter in b"efg":
                log.write(bytes([letter]) * 10)
        first = rotation.open_first(run_dir, "stdout")  # where `tail -f` and the observer start
        try:
            oldest = os.read(first, 100)
        finally:
            os.close(first)
    finally:
        log.close()
        os.close(run_dir)
    assert (run / "stdout").read_bytes() == b"g" * 10
    assert (run / planted / "keep").read_bytes() == b"the task's"
    kept = sorted(p.name for p in run.iterdir() if p.is_file())
    assert all(len((run / name).read_bytes()) == 10 for name in kept) and len(kept) <= backups + 1
    newer = [f"stdout.{k}" for k in range(int(planted.split(".")[1]) - 1, 0, -1)] + ["stdout"]
    assert oldest == (run / newer[0]).read_bytes()  # the oldest below the directory: no error
    blocked = [r.getMessage() for r in caplog.records if "log_backup_blocked" in r.getMessage()]
    assert len(blocked) == 1 and f"backup={planted}" in blocked[0], caplog.text


def test_a_follower_goes_on_past_a_backup_the_task_replaced_with_a_directory(tmp_path: Path) -> None:
    """A follower (`stoker tail -f`, the observer's follow) holds the oldest backup when the task
    puts a directory at the next newer one's name; a rotation moves both up. Was: the file
    written after the one held was that directory, an UnsafePath error that ended `tail -f`
    ("stopped following") though the rotation goes on past it: now the next plain file."""
    run = tmp_path / "run"
    run_dir = _open_dir(run)
    log = LogFile(run_dir, "stdout", run / "stdout", max_bytes=10, backups=3)
    try:
        for letter in b"abc":
            log.write(bytes([letter]) * 10)
        held = os.stat(run / "stdout.2")  # a's file, where `open_first` starts
        (run / "stdout.1").unlink()
        (run / "stdout.1").mkdir()
        (run / "stdout.1" / "keep").write_bytes(b"the task's")
        log.write(b"d" * 10)  # a to .3, the directory to .2, c to .1
        assert (run / "stdout.2").is_dir() and (run / "stdout.3").read_bytes() == b"a" * 10
        successor = rotation.open_successor(run_dir, "stdout", (held.st_dev, held.st_ino))
        assert successor is not None
        try:
            assert os.read(successor, 100) == b"c" * 10
        finally:
            os.close(successor)
    finally:
        log.close()
        os.close(run_dir)
