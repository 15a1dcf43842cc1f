"""`log_event()`: one state change as one log line, `event key=value ...`, for every layer
(`event_line` its text, for a record made by hand).

Every line Stoker logs goes through it, so that each has an event name and its fields:
the text format prints `event k=v k2="v 2"`, and `--log-format json` gives the event and
each field as keys of their own (`executor/cli/logsetup.py`). It lives in config/, the
bottom layer, so that the health checker (which imports config/ only) logs the same way
as the executor.

`to_journal`: under systemd a unit's stdout and stderr are streams to the journal, which
names the one it connected in `$JOURNAL_STREAM` (`DEVICE:INODE`, sd-daemon(3)); a stream is
the journal's when its descriptor is that file. The journal stamps every line itself, and
reads a `<N>` (syslog priority) prefix as the line's level: the log handler and `stoker run`'s
console write their lines for it then.

The other facts of the streams every layer writes its lines to: `lost_for_now`, whether a
write that failed lost its text for now (a full disk, a file's I/O error: a later write may
work) or for good (the reader is gone); `KeptWrites`, whether the stream's buffer kept a
write that failed (it lands with the next flush) or refused it; `ends_line`, whether what
landed ends a line (a note on lines lost after a line cut short starts a line of its own);
`to_devnull`, a
stream whose reader is gone pointed at /dev/null, so that the interpreter's last flush is
quiet; `whole_writes`, a stream that writes a regular file unbuffered (`python -u`) given a
buffered layer, so that a write a full disk cut short raises (and is counted) instead of
losing its rest unsaid.

`terminal_writer`: a thread that writes to the terminal (`executor.logs`' spool's; the log
pump's console copier) blocks SIGTTOU first; `terminal_write`, a line written once (a
`stoker: error:` line, argparse's usage), only while it is written. `stoker run JOB &` is a
background job, and with `stty tostop` the kernel answers its first write to the terminal
with SIGTTOU to Stoker's whole process group, whose default action stops it: supervision
would freeze (no restarts, no health checks, no stop) until the operator typed `fg`. For a
thread that blocks (or a process that ignores) SIGTTOU the kernel lets the write through
instead, as without `tostop`. Only that thread blocks it: a signal mask is inherited by the
children its thread forks, and the task's processes must get SIGTTOU as usual.

Never pass a secret (the agent's auth token) to it: nothing here can scrub it.
"""
from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import signal
import stat
from collections.abc import Iterator
from typing import Any

_QUOTE_NEEDED = set(' "=')


def _render(value: Any) -> str:
    """A field's value as its line shows it: as it is when it is one plain word; else in double
    quotes, with `"` and `\\` escaped as JSON escapes them, and every control character, line
    separator and format character as `config.words.loggable` writes it (`\\n`, `\\x1b`,
    `\\u202e`), so that a name an operator or a config gave keeps its line one line, read
    in its order. A plain ASCII value is written as it always was (JSON's quoting)."""
    text = str(value)
    if not (text.isascii() and text.isprintable()):
        from config.words import loggable  # past ASCII, or a control: seldom

        if loggable(text) != text:
            return '"' + loggable(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'
    if text == "" or any(c in _QUOTE_NEEDED for c in text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def log_event(logger: logging.Logger, level: int, event: str, *,
              exc_info: bool | BaseException = False, **fields: Any) -> None:
    """Log one state change: `event k=v k2="v 2"` (fields in the order given, None ones
    left out); `exc_info`: with the traceback of the exception being handled (True) or of
    the one given."""
    if not logger.isEnabledFor(level):
        return
    logger.log(level, event_line(event, fields), exc_info=exc_info or None,
               stacklevel=2,  # the caller's line
               extra={"stoker_event": event, "stoker_fields": fields})


def event_line(event: str, fields: dict[str, Any]) -> str:
    """The text of one event's line: `event k=v k2="v 2"` (None fields left out)."""
    return " ".join([event] + [f"{k}={_render(v)}" for k, v in fields.items() if v is not None])


def to_journal(stream: object) -> bool:
    """Whether `stream` (a file object) writes to the journal stream systemd connected."""
    named = os.environ.get("JOURNAL_STREAM")
    if not named:
        return False
    try:
        st = os.fstat(stream.fileno())  # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):  # no descriptor (a test's StringIO), or closed
        return False
    return named == f"{st.st_dev}:{st.st_ino}"


NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # a full disk: a later write may fit


def lost_for_now(stream: object, exc: BaseException) -> str | None:
    """Why a write that failed lost its text when a later write may work, else None (the
    reader is gone: a closed pipe, a hung-up terminal, which says EIO too, a closed
    stream). A later write may work on a full disk (`NO_ROOM`), and after any error of a
    regular file: a disk's or a network file system's bad moment passes (EIO, EROFS), and
    the first write after it may still report it."""
    if not isinstance(exc, OSError) or exc.errno is None:
        return None
    if exc.errno in NO_ROOM:
        return "the disk was full"
    try:
        regular = stat.S_ISREG(os.fstat(stream.fileno()).st_mode)  # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):
        return None
    return f"the file could not be written ({errno.errorcode.get(exc.errno, exc.errno)})" if regular else None


def whole_writes(stream: Any) -> Any:
    """`stream`, or, where it writes to a regular file unbuffered (`python -u`,
    `PYTHONUNBUFFERED=1`: a raw file under its text layer), a line-buffered stream of its own
    on the same descriptor. The raw file takes what fits of a write on a full disk and drops
    the rest without a word: the line was cut short, the next one ran on after it, and none
    was counted as lost. A buffered one writes the rest or raises, keeping it for its next
    flush (Stoker's log and `stoker run`'s output: the line counted, and said once the disk has room)."""
    if not isinstance(getattr(stream, "buffer", None), io.FileIO):  # buffered, or no file (a test's StringIO)
        return stream
    try:
        fd = stream.fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a pipe or a terminal: no short write to lose
            return stream
    except (OSError, ValueError):
        return stream
    return io.TextIOWrapper(io.BufferedWriter(io.FileIO(fd, "w", closefd=False)), encoding=stream.encoding,
                            errors=stream.errors, line_buffering=True)


def _buffered(stream: object) -> tuple[int, int] | None:
    """Where a buffered file stream's next byte goes (what its file took and what its buffer
    holds), and how many bytes its buffer holds that the file has not taken; None where it
    cannot be told (no buffered file under it). A write a full disk refused that still moved
    the first was kept: the buffer writes it with its next flush, once there is room (until
    it is full, `io.DEFAULT_BUFFER_SIZE`, 8 KiB: a line that does not fit is refused whole)."""
    buffer = getattr(stream, "buffer", stream)
    if not isinstance(buffer, io.BufferedWriter):
        return None
    try:
        at = buffer.tell()
        return at, at - buffer.raw.tell()
    except (OSError, ValueError):
        return None


class KeptWrites:
    """Which of the writes a full disk refused a stream's buffer kept (they land with its next
    flush that finds room) and which it refused whole (lost), by `_buffered`: kept when it
    holds bytes the file has not taken and the write moved its position (the first refused
    one: any held; from the second on, past where the last one ended)."""

    def __init__(self) -> None:
        self._kept_to: int | None = None  # while the buffer keeps refused writes: where the last one ended

    def refused(self, stream: object) -> bool:
        """After a write to `stream` failed: whether its buffer kept it."""
        state = _buffered(stream)
        if state is None or not state[1]:
            self._kept_to = None
            return False
        kept = self._kept_to is None or state[0] > self._kept_to
        self._kept_to = state[0]
        return kept

    def written(self, stream: object) -> None:
        """After a write to `stream` that did not fail: once its buffer holds nothing, what it
        kept is written."""
        if self._kept_to is not None and (state := _buffered(stream)) is not None and not state[1]:
            self._kept_to = None


def ends_line(stream: object) -> bool:
    """Whether the byte before where `stream`'s next write lands is a line end (or there is
    none): a note on lines lost then needs no line end of its own first, which after a whole
    line was an empty one; it does after a line a full disk cut short. Read from the file
    itself, reopened to read (the stream may write only), once its buffer holds nothing;
    False where that cannot be told (not a regular file, bytes still held, not readable)."""
    import fcntl  # (only as a note is written: a full disk's)

    try:
        fd = stream.fileno()  # type: ignore[attr-defined]
        st = os.fstat(fd)
        held = _buffered(stream)
        if not stat.S_ISREG(st.st_mode) or held is None or held[1]:
            return False
        at = st.st_size if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND else os.lseek(fd, 0, os.SEEK_CUR)
        if at == 0:
            return True
        reader = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            return os.pread(reader, 1, at - 1) == b"\n"
        finally:
            os.close(reader)
    except (OSError, ValueError, AttributeError):
        return False


def to_devnull(stream: object) -> None:
    """Point the descriptor of `stream`, whose reader is gone, at /dev/null: the interpreter's
    last flush of what it still buffers is then quiet. Nothing for one that is not a file (a
    test's StringIO) or is closed."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stream.fileno())  # type: ignore[attr-defined]
        finally:
            os.close(devnull)


def terminal_writer() -> None:
    """The calling thread writes to the terminal: its writes go through even from a background
    job under `stty tostop` (SIGTTOU blocked in this thread alone; it forks nothing)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTTOU})


@contextlib.contextmanager
def terminal_write() -> Iterator[None]:
    """What the calling thread writes meanwhile goes through from a background job under
    `stty tostop` too (SIGTTOU blocked until it is done, then the thread's mask as it was,
    so that nothing it forks later inherits it): `stoker run &`'s `stoker: error:` line as
    it starts stopped the job (`Stopped (tty output)`), its error unseen until `fg`."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTTOU})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
