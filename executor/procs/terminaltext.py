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
import time
from typing import BinaryIO

# What a terminal would act on: C0 controls but the newline and the tab, DEL, C1 controls;
# and a byte that is not UTF-8, which the decoder gives as a lone surrogate (`surrogateescape`).
_CONTROL = re.compile("([\x00-\x08\x0b-\x1f\x7f-\x9f\udc80-\udcff])")
# Each byte as 0 when it may need a change (a control but the newline and the tab, DEL, any
# byte past ASCII), else as itself: printable ASCII, the newline and the tab are kept as they are.
_KEPT_OR_ZERO = bytes(byte if 0x20 <= byte < 0x7F or byte in (0x09, 0x0A) else 0 for byte in range(256))
NUL_RUN = 16  # NUL bytes in a row from which `TerminalText` shows them as one `\x00*N`
_LONG_NULS = re.compile(b"\\x00{%d,}" % NUL_RUN)
SLICE_BYTES = 16 * 1024  # converted at a time (1-2 ms of binary output): the GIL is yielded after each


def _written_out(code: int) -> str:
    """A control character as `printable` writes it (a C1 one as `\\u0085`), and a byte that is
    not UTF-8 as the decoder's backslashreplace would (`\\xff`, `\\x85`)."""
    if code >= 0xDC80:
        return f"\\x{code - 0xDC00:02x}"
    return "\\r" if code == 0x0D else f"\\u{code:04x}" if code >= 0x80 else f"\\x{code:02x}"


_WRITTEN_OUT = {chr(code): _written_out(code) for code in
                (*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0), *range(0xDC80, 0xDD00))}


class TextForTerminal:
    """Bytes in, the same as text a terminal shows and never acts on out: decoded as UTF-8
    (a character cut between two pieces waits for its end; a byte that is none is written
    `\\xff`), every control character but the newline and the tab written out (`\\x1b`),
    and encoded for the terminal (`encoding`; what it lacks is written `\\u2192`). One per
    stream: the decoder holds a cut character's first bytes.

    It costs what a console copy of a busy process can afford (`consolecopy.py` converts
    the copies on a thread that shares the GIL with the log pump and the owner): printable
    ASCII is passed on as it is; a byte that is not UTF-8 is decoded by the decoder's own
    fast path (`surrogateescape`), not an error handler called per byte; what is written
    out is looked up, not formatted per match; and the bytes are taken `SLICE_BYTES` at a
    time, each followed by a yield of the GIL. Converted whole, a 256 KiB read of binary
    output held the GIL 30 ms at a time, and a task writing 200 MB of it to a `both` logger
    on a terminal took 4-5 times as long as with raw copies (bench/console_copy_ab.py,
    docs/benchmarks.md)."""

    def __init__(self, encoding: str) -> None:
        self._encoding = encoding
        self._ascii_as_is = "\t\n ~".encode(encoding, errors="replace") == b"\t\n ~"
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")

    def convert(self, data: bytes, final: bool = False) -> bytes:
        """`data` as shown; `final`: its stream ended, a character left cut is written out."""
        if self._as_is(data):
            return data
        if len(data) <= SLICE_BYTES:
            return self._converted(data, final)
        shown, last = [], len(data) - SLICE_BYTES
        for at in range(0, len(data), SLICE_BYTES):
            shown.append(self._converted(data[at:at + SLICE_BYTES], final and at >= last))
            time.sleep(0)  # the GIL to a thread that waits for it (the log pump's, back from a
        return b"".join(shown)  # read) now, not after the interpreter's switch interval (5 ms)

    def _as_is(self, data: bytes) -> bool:
        """Whether `data` shows as it is: printable ASCII, newlines and tabs, with no character
        cut before it."""
        return self._ascii_as_is and b"\0" not in data.translate(_KEPT_OR_ZERO) and not self._decoder.getstate()[0]

    def _converted(self, data: bytes, final: bool) -> bytes:
        if self._as_is(data):
            return data
        parts = _CONTROL.split(self._decoder.decode(data, final=final))
        parts[1::2] = map(_WRITTEN_OUT.__getitem__, parts[1::2])
        return "".join(parts).encode(self._encoding, errors="backslashreplace")


class TerminalText:
    """A BinaryIO for `stoker tail`: what is written to it reaches `out` as `TextForTerminal`
    makes it, but a run of `NUL_RUN` or more NUL bytes, which is shown as one `\\x00*N` (N its
    length), what it holds of a hole of a sparse file given by its length (`hole`: never
    read). Written out one by one, a 20 GiB hole was 80 GiB of `\\x00` on the terminal."""

    def __init__(self, out: BinaryIO, encoding: str) -> None:
        self._out = out
        self._text = TextForTerminal(encoding)
        self._nuls = 0  # the NUL bytes of the run the last write ended in, not shown yet

    def write(self, data: bytes) -> int:
        written = len(data)
        if self._nuls:  # the run the last write ended in goes on here, or ends
            lead = len(data) - len(data.lstrip(b"\0"))
            self._nuls, data = self._nuls + lead, data[lead:]
            if not data:
                return written
            self._end_run()
        trailing = len(data) - len(data.rstrip(b"\0"))  # may go on in the next write
        body, at = data[:len(data) - trailing], 0
        for run in _LONG_NULS.finditer(body):  # a shorter run is converted with what is around it
            self._put(self._text.convert(body[at:run.start()]))
            self._nuls = run.end() - run.start()
            self._end_run()
            at = run.end()
        self._put(self._text.convert(body[at:]))
        self._nuls = trailing
        return written

    def hole(self, length: int) -> None:
        """`length` NUL bytes a hole holds, as if written."""
        self._nuls += length

    def _end_run(self) -> None:
        nuls, self._nuls = self._nuls, 0
        if nuls >= NUL_RUN:
            self._put(self._text.convert(b"\0") + b"*%d" % nuls)
        elif nuls:
            self._put(self._text.convert(b"\0" * nuls))

    def finish(self) -> None:
        """What is left of a character cut at the end of the log, or of a run of NULs."""
        self._end_run()
        self._put(self._text.convert(b"", final=True))

    def _put(self, shown: bytes) -> None:
        if shown:
            self._out.write(shown)

    def flush(self) -> None:
        self._end_run()
        self._out.flush()

    def fileno(self) -> int:
        return self._out.fileno()
