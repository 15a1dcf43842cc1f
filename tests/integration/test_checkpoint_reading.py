"""The checkpoint's reading, on real files: `saferead.iter_lines` line by line at each of its
bounds (a line of exactly `max_line` kept, one byte more passed over and counted, the cap on
the bytes read cutting a line, lines across blocks, a hole stepped over or read), and
`checkpoint.records_at`, `iter_records`, `read_records` and `open_checkpoint_in`: their
defaults, a line too long handed on at its offset, a `.stoker` another than the pinned one,
a sandbox reached through a symlink, and what cannot be opened or read, in words."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from executor.procs import saferead
from executor.task import checkpoint
from executor.task.checkpoint import (
    CheckpointError,
    iter_records,
    open_checkpoint_in,
    read_records,
    records_at,
)
from executor.task.records import UnreadableLine
from tests.support.sparsefile import holes_here, write_parts

BLOCK = saferead.BLOCK_BYTES


def _lines(path: Path, data: bytes, max_bytes: int = 1 << 30, max_line: int = 100, **kwargs):
    path.write_bytes(data)
    skipped: list[int] = []
    fd = os.open(path, os.O_RDONLY)
    try:
        return list(saferead.iter_lines(fd, max_bytes, max_line, skipped=skipped, **kwargs)), skipped
    finally:
        os.close(fd)


@pytest.mark.parametrize("data, max_bytes, max_line, lines, skipped", [
    (b"a\nbb\nccc", 1 << 30, 3, [b"a", b"bb", b"ccc"], []),  # the last line without its newline
    (b"a\n", 1 << 30, 3, [b"a"], []),  # no empty line after the last newline
    (b"\n\nab\n", 1 << 30, 3, [b"", b"", b"ab"], []),  # empty lines, one at the block's start
    (b"abc\nabc\nx", 1 << 30, 3, [b"abc", b"abc", b"x"], []),  # exactly max_line, first and next
    (b"a\nabcd\nb\n", 1 << 30, 3, [b"a", b"b"], [5]),  # one byte more: its bytes and newline
    (b"a\nabcd", 1 << 30, 3, [b"a"], [5]),  # the last, cut short: as if its newline were there
    (b"aaaa\nbb\n", 6, 10, [b"aaaa"], []),  # the cap cuts "bb": not handed on
    (b"aa\nbbbb\ncc\n", 7, 3, [b"aa"], []),  # nor counted: its end was not read
])
def test_lines_at_each_bound(tmp_path, data, max_bytes, max_line, lines, skipped):
    assert _lines(tmp_path / "f", data, max_bytes, max_line) == (lines, skipped)


def test_a_line_across_blocks_is_kept_whole_up_to_max_line_and_counted_past_it(tmp_path):
    long = b"x" * BLOCK  # exactly max_line, its newline in the next block
    assert _lines(tmp_path / "f", long + b"\nok\n", max_line=BLOCK) == ([long, b"ok"], [])
    two = b"y" * (BLOCK + 10)
    assert _lines(tmp_path / "f", two, max_line=BLOCK + 10) == ([two], [])  # the last, in two pieces
    # past max_line in the first block, ended in the next (no newline there, then one)
    assert _lines(tmp_path / "f", b"a\n" + b"z" * (BLOCK + 500) + b"\nb\n", max_line=1000) == (
        [b"a", b"b"], [BLOCK + 501])
    assert _lines(tmp_path / "f", b"a\n" + b"z" * (BLOCK + 500), max_line=1000) == ([b"a"], [BLOCK + 501])
    # a line skipped in the second block is counted from where it starts there
    assert _lines(tmp_path / "f", b"q" * (BLOCK - 2) + b"\n" + b"w" * 21 + b"\nend\n", max_line=10) == (
        [b"end"], [BLOCK - 1, 22])


def test_the_cap_is_kept_in_a_later_block(tmp_path):
    data = b"".join(b"%07d\n" % n for n in range(20000))  # 8 bytes a line, 160000 bytes
    lines, skipped = _lines(tmp_path / "f", data, max_bytes=BLOCK + 800, max_line=10)
    assert (len(lines), lines[-1], skipped) == ((BLOCK + 800) // 8, b"%07d" % ((BLOCK + 800) // 8 - 1), [])


def test_a_hole_is_stepped_over_and_the_line_it_is_in_passed_over_or_read_as_zeros(tmp_path):
    if not holes_here(tmp_path):
        pytest.skip("this file system keeps no holes")
    far = 1 << 20
    path = tmp_path / "sparse"
    size = write_parts(path, (b"a\n", far, b"b\nc\n"))
    fd = os.open(path, os.O_RDONLY)
    try:
        skipped: list[int] = []
        stepped = list(saferead.iter_lines(fd, 1 << 30, far, skip_holes=True, skipped=skipped))
        assert (stepped, skipped) == ([b"a", b"c"], [far])  # the hole's line, "b" its end
        os.lseek(fd, 0, os.SEEK_SET)
        cut = list(saferead.iter_lines(fd, far + 2, far, skip_holes=True))
        assert cut == [b"a"]  # the hole counts against the cap: "c" is past it
        os.lseek(fd, 0, os.SEEK_SET)
        read = list(saferead.iter_lines(fd, 1 << 30, far))
        assert read == [b"a", bytes(far - 2) + b"b", b"c"] and size == far + 4
    finally:
        os.close(fd)


RECORD = b'{"kind": "header", "n": 1}'
GARBLED = b'{"kind": "hea'


def _sandbox(tmp_path: Path, *lines: bytes) -> Path:
    sandbox = tmp_path / "sandbox"
    (sandbox / checkpoint.CHECKPOINT_DIR).mkdir(parents=True)
    checkpoint.checkpoint_path(sandbox).write_bytes(b"".join(line + b"\n" for line in lines))
    return sandbox


def test_records_at_reads_from_the_start_by_default_and_skips_what_it_cannot_read(tmp_path):
    sandbox = _sandbox(tmp_path, RECORD, GARBLED, RECORD)
    dir_fd, fd = open_checkpoint_in(sandbox)  # no `.stoker` pinned
    try:
        assert list(records_at(fd, sandbox)) == [{"kind": "header", "n": 1}] * 2
        assert list(iter_records(sandbox)) == read_records(sandbox) == [{"kind": "header", "n": 1}] * 2
    finally:
        os.close(fd)
        os.close(dir_fd)


def test_a_line_too_long_and_a_garbled_one_are_handed_on_at_their_offsets(tmp_path):
    long = b'{"kind": "' + b"x" * 100 + b'"}'
    sandbox = _sandbox(tmp_path, RECORD, long, GARBLED, RECORD)
    doc = {"kind": "header", "n": 1}
    after_long = len(RECORD) + 1 + len(long) + 1
    expected = [doc, UnreadableLine("", len(RECORD) + 1, len(long), too_long=True),
                UnreadableLine(GARBLED.decode(), after_long, len(GARBLED)), doc]
    fd = checkpoint.open_checkpoint(sandbox)
    try:
        assert list(records_at(fd, sandbox, 0, 1 << 20, keep_unreadable=True, max_line=50)) == expected
        os.lseek(fd, 0, os.SEEK_SET)  # the cap on the bytes read, apart from the cap on a line's
        assert list(records_at(fd, sandbox, 0, len(RECORD) + 1, keep_unreadable=True, max_line=50)) == [doc]
    finally:
        os.close(fd)
    assert list(iter_records(sandbox, keep_unreadable=True, max_line=50)) == expected
    assert list(iter_records(sandbox, 1 << 20, True, max_line=50)) == expected
    assert [type(r) for r in read_records(sandbox, keep_unreadable=True)] == [dict, dict, UnreadableLine, dict]


def test_a_stoker_dir_other_than_the_pinned_one_is_refused_in_words(tmp_path):
    sandbox = _sandbox(tmp_path, RECORD)
    stoker = sandbox / checkpoint.CHECKPOINT_DIR
    pinned = f"{os.stat(stoker).st_dev}:{os.stat(stoker).st_ino}"
    assert list(iter_records(sandbox, pinned=pinned)) == [{"kind": "header", "n": 1}]
    with pytest.raises(CheckpointError) as caught:
        list(iter_records(sandbox, pinned=pinned + "0"))
    assert str(caught.value) == (
        f"cannot open the checkpoint {checkpoint.checkpoint_path(sandbox)}: {stoker} is not the directory its supervisor "
        f"made (the task may have put another in its place); nothing in it is trusted")


def test_a_sandbox_reached_through_a_symlink_is_read(tmp_path):
    sandbox = _sandbox(tmp_path, RECORD)
    (tmp_path / "link").symlink_to(sandbox)
    assert read_records(tmp_path / "link") == [{"kind": "header", "n": 1}]


def test_a_sandbox_that_cannot_be_opened_is_named_and_keeps_its_errno(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(CheckpointError) as caught:
        read_records(tmp_path / "file")
    assert str(caught.value) == (f"cannot open the checkpoint {checkpoint.checkpoint_path(tmp_path / 'file')}: "
                                 f"it is a regular file, not a directory")
    too_long = tmp_path / ("n" * 300)
    with pytest.raises(CheckpointError) as caught:
        read_records(too_long)
    assert caught.value.errno == errno.ENAMETOOLONG  # (another user's, EACCES, is told apart so)
    assert str(caught.value) == (f"cannot open the checkpoint {checkpoint.checkpoint_path(too_long)}: "
                                 f"File name too long (ENAMETOOLONG)")


def test_a_checkpoint_that_cannot_be_read_says_so_with_its_path(tmp_path, monkeypatch):
    sandbox = _sandbox(tmp_path, RECORD)

    def refused(fd, size):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(saferead.os, "read", refused)
    with pytest.raises(CheckpointError) as caught:
        list(iter_records(sandbox))
    assert str(caught.value) == (f"cannot read the checkpoint {checkpoint.checkpoint_path(sandbox)}: "
                                 f"Input/output error (EIO)")
