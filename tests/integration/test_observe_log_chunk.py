"""One request's range of a run's log (`logread.chunk`) read from a real file, field by
field: where it starts and ends (a tail's part line and a character begun before left out, a
character cut at the end held back unless the file is a complete rotated one), the holes of a
sparse file stepped over and counted, and the page's pager built from it. The observer's
end-to-end tests read these through a child; here they run in this process."""
from __future__ import annotations

import os

import pytest

from executor.observe import logread
from executor.observe.html import log_url
from executor.observe.logpage import log_page
from executor.observe.logrange import LogQuery
from executor.observe.model import LogChunk
from executor.procs import rotation
from tests.support.sparsefile import holes_here, write_parts

pytestmark = pytest.mark.timeout(60)

PAGE = 4096  # a sparse file's data and holes come in pages of the file system


def _file(tmp_path, *parts: bytes | int) -> int:
    """A file of `parts` in turn (bytes written; an int: the file extended to that size, a
    hole), opened for reading (`_chunk` closes it)."""
    path = tmp_path / "stdout"
    write_parts(path, parts)
    return os.open(path, os.O_RDONLY)


def _chunk(fd: int, query: LogQuery, **step) -> LogChunk:
    try:
        return logread.chunk(logread.Step(run=3, rdir=-1, fd=fd, offset=query.offset, **step), query,
                             task_id="t-1", process="web", runs=(2, 3), parts=("stdout", "stdout.1"),
                             run_dir="7:8")
    finally:
        os.close(fd)


@pytest.fixture
def holes(tmp_path):
    if not holes_here(tmp_path):
        pytest.skip("this file system keeps no holes")


def test_a_chunk_names_its_run_stream_file_and_directory_and_what_the_step_said(tmp_path):
    fd = _file(tmp_path, b"one\ntwo\n")
    st = os.fstat(fd)
    c = _chunk(fd, LogQuery(run=3, stream="stdout.1", offset=0, length=1 << 30),
               continues=False, whole=True)
    assert (c.task_id, c.process, c.run, c.stream) == ("t-1", "web", 3, "stdout.1")
    assert (c.start, c.end, c.size, c.data) == (0, 8, 8, "one\ntwo\n")
    assert (c.capped, c.runs, c.parts, c.run_dir) == (True, (2, 3), ("stdout", "stdout.1"), "7:8")
    again = os.open(tmp_path / "stdout", os.O_RDONLY)  # (the chunk's descriptor is closed)
    generation = rotation.generation(again)
    os.close(again)
    assert c.file == f"{st.st_dev}:{st.st_ino}" + ("" if generation is None else f":{generation}")
    assert st.st_dev != st.st_ino
    assert (c.continues, c.rotated, c.hole_before) == (False, True, 0)
    fd = _file(tmp_path, b"one\n")
    c = _chunk(fd, LogQuery(offset=0))
    assert (c.capped, c.continues, c.rotated) == (False, True, False)


def test_a_range_ends_where_it_was_asked_to_and_one_byte_is_read(tmp_path):
    data = bytes(range(97, 123)) * 4
    assert _chunk(_file(tmp_path, data), LogQuery(offset=10, length=5)).data == data[10:15].decode()
    c = _chunk(_file(tmp_path, data), LogQuery(offset=10, length=1))
    assert (c.start, c.end, c.data) == (10, 11, data[10:11].decode())
    c = _chunk(_file(tmp_path, data), LogQuery(offset=len(data)))
    assert (c.start, c.end, c.data) == (len(data), len(data), "")


def test_a_long_range_is_read_in_several_reads_and_shown_whole(tmp_path):
    data = b"".join(b"line %06d\n" % i for i in range(20_000))  # 220,000 bytes: 4 reads
    c = _chunk(_file(tmp_path, data), LogQuery(offset=0, length=len(data)))
    assert (c.end, c.data) == (len(data), data.decode())


def test_a_character_begun_before_the_range_is_left_out_and_one_cut_at_its_end_held_back(tmp_path):
    data = "aé\n€b€".encode()  # a, c3 a9, \n, e2 82 ac, b, e2 82 ac
    c = _chunk(_file(tmp_path, data), LogQuery(offset=2, length=7))  # a9 \n € b e2 82
    assert (c.start, c.end, c.data) == (3, 8, "\n€b")
    # a rotated file, complete: its cut character is shown as it is, at its end only
    c = _chunk(_file(tmp_path, data[:-1]), LogQuery(offset=3), whole=True)
    assert (c.end, c.data) == (len(data) - 1, "\n€b\ufffd")
    c = _chunk(_file(tmp_path, data), LogQuery(offset=3, length=6), whole=True)
    assert (c.end, c.data) == (8, "\n€b")


def test_a_tail_one_byte_into_the_log_starts_at_its_next_line(tmp_path):
    c = _chunk(_file(tmp_path, b"ab\ncd\n"), LogQuery(length=5))
    assert (c.start, c.end, c.data) == (3, 6, "cd\n")


def test_invalid_bytes_show_as_replacement_characters(tmp_path):
    assert _chunk(_file(tmp_path, b"a\xff\xfeb\n"), LogQuery(offset=0)).data == "a\ufffd\ufffdb\n"


def test_a_run_of_exactly_sixteen_nuls_is_one_and_fifteen_are_as_they_are():
    assert logread.shown([b"a" + b"\0" * 16 + b"b"]) == "a\\x00*16b"
    assert logread.shown([b"a" + b"\0" * 15 + b"b"]) == "a" + "\x00" * 15 + "b"
    assert logread.shown([b"a", 3, b"\0" * 12, 1, b"b"]) == "a\\x00*16b"


def test_holes_between_data_are_each_counted_and_none_read(tmp_path, holes):
    fd = _file(tmp_path, b"A\n", 2 * PAGE, b"B\n", 4 * PAGE, b"C\n")
    c = _chunk(fd, LogQuery(offset=0, length=1 << 16))
    run = 2 * PAGE - 2
    assert c.data == f"A\n\\x00*{run}B\n\\x00*{run}C\n"
    assert (c.start, c.end, c.size, c.hole_before) == (0, 4 * PAGE + 2, 4 * PAGE + 2, 0)


def test_a_range_holds_its_length_of_data_not_of_holes(tmp_path, holes):
    """Three pages asked: the first line's page, the hole not counted, the last line."""
    fd = _file(tmp_path, b"A\n", 1 << 20, b"B\n")
    c = _chunk(fd, LogQuery(offset=0, length=2 * PAGE))
    assert c.data == f"A\n\\x00*{(1 << 20) - 2}B\n"
    assert c.end == (1 << 20) + 2
    # from the first line's second byte, what is left of its page and the last line, exactly
    fd = _file(tmp_path, b"A\n", 1 << 20, b"B\n")
    c = _chunk(fd, LogQuery(offset=1, length=PAGE - 1 + 2))
    assert (c.data, c.end) == (f"\n\\x00*{(1 << 20) - 2}B\n", (1 << 20) + 2)


def test_a_range_that_ends_in_a_hole_steps_over_it_to_the_end(tmp_path, holes):
    size = 1 << 20
    c = _chunk(_file(tmp_path, b"A\n", size), LogQuery(offset=0, length=3 * PAGE))
    assert (c.start, c.end, c.data) == (0, size, f"A\n\\x00*{size - 2}")
    c = _chunk(_file(tmp_path, b"A\n", size), LogQuery(offset=2 * PAGE, length=PAGE))
    assert (c.start, c.end, c.data) == (2 * PAGE, size, f"\\x00*{size - 2 * PAGE}")


def test_the_hole_before_a_range_is_the_one_that_ends_where_it_shows_from(tmp_path, holes):
    """A range asked from the middle of a character right after a hole: shown from the next
    character, after which no hole ends."""
    fd = _file(tmp_path, b"A\n", 2 * PAGE, "é\n".encode())
    c = _chunk(fd, LogQuery(offset=2 * PAGE + 1))
    assert (c.start, c.data, c.hole_before) == (2 * PAGE + 2, "\n", 0)
    fd = _file(tmp_path, b"A\n", 2 * PAGE, "é\n".encode())
    c = _chunk(fd, LogQuery(offset=2 * PAGE))
    assert (c.start, c.data, c.hole_before) == (2 * PAGE, "é\n", PAGE)
    fd = _file(tmp_path, b"A\n")
    assert _chunk(fd, LogQuery(offset=0)).hole_before == 0


def _nav(c: LogChunk, follow: bool) -> str:
    page = log_page(c, follow=follow)
    nav = page[page.index('<nav class="pager"'):]
    return nav[nav.index(">") + 1:nav.index("</nav>")]


def _links(*links: tuple[str, str]) -> str:
    return " ".join(f'<a href="{url}">{text}</a>' for url, text in links)


def _url(**params) -> str:
    return log_url("t-1", "web", supervisor="", **{"run": 3, "stream": "stdout", **params}).replace("&", "&amp;")


def test_the_pager_names_each_link_and_how_much_lies_before_and_after():
    c = LogChunk(task_id="t-1", process="web", run=3, stream="stdout", start=300_000, end=310_000,
                 size=1_000_000, data="x", capped=False, runs=(3,), parts=("stdout",), hole_before=100_000)
    older = (_url(offset=200_000 - 65536, length=65536), "◀ older (293.0 KiB before)")
    start = (_url(offset=0), "from the start")
    newer = (_url(offset=310_000), "newer (673.8 KiB after) ▶")
    assert _nav(c, follow=False) == _links(older, start, newer, (_url(), "latest"), (_url(follow=1), "follow"))
    assert _nav(c, follow=True) == _links(older, start, newer, (_url(), "latest"), (_url(), "stop following"))
