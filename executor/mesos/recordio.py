"""RecordIO framing of the agent's event stream (pure): bytes in, whole records out.

The grammar (Mesos' recordio encoder; docs/mesos.md §4):

    stream = *record
    record = size LF data        size: ASCII decimal, the byte count of data (not characters)

This module owns the partial header and partial record of one stream, nothing else. It never
parses a record, never knows who sends the bytes, and does no I/O. A header that is not a
decimal size, or a size above `ABSURD_RECORD_BYTES`, raises `BrokenRecordIO` (a
`RemoteProtocolError` that hands on the records before it): the stream is broken and its
decoder must be thrown away (the session makes a fresh one per SUBSCRIBE).

Memory: a record is copied once, from the chunks into its own buffer (allocated once, at its
full size), and handed on as it is; nothing is re-scanned. A record over `max_record_bytes`
is never held: its bytes are dropped as they pass, but its first `PREFIX_BYTES` are kept and
handed on as an `OversizedRecord`, so that the caller can still tell what it was (a LAUNCH
must be answered).
"""
from __future__ import annotations

import attrs

from config.words import quoted
from executor.mesos.errors import RemoteProtocolError

MAX_RECORD_BYTES = 8 * 1024 * 1024  # larger records are dropped, their first bytes kept
ABSURD_RECORD_BYTES = 1024 * 1024 * 1024  # a larger size is a broken stream
PREFIX_BYTES = 64 * 1024  # what is kept of a record too large to hold
_MAX_HEADER_DIGITS = 20  # an unsigned 64-bit size has at most 20 digits


class BrokenRecordIO(RemoteProtocolError):
    """A header that is no size: the stream is broken from there on. `before`: the records
    that came whole before it in the same input, still good."""

    def __init__(self, message: str, before: list[Record]) -> None:
        super().__init__(message)
        self.before = before


@attrs.frozen(slots=True)
class OversizedRecord:
    """A record larger than the decoder holds: its size, and its first bytes."""

    size: int
    prefix: bytes = attrs.field(repr=False)


Record = bytes | bytearray | OversizedRecord


class RecordIODecoder:
    """Splits a RecordIO byte stream (`size LF data`, size in bytes) into records.

    Chunk boundaries mean nothing: partial headers and partial records are buffered. Empty
    header lines are skipped and size-0 records ignored (both lenient, like the reference
    decoder); any other non-digit in a header, or a size above `ABSURD_RECORD_BYTES`, raises
    `RemoteProtocolError` and the stream must be treated as broken. A record is `bytes`
    when it came in one chunk, else the `bytearray` it was gathered in.
    """

    def __init__(self, max_record_bytes: int = MAX_RECORD_BYTES) -> None:
        self._max = max_record_bytes
        self._header = bytearray()
        self._size: int | None = None  # size of the record being read, once its header is in
        self._filled = 0
        self._record: bytearray | None = None  # a record spanning chunks, allocated once
        self._prefix: bytearray | None = None  # an oversized record's first bytes

    def feed(self, data: bytes) -> list[Record]:
        """The records `data` completes; BrokenRecordIO (with those before it) at a header
        that is no size."""
        records: list[Record] = []
        view = memoryview(data)
        pos = 0
        while pos < len(data):
            if self._size is None:
                try:
                    pos = self._read_header(data, pos)
                except RemoteProtocolError as e:
                    raise BrokenRecordIO(str(e), records) from None
                continue
            take = min(self._size - self._filled, len(data) - pos)
            if self._prefix is not None:  # keep its first PREFIX_BYTES, drop the rest
                room = PREFIX_BYTES - len(self._prefix)
                self._prefix += view[pos:pos + min(room, take)]
            elif self._filled == 0 and take == self._size:
                records.append(data[pos:pos + take])  # the whole record in this chunk
            else:
                if self._record is None:
                    self._record = bytearray(self._size)
                self._record[self._filled:self._filled + take] = view[pos:pos + take]
            self._filled += take
            pos += take
            if self._filled == self._size:
                self._finish(records)
        return records

    def _read_header(self, data: bytes, pos: int) -> int:
        """Reads header bytes from `pos`; returns where the header (or the chunk) ends."""
        end = min(len(data), pos + _MAX_HEADER_DIGITS + 1 - len(self._header))
        newline = data.find(b"\n", pos, end)
        if newline < 0:  # a partial header (never empty): checked as far as it goes
            self._header += data[pos:end]
            self._check_header(bytes(self._header))
            return end
        header = bytes(self._header) + data[pos:newline]
        self._header.clear()
        size = self._check_header(header) if header else 0
        if size > 0:  # empty header lines and size-0 records: skipped
            self._size = size
            if size > self._max:
                self._prefix = bytearray()
        return newline + 1

    def _finish(self, records: list[Record]) -> None:
        assert self._size is not None
        if self._prefix is not None:
            records.append(OversizedRecord(self._size, bytes(self._prefix)))
        elif self._record is not None:
            records.append(self._record)
        self._size, self._filled, self._record, self._prefix = None, 0, None, None

    def _check_header(self, header: bytes) -> int:
        """The size a (complete or partial, never empty) header says, once it is checked:
        digits only, at most _MAX_HEADER_DIGITS of them (the read window bounds its length,
        so it is shown whole), at most ABSURD_RECORD_BYTES."""
        if not header.isdigit():
            raise RemoteProtocolError(f"RecordIO header {quoted(header)} is not a decimal size")
        if len(header) > _MAX_HEADER_DIGITS:
            raise RemoteProtocolError(
                f"RecordIO header has {len(header)} digits, more than {_MAX_HEADER_DIGITS}"
            )
        size = int(header)
        if size > ABSURD_RECORD_BYTES:
            raise RemoteProtocolError(
                f"RecordIO record of {size} bytes is larger than the limit of "
                f"{ABSURD_RECORD_BYTES} bytes"
            )
        return size


def encode_record(payload: bytes) -> bytes:
    """Frames one record: the byte count in ASCII decimal, LF, the bytes."""
    return b"%d\n" % len(payload) + payload
