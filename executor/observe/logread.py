"""One request's range of a run's log, read as the observer shows it: a sparse log's holes
stepped over, never read, and a run of NUL bytes written out once.

A task may make its log sparse (`truncate -s 20G` after a line, then another line): then
it holds gigabytes of zeros on no disk. Read as they stand, a page showed up to 256 KiB of
NULs, each written out as `\\x00`, and a page that followed the log, or its "older" link,
crossed a 20 GiB hole 256 KiB (64 KiB) a request at a time. Here a range holds at most its
length of the file's data, and the holes in it are counted, not read (`saferead.data_at`),
so a follower crosses a hole in one answer; the range before a hole ends where the hole
begins (`LogChunk.hole_before`); and a run of `NUL_RUN` or more NUL bytes, a hole's or
written, is shown as one `\\x00*N` (N its length), as `stoker tail` shows it on a terminal
(`executor/procs/terminaltext.py`). On a file system that cannot tell where holes are, the
zeros are read, up to the range's length, as before.
"""
from __future__ import annotations

import os
import re

import attrs

from executor.observe.logrange import LogQuery, Window, cut_incomplete_tail, first_shown, window
from executor.observe.model import LogChunk
from executor.procs import rotation, saferead
from executor.procs.terminaltext import NUL_RUN

# A hole among the decoded text, by its length: a lone surrogate, which text decoded with
# "replace" never holds.
_HOLE_OPEN, _HOLE_CLOSE = "\udc00", "\udc01"
_NULS = re.compile(f"(?:\x00|{_HOLE_OPEN}[0-9]+{_HOLE_CLOSE})+")
_HOLE = re.compile(f"{_HOLE_OPEN}([0-9]+){_HOLE_CLOSE}")


@attrs.frozen(slots=True)
class Step:
    """What one request reads: run `run`'s file `fd` (in its directory `rdir`) from
    `offset`; `continues`: right after what the follower held; `whole`: a rotated file
    (complete: a character cut at its end is not held back, and more follows it)."""

    run: int
    rdir: int
    fd: int
    offset: int | None
    continues: bool = True
    whole: bool = False


def chunk(step: Step, query: LogQuery, *, task_id: str, process: str,
          runs: tuple[int, ...], parts: tuple[str, ...], run_dir: str) -> LogChunk:
    """The range of `step`'s file that `query` asks for, as the page and the JSON show it."""
    stat = os.fstat(step.fd)
    size = stat.st_size
    win = window(size, query)
    pieces, end = _read(step.fd, win)
    first, skip = pieces[0], 0
    if isinstance(first, bytes):
        skip = first_shown(first, win)
        pieces[0] = first[skip:]
    last = pieces[-1]
    if isinstance(last, bytes) and not (step.whole and end == size):
        keep = cut_incomplete_tail(last)  # a character cut at the end: left for the next read
        pieces[-1], end = last[:keep], end - (len(last) - keep)
    return LogChunk(task_id=task_id, process=process, run=step.run, stream=query.stream,
                    start=win.start + skip, end=end, size=size, data=shown(pieces),
                    capped=win.capped, runs=runs, parts=parts, file=file_text(step.fd, stat),
                    run_dir=run_dir, continues=step.continues, rotated=step.whole,
                    hole_before=hole_before(step.fd, win.start + skip))


def _read(fd: int, win: Window) -> tuple[list[bytes | int], int]:
    """The window's bytes from its start: pieces of data (consecutive reads joined) and holes
    (their lengths, not read), up to the window's length of data or the file's end; and the
    offset reached."""
    pieces: list[bytes | int] = []
    pos, budget = win.start, win.end - win.start
    data = bytearray()
    while budget > 0 and pos < win.size:
        at, upto = saferead.data_at(fd, pos, win.size)
        if at > pos:  # a hole: its length, not its zeros
            pieces += [bytes(data), at - pos] if data else [at - pos]
            data, pos = bytearray(), at
        block = os.pread(fd, min(saferead.BLOCK_BYTES, upto - pos, budget), pos)
        if not block:  # no data before the window's end (a hole to it)
            break
        data += block
        pos, budget = pos + len(block), budget - len(block)
    if data or not pieces:
        pieces.append(bytes(data))
    return pieces, pos


def shown(pieces: list[bytes | int]) -> str:
    """The pieces as text (an invalid byte as U+FFFD), each run of `NUL_RUN` or more NULs
    (holes among them) as one `\\x00*N`."""
    text = "".join(piece.decode("utf-8", "replace") if isinstance(piece, bytes)
                   else f"{_HOLE_OPEN}{piece}{_HOLE_CLOSE}" for piece in pieces)
    # (the test first: the substitution's scan of a 256 KiB answer with no NUL took 6.3 ms, the test 3 µs)
    return _NULS.sub(_one_run, text) if "\x00" in text or _HOLE_OPEN in text else text


def _one_run(found: re.Match[str]) -> str:
    run = found.group()
    count = run.count("\x00") + sum(int(length) for length in _HOLE.findall(run))
    return f"\\x00*{count}" if count >= NUL_RUN else "\x00" * count


def ident_text(stat: os.stat_result) -> str:
    """A directory's `DEVICE:INODE`, as a follower names the run directory it holds (`LogQuery.dir`)."""
    device, inode = rotation.ident(stat)
    return f"{device}:{inode}"


def file_text(fd: int, stat: os.stat_result) -> str:
    """An open file's `DEVICE:INODE:GENERATION` (`DEVICE:INODE` where the file system keeps
    no generation), as a follower names the file it holds (`LogQuery.file`): the inode of a
    backup rotated away is another file's soon (`executor/procs/rotation.py`)."""
    found = rotation.generation(fd)
    return ident_text(stat) + ("" if found is None else f":{found}")


def held_file(text: str) -> tuple[rotation.Ident, int | None]:
    """The identity and generation a follower's `file` names (`file_text`)."""
    numbers = [int(n) for n in text.split(":")]
    return (numbers[0], numbers[1]), (numbers[2] if len(numbers) > 2 else None)


def hole_before(fd: int, pos: int) -> int:
    """The length of the hole that ends at `pos` (0: none there, or a file system that
    cannot tell): the range before `pos` ends where it begins."""
    return pos - saferead.hole_start(fd, pos)  # (at 0: `hole_start` is 0)
