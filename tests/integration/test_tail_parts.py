"""`executor/cli/tailparts.py` on a rotated log made here: the parts `stoker tail` prints for
its last N lines and from line K, read as the one stream the files were cut from; the most
backups read; a backup whose lines are more than a block, or that ends in a hole; and no
descriptor left open but the parts' (was: one backup past the most read, opened and never
closed)."""
from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.cli import tailparts
from executor.procs import saferead
from tests.support import rundir

pytestmark = pytest.mark.timeout(30)
run_dir, rdir = rundir.run_dir, rundir.rdir  # the fixtures: a run's directory and its descriptor


def _log(run_dir: Path, *texts: bytes) -> None:
    """`texts` oldest first: the last is `stdout`, the ones before it its backups."""
    for number, text in enumerate(reversed(texts)):
        (run_dir / ("stdout" if number == 0 else f"stdout.{number}")).write_bytes(text)


def _printed(rdir: int, lines: str) -> bytes:
    """What `stoker tail -n LINES` prints of the log (`-n +K` from line K), every descriptor
    but the log's own closed, as the command does."""
    fd = saferead.open_file("stdout", rdir)
    try:
        end = os.fstat(fd).st_size
        if lines.startswith("+"):
            parts = tailparts.from_line(rdir, "stdout", fd, end, int(lines[1:]))
        else:
            parts = tailparts.last_lines(rdir, "stdout", fd, end, int(lines))
        text = b"".join(os.pread(part, stop - start, start) for part, start, stop in parts)
        for part, _, _ in parts:
            if part != fd:
                os.close(part)
        return text
    finally:
        os.close(fd)


@pytest.fixture
def no_descriptor_left() -> Iterator[None]:
    gc.collect()  # an earlier test's garbage closes its descriptors now, not during this one
    before = set(os.listdir("/proc/self/fd"))
    yield
    assert set(os.listdir("/proc/self/fd")) == before


@pytest.mark.parametrize(("lines", "printed"), [
    ("1", b"5\n"), ("2", b"4\n5\n"), ("3", b"3\n4\n5\n"), ("9", b"1\n2\n3\n4\n5\n"), ("0", b""),
    ("+1", b"1\n2\n3\n4\n5\n"), ("+2", b"2\n3\n4\n5\n"), ("+3", b"3\n4\n5\n"), ("+4", b"4\n5\n"),
    ("+5", b"5\n"), ("+6", b""), ("+7", b""), ("+99", b""),
])
def test_the_lines_of_a_log_and_its_backups_read_as_one_stream(run_dir, rdir, no_descriptor_left, lines, printed):
    _log(run_dir, b"1\n2\n", b"3\n", b"4\n5\n")
    assert _printed(rdir, lines) == printed


@pytest.mark.parametrize(("lines", "printed"), [("2", b"b\n\n"), ("1", b"\n"), ("+3", b"\n")])
def test_a_log_that_holds_one_empty_line(run_dir, rdir, no_descriptor_left, lines, printed):
    _log(run_dir, b"a\nb\n", b"\n")
    assert _printed(rdir, lines) == printed


def test_a_line_cut_by_a_rotation_is_one_line(run_dir, rdir, no_descriptor_left):
    _log(run_dir, b"one\ntw", b"o\nthr", b"ee\n")
    assert _printed(rdir, "2") == b"two\nthree\n"
    assert _printed(rdir, "+2") == b"two\nthree\n"


def test_the_last_lines_within_the_log_open_no_backup(run_dir, rdir, no_descriptor_left):
    _log(run_dir, b"old\n", b"a\nb\nc\n")
    fd = saferead.open_file("stdout", rdir)
    try:
        assert tailparts.last_lines(rdir, "stdout", fd, os.fstat(fd).st_size, 2) == [(fd, 2, 6)]
    finally:
        os.close(fd)


def test_at_most_the_backups_a_logger_keeps_are_read(run_dir, rdir, monkeypatch, no_descriptor_left):
    monkeypatch.setattr(tailparts, "MAX_BACKUPS", 2)
    _log(run_dir, b"4\n", b"3\n", b"2\n", b"1\n", b"0\n")  # stdout.4 .. stdout
    assert _printed(rdir, "9") == b"2\n1\n0\n"
    assert _printed(rdir, "+1") == b"2\n1\n0\n"


def test_lines_counted_across_blocks_and_files(run_dir, rdir, no_descriptor_left):
    many = b"".join(b"%07d\n" % n for n in range(30_000))  # 240 KB: four blocks of the count
    _log(run_dir, many, b"after\n", b"last\n")
    assert _printed(rdir, "+30001") == b"after\nlast\n"
    assert _printed(rdir, "+30000") == b"0029999\nafter\nlast\n"
    assert _printed(rdir, "+2")[:16] == b"0000001\n0000002\n"


def test_a_backup_that_ends_in_a_hole_is_counted_to_its_end(run_dir, rdir, no_descriptor_left):
    """Its hole holds no newline: the line it begins goes on into the next file."""
    _log(run_dir, b"\n1\n", b"2\n", b"3\n")
    os.truncate(run_dir / "stdout.2", 1 << 20)  # 1 MiB: a hole after its lines
    hole = b"\0" * ((1 << 20) - 3)
    assert _printed(rdir, "+4") == b"3\n"
    assert _printed(rdir, "+3") == hole + b"2\n3\n"
    assert _printed(rdir, "+2") == b"1\n" + hole + b"2\n3\n"


def test_a_backup_of_several_data_extents_is_counted_once_each(run_dir, rdir, no_descriptor_left):
    """Data, a hole, data, a hole, data (each read as far as its own hole begins)."""
    _log(run_dir, b"", b"4\n")
    with open(run_dir / "stdout.1", "wb") as f:
        for number, at in ((1, 0), (2, 8192), (3, 16384)):
            f.seek(at)
            f.write(b"%d\n" % number)
    assert _printed(rdir, "+4") == b"4\n"
    assert _printed(rdir, "+5") == b""


def test_the_log_rotated_after_it_was_opened_is_not_read_again_as_its_own_backup(run_dir, rdir, no_descriptor_left):
    _log(run_dir, b"a\nb\n")
    fd = saferead.open_file("stdout", rdir)
    try:
        os.replace(run_dir / "stdout", run_dir / "stdout.1")  # rotated: the file open is `.1` now
        (run_dir / "stdout").write_bytes(b"c\n")
        assert tailparts.last_lines(rdir, "stdout", fd, 4, 10) == [(fd, 0, 4)]
    finally:
        os.close(fd)
