"""`config.aurora.binary`'s words, each stated whole: where an AssignedTask's bytes are cut
short (each piece of the wire format that can be: a field id, a value, a string, a map's
types and count, a list's), a negative count, a path through a list's elements, each limit
at its value and one past it, and what bytes that are neither format look like."""
from __future__ import annotations

import pytest

from config.aurora.binary import MAX_BYTES, MAX_DEPTH, MAX_VALUES, Unknown, WireFormat, check_struct, sniff
from config.aurora.errors import TaskDataError
from tests.unit.test_aurora_wire_limits import BOOL, I32, LIST, MAP, STOP, STRING, STRUCT, field, string


def problem(data: bytes, names=None) -> str:
    """The problem `check_struct` says (after the description of what arrived); "" when none."""
    try:
        check_struct(data, names=names)
    except TaskDataError as error:
        return str(error).split("): ", 1)[1]
    return ""


def count(n: int) -> bytes:
    return n.to_bytes(4, "big", signed=True)


CUT = [
    (bytes([STRING]), "the field id of the AssignedTask at byte 1 needs 2 bytes, only 0 remain"),
    (field(I32, 1, b"\x00"), "the I32 value of field 1 at byte 3 needs 4 bytes, only 1 remain"),
    (field(STRING, 1, b"\x00\x00"), "the string length of field 1 at byte 3 needs 4 bytes, only 2 remain"),
    (field(MAP, 2, b""), "the key type of field 2 at byte 3 needs 1 byte, only 0 remain"),
    (field(MAP, 2, bytes([STRING])), "the value type of field 2 at byte 4 needs 1 byte, only 0 remain"),
    (field(MAP, 2, bytes([STRING, I32]) + b"\x00"), "the entry count of field 2 at byte 5 needs 4 bytes, only 1 remain"),
    (field(LIST, 2, b""), "the element type of field 2 at byte 3 needs 1 byte, only 0 remain"),
    (field(LIST, 2, bytes([I32]) + b"\x00\x00\x00"), "the element count of field 2 at byte 4 needs 4 bytes, only 3 remain"),
    # a string, and a list's elements, that fill the data exactly: the field after is what is missing
    (field(STRING, 1, string(b"abcd")), "the next field type (or STOP) of the AssignedTask at byte 11 needs 1 byte, "
                                        "only 0 remain"),
    (field(LIST, 2, bytes([I32]) + count(2) + bytes(8)), "the next field type (or STOP) of the AssignedTask at byte "
                                                         "16 needs 1 byte, only 0 remain"),
]


@pytest.mark.parametrize(("data", "said"), CUT, ids=range(len(CUT)))
def test_each_piece_cut_short_is_named_with_where_it_starts(data, said):
    assert problem(data) == f"truncated at byte {len(data)}: {said}"


def test_a_count_the_bytes_cannot_hold_or_below_zero_is_said_so():
    assert problem(field(STRING, 1, count(5) + b"abcd")) == (
        "truncated at byte 11: the string of field 1 at byte 3 claims 5 bytes, only 4 remain")
    assert problem(field(MAP, 2, bytes([STRING, I32]) + count(2))) == (
        "truncated at byte 9: field 2 at byte 3 claims 2 entries, which need at least 16 bytes, and only 0 remain")
    assert problem(field(MAP, 2, bytes([STRING, I32]) + count(-1))) == (
        "not a TBinaryProtocol struct: field 2 claims -1 entries at byte 3")
    assert problem(field(LIST, 2, bytes([I32]) + count(-1))) == (
        "not a TBinaryProtocol struct: field 2 claims -1 elements at byte 3")


def test_a_problem_inside_a_list_s_element_names_the_path_to_it():
    element = field(BOOL, 7, b"\x01") + bytes([STOP])
    data = field(LIST, 2, bytes([STRUCT]) + count(2) + element + bytes([99]))
    said = "not a TBinaryProtocol struct: the next field type (or STOP) of field 2[1] at byte 13 is 99, not a Thrift type"
    assert problem(data) == said
    assert problem(data, names=lambda ids: "task" if ids == (2,) else None) == said.replace("2[1]", "2[1] (task)")


def test_each_limit_holds_its_value_and_refuses_one_more():
    whole = field(STRING, 1, string(b"x" * (MAX_BYTES - 8))) + bytes([STOP])
    assert len(whole) == MAX_BYTES and problem(whole) == ""
    assert problem(whole + b"\x00") == f"it is {MAX_BYTES + 1} bytes, over the {MAX_BYTES} byte limit"
    with pytest.raises(TaskDataError, match=rf"^invalid Aurora task in TaskInfo.data \({MAX_BYTES + 1} bytes: 0b 00 01 "):
        check_struct(whole + b"\x00")  # what arrived, shown
    assert problem(b"") == "it is empty"

    def values(entries: int) -> bytes:  # 2 fields and 2 values an entry
        return field(I32, 1, bytes(4)) + field(MAP, 2, bytes([I32, BOOL]) + count(entries) + bytes(5 * entries)) + bytes([STOP])

    entries = (MAX_VALUES - 2) // 2
    assert problem(values(entries)) == ""
    assert problem(values(entries + 1)) == (
        f"field 2 at byte 16 brings the fields and elements to {MAX_VALUES + 2}, over the limit of {MAX_VALUES}")

    def nested(lists: int) -> bytes:  # a field holding lists in lists: depths 2 to lists + 1
        inner = bytes([I32]) + count(0)
        for _ in range(lists - 1):
            inner = bytes([LIST]) + count(1) + inner
        return field(LIST, 3, inner) + bytes([STOP])

    assert problem(nested(MAX_DEPTH - 1)) == ""
    assert problem(nested(MAX_DEPTH)).startswith("field 3[0]") and \
        problem(nested(MAX_DEPTH)).endswith(f"is nested {MAX_DEPTH + 1} deep, over the limit of {MAX_DEPTH} structs "
                                            "and containers")


NEITHER = "which is neither '{' (a JSON task document) nor a Thrift field type"


@pytest.mark.parametrize(("data", "said"), [
    (b" \x0b", f"it starts with ' ', {NEITHER}"),  # a vertical tab: no JSON whitespace
    (b" \x01", f"it starts with ' ', {NEITHER}"),
    (b"\x7f", f"it starts with 0x7f, {NEITHER}"),
    (b"Xyz", f"it starts with 'X', {NEITHER}"),
    (b"\x78\x9c..", "it looks compressed (gzip or zlib), and Aurora sends TaskInfo.data uncompressed"),
    (b"\x78\x01..", "it looks compressed (gzip or zlib), and Aurora sends TaskInfo.data uncompressed"),
    (b"\x78\xda..", "it looks compressed (gzip or zlib), and Aurora sends TaskInfo.data uncompressed"),
    (b" true", "it looks like JSON starting with 't', but a task document is a JSON object ('{')"),
    (b"null", "it looks like JSON starting with 'n', but a task document is a JSON object ('{')"),
    (b"QUJD", "it looks like base64 text, and TaskInfo.data must be the decoded bytes"),
], ids=["space, vertical tab", "space", "DEL", "X", "zlib default", "zlib fastest", "zlib best",
        "true", "null", "base64"])
def test_bytes_that_are_neither_format_say_what_they_look_like(data, said):
    found = sniff(data)
    assert isinstance(found, Unknown) and found.reason.startswith(said), found


def test_only_json_s_own_whitespace_may_come_before_a_document_s_brace():
    """A vertical tab (0x0b) is whitespace to Python but not to JSON: here it is Thrift's
    STRING type code, the first field of a struct."""
    assert sniff(b" \r\n\t{}") is WireFormat.STOKER_JSON
    assert sniff(b"\x0b{}") is WireFormat.AURORA_THRIFT
