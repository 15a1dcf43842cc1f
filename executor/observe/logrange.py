"""Which bytes of a log one request reads, and where to cut them. PURE.

A log request names a run, a stream, and optionally where to start (`offset`) and how much
(`length`); without an offset it means the end of the log (the last `length` bytes, like
`tail -c`). `window` turns that and the file's size into the half-open byte range to read:
never more than `MAX_CHUNK_BYTES`, whatever was asked, so a response's size is bounded by
the server, not by the client or the log.

What is read is then cut so that it shows well and follows well:
- `cut_incomplete_tail`: a UTF-8 character whose first bytes are in the range and the rest
  not yet written (or past the range) is left for the next read, so following a log never
  splits a character;
- `skip_to_line`: a range that starts inside the log (a tail) starts at its first whole line
  when one begins within `LINE_SEARCH_BYTES`, else at its first whole character;
- `skip_to_character`: any other range that starts inside a UTF-8 character (an older
  range's offset, or a file a rotation cut in the middle of one) starts at the next.

In follow mode a request also names the file it holds (`file`, the `DEVICE:INODE[:GENERATION]` an
earlier answer gave) and its run's directory (`dir`): the reader then goes on from there,
into the file a rotation wrote after it or into the next run (`executor/observe/reader.py`).

`older` and `newer` are the offsets of the neighbouring ranges, for the pages' links.
No I/O: the caller reads the file.
"""
from __future__ import annotations

import re

import attrs

from config.words import quoted

MAX_CHUNK_BYTES = 256 * 1024  # the most one response carries of a log
DEFAULT_CHUNK_BYTES = 64 * 1024  # a page's "last 64 KiB"
LINE_SEARCH_BYTES = 4096
MAX_OFFSET = 2**62
STREAM = re.compile(r"^(stdout|stderr)(\.[1-9][0-9]{0,2})?$")  # .N: a rotated part
IDENT = re.compile(r"^[0-9]{1,20}:[0-9]{1,20}$")  # DEVICE:INODE
FILE_IDENT = re.compile(r"^[0-9]{1,20}:[0-9]{1,20}(:[0-9]{1,10})?$")  # DEVICE:INODE[:GENERATION]


class BadLogQuery(ValueError):
    """A log request's parameter is malformed; the message names it and the value."""


@attrs.frozen(slots=True)
class LogQuery:
    run: int | None = None  # None: the latest run
    stream: str = "stdout"
    offset: int | None = None  # None: the end of the log (a tail)
    length: int | None = None  # None: DEFAULT_CHUNK_BYTES
    file: str | None = None  # follow mode: the file held ("DEVICE:INODE[:GENERATION]"), read up to offset
    dir: str | None = None  # follow mode: the held run's directory ("DEVICE:INODE")


@attrs.frozen(slots=True)
class Window:
    """Bytes [start, end) of a file of `size` bytes; `capped`: less than asked."""

    start: int
    end: int
    size: int
    capped: bool
    tail: bool  # no offset was given: the range ends at the end of the log


def _whole(name: str, text: str) -> int:
    if not text.isdigit() or not text.isascii() or len(text) > 19:
        raise BadLogQuery(f"{name}={quoted(text[:40])} is not a non-negative whole number")
    return int(text)


def parse_query(params: dict[str, str]) -> LogQuery:
    """The log query of a request's parameters (run, stream, offset, length); others are
    the caller's. Raises BadLogQuery."""
    stream = params.get("stream", "stdout") or "stdout"
    if not STREAM.match(stream):
        raise BadLogQuery(f"stream={quoted(stream[:40])} is not stdout or stderr "
                          f"(or a rotated part: stdout.1, stderr.2, ...)")
    run, offset, length = (
        _whole(name, params[name]) if params.get(name, "") != "" else None
        for name in ("run", "offset", "length"))
    if offset is not None and offset > MAX_OFFSET:
        raise BadLogQuery(f"offset={offset} is beyond any log")
    file, dir_ = (params.get(name) or None for name in ("file", "dir"))
    for name, value, form, words in (("file", file, FILE_IDENT, "DEVICE:INODE[:GENERATION]"),
                                     ("dir", dir_, IDENT, "DEVICE:INODE")):
        if value is not None and not form.match(value):
            raise BadLogQuery(f"{name}={quoted(value[:40])} is not {words}")
    if file is not None and (offset is None or run is None):
        raise BadLogQuery("file= (follow mode) needs a run= and an offset=")
    return LogQuery(run=run, stream=stream, offset=offset, length=length, file=file, dir=dir_)


def window(size: int, query: LogQuery, cap: int = MAX_CHUNK_BYTES) -> Window:
    """The range `query` asks for in a file of `size` bytes, at most `cap` long."""
    wanted = DEFAULT_CHUNK_BYTES if query.length is None else query.length
    length = min(wanted, cap)
    if query.offset is None:
        start = max(0, size - length)
    else:
        start = min(query.offset, size)
    end = min(size, start + length)
    return Window(start=start, end=end, size=size, capped=wanted > cap,
                  tail=query.offset is None)


def _sequence_length(lead: int) -> int:
    """How many bytes the UTF-8 sequence that `lead` starts has (1 for anything else)."""
    if 0xC2 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF4:
        return 4
    return 1


def cut_incomplete_tail(data: bytes) -> int:
    """How many bytes of `data` to keep: all, unless it ends with the first bytes of a
    UTF-8 character whose last ones are missing (then those are left for the next read)."""
    for back in range(1, min(3, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:
            continue  # a continuation byte: look further back for its lead
        needed = _sequence_length(byte)
        return len(data) - back if needed > back else len(data)
    return len(data)


def skip_to_line(data: bytes) -> int:
    """Where a range that starts inside a log should start showing: after the first
    newline within LINE_SEARCH_BYTES, else at the first byte that starts a character."""
    newline = data.find(b"\n", 0, LINE_SEARCH_BYTES)
    if newline >= 0:
        return newline + 1
    return skip_to_character(data)


def skip_to_character(data: bytes) -> int:
    """How many bytes of `data` (at most 3) are the last ones of a character begun before."""
    for i, byte in enumerate(data[:3]):
        if byte & 0xC0 != 0x80:
            return i
    return min(3, len(data))


def trim(data: bytes, win: Window, whole: bool = False) -> tuple[int, int]:
    """(skip, keep): show data[skip:keep] of the bytes read for `win`. `whole`: the file
    is complete (rotated): a character cut at its end is shown as it is, not held back."""
    skip = first_shown(data, win)
    keep = len(data) if whole else skip + cut_incomplete_tail(data[skip:])
    return skip, keep


def first_shown(data: bytes, win: Window) -> int:
    """How many of the first bytes read for `win` are not shown: a tail's part of a line, or
    the last bytes of a character begun before the range."""
    return skip_to_line(data) if win.tail and win.start > 0 else skip_to_character(data)


def older(start: int, length: int = DEFAULT_CHUNK_BYTES) -> int | None:
    """The offset of the range before one that starts at `start` (None: it is the first)."""
    return max(0, start - length) if start > 0 else None


def newer(end: int, size: int) -> int | None:
    """The offset of the range after one that ends at `end` (None: it reaches the end)."""
    return end if end < size else None
