"""`stoker run`'s console: each state change as one readable line, and a live view.

Owns what `stoker run` prints while a task runs: one line per transition (time, task,
subject, old → new, reason) in columns sized to the task's names; under a run that failed,
the last lines of its stderr and the `stoker tail` command for the rest; each step of a
stop and what it waits for; and, on a terminal, a one-line live view of the task under the
log, cleared when the task ends; the log handler writes its records above that view
(`executor.logs.above_screen_line`), never on its line. Every text goes through
`config.words.loggable`, as the log's lines do (a process's output, `printable`: it may be
right-to-left text), so a health endpoint's body or a process's output never drives the
operator's terminal, nor a format character turns a line around.

`Output` is stdout that never raises: when the reader goes away (`| head`, a quit pager, a
hung-up terminal) it says so once on the log and drops what follows, and the task goes on;
when lines are lost where a later write may work (a full disk, `> /dev/full`) it says so on
the log the first time, and the console says how many once a write works again.
Given a spool (`executor.spool.Spool`: `stoker run`'s), it never blocks either: a terminal
that stops reading (Ctrl-S) holds up the spool's thread, not the task's owner.
Never decides anything and never touches task state: it is the owner's reporter.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO, assert_never

import executor
from config.logline import to_devnull, to_journal, whole_writes
from config.words import columns, loggable, pad, printable, shell_path, shell_word
from executor.events import (
    HealthTransition,
    KillStep,
    PhaseTransition,
    ProcessTransition,
    RunOutcome,
    TaskTransition,
    Transition,
)
from executor.host.sandbox import log_end
from executor.logs import keep_screen_line, log_event, screen_lock
from executor.spool import Spool
from executor.task.status import Update

logger = logging.getLogger(__name__)

LABEL_WIDTH = 12  # the narrowest columns; longer names widen them
SUBJECT_WIDTH = 16
TAIL_LINES = 5  # a failed run's stderr lines shown under it
TAIL_BYTES = 8192  # read from the end of that stderr, at most
TAIL_LINE_CHARS = 200
_CONTINUATION = bytes(range(0x80, 0xC0))  # a UTF-8 character's bytes after its first


class Output:
    """A text stream whose writes never raise. The first write that fails (a closed pipe,
    a hung-up terminal) makes it gone for good: one WARNING on the log, `note` appended,
    and the stream's descriptor pointed at /dev/null so that the interpreter's last flush
    is quiet too."""

    def __init__(self, stream: TextIO, spool: Spool | None = None) -> None:
        self._stream = whole_writes(stream)  # `python -u`: a short write's rest not dropped unsaid
        self._spool = spool
        self.gone = False
        self.note = ""  # what to do instead, for the warning (e.g. the `stoker status` command)
        self.journal = to_journal(stream)  # systemd's journal, which stamps each line itself
        self._lost_said = False

    def write(self, text: str) -> None:
        if self.gone:
            return
        if self._spool is not None:
            self._spool.put(self._stream, text, self._failed, on_lost=self._lost)
            return
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError, AttributeError) as exc:  # closed under us, or None: no fd 1
            self._lose(exc)

    def isatty(self) -> bool:
        try:
            return self._stream.isatty() and os.environ.get("TERM", "dumb") != "dumb"
        except (AttributeError, ValueError, OSError):
            return False

    def in_front(self) -> bool:
        """Whether this process's group is the foreground job of the terminal it writes to:
        False for `stoker run JOB &` until `fg`; True when that cannot be told (not its
        controlling terminal, or no terminal)."""
        try:
            return os.tcgetpgrp(self._stream.fileno()) == os.getpgrp()
        except (AttributeError, ValueError, OSError):
            return True

    def _failed(self, exc: BaseException) -> None:
        """A spooled write failed (on the spool's thread)."""
        if not self.gone and isinstance(exc, (OSError, ValueError, AttributeError)):
            self._lose(exc)

    def _lost(self, why: str) -> None:
        """A spooled write's lines were lost where a later write may work (on the spool's
        thread): said once, on the log (was: nothing until a write worked again, so never on
        `> /dev/full`). The log's own lines go through the spool too: never blocks."""
        if self._lost_said or self.gone:
            return
        self._lost_said = True
        log_event(logger, logging.WARNING, "stdout_lost",
                  reason=f"stdout could not be written ({why}): state changes wait in its buffer (8 KiB), "
                  "then are lost, until a write works, which then says how many were lost; the task goes on"
                  + (f" ({self.note})" if self.note else ""))

    def _lose(self, exc: BaseException) -> None:
        self.gone = True
        error = executor.describe_os_error(exc) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
        log_event(logger, logging.WARNING, "stdout_gone", error=error,
                  reason="stdout is gone: state changes are no longer printed; the task goes on"
                  + (f" ({self.note})" if self.note else ""))
        to_devnull(self._stream)


class ConsoleReporter:
    """Prints each state change as one readable line: time, subject, old → new, reason.

    On a terminal it also keeps a one-line live view under the log (task state, each
    process's state and run, the last health check), redrawn on every change — never on a
    timer, so an idle task costs no wakeups — and cleared by `close()`; only while the run
    is the terminal's foreground job (`_front`). Its writes hold
    `executor.logs.screen_lock`, which a log record written to the same terminal holds too,
    while it hides the view (`hide`) and draws it again (`show`).
    """

    def __init__(self, out: Output, label: str, *, sandbox: Path | None = None,
                 names: Sequence[str] = (), live: bool | None = None) -> None:
        self._out = out
        self._label = loggable(label)
        self._sandbox = sandbox
        self._live = out.isatty() if live is None else live
        self._stamp_width = 0 if out.journal else len("00:00:00.000") + 2
        self._label_width = max(LABEL_WIDTH, columns(self._label))
        # "name[100]": run numbers stay under the run cap's 3 digits
        self._subject_width = max([SUBJECT_WIDTH] + [columns(loggable(n)) + 5 for n in names])
        self._task_state = "NEW"
        self._processes: dict[str, str] = {}  # the live view's only: piped output keeps none
        self._health = ""
        self._closed = False
        self._drawn = False  # the live view is on the screen's last line
        self._hidden = False  # cleared by `hide`, for `show` to draw again
        self.stop_hint = ""  # set (from the signal relay's thread) when the user asks for a stop
        if self._live:
            keep_screen_line(self)

    @property
    def label(self) -> str:
        return self._label

    @property
    def indent(self) -> str:
        """Spaces up to the text column, for lines that belong to the line above."""
        return " " * (self._stamp_width + self._label_width + 1 + self._subject_width + 1)

    def line(self, subject: str, text: str) -> None:
        now = time.time()
        stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}  "
        with screen_lock:
            self._write(f"{stamp if self._stamp_width else ''}{pad(self._label, self._label_width)} "
                        f"{pad(loggable(subject), self._subject_width)} {loggable(text)}\n")
            if self.stop_hint:
                hint, self.stop_hint = self.stop_hint, ""
                self._write(f"{self.indent}{loggable(hint)}\n")
            self._redraw()

    def hide(self) -> None:
        """Clear the live view (something else is about to write to the terminal)."""
        with screen_lock:
            self._hidden = self._drawn
            if self._drawn:
                self._write("")

    def show(self) -> None:
        """Draw the live view again, when `hide` cleared it."""
        with screen_lock:
            if self._hidden:
                self._hidden = False
                self._redraw()

    def resized(self) -> None:
        """The terminal's size changed (SIGWINCH, on the signal relay's thread): the live
        view is drawn again to its new width at once (was: at the task's next change, so an
        idle task's view stayed wrapped, or cut, after the window shrank). A terminal that
        rewraps its lines keeps the head of the wider view it wrapped, once, above. Also on
        SIGCONT: a background run brought to the foreground (`fg`) draws its view at once."""
        with screen_lock:
            if self._drawn or self._front():
                self._write("")
                self._redraw()

    def _front(self) -> bool:
        """Whether the live view may be drawn: on a terminal, before `close`, and while the
        run is the terminal's foreground job. A background one (`stoker run JOB &`, as the
        README advises to keep the shell) drew it all the same, each change a `\\r ESC[2K`
        that wiped the shell's prompt and what the user was typing on it."""
        return self._live and not self._closed and self._out.in_front()

    def _write(self, text: str) -> None:
        clear = self._drawn or self._front()
        self._drawn = False
        self._out.write(("\r\x1b[2K" if clear else "") + text)

    def _redraw(self) -> None:
        if self._front():
            procs = " ".join(f"{name}:{state}" for name, state in self._processes.items())
            view = f"[{self._label} {self._task_state}] {loggable(procs)}"
            if self._health:
                view += f" | health {self._health}"
            import shutil  # on a terminal only: piped output never draws the view

            width = shutil.get_terminal_size((120, 20)).columns - 1
            self._out.write("\x1b[7m" + _fit(view, width) + "\x1b[0m")
            self._drawn = True

    def on_transition(self, t: Transition) -> None:
        with screen_lock:
            self._report(t)

    def _report(self, t: Transition) -> None:
        match t:
            case TaskTransition():
                self._task_state = t.to.value
                self.line("task", f"{t.from_.value} → {t.to.value}  {t.reason}")
            case ProcessTransition():
                run = "" if t.run is None else f"[{t.run}]"  # None: no run began (a final skipped)
                if self._live:
                    self._processes[t.process] = f"{t.to.value}{run}"
                self.line(f"{t.process}{run}", f"{t.from_.value} → {t.to.value}  {t.reason}")
                if t.outcome is RunOutcome.FAILED and t.run is not None:
                    self._failure_context(t.process, t.run)
            case PhaseTransition():
                self.line("supervisor", f"{t.from_.value} → {t.to.value}  {t.reason}")
            case KillStep():
                self.line("stop", f"{t.stage}: {t.reason}")
            case HealthTransition():  # every attempt: the live view only, not a line
                self._health = f"{t.to.value} #{t.attempt} {t.outcome.value}"
                if self._front():
                    self._write("")
                    self._redraw()
            case _:
                assert_never(t)

    def on_update(self, u: Update) -> None:
        pass  # task transitions already carry every update's state and reason

    def close(self) -> None:
        """Clear the live view; later lines (the run's verdict) are printed without it."""
        with screen_lock:
            if self._live and not self._closed:
                self._write("")
                keep_screen_line(None)
            self._closed = True

    def _failure_context(self, process: str, run: int) -> None:
        """The last lines the failed run wrote to stderr, and the command for all of it."""
        if self._sandbox is None:
            return
        found = _tail_lines(self._sandbox, process, run)
        if found is None:
            return  # no stderr log (destination console or none, or it never started)
        lines, cut, size = found
        from executor.local.attempts import next_number  # only a run that failed needs it

        # as bash reads it back, on one line (shlex.quote left a newline or an escape raw)
        tail = f"stoker tail {shell_path(str(self._sandbox))} {shell_word(process)}"
        kept = next_number(self._sandbox)  # once the task restarts, its logs are that attempt's
        later = f"; once the task has restarted, add --attempt {kept}" if kept is not None else ""
        if not lines and size > TAIL_BYTES:  # what is before may say why
            said = f"the last {TAIL_BYTES:,} bytes of its stderr are blank; all of it: {tail} --stderr --run {run}"
        elif not lines:
            said = f"its stderr is empty; its stdout: {tail} --run {run}"
        else:
            for i, text in enumerate(lines):  # the end of the first when its start was not read
                self._write(f"{self.indent}| {_line_shown(text, cut and i == 0)}\n")
            last = f"the last {len(lines)} lines" if len(lines) > 1 else "the last line"
            said = f"{last} of its stderr; all of it: {tail} --stderr --run {run}"
        self._write(f"{self.indent}({said} -n +1{later})\n")
        self._redraw()  # every path: the words cleared the live view (it was not drawn again)


def _fit(text: str, columns: int) -> str:
    """The start of `text` that takes at most `columns` terminal columns: an East Asian wide
    character takes two, a combining one none. A view that took more would wrap, and the
    next redraw would clear only its last line."""
    if len(text) * 2 <= columns:
        return text
    import unicodedata  # a long view only

    used = 0
    for i, char in enumerate(text):
        used += 0 if unicodedata.combining(char) else 2 if unicodedata.east_asian_width(char) in "WF" else 1
        if used > columns:
            return text[:i]
    return text


def _shows_something(line: str) -> bool:
    """Whether `line` is not blank: more than spaces, tabs and other white space that shows as
    such, not a control character `str.strip` takes for a space (a NEL, a form feed, a file
    separator), which `printable` and `stoker tail` write out (`\\u0085`, `\\x0c`)."""
    spaced = line.replace("\t", " ")
    return bool(spaced.strip()) or printable(spaced) != spaced


def _as_tail_shows(text: str) -> str:
    """`printable(text)` with its tabs kept, as `stoker tail` shows a log on a terminal
    (docs/contract.md §1): a tab drives nothing, and a Java stack trace's `at ...` lines and a
    Go panic's frames are indented with one (was: written out, `\\tat ...`, unlike the
    command the lines point at for the rest)."""
    return "\t".join(printable(part) for part in text.split("\t")) if "\t" in text else printable(text)


def _line_shown(text: str, start_cut: bool) -> str:
    """`_as_tail_shows(text)` in at most TAIL_LINE_CHARS characters, `…` where it was cut: its
    end (`start_cut`: its start was not read, the mark always there), else its start. Cut between
    escapes, never inside one: a `\\xf` or `1b[` left over reads as text the run never wrote."""
    if not start_cut and len(shown := _as_tail_shows(text)) <= TAIL_LINE_CHARS:
        return shown
    kept: list[str] = []
    room = TAIL_LINE_CHARS - 1  # the mark's
    for char in reversed(text) if start_cut else text:
        escaped = _as_tail_shows(char)
        if len(escaped) > room:
            break
        kept.append(escaped)
        room -= len(escaped)
    return "…" + "".join(reversed(kept)) if start_cut else "".join(kept) + "…"


def _tail_lines(sandbox: Path, process: str, run: int) -> tuple[list[str], bool, int] | None:
    """The last TAIL_LINES non-blank lines of the run's stderr log (read from its last
    TAIL_BYTES, never through a symlink or from a FIFO the run put there), whether the
    first is the end of a line whose start was not read, and the log's size; None when it
    cannot be read. The line the read cut is left out, unless it is all there is: one last
    line longer than TAIL_BYTES was dropped, and the run's 20 KB stderr said to be empty."""
    found = log_end(sandbox, process, run, "stderr", TAIL_BYTES)
    if found is None:
        return None
    data, size = found
    if size > TAIL_BYTES:  # the read may begin inside a character: its last bytes alone showed as '�'
        data = data[3 - len(data[:3].lstrip(_CONTINUATION)):]
    # a byte that is not UTF-8 kept as its surrogate escape, which `printable` writes `\xff`,
    # apart from a C1 control (`\u0085`); a line ends at a newline or a carriage return (a
    # progress bar's), not at the other ends `str.splitlines` knows (NEL, a form feed), which
    # the log and `stoker tail` show inside a line
    text = data.decode("utf-8", errors="surrogateescape")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    cut = size > TAIL_BYTES and bool(lines)
    if cut and any(map(_shows_something, lines[1:])):
        lines, cut = lines[1:], False
    shown = [line for line in lines if _shows_something(line)][-TAIL_LINES:]
    return shown, cut and bool(shown), size
