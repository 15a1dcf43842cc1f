"""Log rendering for every `stoker` command, configured once by the CLI: `TextFormatter`
(one line per event, local time, level, logger, `event key=value ...`, control and format
characters escaped: `config.words.loggable`) or `JsonFormatter` (one JSON object per line,
`--log-format json`: the values as they are). No other package configures logging. When stderr is systemd's journal (`config.logline.to_journal`:
a unit's), each line begins with its level as a syslog priority (`<3>` ERROR, `<4>`
WARNING, `<6>` INFO), which the journal keeps as the entry's priority (`journalctl -p
warning`), and a text line has no time of its own: the journal stamps it.

The handler goes quiet when its stream goes away (a closed pipe, a hung-up terminal)
instead of printing a traceback for every record (a full disk only loses the lines that
did not fit, counted in the next one), drops the events it is told another
output already shows (`stoker run` prints every state change on stdout), and writes each
record above `stoker run`'s live view (`executor.logs.above_screen_line`), never on its
line; for `stoker run` through its spool (`executor.spool.Spool`, loaded by it only), so
that a terminal that stopped reading never blocks the thread that logs.

A command's own `stoker: error: ...` and `stoker: warning: ...` lines (`say`) are JSON
objects too once `--log-format json` is configured (`stoker_error`, `stoker_warning`, the
text as `reason`). What would otherwise reach stderr past the handler goes through it too, so that a
`--log-format json` stderr holds nothing but JSON objects: an exception no code caught (in
the main thread, in any other thread, or ignored in a finalizer: `crashed`,
`thread_crashed`, `exception_ignored`, each with its traceback; `unraisable_hook_failed`) and Python's warnings
(logger `py.warnings`).

An exception's traceback that fails to format (a module it loads at its first use cannot be
opened: EMFILE) is written without its source lines, never lost with its line.

Never pass a secret (the agent's auth token) to a logger: nothing here can scrub it.
"""
from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import executor
from config.logline import (
    KeptWrites,
    ends_line,
    event_line,
    lost_for_now,
    terminal_write,
    to_devnull,
    to_journal,
    whole_writes,
)
from config.words import FORMAT_CHARACTERS, loggable
from executor.logs import above_screen_line, drain_spool, log_event

if TYPE_CHECKING:  # `stoker run`'s only
    from executor.spool import Spool

logger = logging.getLogger("executor")


class _Formatter(logging.Formatter):
    def formatException(self, ei: Any) -> str:
        """The traceback as logging writes it; without its source lines when that fails (a
        module it loads at its first use cannot be opened, EMFILE: Python 3.13 imports `ast`
        for a frame's `^^^` marks): the log line is never lost for it."""
        try:
            return super().formatException(ei)
        except Exception:
            return bare_traceback(ei)


def bare_traceback(ei: Any) -> str:
    """An exception's traceback without its source lines (nothing to open or to import)."""
    import traceback

    frames = traceback.StackSummary.extract(traceback.walk_tb(ei[2]), lookup_lines=False)
    lines = ["Traceback (most recent call last):"]
    lines += [f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}' for frame in frames]
    return "\n".join(lines + [line.rstrip("\n") for line in traceback.format_exception_only(ei[0], ei[1])])


class TextFormatter(_Formatter):
    """`journal`: the stream is systemd's journal, which stamps each line itself: no time,
    and each line begins with its level as a syslog priority (`<4>` for WARNING)."""

    def __init__(self, journal: bool = False) -> None:
        super().__init__()
        self._journal = journal

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        line = (f"{'' if self._journal else f'{stamp}.{int(record.msecs):03d} '}{record.levelname:<7} "
                f"{record.name}: {loggable(record.getMessage())}")
        if record.exc_info:  # its lines escaped too: an exception's message may quote a task's output
            trace = self.formatException(record.exc_info)
            line += "\n" + "\n".join(loggable(part) for part in trace.split("\n"))
        return journal_lines(line, record.levelno) if self._journal else line


def journal_lines(text: str, level: int) -> str:
    """Each line of `text` prefixed with `level` as a syslog priority (sd-daemon(3))."""
    prefix = f"<{_PRIORITY.get(level, 6 if level < logging.WARNING else 3)}>"
    return "\n".join(prefix + line for line in text.split("\n"))


_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


# What json.dumps leaves raw but a line reader would split at (NEL, U+2028, U+2029: so does
# str.splitlines) or a terminal obey (DEL, C1 controls), lone surrogates, which no encoder
# writes as UTF-8, and the format characters the text lines write out (`loggable`: a bidi
# override, U+202E, reorders a raw JSON line on a terminal as a text one): only ever inside a
# string, escaped. Compiled at the first JSON line (`re`'s cache keeps it): a class past
# U+00FF takes `re` about 1 ms, which every `stoker run` and `stoker executor` paid as it
# loaded, before its first run, for a format seldom chosen.
_RAW = "[\x7f-\x9f\ud800-\udfff" + FORMAT_CHARACTERS + "]"


def _escaped(match: re.Match[str]) -> str:
    """JSON's escape of the character: past U+FFFF (a tag), its UTF-16 surrogate pair."""
    code = ord(match.group())
    if code > 0xFFFF:
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


class JsonFormatter(_Formatter):
    """`ascii_only`: every character past ASCII as a `\\uXXXX` escape, for a stream whose
    encoding is not UTF-8 (`LC_ALL=C` with `PYTHONUTF8=0`): its `backslashreplace` wrote
    `ô` as `\\xf4`, which no JSON parser reads. A byte of a name that is not UTF-8 is its
    surrogate escape (`\\udcff`, as in `stoker ps --json`) in either form."""

    def __init__(self, ascii_only: bool = False, journal: bool = False) -> None:
        super().__init__()
        self._ascii_only = ascii_only
        self._journal = journal  # systemd's journal: `<N>` first, which it takes as the level

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname,
            "logger": record.name,
        }
        event = getattr(record, "stoker_event", None)
        if event is not None:
            doc["event"] = event
            for key, value in getattr(record, "stoker_fields", {}).items():
                if value is not None:
                    doc[key] = value if isinstance(value, (int, float, bool)) else str(value)
        else:
            doc["message"] = record.getMessage()
        if record.exc_info:
            doc["traceback"] = self.formatException(record.exc_info)
        line = re.sub(_RAW, _escaped, json.dumps(doc, ensure_ascii=self._ascii_only))
        return journal_lines(line, record.levelno) if self._journal else line


class QuietHandler(logging.StreamHandler):
    """A StreamHandler that drops the `log_event` events named in `drop_events`, and stops
    writing for good, without a traceback, once a write to its stream fails; except when a
    later one may work (`lost_for_now`: a full disk, an I/O error of a file): that line is
    kept by the stream's buffer, and written with the next flush that finds room, or, once
    the buffer is full, lost; the next line written says first how many were lost, and why
    (`log_lines_dropped`)."""

    def __init__(self, stream: Any, drop_events: Iterable[str] = (), spooled: Spool | None = None) -> None:
        super().__init__(stream)
        self._drop = frozenset(drop_events)
        self._spool = spooled
        self.gone = False
        self.dropped = 0  # lines lost to a full disk (or a file's I/O error) since the last one written
        self._dropped_why = "the disk was full"
        self._kept = KeptWrites()

    def handle(self, record: logging.LogRecord) -> bool:
        if self.gone or getattr(record, "stoker_event", None) in self._drop:
            return False
        # The screen's lock before the handler's own: the console logs while it holds it.
        with above_screen_line():
            return super().handle(record)

    def emit(self, record: logging.LogRecord) -> None:
        if self._spool is None:
            if self.dropped:
                self._say_dropped()
            super().emit(record)
            self._kept.written(self.stream)
            return
        try:
            text = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        self._spool.put(self.stream, text, self._failed, self._note, whole=self._whole_lines())

    def _whole_lines(self) -> bool:
        """A JSON log's lines are whole: a note needs no line end before it (a JSON-lines
        reader fails on an empty line); a text log's may be a process's torn line."""
        return isinstance(self.formatter, JsonFormatter)

    def _note(self, said: str) -> str:
        """What the spool dropped or lost, as a record of this handler's format."""
        return self.format(_dropped_record(said)) + self.terminator

    def _failed(self, exc: BaseException) -> None:
        """A spooled write failed (on the spool's thread)."""
        if isinstance(exc, OSError) and not self.gone:  # a full disk: the spool counts it
            self._go_quiet()

    def handleError(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            super().handleError(record)
        elif why := lost_for_now(self.stream, exc):  # a later write may fit
            if self._kept.refused(self.stream):  # it lands with the next flush that finds room
                return
            self._dropped_why = why if not self.dropped else self._dropped_why  # why it began
            self.dropped += 1
        else:
            self._go_quiet()

    def _say_dropped(self) -> None:
        """Before the next line, once the stream takes what its buffer kept: how many were
        lost while the disk was full, on a line of its own (the last write that failed may
        have left part of a line, `ends_line`; not in a JSON log, `_whole_lines`)."""
        note = _dropped_record(f"lines lost: {self._dropped_why}", self.dropped)
        try:
            self.flush()  # what a failed write left in the buffer first: the note once it lands
            lead = "" if self._whole_lines() or ends_line(self.stream) else self.terminator
            self.stream.write(lead + self.format(note) + self.terminator)
            self.flush()
        except OSError:
            return  # still full: the count goes on
        self.dropped = 0

    def _go_quiet(self) -> None:
        self.gone = True
        to_devnull(self.stream)  # so that the interpreter's last flush of this stream is quiet too


def _dropped_record(reason: str, count: int | None = None) -> logging.LogRecord:
    """The `log_lines_dropped` WARNING, made by hand: it is written by the handler itself."""
    fields = {"count": count, "reason": reason}
    return logging.makeLogRecord({
        "name": __name__, "levelno": logging.WARNING, "levelname": "WARNING",
        "msg": event_line("log_lines_dropped", fields),
        "stoker_event": "log_lines_dropped", "stoker_fields": fields})


_json = False  # configured with --log-format json
_before = sys.__excepthook__  # the hook `configure` replaced: a Ctrl-C goes to it
_unraisable_before = sys.__unraisablehook__  # the one it replaced: a `sitecustomize`'s gets what it logs


def say(kind: str, message: str) -> None:
    """A command's `stoker: KIND: message` line on stderr (KIND: error or warning); with
    --log-format json configured, the `stoker_KIND` event instead."""
    if _json:
        log_event(logger, logging.ERROR if kind == "error" else logging.WARNING, f"stoker_{kind}",
                  reason=message)
    else:
        priority = ("<3>" if kind == "error" else "<4>") if to_journal(sys.stderr) else ""
        with terminal_write():  # a background job's too, under `stty tostop`; one write, newline
            sys.stderr.write(f"{priority}stoker: {kind}: {loggable(message)}\n")  # in it: `print`'s
            sys.stderr.flush()  # two (-u, PYTHONUNBUFFERED) let another thread's record between them


def configure(log_format: str = "text", level: str | int = "INFO", stream: Any = None,
              drop_events: Iterable[str] = (), spooled: bool = False) -> None:
    """`spooled`: records are written by the process's spool (`stoker run`)."""
    global _json, _before, _unraisable_before
    _json = log_format == "json"
    if spooled:
        from executor.spool import spool  # `stoker run`'s, loaded with it
    handler = QuietHandler(whole_writes(stream or sys.stderr), drop_events, spool() if spooled else None)
    journal = to_journal(handler.stream)
    handler.setFormatter(JsonFormatter(not _utf8(handler.stream), journal) if log_format == "json"
                         else TextFormatter(journal))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    logging.captureWarnings(True)
    if sys.excepthook is not _crashed:  # (configured again: the first one's stays)
        _before = sys.excepthook
    sys.excepthook = _crashed
    threading.excepthook = _thread_crashed
    if sys.unraisablehook is not _ignored:  # (configured again: the first one's stays)
        start = sys.modules.get("executor.cli.start")
        _unraisable_before = start.hook_outside(sys.unraisablehook) if start else sys.unraisablehook
    sys.unraisablehook = _ignored


def _utf8(stream: Any) -> bool:
    encoding = getattr(stream, "encoding", None) or "utf-8"
    return encoding.lower().replace("_", "-") in ("utf-8", "utf8")


def _crashed(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    """An exception the main thread did not catch (a bug): one CRITICAL record with its
    traceback, written before the process ends. A Ctrl-C is not one (a second one as the
    first's way out ran, `executor.cli.start.run`): as `stoker`, what is spooled written and
    exit 130 as `executor.leave` exits, atexit's functions run (was: `stoker`'s loading hook,
    os._exit(130); then stoker.pyz's still, its hook not `stoker`'s); else it goes to the
    hook set before (Python's own)."""
    if isinstance(exc, KeyboardInterrupt):
        if not getattr(_before, executor.QUIET, False):  # not `stoker`'s, nor stoker.pyz's
            _before(kind, exc, tb)
            return
        from executor.cli.start import leave_interrupted

        leave_interrupted(exc)
    log_event(logger, logging.CRITICAL, "crashed", error=f"{kind.__name__}: {exc}",
              exc_info=exc.with_traceback(tb))
    drain_spool()


def _thread_crashed(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None or issubclass(args.exc_type, SystemExit):
        return  # what the default hook ignores too
    log_event(logger, logging.ERROR, "thread_crashed",
              thread=args.thread.name if args.thread is not None else None,
              error=f"{args.exc_type.__name__}: {args.exc_value}",
              exc_info=args.exc_value.with_traceback(args.exc_traceback))


def _ignored(unraisable: Any) -> None:
    """An exception Python could not raise (in a finalizer, a `__del__`); a stop signal's
    dropped so is sent again (`executor.cli.start.note_dropped`), and said in one plain line:
    it is an ordinary stop, not a fault, and its traceback told nothing. Any other is logged
    and handed on to the hook installed before Stoker's, unless that is Python's own."""
    exc = unraisable.exc_value
    if _stop_deferred(exc):
        return
    log_event(logger, logging.WARNING, "exception_ignored",
              where=unraisable.err_msg or None, object=repr(unraisable.object)[:200],
              error=f"{type(exc).__name__}: {exc}" if exc is not None else None,
              exc_info=exc if exc is not None else False)
    if _unraisable_before is not sys.__unraisablehook__:  # Python's would say it again, as text
        _hand_on(unraisable)


def _stop_deferred(exc: object) -> bool:
    """Whether `exc` is a stop signal's (`executor.cli.start.note_dropped`, which notes it to be
    sent again), said as the `stop_deferred` event."""
    start = sys.modules.get("executor.cli.start")
    if start is None or not (signum := start.note_dropped(exc)):
        return False
    from executor.host.signals import signal_name  # only for a stop dropped so

    log_event(logger, logging.INFO, "stop_deferred", signal=signal_name(signum),
              reason="it came as a finalizer ran, which cannot raise it: acted on once the command "
                     "has started (its signal relay, the observer's loop)")
    return True


def _hand_on(unraisable: Any) -> None:
    """`unraisable` handed on to the hook installed before Stoker's (a `sitecustomize`'s, an
    error reporter's: was replaced). What that hook raises is one `unraisable_hook_failed`
    record: raised out of `_ignored`, Python wrote it as text, a traceback blaming `_ignored`,
    into a `--log-format json` stderr that holds nothing but JSON objects; a stop signal that
    came as it ran is sent again, not lost with it."""
    try:
        _unraisable_before(unraisable)
    except BaseException as failed:  # every failure of a hook ends here, as out of Python's call
        if not _stop_deferred(failed):
            log_event(logger, logging.WARNING, "unraisable_hook_failed", hook=repr(_unraisable_before)[:200],
                      error=f"{type(failed).__name__}: {failed}")
