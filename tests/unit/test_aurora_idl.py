"""config/aurora/idl.py: the Thrift the packaged IDL is written in, read into field tables,
and anything else refused with the line it cannot read; and the decoder's reading of a
container whose element types are not the IDL's (it reads as empty, as Thrift's generated
readers and thriftpy2 do). That the shipped IDL reads exactly as thriftpy2 reads it is
tests/unit/test_aurora_wire.py's."""
from __future__ import annotations

import pytest

from config.aurora.binary import I32, LIST, MAP, STRING, STRUCT
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
])
def test_anything_else_is_refused_with_the_line(text, message):
    with pytest.raises(IdlError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        read_idl(text)


def test_a_container_of_other_element_types_reads_as_empty():
    # assignedPorts (map<string, i32>) sent as map<string, string>: skipped whole, as
    # thriftpy2 and Thrift's generated readers do, so the task has no assigned ports.
    entries = bytes.fromhex("0b0b00000001") + bytes.fromhex("00000001") + b"a" + bytes.fromhex("00000001") + b"b"
    data = EXAMPLE[:125] + bytes.fromhex("0d0005") + entries + EXAMPLE[160:]
    decoded = decode_task_data(data)
    assert decoded.assigned_ports == {}
    assert decoded.task_id == "T1" and decoded.instance_id == 0  # what came after was read in step
