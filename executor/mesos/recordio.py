"""RecordIO framing of the agent's event stream (pure): bytes in, whole records out.

The grammar (Mesos' recordio encoder; docs/mesos.md §4):

    stream = *record
    record = size LF data        size: ASCII decimal, the byte count of data (not characters)

This module owns the partial header and partial record of one stream, nothing else. It never
parses a record, never knows who sends the bytes, and does no I/O. A header that is not a
decimal size, or a size above the limit, raises `RemoteProtocolError`: the stream is broken
and its decoder must be thrown away (the session makes a fresh one per SUBSCRIBE).
"""
from __future__ import annotations

from executor.mesos.errors import RemoteProtocolError

MAX_RECORD_BYTES = 64 * 1024 * 1024  # a record bigger than this is refused as absurd
_MAX_HEADER_DIGITS = 20  # an unsigned 64-bit size has at most 20 digits


class RecordIODecoder:
    """Splits a RecordIO byte stream (`size LF data`, size in bytes) into records.

    Chunk boundaries mean nothing: partial headers and partial records are buffered. Empty
    header lines are skipped and size-0 records ignored (both lenient, like the reference
    decoder); any other non-digit in a header, or a size above `max_record_bytes`, raises
    `RemoteProtocolError` and the stream must be treated as broken.
    """

    def __init__(self, max_record_bytes: int = MAX_RECORD_BYTES) -> None:
        self._max = max_record_bytes
        self._buffer = bytearray()
        self._size: int | None = None  # size of the record being read, once its header is in

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        records: list[bytes] = []
        while True:
            if self._size is None:
                newline = self._buffer.find(b"\n")
                if newline < 0:
                    self._check_header(bytes(self._buffer), complete=False)
                    return records
                header = bytes(self._buffer[:newline])
                del self._buffer[: newline + 1]
                if header == b"":
                    continue  # empty header line: tolerated
                self._size = self._check_header(header, complete=True)
            if len(self._buffer) < self._size:
                return records
            record = bytes(self._buffer[: self._size])
            del self._buffer[: self._size]
            self._size = None
            if record:
                records.append(record)

    def _check_header(self, header: bytes, complete: bool) -> int:
        if header and not header.isdigit():
            raise RemoteProtocolError(f"RecordIO header {header[:40]!r} is not a decimal size")
        if len(header) > _MAX_HEADER_DIGITS:
            raise RemoteProtocolError(
                f"RecordIO header has {len(header)} digits, more than {_MAX_HEADER_DIGITS}"
            )
        size = int(header) if header else 0
        if size > self._max:
            raise RemoteProtocolError(
                f"RecordIO record of {size} bytes is larger than the limit of {self._max} bytes"
            )
        return size if complete else 0


def encode_record(payload: bytes) -> bytes:
    """Frames one record: the byte count in ASCII decimal, LF, the bytes."""
    return str(len(payload)).encode("ascii") + b"\n" + payload
