"""`stoker run`'s console: an Output that survives its reader, escaped text, the live view
cleared on close, and the spool that never blocks its caller. Real files, a real pipe. A
failed run's stderr under it: test_console_stderr.py."""
from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import select
import sys
import time

import pytest

from config.logline import log_event, to_devnull
from config.words import columns
from executor.cli.logsetup import JsonFormatter, QuietHandler
from executor.events import (
    HealthTransition,
    KillStep,
    PhaseTransition,
    ProcessState,
    ProcessTransition,
    RunOutcome,
    TaskPhase,
    TaskStage,
    TaskTransition,
)
from executor.local.console import ConsoleReporter, Output
from executor.logs import screen_line_kept
from executor.spool import Spool
from healthcheck.policy import AttemptOutcome, HealthState
from tests.support.waiting import wait_for

F_GETPIPE_SZ = 1032  # fcntl.F_GETPIPE_SZ from Python 3.10 on Linux; spelt out for mypy's stubs


def test_a_closed_pipe_makes_the_output_gone_once_without_raising(caplog):
    read, write = os.pipe()
    stream = os.fdopen(write, "w")
    os.close(read)  # the reader went away (`| head`)
    out = Output(stream)
    out.note = "`stoker status SB` shows it"
    with caplog.at_level(logging.WARNING):
        out.write("a line\n")
        out.write("another\n")
    assert out.gone
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and warnings[0].startswith('stdout_gone error="Broken pipe (EPIPE)"')
    assert warnings[0].endswith('stdout is gone: state changes are no longer printed; the task '
                                'goes on (`stoker status SB` shows it)"')
    stream.close()  # the descriptor now points at /dev/null: closing flushes quietly


def test_no_stdout_at_all_is_gone_too():
    out = Output(None)  # type: ignore[arg-type]  # sys.stdout is None when fd 1 was closed
    out.write("x\n")
    assert out.gone


def test_every_text_is_escaped_and_columns_fit_the_longest_name():
    buf = io.StringIO()
    console = ConsoleReporter(Output(buf), "t.0", names=["a", "a_process_with_a_long_name"], live=False)
    console.on_transition(TaskTransition(TaskStage.RUNNING, TaskStage.KILLING, "body \x1b[2J\x07"))
    console.on_transition(KillStep("lifecycle", "POST answered HTTP 501\x1b[31m"))
    lines = buf.getvalue().splitlines()
    assert lines[0].endswith("task" + " " * 27 + " RUNNING → KILLING  body \\x1b[2J\\x07")
    assert lines[1].endswith("stop" + " " * 27 + " lifecycle: POST answered HTTP 501\\x1b[31m")
    assert "\x1b" not in buf.getvalue()


def test_a_state_change_s_format_characters_are_written_out_as_the_log_writes_them():
    """`stoker run` prints its state changes here instead of its log: a right-to-left override
    in a reason (a health endpoint's body, an operator's name) turned the rest of the line."""
    buf = io.StringIO()
    console = ConsoleReporter(Output(buf), "t.0", names=["a"], live=False)
    console.on_transition(TaskTransition(TaskStage.RUNNING, TaskStage.KILLING, "body we\u202eb\u2028x"))
    (line,) = buf.getvalue().splitlines()
    assert line.endswith(" RUNNING → KILLING  body we\\u202eb\\u2028x")


def test_a_process_that_never_ran_is_named_without_a_run_number():
    """A final process the kill skipped ends with no run: it was printed as `fin[None]`."""
    buf = io.StringIO()
    console = ConsoleReporter(Output(buf), "t.0", names=["fin"], live=False)
    console.on_transition(ProcessTransition("fin", None, ProcessState.WAITING, ProcessState.KILLED,
                                            "final processes skipped: a second stop"))
    (line,) = buf.getvalue().splitlines()
    assert "fin " in line and "[None]" not in line, line
    assert line.endswith(" WAITING → KILLED  final processes skipped: a second stop")


def test_a_wide_task_label_takes_its_columns_and_the_text_under_it_lines_up():
    """A job named 作业 is 4 columns wide in 2 characters: padding by characters put every
    subject 2 columns right of a plain label's, and the lines under a line (a stop hint) 2
    columns left of its text."""
    buf = io.StringIO()
    console = ConsoleReporter(Output(buf), "作业.0", live=False)
    console.stop_hint = "hint"
    console.on_transition(TaskTransition(TaskStage.RUNNING, TaskStage.KILLING, "why"))
    line, hint = buf.getvalue().splitlines()
    assert line[len("00:00:00.000  "):].startswith("作业.0" + " " * 6 + " task")  # 12 columns
    assert hint == console.indent + "hint" and len(hint) - 4 == columns(line[:line.index("RUNNING")])

def test_the_live_view_is_cleared_on_close_and_not_drawn_again():
    buf = io.StringIO()
    console = ConsoleReporter(Output(buf), "t.0", live=True)
    console.on_transition(TaskTransition(TaskStage.STARTING, TaskStage.RUNNING, "ok"))
    assert buf.getvalue().endswith("\x1b[0m")  # the view is under the line
    console.close()
    console.line("stoker", "FINISHED (exit 0)")
    after_clear = buf.getvalue().rsplit("\r\x1b[2K", 1)[-1]
    assert after_clear.endswith("stoker           FINISHED (exit 0)\n") and "\x1b[7m" not in after_clear


def test_a_stop_hint_is_printed_once_under_the_next_line():
    buf = io.StringIO()
    console = ConsoleReporter(Output(buf), "t.0", live=False)
    console.stop_hint = "SIGINT: stopping gracefully; press Ctrl-C again"
    console.line("task", "RUNNING → KILLING  stopped by SIGINT")
    console.line("supervisor", "ACTIVE → CLEANING")
    lines = buf.getvalue().splitlines()
    assert lines[1] == console.indent + "SIGINT: stopping gracefully; press Ctrl-C again"
    assert len(lines) == 3


def test_the_live_view_fits_a_narrow_terminal_in_columns_not_characters(monkeypatch):
    """A job named in CJK on a 20-column terminal: each of its characters takes two columns.
    A view cut by characters wrapped onto a second line, which the next redraw's clearing
    never reached: the screen filled with stale views."""
    monkeypatch.setenv("COLUMNS", "20")
    buf = io.StringIO()
    console = ConsoleReporter(Output(buf), "日本語サービス.0", live=True)
    console.on_transition(TaskTransition(TaskStage.STARTING, TaskStage.RUNNING, "ok"))
    console.close()
    view = buf.getvalue().split("\x1b[7m")[1].split("\x1b[0m")[0]
    assert view == "[日本語サービス.0 R"  # 19 columns: 7 wide characters (14), 5 narrow ones


def _writing_the_last(spool: Spool) -> bool:
    """The spool's thread took the last line put and is writing it: on a full pipe, blocked
    there until the reader reads. Lines put from then on queue up to its limit (a writer
    not yet scheduled, on a busy host, took its first line later: lines were dropped, one
    was queued in the room it made, and more dropped, which the tests below took for two
    stalls)."""
    with spool._cond:
        return spool._busy and not spool._items


def test_the_spool_never_blocks_its_caller_and_counts_what_it_dropped():
    """A reader that stops reading (a real pipe, full): `put` returns at once; past the
    limit lines are dropped, and a note says how many once the reader is back."""
    read, write = os.pipe()
    os.write(write, b"y" * fcntl.fcntl(write, F_GETPIPE_SZ))  # full: the next write blocks
    stream = os.fdopen(write, "w")
    spool = Spool(limit=1000)
    lines = [f"line {i:03d} is forty characters long......\n" for i in range(50)]
    try:
        spool.put(stream, lines[0], lambda exc: None)
        wait_for(lambda: _writing_the_last(spool), 5, message="the spool's writer took the first line")
        assert not spool.drain(0.05)  # its writer is blocked: nobody reads
        started = time.monotonic()
        for line in lines[1:]:
            spool.put(stream, line, lambda exc: None)  # 25 fit in the limit, 24 do not
        assert time.monotonic() - started < 5  # a bound: a put that blocked would block until a read
        assert len(lines[0]) == 40
        got = b""
        deadline = time.monotonic() + 5
        while not got.endswith(lines[25].encode()) and time.monotonic() < deadline:
            if select.select([read], [], [], 0.1)[0]:
                got += os.read(read, 65536)  # the reader is back
        spool.put(stream, "after\n", lambda exc: None)
        assert spool.drain(5)
        os.set_blocking(read, False)
        got += os.read(read, 65536)
    finally:
        stream.close()
        os.close(read)
    assert got.endswith("".join(lines[:26]).encode() +
                        b"[stoker: 24 lines not shown: their reader was not reading]\nafter\n")


def test_a_json_log_says_in_json_what_its_stalled_reader_missed():
    """`stoker run --log-format json 2>| reader`: the note for the lines dropped while the
    reader did not read is a JSON object like the rest (it was `[stoker: 24 lines not
    shown: ...]`, the one line of the log no JSON reader could parse)."""
    read, write = os.pipe()
    full = os.write(write, b"y" * fcntl.fcntl(write, F_GETPIPE_SZ))  # full: the next write blocks
    stream = os.fdopen(write, "w")
    handler = QuietHandler(stream, spooled=Spool(limit=1000))
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("executor.test.stalled")
    log.addHandler(handler)
    log.propagate = False
    try:
        log_event(log, logging.WARNING, "health_check", attempt=0)  # about 100 characters each
        spool = handler._spool
        assert spool is not None
        wait_for(lambda: _writing_the_last(spool), 5, message="the spool's writer took the first line")
        for i in range(1, 30):
            log_event(log, logging.WARNING, "health_check", attempt=i)
        got = b""
        while len(got) < full:  # the reader is back: the emptied pipe takes what was queued
            got += os.read(read, 65536)
        assert spool.drain(5)
        log_event(log, logging.WARNING, "health_check", attempt=30)
        assert spool.drain(5)
        os.set_blocking(read, False)
        got += os.read(read, 65536)
    finally:
        log.removeHandler(handler)
        stream.close()
        os.close(read)
    lines = [json.loads(line) for line in got.lstrip(b"y").splitlines()]
    attempts = [line["attempt"] for line in lines if line["event"] == "health_check"]
    (note,) = [line for line in lines if line["event"] == "log_lines_dropped"]
    assert note["reason"] == f"{31 - len(attempts)} lines not shown: their reader was not reading"
    assert attempts[-1] == 30 and lines[-2] is note


def test_the_live_view_shows_each_process_s_state_and_run_the_task_s_and_the_health_attempt(monkeypatch, tmp_path):
    """Each line names a run as `web[2]`; a run that did not fail shows no stderr, though it
    wrote some; the live view under the lines holds the task's state (NEW before its first
    change), each process's with its run, and the last health attempt."""
    monkeypatch.setenv("COLUMNS", "200")
    (tmp_path / ".logs" / "web" / "2").mkdir(parents=True)
    (tmp_path / ".logs" / "web" / "2" / "stderr").write_text("a warning\n")
    buf = io.StringIO()
    console = ConsoleReporter(Output(buf), "t.0", sandbox=tmp_path, names=["web", "db"], live=True)
    console.on_transition(ProcessTransition("web", 2, ProcessState.RUNNING, ProcessState.SUCCESS, "exit status 0",
                                            RunOutcome.SUCCESS))
    console.on_transition(ProcessTransition("db", 0, ProcessState.WAITING, ProcessState.RUNNING, "started"))
    console.on_transition(PhaseTransition(TaskPhase.ACTIVE, TaskPhase.CLEANING, "every process ended"))
    console.on_transition(HealthTransition(HealthState.STARTING, HealthState.RUNNING, 3, AttemptOutcome.PASSED, "ok"))
    written = buf.getvalue()
    assert written.rsplit("\n", 1)[-1].endswith(  # the health attempt: the view cleared and drawn again
        "\x1b[0m\r\x1b[2K\x1b[7m[t.0 NEW] web:SUCCESS[2] db:RUNNING[0] | health RUNNING #3 passed\x1b[0m")
    lines = [line.rsplit("\x1b[2K", 1)[-1] for line in written.split("\n")[:-1]]  # each after its clearing
    assert [line[len("00:00:00.000  "):].split()[:2] for line in lines] == [
        ["t.0", "web[2]"], ["t.0", "db[0]"], ["t.0", "supervisor"]]
    assert lines[2].endswith("supervisor       ACTIVE → CLEANING  every process ended")


def test_output_through_a_spool_writes_each_text_and_a_failed_write_makes_it_gone_once(caplog):
    read, write = os.pipe()
    stream = os.fdopen(write, "w")
    spool = Spool()
    out = Output(stream, spool)
    out.write("a line\n")
    assert spool.drain(5) and os.read(read, 100) == b"a line\n"
    os.close(read)  # the reader went away
    with caplog.at_level(logging.WARNING):
        out.write("another\n")
        out.write("and one more\n")  # spooled before the first failed: it fails too
        assert spool.drain(5)
        out.write("and the last\n")
        assert spool.drain(5)
    assert out.gone
    (warning,) = [r.getMessage() for r in caplog.records]  # once
    assert warning.startswith('stdout_gone error="Broken pipe (EPIPE)"'), warning  # as every errno is said
    # no note given: nothing in parentheses
    assert warning.endswith('stdout is gone: state changes are no longer printed; the task goes on"'), warning
    stream.close()


def test_output_through_a_spool_on_a_full_disk_says_once_that_lines_are_lost(caplog):
    """/dev/full: each write fails with ENOSPC, which a later write may not (the spool counts
    the lines for its note); the first loss is one WARNING, the Output is not gone."""
    with open("/dev/full", "w") as stream:
        spool = Spool()
        out = Output(stream, spool)
        with caplog.at_level(logging.WARNING):
            for n in range(5):
                out.write(f"line {n}\n")
                assert spool.drain(5)
        assert not out.gone
        (warning,) = [r.getMessage() for r in caplog.records]
        assert warning.startswith('stdout_lost reason="stdout could not be written (the disk was full)'), warning
        to_devnull(stream)  # what the buffer holds: closed quietly


def test_output_is_a_terminal_only_on_a_tty_whose_term_is_not_dumb(monkeypatch):
    """And a console left to find out (`live=None`) draws its live view on one."""
    main, tty = os.openpty()
    try:
        with os.fdopen(tty, "w", closefd=False) as stream:
            said = {}
            for term in ("xterm", "dumb", None):
                if term is None:
                    monkeypatch.delenv("TERM", raising=False)
                else:
                    monkeypatch.setenv("TERM", term)
                said[term] = Output(stream).isatty()
            monkeypatch.setenv("TERM", "xterm")
            console = ConsoleReporter(Output(stream), "t.0")
            kept = screen_line_kept()
            console.line("task", "started")
            console.close()
            drawn, deadline = b"", time.monotonic() + 10
            while not drawn.endswith(b"\x1b[0m\r\x1b[2K") and time.monotonic() < deadline:
                if select.select([main], [], [], 0.5)[0]:  # the terminal passes writes on as it can
                    drawn += os.read(main, 65536)
    finally:
        os.close(main)
        os.close(tty)
    assert said == {"xterm": True, "dumb": False, None: False}
    assert kept and not screen_line_kept() and b"\x1b[7m[t.0 NEW]" in drawn, drawn
    assert not Output(io.StringIO()).isatty() and not Output(None).isatty()  # type: ignore[arg-type]
    closed = io.StringIO()
    closed.close()
    assert not Output(closed).isatty()  # ValueError: a closed stream


def test_a_line_to_the_journal_has_no_stamp_and_the_lines_under_it_line_up():
    """systemd's journal stamps each line itself."""
    buf = io.StringIO()
    out = Output(buf)
    out.journal = True
    console = ConsoleReporter(out, "t.0", live=False)
    console.stop_hint = "hint"
    console.line("task", "RUNNING → KILLING  why")
    line, hint = buf.getvalue().splitlines()
    assert line == "t.0          task             RUNNING → KILLING  why"
    assert hint == " " * line.index("RUNNING") + "hint" == console.indent + "hint"


def test_a_line_is_stamped_with_the_local_time_it_was_written_to_the_millisecond():
    """Lines written for over a second: an even second and an odd one are among them."""
    buf = io.StringIO()
    console = ConsoleReporter(Output(buf), "t.0", live=False)
    ends = time.time() + 1.1
    while time.time() < ends:
        at = buf.tell()
        before = time.time()
        console.line("task", "x")
        after = time.time()
        stamps = {time.strftime("%H:%M:%S", time.localtime(ms / 1000)) + f".{ms % 1000:03d}  "
                  for ms in range(int(before * 1000), int(after * 1000) + 1)}
        line = buf.getvalue()[at:]
        assert line[:len("00:00:00.000  ")] in stamps, (line, sorted(stamps))
        time.sleep(0.05)


def test_the_live_view_hidden_is_cleared_and_shown_again_and_never_before_it_was_drawn():
    buf = io.StringIO()
    console = ConsoleReporter(Output(buf), "t.0", live=True)
    console.show()
    console.hide()
    console.show()
    assert buf.getvalue() == ""  # nothing drawn yet: nothing to clear, nor to draw again
    console.line("task", "x")
    drawn = buf.getvalue()
    console.hide()
    assert buf.getvalue() == drawn + "\r\x1b[2K"
    console.show()
    console.show()  # once drawn again, no more
    assert buf.getvalue() == drawn + "\r\x1b[2K\x1b[7m[t.0 NEW] \x1b[0m"
    console.close()
    assert buf.getvalue().endswith("\x1b[0m\r\x1b[2K") and not screen_line_kept()


def test_the_live_view_fits_120_columns_where_the_terminal_s_width_is_not_known(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    if sys.__stdout__ is not None and os.isatty(sys.__stdout__.fileno()):  # else pytest's capture: a file
        pytest.skip("this test's stdout is a terminal (pytest -s): its width is known")
    buf = io.StringIO()
    console = ConsoleReporter(Output(buf), "t" * 200, live=True)
    console.line("task", "x")
    console.close()
    view = buf.getvalue().split("\x1b[7m")[1].split("\x1b[0m")[0]
    assert view == "[" + "t" * 118


def test_the_live_view_counts_no_column_for_a_combining_character(monkeypatch):
    monkeypatch.setenv("COLUMNS", "20")
    buf = io.StringIO()
    console = ConsoleReporter(Output(buf), "e\u0301" * 12 + ".0", live=True)  # 12 decomposed é: 12 columns
    console.line("task", "x")
    console.close()
    view = buf.getvalue().split("\x1b[7m")[1].split("\x1b[0m")[0]
    assert view == "[" + "e\u0301" * 12 + ".0 NEW"  # 19 columns in 31 characters


def test_output_through_a_spool_never_blocks_on_a_reader_that_does_not_read():
    """`stoker run | less` left at its first page: the task's lines wait in the spool."""
    read, write = os.pipe()
    os.write(write, b"y" * fcntl.fcntl(write, F_GETPIPE_SZ))  # full: the next write blocks
    stream = os.fdopen(write, "w")
    spool = Spool()
    out = Output(stream, spool)
    out.write("a line\n")
    assert not out.gone  # here, not blocked in the write
    os.close(read)
    assert spool.drain(5) and out.gone
    stream.close()
