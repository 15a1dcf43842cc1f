"""`executor.observe.logrange` at its edges: each refusal's words, the bounds of a number, an
offset and a search, and each UTF-8 lead byte's length (`test_observe_logrange.py` has the
ranges and cuts as a reader meets them)."""
from __future__ import annotations

import pytest

from executor.observe.logrange import (
    LINE_SEARCH_BYTES,
    MAX_CHUNK_BYTES,
    MAX_OFFSET,
    BadLogQuery,
    LogQuery,
    Window,
    cut_incomplete_tail,
    first_shown,
    older,
    parse_query,
    skip_to_character,
    skip_to_line,
    window,
)


def refusal(params: dict[str, str]) -> str:
    with pytest.raises(BadLogQuery) as refused:
        parse_query(params)
    return str(refused.value)


@pytest.mark.parametrize(("params", "said"), [
    ({"run": "12a"}, "run='12a' is not a non-negative whole number"),
    ({"offset": "-1"}, "offset='-1' is not a non-negative whole number"),
    ({"length": "1.5"}, "length='1.5' is not a non-negative whole number"),
    ({"length": "\u0661\u0662"}, "length='\u0661\u0662' is not a non-negative whole number"),  # digits, not ASCII
    ({"run": "1" * 20}, f"run='{'1' * 20}' is not a non-negative whole number"),  # past 19 digits
    ({"run": "x" * 50}, f"run='{'x' * 40}' is not a non-negative whole number"),  # its first 40 characters
    ({"stream": "stdout.0"}, "stream='stdout.0' is not stdout or stderr (or a rotated part: stdout.1, stderr.2, ...)"),
    ({"stream": "s" * 50}, f"stream='{'s' * 40}' is not stdout or stderr (or a rotated part: stdout.1, stderr.2, ...)"),
    ({"offset": str(MAX_OFFSET + 1)}, f"offset={MAX_OFFSET + 1} is beyond any log"),
    ({"file": "1:2:" + "3" * 50, "run": "0", "offset": "0"}, f"file='{('1:2:' + '3' * 50)[:40]}' is not DEVICE:INODE[:GENERATION]"),
    ({"file": "1:2", "run": "0"}, "file= (follow mode) needs a run= and an offset="),
    ({"file": "1:2", "offset": "0"}, "file= (follow mode) needs a run= and an offset="),
])
def test_each_refusal_names_the_parameter_and_its_value(params, said):
    assert refusal(params) == said


def test_a_query_keeps_what_it_was_given():
    assert parse_query({}) == LogQuery(stream="stdout")
    assert parse_query({"stream": ""}) == LogQuery(stream="stdout")  # an empty form field
    assert parse_query({"stream": "stderr.2", "run": "3", "offset": str(MAX_OFFSET), "length": "9" * 19}) == LogQuery(
        run=3, stream="stderr.2", offset=MAX_OFFSET, length=int("9" * 19))
    assert parse_query({"run": "1", "offset": "5", "file": "8:9:1", "dir": "8:7"}) == LogQuery(
        run=1, offset=5, file="8:9:1", dir="8:7")


def test_a_window_of_exactly_the_cap_is_not_capped():
    assert window(10 * MAX_CHUNK_BYTES, LogQuery(length=MAX_CHUNK_BYTES)).capped is False
    assert window(10 * MAX_CHUNK_BYTES, LogQuery(length=MAX_CHUNK_BYTES + 1)).capped is True


@pytest.mark.parametrize(("data", "keep"), [
    (b"a\xc2", 1), (b"a\xdf", 1),  # a two-byte lead, its second byte missing
    (b"a\xe0", 1), (b"a\xe0\xa0", 1), (b"a\xef\xbf", 1), (b"a\xe0\xa0\x80", 4),  # three bytes: cut, or whole
    (b"a\xf0\x9f\x98", 1), (b"a\xf4\x8f\xbf", 1),  # four bytes, the last missing
    (b"a\xc1", 2), (b"a\xf5", 2), (b"a\xf5\x80\x80", 4),  # not a lead UTF-8 has: kept
])
def test_each_lead_byte_holds_back_what_its_character_still_needs(data, keep):
    assert cut_incomplete_tail(data) == keep


def test_a_tail_s_line_is_searched_for_within_its_first_bytes_only():
    assert skip_to_line(b"\nnext") == 1  # a newline first: the range starts a line
    assert skip_to_line(b"x" * (LINE_SEARCH_BYTES - 1) + b"\nnext") == LINE_SEARCH_BYTES
    assert skip_to_line(b"x" * LINE_SEARCH_BYTES + b"\nnext") == 0  # none in the first 4096: the first character


def test_only_continuation_bytes_are_skipped():
    assert skip_to_character(b"\x81a") == 1  # 10xxxxxx with its low bit set
    assert skip_to_character(b"\xbfa") == 1
    assert skip_to_character(b"\xc0a") == 0  # 11xxxxxx: a lead


def test_a_tail_one_byte_in_starts_at_its_first_line_and_the_range_before_it_at_zero():
    win = Window(start=1, end=6, size=6, capped=False, tail=True)
    assert first_shown(b"ab\ncd", win) == 3
    assert older(1) == 0 and older(0) is None
