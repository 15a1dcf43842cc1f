"""The observer's log route on a sparse log (`truncate -s 20G` after a line, then a line): its
holes are stepped over, never read, and a run of 16 or more NUL bytes, a hole's or written,
is shown once as `\\x00*N`, as `stoker tail` shows it on a terminal. Before, a page showed up
to 256 KiB of NULs each written out, and a follower or an "older" link crossed a 20 GiB hole
256 KiB (64 KiB) a request at a time: some 80,000 requests."""
from __future__ import annotations

import time

import pytest

from config.registry import RegistrySettings
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.identity import own_identity
from executor.host.registry import Registry
from executor.observe.logpage import log_page
from executor.observe.logrange import DEFAULT_CHUNK_BYTES, MAX_CHUNK_BYTES, LogQuery
from executor.observe.reader import Reader
from tests.support.sparsefile import GIB, holes_here, write_parts

pytestmark = pytest.mark.timeout(60)

HOLE_END = 20 * GIB  # where the second line begins
FIRST, LAST = b"first line\n", b"last line\n"


def _sparse_log(tmp_path, *parts: bytes | int) -> tuple[Reader, int]:
    """A live task of this process's whose process `web`'s first run's stdout is `parts` in
    turn (bytes written, an int: the file extended to that size, a hole); the reader and
    the log's size."""
    me = own_identity()
    settings = RegistrySettings(registry_root=str(tmp_path / "root"))
    run_dir = tmp_path / "sandbox" / ".logs" / "web" / "0"
    run_dir.mkdir(parents=True)
    size = write_parts(run_dir / "stdout", parts)
    Registry(settings).write(RegistryEntry(
        sandbox=str(tmp_path / "sandbox"), supervisor_pid=me.pid, supervisor_start=me.start_ticks,
        supervisor_boot=me.boot_id, front_end=FrontEnd.RUN, registered_wall=time.time(),
        task_id="sparse-0-a"), prune=False)
    return Reader(settings), size


@pytest.fixture
def sparse(tmp_path):
    if not holes_here(tmp_path):
        pytest.skip("this file system keeps no holes")
    return _sparse_log(tmp_path, FIRST, HOLE_END, LAST)


def test_a_tail_of_a_sparse_log_shows_the_hole_once(sparse):
    reader, size = sparse
    chunk = reader.log("sparse-0-a", "web", LogQuery())
    assert chunk.data == f"\\x00*{DEFAULT_CHUNK_BYTES - len(LAST)}last line\n"
    assert (chunk.start, chunk.end) == (size - DEFAULT_CHUNK_BYTES, size)


def test_a_follower_crosses_a_hole_in_one_request(sparse):
    """From right after the first line: the rest of the hole as one run, then the line after
    it, in one answer (the data read is what the cap counts, not the hole)."""
    reader, size = sparse
    start = len(FIRST)
    started = time.monotonic()
    chunk = reader.log("sparse-0-a", "web", LogQuery(run=0, offset=start, length=MAX_CHUNK_BYTES))
    took = time.monotonic() - started
    assert chunk.data == f"\\x00*{HOLE_END - start}last line\n"
    assert (chunk.start, chunk.end, chunk.size) == (start, size, size)
    assert took < 5, took  # a read of the hole: over a minute


def test_the_range_before_a_hole_ends_where_the_hole_begins(sparse):
    """The page's "older" link from the last line skips the hole back to the data before it."""
    reader, size = sparse
    chunk = reader.log("sparse-0-a", "web", LogQuery(run=0, offset=HOLE_END))
    assert chunk.data == "last line\n"
    page = log_page(chunk, follow=False)
    hole_start = 4096  # the first line's page is data; the file system's block
    assert chunk.hole_before == HOLE_END - hole_start
    assert f"offset=0&amp;length={hole_start}" in page
    before = reader.log("sparse-0-a", "web", LogQuery(run=0, offset=0, length=hole_start))
    assert before.data == f"first line\n\\x00*{hole_start - len(FIRST)}"


def test_written_nul_runs_show_once_and_short_ones_as_they_are(tmp_path):
    reader, _ = _sparse_log(tmp_path, b"a\0\0b" + b"\0" * 40 + b"c\n")
    chunk = reader.log("sparse-0-a", "web", LogQuery())
    assert chunk.data == "a\x00\x00b\\x00*40c\n"
