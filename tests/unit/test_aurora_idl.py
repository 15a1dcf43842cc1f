"""config/aurora/idl.py: the Thrift the packaged IDL is written in, read into field tables,
and anything else refused with the line it cannot read; and the decoder's reading of a
container whose element types are not the IDL's (it reads as empty, as Thrift's generated
readers and thriftpy2 do). That the shipped IDL reads exactly as thriftpy2 reads it is
tests/unit/test_aurora_wire.py's."""
from __future__ import annotations

import pytest

from config.aurora.binary import I32, LIST, MAP, MAX_BYTES, STRING, STRUCT
from config.aurora.errors import TaskDataError
from config.aurora.idl import Field, IdlError, read_idl
from config.aurora.taskdata import decode_task_data
from tests.support.aurora_tasks import EXAMPLE

IDL = """
/** A doc comment, { with braces } and a field-like 1: i32 line. */
enum Mode {
  RW = 1
  RO = 2,
}
// a line comment
struct Inner { # a shell-style comment
  1: optional Mode mode
  2: required string name = "x"
}
union Outer {
  7: list<Inner> items
  3: map<string, list<set<i64>>> nested;
  4: Inner inner = { "name": {} }
}
"""


def test_the_tables_keep_ids_names_and_types_in_declaration_order():
    idl = read_idl(IDL)
    assert idl.enums == {"Mode"}
    assert idl.structs == {
        "Inner": {1: Field("mode", "Mode"), 2: Field("name", "string")},
        "Outer": {7: Field("items", ("list", "Inner")),
                  3: Field("nested", ("map", "string", ("list", ("set", "i64")))),
                  4: Field("inner", "Inner")},
    }
    assert [idl.wire_type(f.type) for f in idl.structs["Outer"].values()] == [LIST, MAP, STRUCT]
    assert (idl.wire_type("Mode"), idl.wire_type("string")) == (I32, STRING)


@pytest.mark.parametrize("text, message", [
    ("service Api {\n}", "line 1: expected a struct, union or enum, found 'service Api {'"),
    ("struct A {\n  1: i32\n}", "line 2: expected a field (ID: TYPE NAME), found '1: i32'"),
    ("struct A {\n  x: i32 y\n}", "line 2: expected a field (ID: TYPE NAME), found 'x: i32 y'"),
    ("enum E {\n  A = x\n}", "line 2: expected an enum value, found 'A = x'"),
    ("struct A {\n  1: i32 a\n", "the struct A is never closed"),
    ("struct A {\n  1: Missing a\n}", "A.a (field 1) has the type 'Missing', which the IDL does not declare"),
    ("struct A {\n  1: map<i32> a\n}", "line 2: map<i32> has 1 type arguments"),
    ("/* a\n b */ struct A {\n  1: list<B> a\n}", "A.a (field 1) has the type 'B'"),
    ("/* a comment\n of two lines */\nstruct A {\n  1: i32\n}", "line 4: expected a field"),  # lines still counted
    ("struct A {\n\n  1: list<map<i32>> a\n}", "line 3: map<i32> has 1 type arguments"),  # a nested one's line
    ("struct A {\n  1: map<string, map<i32, string>, i64> a\n}", "line 2: map<string,map<i32,string>,i64> has 3"),
])
def test_anything_else_is_refused_with_the_line(text, message):
    with pytest.raises(IdlError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        read_idl(text)


def test_commas_inside_a_container_type_s_brackets_do_not_split_its_arguments():
    text = "struct A {\n  1: map<map<string, i32>, map<i32, list<string>>> a\n  2: map<i32, set<i64>> b\n}"
    assert read_idl(text).structs["A"] == {
        1: Field("a", ("map", ("map", "string", "i32"), ("map", "i32", ("list", "string")))),
        2: Field("b", ("map", "i32", ("set", "i64")))}


@pytest.mark.parametrize("data, message", [
    (b"x" * (MAX_BYTES + 1), f"TaskInfo.data ({MAX_BYTES + 1} bytes: 78 78 "),
    ("{\"a\": \"\ud800\"}", "TaskInfo.data is text that is not UTF-8 (it contains unpaired surrogates)"),
    (42, "TaskInfo.data must be bytes or text, not int"),
    (b"\xff\xfe", "TaskInfo.data (2 bytes: ff fe |..|) is neither a Stoker task document (JSON) nor an Aurora"),
])
def test_task_data_that_is_neither_form_says_what_arrived(data, message):
    with pytest.raises(TaskDataError) as caught:
        decode_task_data(data)
    assert str(caught.value).startswith(message), str(caught.value)[:200]


def test_task_data_of_the_largest_size_allowed_is_read():
    # Aurora's own payload, padded to the limit with a field the IDL does not know (skipped)
    pad = MAX_BYTES - len(EXAMPLE) - 7
    data = EXAMPLE[:-1] + bytes.fromhex("0b7fff") + pad.to_bytes(4, "big") + b"x" * pad + b"\x00"
    assert len(data) == MAX_BYTES
    assert decode_task_data(data).task_id == "T1"
    assert decode_task_data(bytearray(EXAMPLE)).task_id == decode_task_data(memoryview(EXAMPLE)).task_id == "T1"


def test_a_container_of_other_element_types_reads_as_empty():
    # assignedPorts (map<string, i32>) sent as map<string, string>: skipped whole, as
    # thriftpy2 and Thrift's generated readers do, so the task has no assigned ports.
    entries = bytes.fromhex("0b0b00000001") + bytes.fromhex("00000001") + b"a" + bytes.fromhex("00000001") + b"b"
    data = EXAMPLE[:125] + bytes.fromhex("0d0005") + entries + EXAMPLE[160:]
    decoded = decode_task_data(data)
    assert decoded.assigned_ports == {}
    assert decoded.task_id == "T1" and decoded.instance_id == 0  # what came after was read in step
