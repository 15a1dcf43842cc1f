"""RecordIO's rules as tables (`executor/mesos/recordio.py`): the chunks fed -> the records,
or the whole error, which names the header's digits or size and the limit it broke."""
from __future__ import annotations

import pytest

from executor.mesos.errors import RemoteProtocolError
from executor.mesos.recordio import ABSURD_RECORD_BYTES, OversizedRecord, RecordIODecoder


def feed(chunks: list[bytes], max_record_bytes: int = 1024) -> list:
    decoder = RecordIODecoder(max_record_bytes)
    return [record for chunk in chunks for record in decoder.feed(chunk)]


RECORDS = {
    "a record of 1 byte": ([b"1\nx"], [b"x"]),
    "a record exactly the largest held": ([b"5\nabcde"], [b"abcde"]),  # max_record_bytes=5
    "one byte more is kept as its size and first bytes": ([b"6\nabcdef"], [OversizedRecord(6, b"abcdef")]),
    "a size of exactly the absurd limit is a (huge) record": ([b"%d\n" % ABSURD_RECORD_BYTES, b"ab"], []),
}


@pytest.mark.parametrize("chunks, records", RECORDS.values(), ids=RECORDS.keys())
def test_records(chunks, records):
    assert feed(chunks, max_record_bytes=5) == records


def test_a_record_in_one_chunk_is_that_chunk_s_bytes_one_across_chunks_its_own_buffer():
    decoder = RecordIODecoder()
    assert [type(r) for r in decoder.feed(b"3\nabc2\nd")] == [bytes]
    assert [type(r) for r in decoder.feed(b"e")] == [bytearray]


DIGITS = "RecordIO header has 21 digits, more than 20"
TOO_LARGE = "RecordIO record of {} bytes is larger than the limit of 1073741824 bytes"
BROKEN = {
    "21 digits, the newline further on": ([b"0" * 25 + b"\n"], DIGITS),
    "21 digits across chunks": ([b"0" * 10, b"0" * 20], DIGITS),
    "20 digits, over the absurd limit": ([b"9" * 20 + b"\n"], TOO_LARGE.format("9" * 20)),
    "one byte over the absurd limit": ([b"%d\n" % (ABSURD_RECORD_BYTES + 1)], TOO_LARGE.format(ABSURD_RECORD_BYTES + 1)),
    "over the limit before the newline arrives": ([b"9999999999"], TOO_LARGE.format(9999999999)),
    "not a number": ([b"12x\n"], "RecordIO header b'12x' is not a decimal size"),
    "a partial header that is not a number": ([b"1", b"2x"], "RecordIO header b'12x' is not a decimal size"),
}


@pytest.mark.parametrize("chunks, message", BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_stream_says_what_broke(chunks, message):
    with pytest.raises(RemoteProtocolError) as caught:
        feed(chunks)
    assert str(caught.value) == message
