"""`stoker run`'s spool: the console and the log handler both write to the terminal
through it, so that a terminal that stops reading (Ctrl-S, a frozen SSH session, a pager
waiting at a full screen) holds up its thread alone, never the task's owner. Loaded by
`stoker run` only (`executor/local/run.py`, `executor/local/console.py`); the other commands
never make one, and `executor.logs.drain_spool` looks for it without loading it. The
terminal's screen line, which the spool's writers draw around, is `executor/logs.py`'s.

`Spool`: text is queued in order and written by a thread of its own; past `SPOOL_LIMIT`
characters queued, lines are dropped and counted, and a note says how many once the reader
is back. `drain_spool` gives it a bounded time at exit. Its thread blocks SIGTTOU
(`config.logline.terminal_writer`: a background job under `stty tostop` is not stopped by
its writes); a write that failed loses its line for now or for good as
`config.logline.lost_for_now` says.
"""
from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import TextIO

from config.logline import KeptWrites, ends_line, lost_for_now, terminal_writer
from executor.logs import screen_lock, start_thread

SPOOL_LIMIT = 1 << 20  # characters queued for a reader that does not read
OnError = Callable[[BaseException], None]
OnLost = Callable[[str], None]  # why lines began to be lost (`lost_for_now`)


class Spool:
    """Writes text to its streams in the order put, on one daemon thread; `put` never
    blocks. A write that fails calls the `on_error` given with it, on that thread; but where
    a later write may work (`lost_for_now`: a full disk, a file's I/O error) the line is
    kept by the stream's buffer, written with its next flush that finds room, or, once the
    buffer is full, lost and counted, and the next line put is preceded by a note saying how
    many and why; the `on_lost` given with the line that began such a loss is told why, on
    that thread."""

    def __init__(self, limit: int = SPOOL_LIMIT) -> None:
        self._limit = limit
        # each: stream, text, on_error, a note's lost lines, on_lost, whether a note on lost lines
        # starts with a line end when the line before it was cut (`ends_line`)
        self._items: collections.deque[tuple[TextIO, str, OnError, int, OnLost | None, bool]] = collections.deque()
        self._queued = 0
        self._dropped: dict[int, int] = {}  # id(stream) → lines dropped
        self._lost: dict[int, tuple[int, str]] = {}  # id(stream) → lines lost, why (`lost_for_now`)
        self._kept: dict[int, KeptWrites] = {}  # id(stream) → which refused writes its buffer kept
        self._busy = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None  # started by the first `put`: a process
        # with one thread loads http.client without ssl (healthcheck/plainhttp.py)

    def put(self, stream: TextIO, text: str, on_error: OnError,
            note: Callable[[str], str] = lambda said: f"[stoker: {said}]\n", whole: bool = False,
            on_lost: OnLost | None = None) -> None:
        """`note`: the line that says what was dropped (a log handler's: a record of its own
        format, so that a JSON log stays JSON). `whole`: the stream's lines are never torn (a
        JSON log's: a failed write leaves its rest in the stream's buffer, written first), so
        the note on lost lines needs no line end of its own before it (an empty line).
        `on_lost(why)`: told when this text begins a loss of lines (`lost_for_now`), whose
        note only lands once a write works again: on `> /dev/full`, never."""
        with self._cond:
            if self._thread is None:
                thread = threading.Thread(target=self._write, name="stoker-spool", daemon=True)
                try:
                    start_thread(thread)
                except RuntimeError:  # no thread to be had (a full pids cgroup): written here,
                    _write_now(stream, text, on_error)  # blocking, until one can start
                    return
                self._thread = thread
            if self._queued + len(text) > self._limit:
                self._dropped[id(stream)] = self._dropped.get(id(stream), 0) + max(1, text.count("\n"))
                return
            dropped = self._dropped.pop(id(stream), 0)
            if dropped:
                said = note(f"{dropped} lines not shown: their reader was not reading")
                self._items.append((stream, "\r\x1b[2K" + said if _isatty(stream) else said, on_error, 0, None, False))
            if lost := self._lost.pop(id(stream), None):  # on a line of its own: one may be torn
                said = note(f"{lost[0]} lines lost: {lost[1]}")
                self._items.append((stream, said, on_error, lost[0], None, not whole))
            self._items.append((stream, text, on_error, 0, on_lost, False))
            self._queued += len(text)
            self._cond.notify()

    def has_room(self, chars: int) -> bool:
        """Whether `chars` more characters would be queued now, not dropped (a console copy
        is not made into text for nothing: `executor/procs/consolecopy.py`)."""
        with self._cond:
            return self._queued + chars <= self._limit

    def drain(self, idle_secs: float) -> bool:
        """Wait until everything put is written; False when a write made no progress for
        `idle_secs` (its reader still does not read)."""
        with self._cond:
            while self._items or self._busy:
                if not self._cond.wait(idle_secs):
                    return False
            return True

    def _write(self) -> None:
        terminal_writer()
        while True:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
                while not self._items:
                    self._cond.wait()
                stream, text, on_error, lost, on_lost, lead = self._items.popleft()
                self._queued -= len(text)
                self._busy = True
            self._write_one(stream, text, on_error, lost, on_lost, lead)

    def _write_one(self, stream: TextIO, text: str, on_error: OnError, lost: int, on_lost: OnLost | None,
                   lead: bool) -> None:
        """Write `text`; `lost`: it is the note on that many lost lines, written only once
        the stream takes what a failed write left in its buffer (else, held there, it lands
        later beside the next note: one note per recovery), and counted again if not; `lead`:
        after a line end of its own when what landed before it does not end a line (a
        line a full disk cut short: `ends_line`)."""
        try:
            if lost:
                stream.flush()
                text = "\n" + text if lead and not ends_line(stream) else text
            stream.write(text)
            stream.flush()
            if writes := self._kept.get(id(stream)):
                writes.written(stream)
        except Exception as exc:
            if why := lost_for_now(stream, exc):  # a later line may fit
                kept = self._kept.setdefault(id(stream), KeptWrites()).refused(stream)  # lands later
                with self._cond:
                    count, why = self._lost.get(id(stream), (0, why))  # why it began
                    if not kept:
                        self._lost[id(stream)] = (count + (lost or max(1, text.count("\n"))), why)
                if not count and on_lost is not None:
                    on_lost(why)
            else:  # a closed pipe, a hung-up terminal: the writer says
                on_error(exc)


def _write_now(stream: TextIO, text: str, on_error: OnError) -> None:
    try:
        stream.write(text)
        stream.flush()
    except Exception as exc:
        on_error(exc)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


_spool: Spool | None = None


def spool() -> Spool:
    """The process's spool, started on first use (`stoker run` only)."""
    global _spool
    with screen_lock:
        if _spool is None:
            _spool = Spool()
        return _spool


def drain_spool(idle_secs: float) -> bool:
    """At exit: False when what is spooled could not all be written (see `Spool.drain`).
    Called through `executor.logs.drain_spool`, which loads no spool where none was made."""
    return _spool is None or _spool.drain(idle_secs)
