"""The registry's entries as last parsed, kept by the stamp of their files, for a reader
that reads the registry again and again (`stoker observe`: on every request).

Each entry file was opened, read and JSON-parsed on every reading (0.2-0.3 ms an entry: a
quarter of a second a request for a registry of 1,000 tasks). An entry is kept with the
stamp of the file it was read from (device, inode, size, modification and change times,
as the checkpoints' views are: `executor/task/viewcache.py`), taken on the descriptor it
was read from; the next reading looks at the file (`fstatat`, no open) and, when its stamp
is the one kept, takes the entry kept. A supervisor replaces its entry whole (a new file
renamed over: its own times, but often the inode number the rename before freed, which
ext4 hands out again at once); a file rewritten in place changes its times (a time set back
moves its change time), and a chmod its change time, so a file this user may no longer
read is opened again (and refused). Those times come from a coarse clock (a tick of 1-10 ms;
whole seconds on an ext3, or an ext4 of 128-byte inodes; two on FAT), and a change within the tick of the reading keeps the
whole stamp: a rewrite in place of the same size, a chmod, or a new entry given the inode a
rename freed would have been answered with the old entry until the next change (forever if
none came). So an entry is kept only when its file's change time is at least a window
older than its reading (git's "racy" files): one changed since is parsed again at the next
reading, until it is that old. The window (`racy`, shared with the checkpoints' views) is the
file system's: a stamp whose mtime and ctime both have a sub-second part comes from one of
fine times, stamped by the kernel's coarse clock (a tick: 1-10 ms; a time set whole by
`utime` is whole in the mtime only, the ctime is always the kernel's), and `FINE_RACY_NS`
(50 ms: five ticks of the slowest, HZ=100, kernel; exFAT's 10 ms steps too) covers it; a
whole second in either (ext3, an ext4 of 128-byte inodes, FAT's 2 s, an NFS server's of
whole seconds; or a fine file that landed on .000000000, one in a billion) gets `RACY_NS`
(2 s: FAT's step). "Its reading" is when it began (`EntryCache.reading`), before any file of
it was looked at: a file rewritten while it was read, in its stamp's tick, changed after the
reading began, so within the window. The kept entries of a root are those of its last
reading (a file gone is forgotten with it); at most `MAX_ROOTS` roots are kept (past it,
all are forgotten). Thread-safe: a reading builds its own table and puts it in whole.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
Stamp = tuple[int, int, int, int, int]  # device, inode, size, mtime, ctime (ns)
MAX_ROOTS = 16
RACY_NS = 2 * 10**9  # a change time (whole seconds) at least this older than its reading is not that tick's
# the same, for a file system of fine times: a tick of the kernel's coarse clock, 5 times over
FINE_RACY_NS = 50 * 10**6


def stamp_of(st: os.stat_result) -> Stamp:
    """The stamp of a file (a registry entry, a checkpoint: `executor/task/viewcache.py`) from its
    `fstat`, taken before it is read. Its change time too: an mtime set back (`touch -d`,
    `utime`) after a rewrite of the same size moves it."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def fine(stamp: Stamp) -> bool:
    """Whether `stamp` is of a file system of fine times: its mtime and its ctime both have a
    sub-second part (else: whole seconds, or 2 s, or one that landed on a whole second)."""
    return bool(stamp[3] % 10**9 and stamp[4] % 10**9)


def racy(stamp: Stamp, read_at: int, racy_ns: int = RACY_NS, fine_ns: int = FINE_RACY_NS) -> bool:
    """Whether the file `stamp` names changed within its window (`fine_ns` for a file system of
    fine times, `fine`; else `racy_ns`) of `read_at`, the wall clock (ns) as its reading began,
    before its stamp was taken: its stamp alone may then hide a change made since, in its tick
    (a change time ahead of the clock tells nothing: racy too)."""
    return read_at - stamp[4] < (fine_ns if fine(stamp) else racy_ns)


class EntryCache(Generic[T]):
    def __init__(self, max_roots: int = MAX_ROOTS, racy_ns: int = RACY_NS,
                 clock: Callable[[], int] = time.time_ns, fine_ns: int = FINE_RACY_NS) -> None:
        """`racy_ns`, `fine_ns`: how much older than its reading a file's change must be for its
        entry to be kept (`racy`; `clock`: the wall clock, in ns, as the files' times count it)."""
        self._max, self.racy_ns, self.fine_ns, self.clock = max_roots, racy_ns, fine_ns, clock
        self._lock = threading.Lock()
        self._roots: dict[str, dict[str, tuple[Stamp, T]]] = {}
        self.parsed = 0  # entries read and parsed (not found here)

    def kept(self, root: str) -> int:
        """How many files of `root` are kept (its last reading's)."""
        with self._lock:
            return len(self._roots.get(root, {}))

    def reading(self, root: str) -> Reading[T]:
        """One reading of `root`: what it finds again, from the last one's entries."""
        with self._lock:
            return Reading(self, root, self._roots.get(root, {}))

    def _done(self, root: str, kept: dict[str, tuple[Stamp, T]], parsed: int) -> None:
        with self._lock:
            self.parsed += parsed
            if root not in self._roots and len(self._roots) >= self._max:
                self._roots.clear()
            self._roots[root] = kept


class Reading(Generic[T]):
    """The entries of one reading of a root, kept for the next one when it is `done`."""

    def __init__(self, cache: EntryCache[T], root: str, before: dict[str, tuple[Stamp, T]]) -> None:
        self._cache, self._root, self._before = cache, root, before
        self._began = cache.clock()  # before any file of it is looked at (`racy`)
        self._kept: dict[str, tuple[Stamp, T]] = {}
        self._parsed = 0

    def get(self, name: str, st: os.stat_result) -> tuple[bool, T | None]:
        """(True, the entry) when `name`, stamped `st` now, is the file it was parsed from."""
        found = self._before.get(name)
        if found is None or found[0] != stamp_of(st):
            return False, None
        self._kept[name] = found
        return True, found[1]

    def put(self, name: str, st: os.stat_result, value: T) -> None:
        """`value`, parsed from `name` as `st` (its descriptor's `fstat`, before the read) stamps
        it; kept only when that file changed at least its window before the reading began (`racy`)."""
        self._parsed += 1
        stamp = stamp_of(st)
        if not racy(stamp, self._began, self._cache.racy_ns, self._cache.fine_ns):
            self._kept[name] = (stamp, value)

    def done(self) -> None:
        self._cache._done(self._root, self._kept, self._parsed)
