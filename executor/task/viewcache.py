"""The replayed views of the checkpoints a long-lived reader (`stoker observe`) has read.

Each request of the observer's task list replayed every task's checkpoint (up to its 64 KiB
compaction threshold, more for a task of many processes): about 4 ms a busy task, 0.9 s a
page with 200 of them, on each load. A view is kept with the stamp of the file it came from
(device, inode, size, modification and change times, taken on the descriptor the records are read
from, before any is read: `checkpoint.open_checkpoint`); the writer only appends, or renames
a compacted file over the old one, so a file with the same stamp replays to the same view,
and a task that wrote nothing since costs an open and one `fstat`, no read.

A file that only grew since (the same device and inode, larger, and what was read still
there: a digest of its first bytes, as many as were read, taken as they were read (`Seen`, the
bytes the fold was made of, not the file's after the read) and taken again and compared; checking
only the first and last 256 bytes of them took a file rewritten in place between the two, and
grown, for the one read, and went on from a fold of records it no longer held) is not
replayed from its start: the fold (`replay.Fold`) that made its view is kept too, when it
ended on a whole line at the size stamped and nothing was written while it was read (the
size and times stamped, as they were after), and goes on from there with the
lines appended. Hashing what was read again costs a read of it, no parse: about 0.1 ms for
60 KB, where its replay took 4 ms; the hash of the part read before goes on over the part
appended, as it is read. Anything else (another inode: a compaction, a re-run in the same
sandbox; a file cut or rewritten; a line half written at its end when it was read) is
replayed whole. A write in place that leaves the file's size and its times as they were (in
the clock tick of the one read: 1-10 ms, whole seconds on an ext3 or an ext4 of 128-byte inodes;
an mtime set back moves the change time) leaves its stamp too: a view whose reading began within
its file system's window of its file's last change (git's "racy" files, as the registry's
entries: `entrycache.racy`, 50 ms for fine times, 2 s for whole seconds) is served
again only once its fold's hash of the whole file still holds (what was read is all there, and
unchanged: a read and a hash of the file, no parse; a fold of a task whose writer is gone is not
kept: its view is replayed), and by its stamp alone once it was so read when its file's change was
that old. The window counts from the clock read before the file was opened (`read_at`), so a write
in place while an old file is read changed it after that: a new stamp; one while a file changed
within the window is read leaves bytes other than the fold's hash (of the bytes it was made of),
so its view is replayed at the next reading. A fold has one owner at a time: it is taken out
of the cache to go on with and put back after, and a thread that finds none replays whole.

A task whose last writer is gone (its supervisor ended, or is LOST: `inspect_sandbox` says so,
`settle`) keeps its view and its file's stamp, not its fold (about 9 KB of objects for a task
of 10 processes, 37 KB of the observer's RSS, for each of the thousands of ended tasks a
registry may keep): its checkpoint may still change (a later run in the same sandbox appends
to it; a rewrite, a restore), seen by the stamp and replayed whole, once.

Bounded: the places a registry no longer lists are forgotten as it is read (`keep_only`),
and past `MAX_VIEWS` places every view is forgotten and read again; thread-safe, for the
observer's worker threads. Views are frozen values.
"""
from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from typing import Any, Generic, TypeVar

import attrs

from executor.host.entrycache import FINE_RACY_NS, RACY_NS, Stamp, racy
from executor.task.replay import Fold

Where = tuple[str, str]  # the sandbox, and the `.stoker` a registry entry pins ("" none)
V = TypeVar("V")

MAX_VIEWS = 4096
HASH_BLOCK = 1 << 20  # read at a time to hash what was read


@attrs.frozen(slots=True)
class Resume:
    """A fold to go on with: the records of the file's first `offset` bytes, whole lines."""

    fold: Fold
    offset: int
    hashed: Any  # a blake2b of the file's first `offset` bytes, as read then (copied to go on)

    def same(self, fd: int) -> Any:
        """The hash of the first `offset` bytes of the file open as `fd`, to go on with, when
        they are still what was read (all of them); else None."""
        h = _hashed(fd, _new_hash(), 0, self.offset)
        return h if h is not None and h.digest() == self.hashed.digest() else None


def _new_hash() -> Any:
    return hashlib.blake2b(digest_size=16)


def _hashed(fd: int, h: Any, start: int, end: int) -> Any:
    """`h` updated with the bytes from `start` to `end` of the file open as `fd` (None: it
    ends before)."""
    while start < end:
        block = os.pread(fd, min(HASH_BLOCK, end - start), start)
        if not block:
            return None
        h.update(block)
        start += len(block)
    return h


@attrs.define(slots=True)
class _Kept(Generic[V]):
    stamp: Stamp
    value: V
    resume: Resume | None
    racy: bool = False  # its file changed within its window of its reading: its stamp may hide a change since


class ViewCache(Generic[V]):
    def __init__(self, max_views: int = MAX_VIEWS, racy_ns: int = RACY_NS,
                 clock: Callable[[], int] = time.time_ns, fine_ns: int = FINE_RACY_NS) -> None:
        """`racy_ns`, `fine_ns`: how much older than its reading a file's change must be for its
        stamp alone to name its view (`entrycache.racy`; `clock`: the wall clock, in ns, as the
        files' times count it, read by the caller before it opens the file: `read_at`)."""
        self._max, self.racy_ns, self.fine_ns, self.clock = max_views, racy_ns, fine_ns, clock
        self._lock = threading.Lock()
        self._views: dict[Where, _Kept[V]] = {}
        self.read = 0  # views replayed from their file (not found here), whole or from a fold kept
        self.resumed = 0  # of those, from a fold kept
        self.verified = 0  # racy views served again once their fold's hash of the whole file held

    def __len__(self) -> int:
        return len(self._views)

    def folds(self) -> int:
        """How many folds are kept (to go on with): those of the tasks whose writer may append."""
        with self._lock:
            return sum(kept.resume is not None for kept in self._views.values())

    def keep_only(self, wheres: AbstractSet[Where]) -> None:
        """Forget the views of the places not in `wheres` (a registry's listing: tasks pruned
        from it are not asked for again, and their views and folds were kept until
        `MAX_VIEWS` places were known, then every view forgotten at once)."""
        with self._lock:
            for where in [w for w in self._views if w not in wheres]:
                del self._views[where]

    def last(self, where: Where) -> V | None:
        """The view last kept for `where`, whatever its file is now: what this reader saw of a
        checkpoint removed since (a GONE task's last sign of life, for `stoker observe`'s
        /metrics window); None when none is kept."""
        with self._lock:
            kept = self._views.get(where)
            return kept.value if kept is not None else None

    def get(self, where: Where, stamp: Stamp, fd: int, read_at: int) -> V | None:
        """The view of the file `stamp` names (open as `fd`, the clock `read_at` before), when it is
        the one kept for `where`; one read within its window of its file's change only when its fold
        read the whole file and those bytes are still there (hashed again), else None (replay it)."""
        with self._lock:
            kept = self._views.get(where)
            if kept is None or kept.stamp != stamp:
                return None
            if not kept.racy:
                return kept.value
            resume = kept.resume
        if resume is None or resume.offset != stamp[2] or resume.same(fd) is None:
            return None
        with self._lock:
            self.verified += 1
            kept.racy = self._racy(stamp, read_at)  # read again: no longer when that is older than the window
        return kept.value

    def _racy(self, stamp: Stamp, read_at: int) -> bool:
        return racy(stamp, read_at, self.racy_ns, self.fine_ns)

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
        verified = resume.same(fd)
        if verified is None:
            return None
        with self._lock:
            self.resumed += 1
        return attrs.evolve(resume, hashed=verified)  # its own hash, which `resumable` goes on with

    def settle(self, where: Where, stamp: Stamp) -> None:
        """Drop the fold kept for `where` when its view is of the file `stamp` names: the task's
        last writer is gone (it ended, or is LOST), so only its view and the stamp that tells
        its file changed are kept. A checkpoint that changes after all (a later run in the
        sandbox appends to it; a rewrite) is replayed whole once, as a fold taken is."""
        with self._lock:
            kept = self._views.get(where)
            if kept is not None and kept.stamp == stamp:
                kept.resume = None

    def put(self, where: Where, stamp: Stamp, value: V, resume: Resume | None, read_at: int) -> None:
        """Keep `value`, read from the file `stamp` names (opened after the clock read `read_at`),
        for `where` (instead of any earlier one), and the fold that made it when it may go on
        (`resume`)."""
        with self._lock:
            self.read += 1
            if where not in self._views and len(self._views) >= self._max:
                self._views.clear()
            self._views[where] = _Kept(stamp, value, resume, self._racy(stamp, read_at))


class Seen:
    """The bytes a replay reads, hashed as they are read (`tee`, for `checkpoint.records_at`), up
    to the size stamped (`end`): from the start, or from where the fold it goes on from (`resume`,
    whose bytes are hashed already) ended. Its fold is made of those bytes, whatever the file
    holds by the time it is kept: a write in place during the read, in the tick of the stamp,
    leaves a file whose hash is not this one."""

    def __init__(self, end: int, resume: Resume | None = None) -> None:
        self.end, self.at = end, resume.offset if resume is not None else 0
        self.hashed = resume.hashed.copy() if resume is not None else _new_hash()
        self.last = b"\n" if resume is not None else b""  # the last byte hashed

    def tee(self, block: bytes) -> None:
        part = block[:self.end - self.at] if self.at < self.end else b""
        if part:
            self.hashed.update(part)
            self.at, self.last = self.at + len(part), part[-1:]


def resumable(fd: int, fold: Fold, stamp: Stamp, max_bytes: int, seen: Seen) -> Resume | None:
    """`fold`, made from the file open as `fd` (stamped `stamp` before it was read) read to
    its end (`seen`: the bytes it was made of), as a `Resume`, when that end is on a whole line
    within `max_bytes` and nothing was written to the file while it was read (its size and
    times still the stamp's: an append, a cut or a write in place since); else None."""
    size = stamp[2]
    if not 0 < size < max_bytes or seen.at != size or seen.last != b"\n":
        return None
    st = os.fstat(fd)
    if (st.st_size, st.st_mtime_ns, st.st_ctime_ns) != stamp[2:]:
        return None
    return Resume(fold, size, seen.hashed)
