"""`TextForTerminal`: a task's bytes as text a terminal shows and never acts on, whatever
pieces they come in (`executor/procs/terminaltext.py`)."""
from __future__ import annotations

import random

import pytest

from executor.procs.terminaltext import SLICE_BYTES, TextForTerminal


def shown_whole(data: bytes, encoding: str) -> bytes:
    """What the terminal is to show of `data`, said plainly: decoded as UTF-8 with every byte
    that is not written `\\xNN`, every control character but the newline and the tab
    written out (`\\r`, `\\x1b`, a C1 one `\\u009b`), encoded with what the encoding lacks
    written `\\uNNNN`."""
    text = data.decode("utf-8", errors="backslashreplace")
    shown = "".join(c if c in "\t\n" else "\\r" if c == "\r" else f"\\x{ord(c):02x}" if ord(c) < 0x20 or c == "\x7f"
                    else f"\\u{ord(c):04x}" if 0x80 <= ord(c) < 0xA0 else c for c in text)
    return shown.encode(encoding, errors="backslashreplace")


PIECES = [bytes([b]) for b in range(256)] + [
    "é".encode(), "日".encode(), "😀".encode(), b"\xc2\x85", b"\xc2\x9b",  # characters, C1 controls
    b"\xed\xb2\x80", b"\xf4\x90\x80\x80", b"\xe0\x80\xaf",  # an encoded surrogate, past U+10FFFF, overlong
    b"\x1b]52;c;aGVsbG8=\x07", b"\x1b[2J",  # a clipboard write, a screen clear
] + [b"GET /index.html 200\n"] * 200  # and mostly lines of printable ASCII


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1", "ascii", "cp1252"])
def test_the_text_is_the_same_however_the_bytes_are_cut(encoding):
    """Any bytes, cut anywhere (a character in two, a piece longer than `SLICE_BYTES` that
    is converted a slice at a time), show as the whole of them would."""
    rng = random.Random(6)
    for _ in range(300):
        data = b"".join(rng.choice(PIECES) for _ in range(rng.choice([3, 30, 1500])))
        cuts = sorted(rng.sample(range(len(data) + 1), min(len(data) + 1, rng.randrange(1, 5))))
        text = TextForTerminal(encoding)
        pieces = [data[start:end] for start, end in zip([0, *cuts], [*cuts, len(data)])]
        shown = b"".join(text.convert(piece) for piece in pieces) + text.convert(b"", final=True)
        assert shown == shown_whole(data, encoding), (encoding, pieces)


def test_a_character_cut_at_a_slice_s_end_is_shown_whole():
    data = b"x" * (SLICE_BYTES - 1) + "é".encode() + b"\x1b" + b"y" * SLICE_BYTES + b"\xe6\x97"
    text = TextForTerminal("utf-8")
    shown = text.convert(data) + text.convert(b"\xa5\n", final=True)
    assert shown == b"x" * (SLICE_BYTES - 1) + "é".encode() + b"\\x1b" + b"y" * SLICE_BYTES + "日\n".encode()


def test_printable_ascii_lines_pass_as_they_are():
    """The lines of most logs need no change: they are not decoded and encoded again (what a
    console copy costs: tests' speed is not timed here, docs/benchmarks.md)."""
    lines = b"2026-12-02 10:59:01 INFO GET /api/v1/items?id=42\t200\n" * 100
    text = TextForTerminal("utf-8")
    assert text.convert(lines) is lines
    assert text.convert(b"\xc3") == b""  # a character cut: what follows it is decoded
    assert text.convert(b"\xa9" + lines) == "é".encode() + lines
