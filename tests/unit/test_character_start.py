"""Where a rotating log file may be cut (`executor/procs/logpump.character_start`): at the
cut asked for when it falls between two UTF-8 characters, else where the character it
falls inside of begins; bytes that are not UTF-8 are cut where asked."""
from __future__ import annotations

import itertools

import pytest

from executor.procs.logpump import character_start

# One character of each UTF-8 length, the first and last lead byte of each (U+0080 and
# U+07FF: C2 and DF; U+0800 and U+FFFF: E0 and EF; U+10000 and U+10FFFF: F0 and F4), and
# continuation bytes from 80 to BF among them.
CHARACTERS = ["a", "\x7f", "\u0080", "\u07ff", "\u0800", "\uffff", "€", "\U00010000", "\U0010ffff", "😀"]


def starts(text: str) -> list[int]:
    """The byte offsets where `text`'s characters begin in UTF-8, and its end."""
    return list(itertools.accumulate((len(c.encode()) for c in text), initial=0))


def expected(bounds: list[int], cut: int) -> int:
    return max(b for b in bounds if b <= cut)


@pytest.mark.parametrize("pair", list(itertools.product(CHARACTERS, repeat=2)), ids=repr)
def test_every_cut_of_two_characters_falls_where_a_character_begins(pair):
    text = "x" + "".join(pair)
    data, bounds = text.encode(), starts(text)
    assert [character_start(data, cut) for cut in range(len(data) + 1)] == \
        [expected(bounds, cut) for cut in range(len(data) + 1)]
    assert [character_start(memoryview(data), cut) for cut in range(len(data) + 1)] == \
        [expected(bounds, cut) for cut in range(len(data) + 1)]


def test_a_character_at_the_very_start_is_cut_before_it():
    for character in CHARACTERS:
        data = character.encode()
        assert [character_start(data, cut) for cut in range(len(data) + 1)] == \
            [0] * len(data) + [len(data)], character


@pytest.mark.parametrize(("data", "cut", "at"), [
    (b"\x80\x80\x80\x80\x80", 5, 5),  # continuation bytes with no lead within 3: cut where asked
    (b"ab\xbf", 3, 3),
    (b"ab\xf8\x80", 3, 3),  # F8 to FF lead nothing: cut where asked
    (b"ab\xff", 3, 3),
    (b"ab\xf7\x80\x80", 5, 2),  # F0 to F7 lead four bytes
    (b"ab\xf0\x80\x80\x80", 5, 2),
    (b"ab\xf0\x80\x80\x80", 6, 6),
    (b"a\xe0\x80", 3, 1),
    (b"a\xdf", 2, 1),
    (b"a\xc0", 2, 1),  # C0 and C1 (never valid UTF-8) lead two bytes all the same
    (b"a\xc0\x80", 3, 3),
    (b"\xe2\x82", 1, 0),
    (b"", 0, 0),
])
def test_bytes_that_are_not_whole_utf8_are_cut_by_their_lead_byte_alone(data, cut, at):
    assert character_start(data, cut) == at
