"""`stoker run`'s console under a failed run: the last lines of its stderr shown under it,
read from the end of its log (and its rotated backup), escaped and cut where they must be,
the `stoker tail` command that shows the rest, one line a shell reads, and the live view
drawn again below them. Real files. The console's other parts: test_console.py."""
from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest

from executor.events import ProcessState, ProcessTransition, RunOutcome
from executor.local.console import TAIL_LINE_CHARS, ConsoleReporter, Output
from tests.support.shellwords import python_sh
from tests.support.stoker_proc import REPO


def failed(process: str = "web", run: int = 0) -> ProcessTransition:
    return ProcessTransition(process, run, ProcessState.RUNNING, ProcessState.WAITING, "exit status 1",
                             RunOutcome.FAILED)


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
