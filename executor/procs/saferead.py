"""Reading a sandbox without trusting it: the read side of every inspection command.

A task shares its sandbox with whoever inspects it and may plant anything there: a symlink
(`.logs/web/0/stdout -> /etc/shadow`, `.stoker/checkpoint.jsonl -> /dev/zero`), a FIFO (an
open or a read that never returns), a device, a file of any size. So `stoker status`,
`stoker tail` and the host registry read through here:

- `open_dir(name, dir_fd)` and `open_file(name, dir_fd)` open one level at a time through
  `executor/procs/sandboxfs.py` (no symlink followed, no open that can block, anything but
  a directory or a regular file refused), naming the entry in the error; `walk` opens a
  path below a directory fd level by level. Only the sandbox itself (`open_root`: the
  operator's path) may be reached through symlinks.
- `iter_lines` streams a file's lines with a cap on the bytes read and on a line's length;
  `newlines_back` finds where the last N lines begin by reading backwards in blocks (`stoker
  tail`, across a log's rotated files: `executor/cli/tailparts.py`), `line_start` where
  line N begins, and `copy_range` streams a range out: nothing ever holds a whole file, and
  the holes of a sparse one are stepped over, not read, where the file system tells them
  (`data_at`: SEEK_DATA / SEEK_HOLE), but by a `copy_range` that copies their NULs.

What is found where a regular file or a directory should be raises `UnsafeEntry`
(sandboxfs' `UnsafePath`: "stdout: it is a FIFO, not a regular file"); every other failure
is the OSError of the call (`describe` puts either into words). No logging, no threads, no
writes.
"""
from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator, Sequence
from typing import BinaryIO

from config.words import quoted
from executor.procs import sandboxfs

BLOCK_BYTES = 65536
UnsafeEntry = sandboxfs.UnsafePath
kind_of = sandboxfs.kind_of
readied = sandboxfs.readied  # a run readied ahead that never started: no run to list
describe = sandboxfs.describe_os_error


def open_root(path: str | os.PathLike[str]) -> int:
    """A directory fd of the sandbox itself (the operator's path: symlinks followed)."""
    return sandboxfs.open_dir(path, follow=True)


def open_dir(name: str, dir_fd: int | None = None) -> int:
    """A directory fd of `name` below `dir_fd`; never through a symlink."""
    try:
        return sandboxfs.open_dir(name, dir_fd=dir_fd)
    except sandboxfs.UnsafePath as e:
        raise UnsafeEntry(f"{name}: {e}") from None


def open_file(name: str, dir_fd: int | None = None) -> int:
    """A read-only fd of the regular file `name` below `dir_fd`; the open never blocks and
    never follows a symlink, and a FIFO, socket or device is refused."""
    try:
        return sandboxfs.open_regular(name, os.O_RDONLY, dir_fd=dir_fd)
    except sandboxfs.UnsafePath as e:
        raise UnsafeEntry(f"{name}: {e}") from None


def check_name(name: str) -> str:
    """`name` when it is one plain directory entry (no '/', not '.' or '..'); else ValueError."""
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise ValueError(f"{quoted(name)} is not a plain file name")
    return name


def run_number(name: str) -> int | None:
    """The run a log directory's name is the number of, as the supervisor writes it
    (ASCII digits, no leading zero, under 10 digits); None for any other name a task may
    plant: '²' (`str.isdigit` is true of it, `int()` refuses it), '٣' (`int()` reads 3),
    '007', 255 digits."""
    if name.isascii() and name.isdigit() and len(name) < 10 and (name == "0" or name[0] != "0"):
        return int(name)
    return None


def walk(dir_fd: int, parts: Sequence[str], *, file: bool) -> int:
    """Open `parts` below `dir_fd` one level at a time: the last one a regular file when
    `file`, else a directory. Each name must be plain (`check_name`)."""
    fd = dir_fd
    try:
        for i, name in enumerate(parts):
            check_name(name)
            last = i == len(parts) - 1
            opened = open_file(name, fd) if last and file else open_dir(name, fd)
            if fd != dir_fd:
                os.close(fd)
            fd = opened
    except BaseException:
        if fd != dir_fd:
            os.close(fd)
        raise
    return fd


MAX_LINE_BYTES = 1 << 20  # a line a reader reads at most (`iter_lines`): a checkpoint record


def iter_lines(fd: int, max_bytes: int, max_line: int = MAX_LINE_BYTES, *, skip_holes: bool = False,
               tee: Callable[[bytes], object] | None = None, skipped: list[int] | None = None) -> Iterator[bytes]:
    """The file's lines (without their newline), reading at most `max_bytes` from its offset,
    in time linear in the bytes read; a line longer than `max_line` is skipped (`skipped`: its
    bytes, newline included, appended before the next line comes, for a reader that counts
    offsets; the file's last, cut short, as if it had one), and so is a line the cap cut.
    `skip_holes`: a hole (`truncate -s +1T`: zeros on no disk) is stepped over, not read, and
    the line it is in skipped: a sparse file costs what it holds. `tee`: given each block as it
    is read (`executor/task/viewcache.py` hashes them)."""
    read = line_at = 0  # line_at: where the current line starts, in the bytes read
    parts: list[bytes] = []  # the current line's pieces
    size, skipping = 0, False
    while read < max_bytes:
        hole = _hole_ahead(fd) if skip_holes else 0
        if hole:
            read += hole
            parts, size, skipping = [], 0, True  # NULs in a line: no line Stoker writes
            continue
        block = os.read(fd, min(BLOCK_BYTES, max_bytes - read))
        if not block:
            if parts and not skipping:
                yield b"".join(parts)  # the last line, without its newline
            elif skipping and skipped is not None:  # the last line, past `max_line` and cut short: counted
                skipped.append(read - line_at + 1)  # as if its newline were there (was: passed over unsaid)
            return
        read += len(block)
        if tee is not None:
            tee(block)
        start, base = 0, read - len(block)
        while (newline := block.find(b"\n", start)) >= 0:
            if not skipping and size + newline - start <= max_line:
                parts.append(block[start:newline])
                yield b"".join(parts)
            elif skipped is not None:
                skipped.append(base + newline + 1 - line_at)
            parts, size, skipping = [], 0, False
            start = newline + 1
            line_at = base + start
        if not skipping and start < len(block):
            parts, size, skipping = _carried(block[start:], parts, size, max_line)


def _carried(rest: bytes, parts: list[bytes], size: int, max_line: int) -> tuple[list[bytes], int, bool]:
    """The current line (its pieces, `size` bytes) once a block's end with no newline in it
    (`rest`) joins it: its pieces, its size, and whether it is skipped (past `max_line`)."""
    size += len(rest)
    if size > max_line:
        return [], 0, True
    parts.append(rest)
    return parts, size, False


def _hole_ahead(fd: int) -> int:
    """The length of the hole at the file's offset, which is moved past it (0: data there,
    or a file system that cannot tell)."""
    pos = os.lseek(fd, 0, os.SEEK_CUR)
    data = data_at(fd, pos, _NO_END)[0]
    os.lseek(fd, data, os.SEEK_SET)
    return data - pos


_NO_END = 1 << 62  # past any file's end


def data_at(fd: int, pos: int, end: int) -> tuple[int, int]:
    """Where the file's data at or after `pos` begins and where it stops, before `end`:
    (pos, end) where the file system cannot tell (no SEEK_DATA: every byte is read); a
    hole from `pos` to the first is never read (a sparse file's, which holds no newline);
    the two are equal when no data comes before `end` (or before the file's end, sooner
    when the file got shorter): nothing more to read. Moves the fd's offset."""
    try:
        data = os.lseek(fd, pos, os.SEEK_DATA)
    except OSError as e:
        if e.errno != errno.ENXIO:
            return pos, end
        stop = min(end, max(pos, os.fstat(fd).st_size))  # no data after `pos`: a hole to the end
        return stop, stop
    if data >= end:
        return end, end
    try:
        hole = os.lseek(fd, data, os.SEEK_HOLE)
    except OSError:
        hole = end
    return data, min(hole, end)


def hole_start(fd: int, pos: int) -> int:
    """Where the hole that ends at `pos` begins (`pos`: byte `pos - 1` is data, or the file
    system cannot tell), by bisection with SEEK_DATA: some 35 lseeks for a 20 GiB hole."""
    try:
        if os.lseek(fd, pos - 1, os.SEEK_DATA) == pos - 1:
            return pos
    except OSError as e:
        if e.errno != errno.ENXIO:
            return pos
    low, high = 0, pos - 1  # [high, pos) holds no data; find the least such
    while low < high:
        mid = (low + high) // 2
        if data_at(fd, mid, pos)[0] >= pos:
            high = mid
        else:
            low = mid + 1
    return low


def newlines_back(fd: int, pos: int, wanted: int) -> tuple[int | None, int]:
    """Read backwards from `pos` one block at a time for `wanted` newlines: (the offset
    after the last one wanted, 0), or (None, how many are still wanted) when the file's
    start came first. A hole is stepped over, not read (`hole_start`: it holds none)."""
    while pos > 0:
        pos = hole_start(fd, pos)
        if pos == 0:
            break
        size = min(BLOCK_BYTES, pos)
        block = os.pread(fd, size, pos - size)
        count = block.count(b"\n")
        if count >= wanted:
            cut = len(block)
            for _ in range(wanted):
                cut = block.rindex(b"\n", 0, cut)
            return pos - size + cut + 1, 0
        wanted -= count
        pos -= size
    return None, wanted


def line_start(fd: int, end: int, line: int) -> int:
    """The offset where line `line` (1 for the first) begins, reading forwards one block at
    a time, holes stepped over (`data_at`); `end` when the file before `end` has fewer lines."""
    pos, wanted = 0, line - 1  # newlines to pass
    while wanted > 0 and pos < end:
        pos, upto = data_at(fd, pos, end)
        if pos >= upto:
            return end
        block = os.pread(fd, min(BLOCK_BYTES, upto - pos), pos)
        if not block:
            return end
        cut = -1
        for _ in range(min(wanted, block.count(b"\n"))):
            cut = block.index(b"\n", cut + 1)
            wanted -= 1
        pos = pos + cut + 1 if wanted == 0 else pos + len(block)
    return min(pos, end)


def copy_range(fd: int, start: int, end: int, out: BinaryIO, hole: Callable[[int], object] | None = None) -> int:
    """Write bytes [start, end) of the file to `out` one block at a time; returns the offset
    reached (less than `end` when the file got shorter). `hole`: a hole is not read, and its
    length is given to it instead (without: its NUL bytes are copied, as they read)."""
    pos = start
    while pos < end:
        upto = end
        if hole is not None:
            data, upto = data_at(fd, pos, end)
            if data > pos:
                hole(data - pos)
                pos = data
            if pos >= upto:
                break
        block = os.pread(fd, min(BLOCK_BYTES, upto - pos), pos)
        if not block:
            break
        out.write(block)
        pos += len(block)
    return pos
