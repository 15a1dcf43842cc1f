"""The agent's RecordIO stream (executor/mesos/recordio.py) through the session's reader.

Two modes, by the first byte. Stream: the bytes, cut into chunks of the size the input says, fed
to one `RecordIODecoder` with a small record limit; each record parsed as the session does
(`parse_event`, or `parse_oversized` for a record over the limit). Contract: records, or
RemoteProtocolError (a BrokenRecordIO hands on the records before it, and the decoder
is then thrown away, as the session does). Round trip: payloads framed by `encode_record`
and fed in chunks of any size come back whole and in order (an oversized one as its size and
first bytes), whatever the chunk size.
"""
from __future__ import annotations

from tests.fuzz.harness import Finding, expect, main

INSTRUMENT = ("executor.mesos",)


def load() -> None:
    global recordio, wire, RemoteProtocolError
    from executor.mesos import recordio, wire
    from executor.mesos.errors import RemoteProtocolError


# The input: a mode byte (even: the stream; odd: the round trip), the record limit (byte 2,
# times 16, at least 1), the chunk size (byte 3, 1 to 64), then the stream, or the payloads
# to frame, separated by "|".
def seeds() -> list[bytes]:
    from executor.mesos.recordio import encode_record
    from tests.fuzz.mesos_seeds import events

    stream = b"".join(encode_record(e) for e in events())
    return [b"\x00\x40\x07" + stream, b"\x00\x02\x3f" + stream, b"\x00\x10\x02" + b"12\n\n0\n5\nhello",
            b"\x01\x01\x05" + b"|".join(events()[:4]), b"\x01\x00\x00a|bc|" + b"d" * 40]


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def _stream(limit: int, size: int, data: bytes) -> None:
    decoder = recordio.RecordIODecoder(max_record_bytes=limit)
    for chunk in _chunks(data, size):
        try:
            records = decoder.feed(chunk)
        except recordio.BrokenRecordIO as exc:
            records, decoder = exc.before, recordio.RecordIODecoder(max_record_bytes=limit)
        for record in records:
            if isinstance(record, recordio.OversizedRecord):
                expect(RemoteProtocolError, wire.parse_oversized, record.size, record.prefix, limit)
            else:
                expect(RemoteProtocolError, wire.parse_event, record)


def _round_trip(limit: int, size: int, data: bytes) -> None:
    payloads = [p for p in data.split(b"|") if p]
    stream = b"".join(recordio.encode_record(p) for p in payloads)
    decoder = recordio.RecordIODecoder(max_record_bytes=limit)
    got: list = []
    for chunk in _chunks(stream, size):
        got += decoder.feed(chunk)
    want = [recordio.OversizedRecord(len(p), p[:recordio.PREFIX_BYTES]) if len(p) > limit else p
            for p in payloads]
    if [g if isinstance(g, recordio.OversizedRecord) else bytes(g) for g in got] != want:
        raise Finding(f"framed {payloads!r} came back as {got!r}")


def target(data: bytes) -> None:
    if len(data) < 3:
        return
    mode, limit, size = data[0] % 2, max(1, data[1] * 16), data[2] % 64 + 1
    (_round_trip if mode else _stream)(limit, size, data[3:])


main(__name__)
