"""The agent's RecordIO stream (executor/mesos/recordio.py) through the session's reader.

Two modes, by the first byte. Stream: the bytes, cut into chunks where the input says, fed
to one `RecordIODecoder` with a small record limit; each record parsed as the session does
(`parse_event`, or `parse_oversized` for a record over the limit). Contract: records, or
RemoteProtocolError (a BrokenRecordIO hands on the records before it, and the decoder
is then thrown away, as the session does). Round trip: payloads framed by `encode_record`
and fed in arbitrary chunks come back whole and in order (an oversized one as its size and
first bytes), whatever the chunking.
"""
from __future__ import annotations

from tests.fuzz.harness import Finding, expect, main

INSTRUMENT = ("executor.mesos",)


def load() -> None:
    global atheris, recordio, wire, RemoteProtocolError
    import atheris

    from executor.mesos import recordio, wire
    from executor.mesos.errors import RemoteProtocolError


def seeds() -> list[bytes]:
    from executor.mesos.recordio import encode_record
    from tests.fuzz.mesos_seeds import events

    stream = b"".join(encode_record(e) for e in events())
    return [b"\x00\x07" + stream, b"\x01\x40" + stream, b"\x00\x03" + b"12\n\n0\n5\nhello",
            b"\x01\x10" + b"\x00".join(events()[:4])]


def _chunks(fdp, data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        size = fdp.ConsumeIntInRange(1, 64) if fdp.remaining_bytes() else len(data)
        out.append(data[pos:pos + size])
        pos += size
    return out


def _stream(fdp) -> None:
    limit = fdp.ConsumeIntInRange(1, 4096)
    data = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 8192))
    decoder = recordio.RecordIODecoder(max_record_bytes=limit)
    for chunk in _chunks(fdp, data):
        try:
            records = decoder.feed(chunk)
        except recordio.BrokenRecordIO as exc:
            records, decoder = exc.before, recordio.RecordIODecoder(max_record_bytes=limit)
        for record in records:
            if isinstance(record, recordio.OversizedRecord):
                expect(RemoteProtocolError, wire.parse_oversized, record.size, record.prefix, limit)
            else:
                expect(RemoteProtocolError, wire.parse_event, record)


def _round_trip(fdp) -> None:
    limit = fdp.ConsumeIntInRange(1, 256)
    payloads = [fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 300)) for _ in range(fdp.ConsumeIntInRange(0, 8))]
    payloads = [p for p in payloads if p]
    stream = b"".join(recordio.encode_record(p) for p in payloads)
    decoder = recordio.RecordIODecoder(max_record_bytes=limit)
    got: list = []
    for chunk in _chunks(fdp, stream):
        got += decoder.feed(chunk)
    want = [recordio.OversizedRecord(len(p), p[:recordio.PREFIX_BYTES]) if len(p) > limit else p
            for p in payloads]
    if [g if isinstance(g, recordio.OversizedRecord) else bytes(g) for g in got] != want:
        raise Finding(f"framed {payloads!r} came back as {got!r}")


def target(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    (_round_trip if fdp.ConsumeBool() else _stream)(fdp)


main(__name__)
