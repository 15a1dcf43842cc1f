"""`executor/task/viewcache.py`'s rules one by one, on real files: what a kept fold is gone
on from (the same file grown, its bytes read still there), what a racy view needs to be
served again, the bound on the places kept, and what `Seen` and `resumable` take of a read.
The views are plain strings; the folds real (`replay.Fold`), their bytes real lines.
tests/integration/test_view_resume*.py state the same through the observer's reader."""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.host.entrycache import stamp_of
from executor.task import viewcache
from executor.task.replay import Fold
from executor.task.viewcache import Resume, Seen, ViewCache, resumable

WHERE = ("/sb", "")
LINES = b'{"a": 1}\n{"b": 2}\n'


@pytest.fixture
def checkpoint(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A file of two whole lines, open for reading."""
    path = tmp_path / "checkpoint.jsonl"
    path.write_bytes(LINES)
    fd = os.open(path, os.O_RDONLY)
    try:
        yield path, fd
    finally:
        os.close(fd)


def _seen(data: bytes, *blocks: int) -> Seen:
    """A `Seen` of `data` read whole, in blocks of these sizes."""
    seen, at = Seen(len(data)), 0
    for size in blocks or (len(data),):
        seen.tee(data[at:at + size])
        at += size
    return seen


def _resume(fd: int, data: bytes = LINES) -> Resume:
    resume = resumable(fd, Fold(), stamp_of(os.fstat(fd)), 1 << 20, _seen(data))
    assert resume is not None
    return resume


def _cache(fd: int, racy: bool = False) -> ViewCache[str]:
    """A cache holding view "v" of the file open as `fd` and its fold; `racy`: read as it
    changed (within its window), else long after."""
    cache: ViewCache[str] = ViewCache(racy_ns=10**9, fine_ns=10**9)
    stamp = stamp_of(os.fstat(fd))
    cache.put(WHERE, stamp, "v", _resume(fd), stamp[4] + (0 if racy else 10**10))
    return cache


def test_the_hash_of_what_was_read_is_taken_in_blocks_up_to_its_end_only(checkpoint, monkeypatch):
    path, fd = checkpoint
    monkeypatch.setattr(viewcache, "HASH_BLOCK", 4)  # 18 bytes: five reads, the last of two
    resume = _resume(fd)
    with open(path, "ab") as f:
        f.write(b'{"c": 3}\n')
    same = resume.same(fd)
    assert same is not None and same.digest() == hashlib.blake2b(LINES, digest_size=16).digest()


def test_a_fold_is_gone_on_from_only_in_the_same_file_grown(checkpoint, tmp_path):
    path, fd = checkpoint
    cache = _cache(fd)
    assert cache.take(WHERE, stamp_of(os.fstat(fd)), fd) is None  # not grown: nothing to go on with
    assert cache.folds() == 1  # and the fold stays
    other = tmp_path / "compacted.jsonl"  # another file (a compaction), the same first lines, longer
    other.write_bytes(LINES + b'{"c": 3}\n')
    other_fd = os.open(other, os.O_RDONLY)
    try:
        assert cache.take(WHERE, stamp_of(os.fstat(other_fd)), other_fd) is None
    finally:
        os.close(other_fd)
    with open(path, "ab") as f:
        f.write(b'{"c": 3}\n')
    taken = cache.take(WHERE, stamp_of(os.fstat(fd)), fd)
    assert taken is not None and taken.offset == len(LINES) and cache.resumed == 1
    assert cache.folds() == 0  # one owner at a time


def test_settling_drops_the_fold_of_that_file_only(checkpoint):
    _, fd = checkpoint
    cache = _cache(fd)
    cache.settle(("/elsewhere", ""), stamp_of(os.fstat(fd)))  # nothing kept there: nothing to do
    stamp = stamp_of(os.fstat(fd))
    cache.settle(WHERE, (*stamp[:2], stamp[2] + 1, *stamp[3:]))  # a later file's stamp: kept
    assert cache.folds() == 1
    cache.settle(WHERE, stamp)
    assert cache.folds() == 0 and cache.get(WHERE, stamp, fd, stamp[4] + 10**10) == "v"


def test_a_racy_view_is_served_again_once_its_bytes_are_hashed_again_until_it_is_old(checkpoint):
    _, fd = checkpoint
    cache = _cache(fd, racy=True)
    stamp = stamp_of(os.fstat(fd))
    assert cache.get(WHERE, stamp, fd, stamp[4]) == "v"  # read again within the window: still racy
    assert cache.get(WHERE, stamp, fd, stamp[4]) == "v"
    assert cache.verified == 2
    assert cache.get(WHERE, stamp, fd, stamp[4] + 10**10) == "v"  # read again long after: no longer racy
    assert cache.get(WHERE, stamp, fd, stamp[4] + 10**10) == "v"
    assert cache.verified == 3
    assert cache.last(WHERE) == "v" and cache.last(("/elsewhere", "")) is None


def test_the_places_kept_are_bounded_a_new_one_past_the_bound_forgets_the_others(checkpoint):
    _, fd = checkpoint
    stamp = stamp_of(os.fstat(fd))
    cache: ViewCache[str] = ViewCache(max_views=2)
    cache.put(("/a", ""), stamp, "a", None, 0)
    cache.put(("/b", ""), stamp, "b", None, 0)
    cache.put(("/b", ""), stamp, "b2", None, 0)  # a place kept already: the others stay
    assert len(cache) == 2 and cache.last(("/a", "")) == "a"
    cache.put(("/c", ""), stamp, "c", None, 0)
    assert len(cache) == 1 and cache.last(("/c", "")) == "c" and cache.read == 4


def test_seen_hashes_only_the_bytes_up_to_the_size_stamped():
    seen = Seen(10)
    for block in (b"abcd", b"efghijklmno", b"pqr"):  # the file grew while it was read
        seen.tee(block)
    assert (seen.at, seen.last) == (10, b"j")
    assert seen.hashed.digest() == hashlib.blake2b(b"abcdefghij", digest_size=16).digest()


@pytest.mark.parametrize("data, max_bytes, kept", [
    (b"\n", 100, True),  # one empty line: a whole line
    (LINES, len(LINES) + 1, True),
    (LINES, len(LINES), False),  # at the bound: replayed whole each time instead
    (LINES[:-1], 100, False),  # its last line half written
], ids=["one-byte", "under-the-bound", "at-the-bound", "half-a-line"])
def test_a_fold_is_kept_to_go_on_with_when_it_ends_on_a_whole_line_under_the_bound(tmp_path, data, max_bytes, kept):
    path = tmp_path / "checkpoint.jsonl"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        resume = resumable(fd, Fold(), stamp_of(os.fstat(fd)), max_bytes, _seen(data, 1, len(data)))
    finally:
        os.close(fd)
    assert (resume is not None) == kept
