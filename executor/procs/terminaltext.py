"""A task's output shown on the operator's terminal as text that cannot drive it.

A process's bytes are the task's: escape sequences in them (a screen clear, a title set, a
clipboard write, OSC 52), other control characters and bytes that are not UTF-8 would be
acted on by the terminal they reach raw. `stoker tail` to a terminal (`executor/cli/tail.py`)
and the console copies of a `destination='both'` logger under `stoker run` on a terminal
(`executor/procs/consolecopy.py`) write them out instead (`\\x1b[2J`, `\\xff`); the newline
and the tab are kept. To a pipe or a file both copy the bytes as they are.
"""
from __future__ import annotations

import codecs
import re
from typing import BinaryIO

# What a terminal would act on: C0 controls but the newline and the tab, DEL, C1 controls.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _written_out(match: re.Match[str]) -> str:
    """A control character as `printable` writes it: a C1 one as `\\u0085`, apart from the
    byte 0x85 that is not UTF-8 (`\\x85`, the decoder's backslashreplace)."""
    code = ord(match.group())
    return "\\r" if code == 0x0D else f"\\u{code:04x}" if code >= 0x80 else f"\\x{code:02x}"


class TextForTerminal:
    """Bytes in, the same as text a terminal shows and never acts on out: decoded as UTF-8
    (a character cut between two pieces waits for its end; a byte that is none is written
    `\\xff`), every control character but the newline and the tab written out (`\\x1b`),
    and encoded for the terminal (`encoding`; what it lacks is written `\\u2192`). One per
    stream: the decoder holds a cut character's first bytes."""

    def __init__(self, encoding: str) -> None:
        self._encoding = encoding
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="backslashreplace")

    def convert(self, data: bytes, final: bool = False) -> bytes:
        """`data` as shown; `final`: its stream ended, a character left cut is written out."""
        text = self._decoder.decode(data, final=final)
        return _CONTROL.sub(_written_out, text).encode(self._encoding, errors="backslashreplace")


class TerminalText:
    """A BinaryIO for `stoker tail`: what is written to it reaches `out` as `TextForTerminal`
    makes it."""

    def __init__(self, out: BinaryIO, encoding: str) -> None:
        self._out = out
        self._text = TextForTerminal(encoding)

    def write(self, data: bytes) -> int:
        self._put(self._text.convert(data))
        return len(data)

    def finish(self) -> None:
        """What is left of a character cut at the end of the log."""
        self._put(self._text.convert(b"", final=True))

    def _put(self, shown: bytes) -> None:
        if shown:
            self._out.write(shown)

    def flush(self) -> None:
        self._out.flush()

    def fileno(self) -> int:
        return self._out.fileno()
