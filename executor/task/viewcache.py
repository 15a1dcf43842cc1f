"""The replayed views of the checkpoints a long-lived reader (`stoker observe`) has read.

Each request of the observer's task list replayed every task's checkpoint (up to its 64 KiB
compaction threshold, more for a task of many processes): about 4 ms a busy task, 0.9 s a
page with 200 of them, on each load. A view is kept with the stamp of the file it came from
(device, inode, size and modification time, taken on the descriptor the records are read
from, before any is read: `checkpoint.open_checkpoint`); the writer only appends, or renames
a compacted file over the old one, so a file with the same stamp replays to the same view,
and a task that wrote nothing since costs an open and one `fstat`, no read.

A file that only grew since (the same device and inode, larger, and what was read still
there: its first and last `EDGE_BYTES` read again, the first holding the header's task id,
supervisor and random marker, so an inode number the file system gave again to a new file
is not taken for the old one) is not replayed from its start: the fold
(`replay.Fold`) that made its view is kept too, when it ended on a whole line at the size
stamped, and goes on from there with the lines appended. Anything else (another inode: a
compaction, a re-run in the same sandbox; a file cut or rewritten; a line half written at its
end when it was read) is replayed whole. A fold has one owner at a time: it is taken out of
the cache to go on with and put back after, and a thread that finds none replays whole.

Bounded (`MAX_VIEWS`: past it, the views are forgotten and read again); thread-safe, for
the observer's worker threads. Views are frozen values.
"""
from __future__ import annotations

import os
import threading
from typing import Generic, TypeVar

import attrs

from executor.task.replay import Fold

Where = tuple[str, str]  # the sandbox, and the `.stoker` a registry entry pins ("" none)
Stamp = tuple[int, int, int, int]
V = TypeVar("V")

MAX_VIEWS = 4096
EDGE_BYTES = 256  # of what was read, at each end, read again before going on: the same file, not cut


@attrs.frozen(slots=True)
class Resume:
    """A fold to go on with: the records of the file's first `offset` bytes, whole lines."""

    fold: Fold
    offset: int
    head: bytes  # the file's first bytes, as read then
    tail: bytes  # the bytes just before `offset`, as read then

    def same(self, fd: int) -> bool:
        """Whether the file open as `fd` still holds what was read (at both ends)."""
        return os.pread(fd, len(self.head), 0) == self.head and \
            os.pread(fd, len(self.tail), self.offset - len(self.tail)) == self.tail


@attrs.define(slots=True)
class _Kept(Generic[V]):
    stamp: Stamp
    value: V
    resume: Resume | None


class ViewCache(Generic[V]):
    def __init__(self, max_views: int = MAX_VIEWS) -> None:
        self._max = max_views
        self._lock = threading.Lock()
        self._views: dict[Where, _Kept[V]] = {}
        self.read = 0  # views replayed from their file (not found here), whole or from a fold kept
        self.resumed = 0  # of those, from a fold kept

    def get(self, where: Where, stamp: Stamp) -> V | None:
        """The view of the file `stamp` names, when it is the one kept for `where`."""
        with self._lock:
            kept = self._views.get(where)
        return kept.value if kept is not None and kept.stamp == stamp else None

    def take(self, where: Where, stamp: Stamp, fd: int) -> Resume | None:
        """The fold kept for `where`, to go on with in the file open as `fd` (stamped
        `stamp`), taken out of the cache, when that file is the one it was read from, grown
        since, the bytes last read unchanged; else None (replay it whole)."""
        with self._lock:
            kept = self._views.get(where)
            resume = kept.resume if kept is not None else None
            if kept is None or resume is None or kept.stamp[:2] != stamp[:2] or stamp[2] <= resume.offset:
                return None
            kept.resume = None  # one owner at a time
        if not resume.same(fd):
            return None
        with self._lock:
            self.resumed += 1
        return resume

    def put(self, where: Where, stamp: Stamp, value: V, resume: Resume | None = None) -> None:
        """Keep `value`, read from the file `stamp` names, for `where` (instead of any
        earlier one), and the fold that made it when it may go on (`resume`)."""
        with self._lock:
            self.read += 1
            if where not in self._views and len(self._views) >= self._max:
                self._views.clear()
            self._views[where] = _Kept(stamp, value, resume)


def resumable(fd: int, fold: Fold, size: int, max_bytes: int) -> Resume | None:
    """`fold`, made from the file open as `fd` read to its end, as a `Resume`, when that end
    is the size stamped before (nothing was appended, or cut, while it was read), on a whole
    line, within `max_bytes`; else None."""
    if not 0 < size < max_bytes or os.fstat(fd).st_size != size:
        return None
    start = max(0, size - EDGE_BYTES)
    tail = os.pread(fd, size - start, start)
    return Resume(fold, size, os.pread(fd, EDGE_BYTES, 0), tail) if tail.endswith(b"\n") else None
