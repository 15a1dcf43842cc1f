"""`TextForTerminal`: a task's bytes as text a terminal shows and never acts on, whatever
pieces they come in (`executor/procs/terminaltext.py`)."""
from __future__ import annotations

import random

import pytest

from executor.procs import terminaltext
from executor.procs.terminaltext import SLICE_BYTES, TerminalText, TextForTerminal


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


def test_a_stream_s_end_in_a_long_read_writes_out_the_character_cut_in_its_last_slice():
    """The last slice of a read longer than `SLICE_BYTES` (its length a multiple of it too)
    is the one converted as the stream's end: a character cut there is written out."""
    for data in (b"x" * SLICE_BYTES + b"\xe6\x97", b"x" * (2 * SLICE_BYTES - 2) + b"\xe6\x97"):
        assert TextForTerminal("utf-8").convert(data, final=True) == data[:-2] + b"\\xe6\\x97"


def test_a_terminal_whose_encoding_writes_ascii_otherwise_gets_every_byte_encoded():
    """An encoding in which ASCII is not its own bytes (UTF-16) gets even printable ASCII
    encoded, never passed on as it is."""
    assert TextForTerminal("utf-16-le").convert(b"GET / 200\n") == "GET / 200\n".encode("utf-16-le")


def test_each_control_and_each_byte_that_is_no_utf8_is_written_out_as_printable_writes_it():
    """The table each match is looked up in, entry by entry: C0 controls `\\x1b` (the carriage
    return `\\r`), C1 ones `\\u009b`, a byte that is not UTF-8 (a lone surrogate of the
    decoder's `surrogateescape`) `\\xff`."""
    for code in (*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0)):
        expected = "\\r" if code == 0x0D else f"\\u{code:04x}" if code >= 0x80 else f"\\x{code:02x}"
        assert terminaltext._written_out(code) == expected
    for byte in range(0x80, 0x100):
        assert terminaltext._written_out(0xDC00 + byte) == f"\\x{byte:02x}"


def test_tail_s_stream_writes_the_text_shown_and_the_end_of_a_cut_character(tmp_path):
    """`TerminalText` (`stoker tail` to a terminal): each write's bytes reach the file as
    shown, a write that shows nothing yet (a character cut) writes nothing, and `finish`
    writes out what was left cut; its descriptor and its flush are the file's."""
    path = tmp_path / "out"
    with path.open("wb") as out:
        stream = TerminalText(out, "utf-8")
        assert stream.fileno() == out.fileno()
        assert stream.write(b"a\x1b[2J\n") == 6
        assert stream.write(b"\xe6\x97") == 2
        stream.flush()
        assert path.read_bytes() == b"a\\x1b[2J\n"
        stream.finish()
        stream.flush()
        assert path.read_bytes() == b"a\\x1b[2J\n\\xe6\\x97"


def test_tail_s_stream_shows_a_long_run_of_nuls_once_across_writes_and_holes(tmp_path):
    """A run of NUL_RUN NULs or more is one `\\x00*N`, however the writes cut it and with a
    hole's (`hole`: its length, never read) counted in; a shorter run is written out. (was:
    `\\x00` for each: four characters a NUL, 80 GiB for a 20 GiB hole)"""
    path = tmp_path / "out"
    with path.open("wb") as out:
        stream = TerminalText(out, "utf-8")
        stream.write(b"a" + b"\0" * 10)
        stream.write(b"\0" * 6 + b"b\0")
        stream.hole(5)
        stream.write(b"c\0\0\0")
        stream.hole(1 << 40)
        stream.write(b"\xe6\x97\xa5\0")
        stream.finish()
        stream.flush()
    assert path.read_bytes() == (b"a\\x00*16b" + b"\\x00" * 6 + b"c\\x00*%d" % ((1 << 40) + 3)
                                 + "日".encode() + b"\\x00")
