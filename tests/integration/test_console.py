"""`stoker run`'s console: an Output that survives its reader, escaped text, a failed run's
stderr under it, and the live view cleared on close. Real files, a real pipe."""
from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from config.logline import log_event
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
from executor.local.console import TAIL_LINE_CHARS, ConsoleReporter, Output
from executor.logs import Spool, screen_line_kept
from healthcheck.policy import AttemptOutcome, HealthState
from tests.support.shellwords import python_sh
from tests.support.stoker_proc import REPO
from tests.support.waiting import wait_for

F_GETPIPE_SZ = 1032  # fcntl.F_GETPIPE_SZ from Python 3.10 on Linux; spelt out for mypy's stubs


def failed(process: str = "web", run: int = 0) -> ProcessTransition:
    return ProcessTransition(process, run, ProcessState.RUNNING, ProcessState.WAITING, "exit status 1",
                             RunOutcome.FAILED)


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
    assert len(warnings) == 1 and warnings[0].startswith('stdout_gone error="BrokenPipeError')
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


def test_a_failed_run_shows_its_last_stderr_lines_and_the_tail_command(tmp_path):
    log = tmp_path / ".logs" / "web" / "2" / "stderr"
    log.parent.mkdir(parents=True)
    for kept in (".logs.attempt-0", ".logs.attempt-6"):  # this attempt's logs will be the 7th kept
        (tmp_path / kept).mkdir()
    log.write_text("".join(f"noise {i}\n" for i in range(2000)) + "\nlast words\x1b[1m\n\n")
    buf = io.StringIO()
    console = ConsoleReporter(Output(buf), "t.0", sandbox=tmp_path, names=["web"], live=False)
    console.on_transition(failed(run=2))
    lines = buf.getvalue().splitlines()
    indent = " " * lines[0].index("RUNNING → WAITING")
    assert lines[1:] == [
        f"{indent}| noise 1996", f"{indent}| noise 1997", f"{indent}| noise 1998", f"{indent}| noise 1999",
        f"{indent}| last words\\x1b[1m",
        f"{indent}(the last 5 lines of its stderr; all of it: stoker tail {tmp_path} web --stderr --run 2 -n +1; "
        f"once the task has restarted, add --attempt 7)",
    ]


def test_an_empty_stderr_points_at_the_stdout_and_no_log_shows_nothing(tmp_path):
    (tmp_path / ".logs" / "web" / "0").mkdir(parents=True)
    (tmp_path / ".logs" / "web" / "0" / "stderr").write_text("")
    buf = io.StringIO()
    console = ConsoleReporter(Output(buf), "t.0", sandbox=tmp_path, live=False)
    console.on_transition(failed(run=0))
    console.on_transition(failed(process="gone", run=0))  # no log (destination console, or never started)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[1].strip() == (f"(its stderr is empty; its stdout: stoker tail {tmp_path} web --run 0 -n +1; "
                                "once the task has restarted, add --attempt 0)")


def test_the_tail_command_of_a_sandbox_with_a_newline_and_an_escape_in_its_name_is_one_line_a_shell_reads(tmp_path):
    """Was: `shlex.quote`'s word, the newline and the ESC in it raw: the hint broke over two
    lines and its ESC reached the terminal."""
    sandbox = tmp_path / "sb\n\x1b[2Jx"
    (sandbox / ".logs" / "web" / "0").mkdir(parents=True)
    (sandbox / ".logs" / "web" / "0" / "stderr").write_text("")
    buf = io.StringIO()
    ConsoleReporter(Output(buf), "t.0", sandbox=sandbox, live=False).on_transition(failed(run=0))
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2 and "\x1b" not in buf.getvalue()
    word = lines[1].split("stoker tail ", 1)[1].split(" web --run", 1)[0]
    for shell in ("dash", "bash"):  # any POSIX shell: dash has no `$'...'`, which was the form
        shown = subprocess.run([shell, "-c", f"printf %s {word}"], capture_output=True, timeout=20, check=True)
        assert shown.stdout == os.fsencode(str(sandbox)), shell


def test_the_tail_command_of_a_relative_sandbox_that_starts_with_a_dash_runs_pasted_into_a_shell(tmp_path, monkeypatch):
    """`stoker tail -sb web --run 0 -n +1`: argparse read `-sb` as an option (`unrecognized
    arguments`); `./-sb` is the same sandbox."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-sb" / ".logs" / "web" / "0").mkdir(parents=True)
    (tmp_path / "-sb" / ".logs" / "web" / "0" / "stderr").write_text("")
    (tmp_path / "-sb" / ".logs" / "web" / "0" / "stdout").write_text("its output\n")
    buf = io.StringIO()
    ConsoleReporter(Output(buf), "t.0", sandbox=Path("-sb"), live=False).on_transition(failed(run=0))
    command = buf.getvalue().splitlines()[1].split("its stdout: stoker ", 1)[1].split(";", 1)[0]
    for shell in ("dash", "bash"):
        line = f"{python_sh('-m', 'executor')} {command}"
        pasted = subprocess.run([shell, "-c", line], env=dict(os.environ, PYTHONPATH=str(REPO)),
                                capture_output=True, text=True, timeout=60)
        assert (pasted.returncode, pasted.stdout) == (0, "its output\n"), (shell, line, pasted.stderr)


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


def test_a_failed_runs_stderr_rotated_a_moment_before_is_read_from_its_backup(tmp_path):
    """A rotating logger: right after a rotation `stderr` holds little or nothing, and the
    console said "its stderr is empty" of a run whose last words were in `stderr.1`."""
    run = tmp_path / ".logs" / "web" / "0"
    run.mkdir(parents=True)
    (run / "stderr.1").write_text("".join(f"noise {i}\n" for i in range(2000)) + "Traceback:\n  bo")
    (run / "stderr").write_text("om\n")  # the pump cuts at log_size, even mid-line
    buf = io.StringIO()
    console = ConsoleReporter(Output(buf), "t.0", sandbox=tmp_path, live=False)
    console.on_transition(failed(run=0))
    lines = [line.strip() for line in buf.getvalue().splitlines()[1:]]
    assert lines[-3:-1] == ["| Traceback:", "|   boom"]
    assert lines[0] == "| noise 1997" and len(lines) == 6


def test_a_failed_runs_stderr_whose_last_line_is_longer_than_what_is_read_is_not_said_empty(tmp_path):
    """A last line longer than the 8 KiB read from the end (an exception that quotes a big
    payload, a dump on one line): the line the seek cut was dropped, nothing was left, and
    the console said "its stderr is empty; its stdout: ..." of a run whose stderr held 20 KB.
    Its end is shown, marked as cut."""
    run = tmp_path / ".logs" / "web" / "0"
    run.mkdir(parents=True)
    (run / "stderr").write_text("Traceback:\nValueError: " + "x" * 20000 + " the end\n")
    buf = io.StringIO()
    ConsoleReporter(Output(buf), "t.0", sandbox=tmp_path, live=False).on_transition(failed(run=0))
    lines = [line.strip() for line in buf.getvalue().splitlines()[1:]]
    assert lines == ["| …" + "x" * (TAIL_LINE_CHARS - len("… the end")) + " the end",
                     f"(the last line of its stderr; all of it: stoker tail {tmp_path} web --stderr --run 0 "
                     "-n +1; once the task has restarted, add --attempt 0)"]


def test_a_cut_line_shows_no_replacement_for_the_character_the_read_began_inside(tmp_path):
    """The read from the end began inside a two-byte character of the last line, its tail
    followed by a progress bar's clearings (blank lines): the shown end began with '�', a
    character the run never wrote."""
    run = tmp_path / ".logs" / "web" / "0"
    run.mkdir(parents=True)
    clearings = ("\r" + " " * 79) * 101 + "\n"  # 8,081 bytes: the line's last 111 are read
    (run / "stderr").write_text("ValueError: " + "é" * 5000 + clearings, encoding="utf-8")
    buf = io.StringIO()
    ConsoleReporter(Output(buf), "t.0", sandbox=tmp_path, live=False).on_transition(failed(run=0))
    assert buf.getvalue().splitlines()[1].strip() == "| …" + "é" * 55


def test_a_stderr_whose_last_8_kib_are_blank_is_not_said_empty(tmp_path):
    """The error, then more than the 8 KiB read from the end of blank lines (a progress
    bar's clearings, each '\\r' and spaces): the console said "its stderr is empty" of a
    stderr of 9 KB whose first line was the error."""
    run = tmp_path / ".logs" / "web" / "0"
    run.mkdir(parents=True)
    (run / "stderr").write_text("Error: boom\n" + ("\r" + " " * 79) * 110 + "\n")
    buf = io.StringIO()
    ConsoleReporter(Output(buf), "t.0", sandbox=tmp_path, live=False).on_transition(failed(run=0))
    assert buf.getvalue().splitlines()[1].strip() == (
        f"(the last 8,192 bytes of its stderr are blank; all of it: stoker tail {tmp_path} web --stderr --run 0 "
        "-n +1; once the task has restarted, add --attempt 0)")


def _footer(sandbox: Path, last: str) -> str:
    return (f"({last} of its stderr; all of it: stoker tail {sandbox} web --stderr --run 0 -n +1; "
            "once the task has restarted, add --attempt 0)")


def test_a_stderr_of_exactly_the_read_s_size_is_read_whole(tmp_path):
    """8,192 bytes are all of it: no line was cut, nor a character begun before the read (a
    byte that is no UTF-8 at its start is the run's own, shown as `\\x80`)."""
    run = tmp_path / ".logs" / "web" / "0"
    run.mkdir(parents=True)
    head, tail = b"\x80first\n", b"second\n"
    (run / "stderr").write_bytes(head + b" " * (8192 - len(head) - len(tail) - 1) + b"\n" + tail)
    buf = io.StringIO()
    ConsoleReporter(Output(buf), "t.0", sandbox=tmp_path, live=False).on_transition(failed(run=0))
    lines = [line.strip() for line in buf.getvalue().splitlines()[1:]]
    assert lines == ["| \\x80first", "| second", _footer(tmp_path, "the last 2 lines")]


def test_a_blank_stderr_of_exactly_the_read_s_size_is_said_empty(tmp_path):
    run = tmp_path / ".logs" / "web" / "0"
    run.mkdir(parents=True)
    (run / "stderr").write_bytes((b" " * 127 + b"\n") * 64)  # 8,192 bytes, all of them read
    buf = io.StringIO()
    ConsoleReporter(Output(buf), "t.0", sandbox=tmp_path, live=False).on_transition(failed(run=0))
    assert buf.getvalue().splitlines()[1].strip() == (
        f"(its stderr is empty; its stdout: stoker tail {tmp_path} web --run 0 -n +1; "
        "once the task has restarted, add --attempt 0)")


def test_a_failed_runs_stderr_writes_a_c1_control_and_a_byte_that_is_not_utf_8_apart(tmp_path):
    """As everything Stoker prints (docs/contract.md §1): a C1 control character `\\u0085`, a
    byte that is not UTF-8 `\\x85`. The lines under a failed run showed the byte as '�' and
    broke the line at the character (a NEL and a form feed were line ends there, not in the
    log nor in `stoker tail`), so the two could not be told apart."""
    run = tmp_path / ".logs" / "web" / "0"
    run.mkdir(parents=True)
    (run / "stderr").write_bytes(b"first\r\nbar 10%\rbar 99%\r\nnel \xc2\x85 byte \x85 ff \x0c end\n")
    buf = io.StringIO()
    ConsoleReporter(Output(buf), "t.0", sandbox=tmp_path, live=False).on_transition(failed(run=0))
    lines = [line.strip() for line in buf.getvalue().splitlines()[1:]]
    assert lines == ["| first", "| bar 10%", "| bar 99%", "| nel \\u0085 byte \\x85 ff \\x0c end",
                     _footer(tmp_path, "the last 4 lines")]


@pytest.mark.parametrize("after, shown", [
    ("last\n", ["| last"]),  # the line after the cut one: the cut one left out
    ("a\nb\n", ["| a", "| b"]),
])
def test_the_line_the_read_cut_is_left_out_when_a_whole_line_follows_it(tmp_path, after, shown):
    run = tmp_path / ".logs" / "web" / "0"
    run.mkdir(parents=True)
    (run / "stderr").write_text("x" * 9000 + "\n" + after)
    buf = io.StringIO()
    ConsoleReporter(Output(buf), "t.0", sandbox=tmp_path, live=False).on_transition(failed(run=0))
    lines = [line.strip() for line in buf.getvalue().splitlines()[1:]]
    last = "the last line" if len(shown) == 1 else f"the last {len(shown)} lines"
    assert lines == [*shown, _footer(tmp_path, last)]


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
    assert warning.startswith('stdout_gone error="BrokenPipeError: [Errno 32] Broken pipe"'), warning
    # no note given: nothing in parentheses
    assert warning.endswith('stdout is gone: state changes are no longer printed; the task goes on"'), warning
    stream.close()


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


@pytest.mark.parametrize("stderr", ["", "\n" * 9000], ids=["empty", "blank past the read"])
def test_the_live_view_is_drawn_again_under_a_failed_run_s_words_on_an_empty_or_blank_stderr(tmp_path, stderr):
    """The words for an empty or blank stderr cleared the view and did not draw it again: the
    terminal showed no live view until the next line."""
    run = tmp_path / ".logs" / "web" / "0"
    run.mkdir(parents=True)
    (run / "stderr").write_text(stderr)
    buf = io.StringIO()
    console = ConsoleReporter(Output(buf), "t.0", sandbox=tmp_path, live=True)
    console.on_transition(failed(run=0))
    words, view = buf.getvalue().rsplit("\n", 1)
    assert words.endswith("once the task has restarted, add --attempt 0)")
    assert view == "\x1b[7m[t.0 NEW] web:WAITING[0]\x1b[0m"
    console.close()


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


@pytest.mark.parametrize("stderr, shown", [
    # a line of bytes that are not UTF-8, one character off the escapes' width: it ended `\xf`
    (b"a" + b"\xff" * 100 + b"\n", "| a" + "\\xff" * 49 + "…"),
    # the end of a line the read cut, escapes (ESC, 4 characters each) up to its start: it began `…1b[`
    (b"\x1b[" * 5000 + b"en\n", "| …[" + "\\x1b[" * 39 + "en"),
])
def test_a_long_stderr_line_is_cut_between_escapes_and_marked_where_it_was_cut(tmp_path, stderr, shown):
    """A line longer than TAIL_LINE_CHARS, shown escaped: cut at 200 characters of its escapes,
    it ended inside one (`\\xf`, read as text the run never wrote) with no mark that it went
    on, or began inside one (`…1b[`). Whole escapes only, and `…` where it was cut."""
    run = tmp_path / ".logs" / "web" / "0"
    run.mkdir(parents=True)
    (run / "stderr").write_bytes(stderr)
    buf = io.StringIO()
    ConsoleReporter(Output(buf), "t.0", sandbox=tmp_path, live=False).on_transition(failed(run=0))
    line = buf.getvalue().splitlines()[1].strip()
    assert line == shown and len(line) <= len("| ") + TAIL_LINE_CHARS


def test_a_stderr_line_of_control_characters_python_calls_whitespace_is_shown_not_called_blank(tmp_path):
    """A NEL, a form feed, a file separator: `str.strip` takes them for spaces, so a line of
    only them was left out as blank (a stderr of only them said empty), though it shows as
    `\\u0085`, `\\x0c`, `\\x1c` here and in `stoker tail`. A line of spaces and tabs is blank."""
    run = tmp_path / ".logs" / "web" / "0"
    run.mkdir(parents=True)
    (run / "stderr").write_bytes("\u0085\n \t \n\x0c\x1c\n".encode())
    buf = io.StringIO()
    ConsoleReporter(Output(buf), "t.0", sandbox=tmp_path, live=False).on_transition(failed(run=0))
    lines = [line.strip() for line in buf.getvalue().splitlines()[1:]]
    assert lines == ["| \\u0085", "| \\x0c\\x1c", _footer(tmp_path, "the last 2 lines")]


def test_a_failed_run_s_stderr_lines_show_as_stoker_tail_shows_them_on_a_terminal(tmp_path):
    """Tabs kept, other control characters written out, as `stoker tail` writes a log on a
    terminal (docs/contract.md §1: a process's output shown; the line points at that command
    for the rest): was `\\tat com.example.Main.main(...)`, a Java stack trace's (and a Go
    panic's) indent written out, where `stoker tail` shows the indent."""
    from executor.cli.tail import TerminalText

    stderr = b"Exception in thread \"main\" java.lang.IllegalStateException\n\tat com.example.Main.main(Main.java:5)\n" \
             b"col\tcol\x1b[31m\xff\x07\n"
    run = tmp_path / ".logs" / "web" / "0"
    run.mkdir(parents=True)
    (run / "stderr").write_bytes(stderr)
    buf = io.StringIO()
    ConsoleReporter(Output(buf), "t.0", sandbox=tmp_path, live=False).on_transition(failed(run=0))
    shown = [line.split("| ", 1)[1] for line in buf.getvalue().splitlines()[1:4]]
    terminal = io.BytesIO()
    tail = TerminalText(terminal, "utf-8")
    tail.write(stderr)
    tail.finish()
    assert shown == terminal.getvalue().decode().splitlines()
    assert shown[1] == "\tat com.example.Main.main(Main.java:5)"
