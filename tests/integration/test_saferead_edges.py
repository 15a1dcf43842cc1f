"""`executor.procs.saferead` called alone on real files: the sandbox reached through its
link while nothing below is, each refusal naming its entry, a walk that opens what it is
asked and leaves no descriptor, run numbers' bound, and the offsets `stoker tail` and the
observer read by (lines back, line N, a range copied) on plain and sparse files, exactly."""
from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.procs import saferead
from tests.support.sparsefile import holes_here, write_parts

BLOCK = saferead.BLOCK_BYTES
FAR = 1 << 20  # a hole's end: 16 blocks of BLOCK bytes


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "sandbox" / "a" / "b").mkdir(parents=True)
    (tmp_path / "sandbox" / "a" / "b" / "f").write_text("x")
    (tmp_path / "sandbox" / "a" / "g").write_text("y")
    (tmp_path / "link").symlink_to(tmp_path / "sandbox")
    (tmp_path / "sandbox" / "in").symlink_to(tmp_path / "sandbox" / "a")
    os.mkfifo(tmp_path / "sandbox" / "fifo")
    return tmp_path


def test_the_sandbox_itself_is_reached_through_a_link_and_nothing_below_it(tree):
    root = saferead.open_root(tree / "link")
    try:
        assert os.fstat(root).st_ino == (tree / "sandbox").stat().st_ino
        with pytest.raises(saferead.UnsafeEntry) as linked:
            saferead.open_dir("in", root)
        assert str(linked.value) == "in: it is a symlink, not a directory (Stoker follows no symlink inside a sandbox)"
        with pytest.raises(saferead.UnsafeEntry) as fifo:
            saferead.open_file("fifo", root)
        assert str(fifo.value) == "fifo: it is a FIFO, not a regular file"
    finally:
        os.close(root)


def test_a_walk_opens_what_it_is_asked_and_leaves_no_descriptor_either_way(tree):
    root = saferead.open_root(tree / "sandbox")
    try:
        before = fd_count()
        fd = saferead.walk(root, ["a", "b", "f"], file=True)
        assert os.read(fd, 10) == b"x"
        os.close(fd)
        fd = saferead.walk(root, ["a", "b"], file=False)
        assert os.fstat(fd).st_ino == (tree / "sandbox" / "a" / "b").stat().st_ino
        os.close(fd)
        for parts, file, said in ((["a", "b"], True, "b: it is a directory, not a regular file"),
                                  (["a", "g", "f"], True, "g: it is a regular file, not a directory"),
                                  (["a", "g"], False, "g: it is a regular file, not a directory")):
            with pytest.raises(saferead.UnsafeEntry) as refused:
                saferead.walk(root, parts, file=file)
            assert str(refused.value) == said
        with pytest.raises(ValueError, match=r"^'\.\.' is not a plain file name$"):
            saferead.walk(root, ["a", ".."], file=False)
        assert fd_count() == before
    finally:
        os.close(root)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\0b"])
def test_a_name_that_is_no_plain_entry_is_refused(name):
    with pytest.raises(ValueError) as refused:
        saferead.check_name(name)
    assert str(refused.value).endswith(" is not a plain file name")


def test_a_run_number_has_at_most_nine_digits():
    assert saferead.run_number("123456789") == 123456789 and saferead.run_number("1234567890") is None


@contextlib.contextmanager
def file_of(tmp_path: Path, *parts: bytes | int) -> Iterator[tuple[int, int]]:
    """A descriptor of a file made of `parts` (`write_parts`': bytes written, an int the file
    extended to that size: a hole) and its size; closed after. A file with a hole is skipped
    where the file system keeps none."""
    if any(isinstance(part, int) for part in parts) and not holes_here(tmp_path):
        pytest.skip("this file system keeps no holes")
    size = write_parts(tmp_path / "log", parts)
    fd = os.open(tmp_path / "log", os.O_RDONLY)
    try:
        yield fd, size
    finally:
        os.close(fd)


SPARSE = (b"a\nb\n", FAR, b"c\nd\n")  # its first block's data ends at the block size (`first`)


def test_newlines_back_to_the_first_byte(tmp_path):
    for data, wanted, found in ((b"\n", 1, (1, 0)), (b"\nabc\n", 2, (1, 0)), (b"a\nb\nc\n", 2, (4, 0)),
                                (b"a\nb\nc\n", 3, (2, 0)), (b"a\nb\nc\n", 4, (None, 1)), (b"abc", 1, (None, 1))):
        with file_of(tmp_path, data) as (fd, size):
            assert saferead.newlines_back(fd, size, wanted) == found, (data, wanted)
            assert saferead.newlines_back(fd, 0, wanted) == (None, wanted)


def test_newlines_back_across_blocks(tmp_path):
    with file_of(tmp_path, b"first\n" + b"x" * (BLOCK + 10) + b"\nlast\n") as (fd, size):
        assert saferead.newlines_back(fd, size, 2) == (size - 5, 0)
        assert saferead.newlines_back(fd, size, 3) == (6, 0)  # the block before: "first\n"
        assert saferead.newlines_back(fd, size, 4) == (None, 1)


def test_line_n_begins_where_its_newlines_say(tmp_path):
    with file_of(tmp_path, b"a\n" + b"y" * (BLOCK + 3) + b"\nb\nc") as (fd, size):
        starts = [saferead.line_start(fd, size, n) for n in range(1, 6)]
        assert starts == [0, 2, BLOCK + 6, BLOCK + 8, size]
        assert saferead.line_start(fd, 3, 3) == 3  # fewer lines before `end`: `end`
        assert saferead.line_start(fd, 1, 2) == 1


def test_a_sparse_file_s_data_and_holes(tmp_path):
    with file_of(tmp_path, *SPARSE) as (fd, size):
        first = os.fstat(fd).st_blksize  # the file system keeps whole blocks
        assert saferead.data_at(fd, 0, 10) == (0, 10)
        assert saferead.data_at(fd, 4, size) == (4, first)  # the first block's data, then its hole
        assert saferead.data_at(fd, 2 * first, size) == (FAR, size)
        assert saferead.data_at(fd, 2 * first, FAR) == (FAR, FAR)  # no data before `end`
        assert saferead.data_at(fd, size, size + 10) == (size, size)  # past the last data
        assert saferead.hole_start(fd, FAR) == first
        assert saferead.hole_start(fd, FAR - BLOCK) == first
        assert saferead.hole_start(fd, 4) == 4 and saferead.hole_start(fd, FAR + 2) == FAR + 2  # data before


def test_a_file_that_begins_with_a_hole(tmp_path):
    with file_of(tmp_path, FAR, b"abc") as (fd, size):
        assert saferead.hole_start(fd, FAR) == 0
        assert saferead.newlines_back(fd, size, 1) == (None, 1)  # the hole holds no newline
        assert saferead.line_start(fd, size, 2) == size


def test_lines_back_and_forth_step_over_a_hole(tmp_path):
    with file_of(tmp_path, *SPARSE) as (fd, size):
        assert saferead.newlines_back(fd, size, 3) == (4, 0)  # "d\n", "c\n", then "b\n" before the hole
        assert saferead.newlines_back(fd, size, 5) == (None, 1)
        assert [saferead.line_start(fd, size, n) for n in range(1, 6)] == [0, 2, 4, FAR + 2, size]


def test_a_range_is_copied_its_holes_counted_or_read_as_zeros(tmp_path):
    with file_of(tmp_path, *SPARSE) as (fd, size):
        first = os.fstat(fd).st_blksize
        out, holes = io.BytesIO(), []
        assert saferead.copy_range(fd, 2, size, out, holes.append) == size
        assert out.getvalue() == b"b\n" + bytes(first - 4) + b"c\nd\n"  # the first block's zeros are data
        assert holes == [FAR - first]
        whole = io.BytesIO()
        assert saferead.copy_range(fd, 2, size, whole) == size
        assert whole.getvalue() == b"b\n" + bytes(FAR - 4) + b"c\nd\n"
        short = io.BytesIO()
        assert saferead.copy_range(fd, FAR, size + 100, short) == size  # the file ends first
        assert short.getvalue() == b"c\nd\n"
        empty = io.BytesIO()
        assert saferead.copy_range(fd, 2 * first, FAR, empty, holes.append) == FAR and empty.getvalue() == b""


def test_a_hole_that_runs_to_the_file_s_end(tmp_path):
    with file_of(tmp_path, b"a\nb\n", FAR) as (fd, size):  # truncated longer: no data after the hole
        assert saferead.hole_start(fd, size) == os.fstat(fd).st_blksize
        assert saferead.newlines_back(fd, size, 1) == (4, 0)
