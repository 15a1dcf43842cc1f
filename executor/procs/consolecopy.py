"""The console copies of the log pump: `destination='both'` output written to the supervisor's
own stdout/stderr by a thread of its own, so a console that stops reading never holds up
the pump.

Owns the queue of copies and the thread that writes them, in the order the pump read them
(per process and stream; stdout and stderr are two pipes, as in Thermos), a whole line at a
time: a line's start is held until its newline comes (or its stream ends, or it passes
`HOLD_BYTES`), so that on a console that several processes and `stoker run`'s own lines
share, no other line lands in the middle of one (a process writing into a pipe writes
in blocks, cut anywhere). The pump copies every piped run of the task: were it to write
the console itself, a terminal that stops reading (Ctrl-S, a frozen SSH session, `stoker
run | less` at a full screen) would stop it in that write, and with it every rotating log
of the task, whose processes then block on their full pipes; and at close the output still
in the pipes would be cut off the files.
`put` never blocks: past `LIMIT` bytes queued, a copy is dropped and counted, and once
the console takes writes again one WARNING line (`console_copy_dropped`) says how many bytes
of which stream it missed; the log file has them all. The thread blocks SIGTTOU
(`config.logline.terminal_writer`: a background `stoker run` under `stty tostop` is not
stopped by its writes) and starts at the first copy; when no thread can start (a full pids
cgroup), the copy is written by the caller, as before. Under `stoker run`'s live view (on a
terminal) the lines go through `stoker run`'s spool instead, above the view
(`executor.logs.above_screen_line`), as a log record does: never glued after the view on
its line and left beside it in the scroll-back (and a line without end is ended there, or
the view's next redraw would erase it); a copy that spool has no room for (a terminal
that reads less than the task writes) is counted as missed before it is made into text:
converted and then dropped there, it kept this thread busy with the GIL, and the pump and
the task waited. On a terminal, the copies are shown as text that cannot drive it, as
`stoker tail` shows a log there (`executor/procs/terminaltext.py`): an
escape sequence a process writes (a screen clear, a title set, an OSC 52 clipboard write)
or a byte that is not UTF-8 is written out (`\\x1b[2J`, `\\xff`), never acted on; to a
pipe or a file they are the process's bytes. Never raises into callers.
"""
from __future__ import annotations

import collections
import logging
import os
import sys
import threading
from typing import TYPE_CHECKING, Any, TextIO, cast

from config.logline import terminal_writer
from executor.logs import above_screen_line, log_event, screen_line_kept, start_thread
from executor.procs.exitby import ExitBy
from executor.procs.terminaltext import TextForTerminal
from executor.spool import spool

if TYPE_CHECKING:
    from collections.abc import Callable

logger = logging.getLogger(__name__)

LIMIT = 1024 * 1024  # bytes queued for a console that does not read; beyond, copies are dropped
HOLD_BYTES = 64 * 1024  # a line held for its newline; a longer one is copied as it comes


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class RawConsole:
    """A console descriptor as a text stream of the spool (`executor.spool.Spool`): the text
    is bytes decoded as Latin-1, written back as exactly those bytes."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def write(self, text: str) -> int:
        write_all(self._fd, text.encode("latin-1"))
        return len(text)

    def flush(self) -> None:
        """Nothing to flush: every write went to the descriptor whole."""

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def fileno(self) -> int:
        return self._fd


def _is_terminal(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def _terminal_encoding(fd: int) -> str:
    """The encoding `stoker run`'s own lines use on terminal `fd` (its stdout's or stderr's,
    the locale's), so that the copies show what the terminal can (UTF-8 if unknown)."""
    stream = sys.stdout if fd == 1 else sys.stderr if fd == 2 else None
    return getattr(stream, "encoding", None) or "utf-8"


def stream_fields(label: str) -> dict[str, Any]:
    """A stream's label ("task=web.0 process=web run=0 stream=stdout") as a log line's fields."""
    return dict(part.split("=", 1) for part in label.split() if "=" in part)


class ConsoleCopy:
    def __init__(self, task_label: str, limit: int = LIMIT) -> None:
        self._label = task_label
        self._limit = limit
        self._items: collections.deque[tuple[int, bytes, str, bool]] = collections.deque()
        self._queued = 0
        self._partial: dict[str, bytes] = {}  # stream label → its last line, until its newline
        self._dropped: dict[str, int] = {}  # stream label → bytes not copied since
        self._failed: set[str] = set()  # streams whose console write failed (said once)
        self._raw: dict[int, RawConsole] = {}  # console fd → the spool's stream for it
        self._terminal: dict[int, bool] = {}  # console fd → whether it is a terminal
        self._shown: dict[str, TextForTerminal] = {}  # stream label → its text, to a terminal
        self._copied: set[str] = set()  # the streams with a copy queued, until they end
        self._closing = False
        self._over = False  # the thread is done (`close` waits for it)
        self._told: Callable[[], None] = lambda: None  # called once it is
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def put(self, fd: int, data: bytes, label: str) -> None:
        """Queue the whole lines of `data` for `fd` (the stream `label`'s console), holding
        a last line without its newline for the next `put` or `end`; never blocks."""
        with self._cond:
            held = self._partial.pop(label, b"") + data
            cut = held.rfind(b"\n") + 1
            if len(held) - cut > HOLD_BYTES:  # a line without end: copied as it comes
                cut = len(held)
            if cut < len(held):
                self._partial[label] = held[cut:]
        if cut:
            self._queue(fd, held[:cut], label)

    def end(self, fd: int, label: str) -> None:
        """The stream `label` ended: its last line, without a newline, is copied as it is."""
        with self._cond:
            held = self._partial.pop(label, b"")
            copied = label in self._copied
            self._copied.discard(label)
        if held or (copied and self._on_terminal(fd)):  # the text for a terminal ends too
            self._queue(fd, held, label, ended=True)

    def _queue(self, fd: int, data: bytes, label: str, ended: bool = False) -> None:
        with self._cond:
            if not ended:
                self._copied.add(label)
            if self._thread is None and not self._start():
                inline = True
            elif self._queued + len(data) > self._limit:
                self._dropped[label] = self._dropped.get(label, 0) + len(data)
                if ended:  # nor is what its text held for a terminal
                    self._shown.pop(label, None)
                return
            else:
                inline = False
                self._items.append((fd, data, label, ended))
                self._queued += len(data)
                self._cond.notify()
        if inline:  # no thread to be had: written here, blocking, until one can start
            self._write(fd, data, label, ended)

    def close(self, drain_secs: float, exit_by: ExitBy | None = None) -> None:
        """Let the thread write what is queued for up to `drain_secs` or until `exit_by`'s
        time (set before or during the wait), then end it (a thread still stuck in a write to
        a console that does not read is left to the exit)."""
        exit_by = exit_by if exit_by is not None else ExitBy()
        with self._cond:
            self._closing, self._told = True, exit_by.wake
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            exit_by.wait(lambda: self._over, drain_secs)
        with self._cond:
            dropped, self._dropped = self._dropped, {}
        for label, count in dropped.items():
            log_event(logger, logging.WARNING, "console_copy_dropped", **stream_fields(label),
                      dropped_bytes=count, reason="the console was not reading; the log file has them")

    def _failed_write(self, fd: int, label: str, e: BaseException) -> None:
        if label not in self._failed:
            self._failed.add(label)
            log_event(logger, logging.ERROR, "log_write_failed", **stream_fields(label), console=fd,
                      error=f"{type(e).__name__}: {e}", reason="dropping what cannot be copied there")

    def _as_shown(self, fd: int, data: bytes, label: str, ended: bool) -> bytes:
        """`data` as it may reach console `fd`: on a terminal, `TextForTerminal`'s text of
        it (the stream's, which holds a character cut between two copies until `ended`).
        Called by one writer at a time, in the order the copies were queued."""
        if not self._on_terminal(fd):
            return data
        shown = self._shown.pop(label, None) if ended else self._shown.get(label)
        if shown is None:
            if ended and not data:  # nothing was copied of it
                return data
            shown = TextForTerminal(_terminal_encoding(fd))
            if not ended:
                self._shown[label] = shown
        return shown.convert(data, final=ended)

    def _missed(self, label: str, count: int) -> None:
        """`count` bytes of stream `label` the console missed, counted as a full queue's are;
        its text for a terminal starts again after the gap (a character cut there is lost)."""
        with self._cond:
            self._dropped[label] = self._dropped.get(label, 0) + count
        self._shown.pop(label, None)

    def _on_terminal(self, fd: int) -> bool:
        terminal = self._terminal.get(fd)
        if terminal is None:
            terminal = self._terminal[fd] = _is_terminal(fd)
        return terminal

    def _raw_console(self, fd: int) -> TextIO:
        """`fd` as a stream of the spool (one per fd: the spool counts drops per stream)."""
        with self._cond:
            return cast(TextIO, self._raw.setdefault(fd, RawConsole(fd)))

    def _start(self) -> bool:
        """Call with the condition held."""
        thread = threading.Thread(target=self._loop, daemon=True,
                                  name=f"stoker-logpump-console-{self._label}")
        try:
            start_thread(thread)
        except RuntimeError:
            return False
        self._thread = thread
        return True

    def _loop(self) -> None:
        terminal_writer()
        while True:
            with self._cond:
                while not self._items and not self._closing:
                    self._cond.wait()
                if not self._items:
                    self._over, told = True, self._told
                    break
                fd, data, label, ended = self._items.popleft()
                self._queued -= len(data)
            self._write(fd, data, label, ended)
        told()

    def _write(self, fd: int, data: bytes, label: str, ended: bool) -> None:
        live = screen_line_kept()  # `stoker run`'s live view: the copies go through its spool
        if live and not ended and not spool().has_room(len(data)):  # which would drop it: the
            self._missed(label, len(data))  # console missed it, not made into text for nothing
            return
        data = self._as_shown(fd, data, label, ended)
        if not data:
            return
        try:
            if live:  # above the view, in the spool's order
                text = data.decode("latin-1")  # the view is drawn on a line of its own:
                text += "" if text.endswith("\n") else "\n"  # a line without end gets one
                with above_screen_line():
                    spool().put(self._raw_console(fd), text,
                                lambda e: self._failed_write(fd, label, e))
            else:
                write_all(fd, data)
        except OSError as e:
            self._failed_write(fd, label, e)
            return
        with self._cond:
            dropped = self._dropped.pop(label, 0)
        if dropped:
            log_event(logger, logging.WARNING, "console_copy_dropped", **stream_fields(label),
                      console=fd, dropped_bytes=dropped,
                      reason="the console was not reading; the log file has them")
