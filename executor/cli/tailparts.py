"""`stoker tail`'s lines of a rotated log: which parts of `NAME.N` .. `NAME.1` and `NAME` to
print, read as the one stream they were cut from (a rotation cuts the output anywhere, even
in the middle of a line).

`last_lines`: the last N lines, read backwards one block at a time from the end of `NAME`
and on into `NAME.1`, `NAME.2` ... only while `NAME` holds fewer (right after a rotation
it holds none). `from_line`: from line K of the oldest backup on (`-n +1`: all that is
kept). The backups are opened as every sandbox file is (`executor/procs/saferead.py`); one
that is not there, or not a plain file, ends them. A rotation in the middle of the reading
can show a few lines twice or not at all; `-f` then goes on from the end of `NAME`.
"""
from __future__ import annotations

import os

from executor.procs import saferead
from executor.procs.rotation import MAX_BACKUPS

Part = tuple[int, int, int]  # (fd, start, end): bytes [start, end) of one file


def last_lines(rdir: int, name: str, fd: int, end: int, lines: int) -> list[Part]:
    """The parts that hold the last `lines` lines (a last line without its newline is one)
    of `name` (open as `fd`, `end` bytes) and its backups, oldest first. Every fd in them
    but `fd` is the caller's to close."""
    parts: list[Part] = []
    wanted, newest = lines, True
    part_fd, size = fd, end
    for k in range(1, MAX_BACKUPS + 2):
        pos = size
        if newest and size > 0:  # the log's last byte: the last line's own newline
            newest = False
            pos -= os.pread(part_fd, 1, size - 1) == b"\n"
        start, wanted = saferead.newlines_back(part_fd, pos, wanted) if wanted > 0 else (size, 0)
        parts.append((part_fd, 0 if start is None else start, size))
        following = None if start is not None or k > MAX_BACKUPS else _backup(rdir, name, k, fd)
        if following is None:
            break
        part_fd, size = following, os.fstat(following).st_size
    return parts[::-1]


def from_line(rdir: int, name: str, fd: int, end: int, line: int) -> list[Part]:
    """The parts from line `line` (1: the first) of the oldest backup kept on, oldest first;
    every fd in them but `fd` is the caller's to close."""
    files: list[Part] = [(fd, 0, end)]
    for k in range(1, MAX_BACKUPS + 1):
        backup = _backup(rdir, name, k, fd)
        if backup is None:
            break
        files.append((backup, 0, os.fstat(backup).st_size))
    files.reverse()
    passing = line - 1  # newlines before the line
    for i, (part_fd, _, size) in enumerate(files):
        count = _newlines(part_fd, size) if passing else 0
        if count >= passing:
            for skipped, _, _ in files[:i]:
                os.close(skipped)
            start = saferead.line_start(part_fd, size, passing + 1)
            return [(part_fd, start, size), *files[i + 1 :]]
        passing -= count
    for skipped, _, _ in files[:-1]:
        os.close(skipped)
    return [(fd, end, end)]  # fewer lines than that


def _newlines(fd: int, size: int) -> int:
    """The newlines in the file's first `size` bytes; its holes stepped over (`saferead.data_at`)."""
    count, pos = 0, 0
    while pos < size:
        pos, upto = saferead.data_at(fd, pos, size)
        if pos >= upto:
            break
        block = os.pread(fd, min(saferead.BLOCK_BYTES, upto - pos), pos)
        if not block:
            break
        count += block.count(b"\n")
        pos += len(block)
    return count


def _backup(rdir: int, name: str, k: int, current: int) -> int | None:
    """`name.k`, open; None when it is not there or not a plain file, or when it is the
    file read as `name` (rotated since: it is read already)."""
    try:
        fd = saferead.open_file(f"{name}.{k}", rdir)
    except OSError:
        return None
    a, b = os.fstat(fd), os.fstat(current)
    if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino):
        os.close(fd)
        return None
    return fd
