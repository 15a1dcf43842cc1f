"""`executor/codecachewrite.py` on its own: `merged` (a fresh source first among its file
name's, at most `codecache.KEPT`, a source kept already not added again), `served_first` (the
sources this process was served first, the others after, in their order), and `write` that
fails once its temporary exists (removed, False, one DEBUG line naming the file)."""
from __future__ import annotations

import logging
import os
import stat

import pytest

from executor import codecache, codecachewrite

pytestmark = pytest.mark.timeout(10)


def kept(*sources: str) -> tuple[tuple[str, str], ...]:
    return tuple((source, f"code of {source}") for source in sources)


def test_a_fresh_source_goes_first_and_the_oldest_beyond_the_cap_goes():
    assert codecache.KEPT == 4
    entries = {"<a>": kept("a3", "a2", "a1", "a0"), "<b>": kept("b0")}
    assert codecachewrite.merged(entries, [("<a>", "a4", "code of a4"), ("<c>", "c0", "code of c0")]) is True
    assert entries == {"<a>": kept("a4", "a3", "a2", "a1"), "<b>": kept("b0"), "<c>": kept("c0")}


def test_a_source_kept_already_changes_nothing():
    entries = {"<a>": kept("a1", "a0")}
    assert codecachewrite.merged(entries, [("<a>", "a0", "other code")]) is False
    assert entries == {"<a>": kept("a1", "a0")}


def test_the_sources_served_go_first_and_the_others_keep_their_order_after_them():
    entries = {"<a>": kept("a3", "a2", "a1", "a0"), "<b>": kept("b1", "b0")}
    served = codecachewrite.served_first(entries, [("<a>", hash("a1")), ("<b>", hash("gone")), ("<c>", hash("c"))])
    assert served == {"<a>": kept("a1", "a3", "a2", "a0"), "<b>": kept("b1", "b0")}


def test_a_write_that_fails_after_its_temporary_was_made_removes_it_and_says_so(tmp_path, caplog):
    path = tmp_path / "cache.bin"
    path.mkdir()  # the rename over it fails: a directory
    (path / "keep").write_text("")
    with caplog.at_level(logging.DEBUG, logger="executor.codecachewrite"):
        assert codecachewrite.write(path, {"<a>": kept("a0")}) is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.bin"]
    (line,) = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert line[:2] == ("executor.codecachewrite", logging.DEBUG)
    assert line[2].startswith(f"code cache {path} not written: [Errno 21] Is a directory: "), line


def test_a_write_makes_each_missing_level_above_the_file_0755_less_the_umask(tmp_path):
    path = tmp_path / "a" / "b" / "cache.bin"
    assert codecachewrite.write(path, {"<a>": kept("a0")}) is True
    umask = os.umask(0)
    os.umask(umask)
    assert [stat.S_IMODE(level.stat().st_mode) for level in (path.parent.parent, path.parent)] == [0o755 & ~umask] * 2
    assert path.read_bytes().startswith(codecache.HEADER) and sorted(p.name for p in path.parent.iterdir()) == [
        "cache.bin"]
