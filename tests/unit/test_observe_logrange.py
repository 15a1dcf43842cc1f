"""Which bytes of a log one request reads, and where they are cut."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from executor.observe.logrange import (
    DEFAULT_CHUNK_BYTES,
    MAX_CHUNK_BYTES,
    BadLogQuery,
    LogQuery,
    Window,
    cut_incomplete_tail,
    newer,
    older,
    parse_query,
    skip_to_character,
    skip_to_line,
    trim,
    window,
)

KiB = 1024


@pytest.mark.parametrize("size, query, expected", [
    (0, LogQuery(), Window(0, 0, 0, capped=False, tail=True)),
    (100, LogQuery(), Window(0, 100, 100, capped=False, tail=True)),
    (1000 * KiB, LogQuery(), Window(1000 * KiB - DEFAULT_CHUNK_BYTES, 1000 * KiB, 1000 * KiB, False, True)),
    (1000, LogQuery(length=10), Window(990, 1000, 1000, False, True)),
    (1000, LogQuery(offset=10, length=20), Window(10, 30, 1000, False, False)),
    (1000, LogQuery(offset=990, length=20), Window(990, 1000, 1000, False, False)),
    (1000, LogQuery(offset=5000), Window(1000, 1000, 1000, False, False)),  # past the end: nothing
    (10**9, LogQuery(offset=0, length=10**18), Window(0, MAX_CHUNK_BYTES, 10**9, True, False)),
    (10**9, LogQuery(length=10**18), Window(10**9 - MAX_CHUNK_BYTES, 10**9, 10**9, True, True)),
])
def test_the_window_is_what_was_asked_within_the_cap(size, query, expected):
    assert window(size, query) == expected


@given(size=st.integers(0, 2**40), offset=st.none() | st.integers(0, 2**62),
       length=st.none() | st.integers(0, 2**62))
def test_no_window_is_ever_larger_than_the_cap_or_outside_the_file(size, offset, length):
    w = window(size, LogQuery(offset=offset, length=length))
    assert 0 <= w.start <= w.end <= size and w.end - w.start <= MAX_CHUNK_BYTES


@pytest.mark.parametrize("data, keep", [
    (b"", 0), (b"abc", 3), ("é".encode(), 2), ("é".encode()[:1], 0), (b"ab" + "€".encode()[:2], 2),
    (b"a" + "😀".encode()[:3], 1), (b"a" + "😀".encode(), 5), (b"\x80\x80\x80", 3), (b"ab\xff", 3),
])
def test_a_character_cut_by_the_range_is_left_for_the_next_read(data, keep):
    assert cut_incomplete_tail(data) == keep


@given(st.text(max_size=50), st.integers(0, 200))
def test_cutting_then_reading_on_never_splits_a_character(text, at):
    data = text.encode()
    first = data[:at]
    kept = cut_incomplete_tail(first)
    assert first[:kept].decode() + data[kept:].decode() == text


def test_a_tail_starts_at_its_first_whole_line_or_character():
    assert skip_to_line(b"partial line\nwhole\n") == len(b"partial line\n")
    assert skip_to_line("€".encode()[1:] + b"x" * 5000) == 2  # no newline near: a whole character
    tail = Window(start=100, end=120, size=120, capped=False, tail=True)
    assert trim(b"rest\nnext line\n", tail) == (5, 15)
    at_start = Window(start=0, end=15, size=15, capped=False, tail=True)
    assert trim(b"rest\nnext line\n", at_start) == (0, 15)  # the log's own first line is whole
    asked = Window(start=100, end=115, size=200, capped=False, tail=False)
    assert trim(b"rest\nnext line\n", asked) == (0, 15)  # an offset asked for is kept


def test_a_range_that_starts_inside_a_character_starts_at_the_next_one():
    """An older range's offset, or a file that a rotation cut inside a character: it showed
    U+FFFD for the bytes of the character begun before."""
    euro = "€".encode()
    asked = Window(start=7, end=20, size=20, capped=False, tail=False)
    assert trim(euro[1:] + euro + b"\n", asked) == (2, 6)
    rotated = Window(start=0, end=5, size=5, capped=False, tail=True)
    assert trim(euro[2:] + b"ab\n", rotated) == (1, 4)
    assert skip_to_character(b"\x80\x80\x80\x80x") == 3  # not UTF-8: at most 3 skipped


def test_a_rotated_file_s_last_character_is_not_held_back():
    """A rotated file grows no more: a character cut at its end would be held back for good."""
    cut = b"ab" + "€".encode()[:2]
    whole = Window(start=0, end=4, size=4, capped=False, tail=False)
    assert trim(cut, whole) == (0, 2) and trim(cut, whole, whole=True) == (0, 4)


def test_follow_mode_names_the_file_and_run_directory_it_holds():
    query = parse_query({"run": "1", "offset": "5", "file": "2049:77", "dir": "2049:70"})
    assert (query.file, query.dir, query.run, query.offset) == ("2049:77", "2049:70", 1, 5)
    assert parse_query({}).file is None
    assert parse_query({"run": "1", "offset": "5", "file": "2049:77:4294967295"}).file == "2049:77:4294967295"


@pytest.mark.parametrize("params, said", [
    ({"file": "2049:77:1:2"}, "file='2049:77:1:2' is not DEVICE:INODE[:GENERATION]"),
    ({"file": "2049:77:12345678901"}, "file='2049:77:12345678901' is not DEVICE:INODE[:GENERATION]"),
    ({"dir": "2049:70:1"}, "dir='2049:70:1' is not DEVICE:INODE"),
])
def test_a_held_file_or_directory_in_another_form_is_refused_in_words(params, said):
    with pytest.raises(BadLogQuery) as caught:
        parse_query({"run": "1", "offset": "5", **params})
    assert str(caught.value) == said


def test_the_neighbours_of_a_range():
    assert older(0) is None and older(10) == 0 and older(200 * KiB) == 200 * KiB - DEFAULT_CHUNK_BYTES
    assert newer(100, 100) is None and newer(50, 100) == 50
