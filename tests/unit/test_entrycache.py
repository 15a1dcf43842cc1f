"""The registry's entry cache (`executor/host/entrycache.py`) as a pure table: what a reading
takes again from the last one, by the stamp of each file, and when it must not.

A file's times come from the kernel's coarse clock (a tick: 1-10 ms, a second or two on some
file systems): a file rewritten in place at the same size within the tick of the reading that
kept it keeps its whole stamp (inode, size, mtime, ctime), and its old entry would have been
served until the next change, forever if none came; so was one chmod-ed unreadable then. An
inode freed by a rename and given to the next entry written does the same. A stamp that is
not at least its window older than its reading is not kept (git's "racy" files): `RACY_NS` for a
file system of whole seconds, `FINE_RACY_NS` for one of fine times (a sub-second part in its mtime
and its ctime), counted from the moment its reading began."""
from __future__ import annotations

import os

from executor.host.entrycache import FINE_RACY_NS, RACY_NS, EntryCache

NOW = 1_700_000_000 * 10**9  # the clock, in ns


def _stat(ctime_ns: int, *, ino: int = 7, size: int = 100, mtime_ns: int | None = None) -> os.stat_result:
    secs = ctime_ns // 10**9  # mode, ino, dev, nlink, uid, gid, size, atime, mtime, ctime
    times = {"st_atime_ns": ctime_ns, "st_mtime_ns": ctime_ns if mtime_ns is None else mtime_ns, "st_ctime_ns": ctime_ns}
    return os.stat_result((0o100600, ino, 1, 1, 0, 0, size, secs, secs, secs), times)


def _read_twice(cache: EntryCache[str], st: os.stat_result) -> tuple[bool, str | None]:
    reading = cache.reading("/root")
    reading.put("1-1.json", st, "old")
    reading.done()
    again = cache.reading("/root")
    return again.get("1-1.json", st)  # the same stamp: unchanged, or rewritten within its tick


def test_an_entry_changed_well_before_its_reading_is_kept():
    cache: EntryCache[str] = EntryCache(clock=lambda: NOW)
    assert _read_twice(cache, _stat(NOW - RACY_NS)) == (True, "old")


def test_an_entry_changed_within_the_window_of_its_reading_is_read_again():
    """Before: kept, and a rewrite of the same size (or a chmod) in that tick never seen."""
    cache: EntryCache[str] = EntryCache(clock=lambda: NOW)
    assert _read_twice(cache, _stat(NOW)) == (False, None)
    assert _read_twice(cache, _stat(NOW - RACY_NS + 10**9)) == (False, None)  # whole seconds: 2 s
    assert cache.kept("/root") == 0


def test_a_file_system_of_fine_times_has_a_window_of_a_few_ticks_one_of_whole_seconds_two_seconds():
    """A sub-second part in both times: the kernel's coarse clock stamped it (a tick, 1-10 ms), so
    FINE_RACY_NS covers it; before, every entry was read again for 2 s after its change. A whole
    second in either (a time set whole by `utime` is in the mtime; a file system of whole
    seconds, or of FAT's two) keeps the 2 s."""
    cache: EntryCache[str] = EntryCache(clock=lambda: NOW)
    fine = NOW - FINE_RACY_NS - 1234
    assert _read_twice(cache, _stat(fine)) == (True, "old")
    assert _read_twice(cache, _stat(fine + 1235)) == (False, None)  # within 50 ms
    assert _read_twice(cache, _stat(fine, mtime_ns=NOW - 10**9)) == (False, None)  # an mtime of whole seconds
    assert _read_twice(cache, _stat(NOW - 10**9, mtime_ns=fine)) == (False, None)  # a ctime of whole seconds


def test_the_window_counts_from_when_the_reading_began_not_from_when_the_file_was_read():
    """A reading that began within the window of a file's change and read it once that had
    passed (a slow reading, a loaded host) may have read it before a rewrite made after its
    start in the same tick, which leaves its stamp as it was: not kept. Before: kept, as the
    clock read after the file was."""
    now = NOW
    cache: EntryCache[str] = EntryCache(clock=lambda: now)
    st = _stat(NOW - FINE_RACY_NS + 1234)
    reading = cache.reading("/root")
    now += 3 * 10**9  # the reading took 3 s (a rewrite in place in its tick: the same stamp)
    reading.put("1-1.json", st, "old")
    reading.done()
    assert cache.reading("/root").get("1-1.json", st) == (False, None)


def test_an_entry_changed_after_its_reading_as_the_clock_tells_is_read_again():
    """A change time ahead of the clock (the clock stepped back since) tells nothing."""
    cache: EntryCache[str] = EntryCache(clock=lambda: NOW)
    assert _read_twice(cache, _stat(NOW + 10**12)) == (False, None)


def test_past_the_bound_of_roots_each_is_read_again_not_answered_wrongly():
    cache: EntryCache[str] = EntryCache(max_roots=2, clock=lambda: NOW)
    old = _stat(NOW - RACY_NS)
    for root in ("/a", "/b", "/c"):
        reading = cache.reading(root)
        reading.put("1-1.json", old, root)
        reading.done()
    assert (cache.kept("/a"), cache.kept("/b"), cache.kept("/c")) == (0, 0, 1)
    assert cache.reading("/c").get("1-1.json", old) == (True, "/c")
    assert cache.reading("/a").get("1-1.json", old) == (False, None)


def test_an_entry_found_again_is_kept_for_the_reading_after_and_the_parses_are_counted():
    cache: EntryCache[str] = EntryCache(clock=lambda: NOW)
    old = _stat(NOW - RACY_NS)
    first = cache.reading("/root")
    first.put("1-1.json", old, "one")
    first.put("2-1.json", old, "two")
    first.done()
    assert cache.parsed == 2
    for _ in range(2):  # found again, and again by the reading after it
        reading = cache.reading("/root")
        assert reading.get("1-1.json", old) == (True, "one")
        reading.done()
    assert cache.parsed == 2 and cache.kept("/root") == 1  # the file not looked at: forgotten


def test_two_roots_under_the_bound_are_both_kept():
    cache: EntryCache[str] = EntryCache(max_roots=2, clock=lambda: NOW)
    old = _stat(NOW - RACY_NS)
    for root in ("/a", "/b"):
        reading = cache.reading(root)
        reading.put("1-1.json", old, root)
        reading.done()
    assert (cache.kept("/a"), cache.kept("/b")) == (1, 1)


def test_a_sub_second_part_that_ends_in_zeros_is_still_fine():
    from executor.host.entrycache import fine

    assert fine((1, 7, 100, 1_000_000_010, 1_000_000_020)) is True
    assert fine((1, 7, 100, 2_000_000_000, 1_000_000_020)) is False  # an mtime of whole seconds
    assert fine((1, 7, 100, 1_000_000_010, 3_000_000_000)) is False
