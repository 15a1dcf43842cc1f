"""Hostile and broken TaskInfo.data: every input ends in one TaskDocumentError (for Aurora's
form, TaskDataError) in bounded time and memory, never a traceback; truncation at every
offset says where; the limits leave room for any real Aurora task."""
from __future__ import annotations

import time
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.aurora.binary import MAX_BYTES, MAX_DEPTH, MAX_VALUES, check_struct, sniff
from config.aurora.errors import TaskDataError
from config.aurora.task import AuroraTask
from config.aurora.taskdata import decode_task_data
from config.errors import TaskDocumentError
from tests.support.aurora_tasks import Order, module, scheduler_task
from tests.support.aurora_tasks import encode as thrift_encode

STOP, BOOL, BYTE, DOUBLE, I16, I32, I64, STRING, STRUCT, MAP, SET, LIST = 0, 2, 3, 4, 6, 8, 10, 11, 12, 13, 14, 15
BILLION = (10 ** 9).to_bytes(4, "big")
# A guard against a decoder that walks what a header claims (a billion elements would take
# minutes), not a speed claim: every input here takes milliseconds to a few hundred (the
# largest: 20,000 values), and a loaded 2-core machine can stretch that tenfold.
DEADLINE_SECS = 20.0


def field(ttype: int, fid: int, payload: bytes) -> bytes:
    return bytes([ttype]) + fid.to_bytes(2, "big", signed=True) + payload


def string(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


REALISTIC = {order: thrift_encode(scheduler_task(module(order), "docker-image")) for order in Order}
SMALL = field(STRING, 1, string(b"T1"))  # a valid start for the hostile tails below


def decode_within_deadline(data: bytes) -> AuroraTask | None:
    started = time.perf_counter()
    try:
        return decode_task_data(data)  # type: ignore[return-value]
    finally:
        assert time.perf_counter() - started < DEADLINE_SECS


def peak_memory(data: bytes) -> int:
    """The most memory decoding DATA held at once (traced: slower, so not timed)."""
    tracemalloc.start()
    try:
        try:
            decode_task_data(data)
        except TaskDocumentError:
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


HOSTILE = {
    "10 MB of zeros": (b"\x00" * 10_000_000, f"over the {MAX_BYTES} byte limit"),
    "10 MB JSON-like": (b"{" + b" " * 10_000_000, f"over the {MAX_BYTES} byte limit"),
    "10 MB string": (field(STRING, 1, string(b"x" * 10_000_000)) + b"\x00", f"over the {MAX_BYTES} byte limit"),
    "string of 2**31-1 bytes": (field(STRING, 1, b"\x7f\xff\xff\xff") + b"abc",
                                "truncated at byte 10: the string of field 1 (taskId) at byte 3 claims "
                                "2147483647 bytes, only 3 remain"),
    "negative string length": (field(STRING, 1, b"\xff\xff\xff\xfe") + b"\x00",
                               "not a TBinaryProtocol struct: field 1 (taskId) claims -2 bytes at byte 3"),
    "negative list count": (field(LIST, 99, bytes([I32]) + b"\xff\xff\xff\xff") + b"\x00",
                            "not a TBinaryProtocol struct: field 99 claims -1 elements at byte 3"),
    "billion STOP elements": (field(LIST, 99, bytes([STOP]) + BILLION) + b"\x00",
                              "the element type of field 99 at byte 3 is 0, not a Thrift type"),
    "field type 7": (SMALL + field(7, 2, b"") + b"\x00", "the next field type (or STOP) of the AssignedTask at "
                                                         "byte 9 is 7, not a Thrift type"),
    "map value type 255": (field(MAP, 5, bytes([STRING, 255]) + BILLION), "the value type of field 5 "
                                                                          "(assignedPorts) at byte 4 is 255"),
    "structs nested 100000 deep": (field(STRUCT, 1, b"") * 100_000, f"is nested {MAX_DEPTH + 1} deep, over the "
                                                                   f"limit of {MAX_DEPTH} structs and containers"),
    "lists nested 100000 deep": (field(LIST, 1, b"") + (bytes([LIST]) + (1).to_bytes(4, "big")) * 100_000,
                                 f"is nested {MAX_DEPTH + 1} deep"),
    "too many elements": (field(LIST, 99, bytes([BOOL]) + (MAX_VALUES).to_bytes(4, "big") + b"\x01" * MAX_VALUES)
                          + b"\x00", f"over the limit of {MAX_VALUES}"),
    "too many fields": (field(BOOL, 99, b"\x01") * (MAX_VALUES + 1) + b"\x00", f"over the limit of {MAX_VALUES}"),
    "bytes after the struct": (REALISTIC[Order.ASCENDING] + b"\x00\x00",
                               f"the AssignedTask ends at byte {len(REALISTIC[Order.ASCENDING])}, but the data "
                               f"goes on for 2 bytes"),
}
for name, code in {"BOOL": BOOL, "I64": I64, "STRING": STRING, "STRUCT": STRUCT, "MAP": MAP, "SET": SET,
                   "LIST": LIST}.items():
    for container in (LIST, SET):
        HOSTILE[f"billion {name} elements in a {'list' if container == LIST else 'set'}"] = (
            SMALL + field(container, 99, bytes([code]) + BILLION) + b"\x00" * 20, "claims 1000000000 elements")
    HOSTILE[f"billion STRING->{name} entries"] = (SMALL + field(MAP, 99, bytes([STRING, code]) + BILLION),
                                                 "claims 1000000000 entries")


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_input_fails_cleanly_in_bounded_time_and_memory(name):
    data, problem = HOSTILE[name]
    with pytest.raises(TaskDataError) as caught:
        decode_within_deadline(data)
    assert problem in str(caught.value)
    assert len(str(caught.value)) < 400
    peak = peak_memory(data)
    assert peak < 8_000_000, f"{peak} bytes at the peak"


@pytest.mark.parametrize("order", list(Order), ids=lambda o: o.value)
def test_truncation_at_every_offset_says_where(order):
    data = REALISTIC[order]
    started = time.perf_counter()
    for size in range(1, len(data)):
        with pytest.raises(TaskDataError) as caught:
            decode_task_data(data[:size])
        assert f"): truncated at byte {size}: " in str(caught.value), size
    assert time.perf_counter() - started < 30  # about 1 ms per prefix
    with pytest.raises(TaskDataError, match=r"\(0 bytes\) is neither .*: it is empty"):
        decode_task_data(b"")


def test_the_limits_leave_room_for_real_tasks():
    assert len(REALISTIC[Order.ASCENDING]) < MAX_BYTES // 1000
    # The deepest nesting allowed passes through the scan and the Thrift library both.
    nested = field(STRUCT, 99, b"") * (MAX_DEPTH - 1) + b"\x00" * (MAX_DEPTH - 1)
    data = REALISTIC[Order.ASCENDING][:-1] + nested + b"\x00"
    assert decode_within_deadline(data) == decode_task_data(REALISTIC[Order.ASCENDING])
    # So does the largest executorConfig.data that fits.
    m = module(Order.ASCENDING)
    big = "x" * (MAX_BYTES - len(REALISTIC[Order.ASCENDING]) - 100)
    decoded = decode_within_deadline(thrift_encode(scheduler_task(m, "docker-image", data=big)))
    assert decoded is not None and decoded.executor_data == big


@pytest.mark.parametrize("known", [True, False], ids=["known-field", "unknown-field"])
def test_the_most_values_allowed_decode_in_bounded_time_and_memory(known):
    # A set of empty structs as large as the limit allows: as TaskConfig.resources (each
    # entry becomes a thriftpy2 object) or as an unknown field (skipped).
    count = MAX_VALUES - 200
    empties = field(SET if known else LIST, 32 if known else 99, bytes([STRUCT]) + count.to_bytes(4, "big")
                    + b"\x00" * count)
    data = REALISTIC[Order.ASCENDING]
    start = data.index(bytes([STRUCT]) + (4).to_bytes(2, "big")) + 3  # inside the TaskConfig
    data = data[:start] + empties + data[start:]
    decoded = decode_within_deadline(data)
    assert decoded is not None and decoded.task_id
    peak = peak_memory(data)
    assert peak < 8_000_000, f"{peak} bytes at the peak"


def test_check_struct_refuses_oversized_input_before_reading_it():
    with pytest.raises(TaskDataError, match=f"it is {MAX_BYTES + 1} bytes, over the {MAX_BYTES} byte limit"):
        check_struct(b"\x00" * (MAX_BYTES + 1))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_only_ever_raise_task_document_errors(data):
    sniff(data)
    try:
        decode_task_data(data)
    except TaskDocumentError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_corrupted_aurora_tasks_decode_or_fail_cleanly(draw):
    data = bytearray(REALISTIC[draw.draw(st.sampled_from(list(Order)))])
    for _ in range(draw.draw(st.integers(1, 4))):
        data[draw.draw(st.integers(0, len(data) - 1))] = draw.draw(st.integers(0, 255))
    try:
        decoded = decode_within_deadline(bytes(data))
    except TaskDocumentError:
        return
    assert isinstance(decoded, AuroraTask)
