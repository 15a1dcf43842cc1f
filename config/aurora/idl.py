"""`aurora.thrift` read into field tables: for each struct and union, its field ids with
each field's name and type, which is all a TBinaryProtocol decoder needs.

Owns `read_idl(text)` and `Idl`. The IDL is Stoker's own file (Aurora's field ids, types
and defaults, the part an executor receives), so this reads exactly the Thrift it is
written in and refuses anything else with the line it cannot read: comments (`/* */`,
`//`, `#`), `struct` and `union` blocks of fields `ID: [optional|required] TYPE NAME
[= DEFAULT]`, one per line, and `enum` blocks (an enum travels as an i32). Types are the
base types, a struct, union or enum declared in the file, and `list<T>`, `set<T>`,
`map<K, V>`. Defaults are not kept: the decoder gives None for a field that is absent,
and `wire.py` applies the one default the executor needs (TaskConfig.container).
Pure: no I/O.
"""
from __future__ import annotations

import re
from typing import Any

import attrs

from config.aurora.binary import BOOL, BYTE, DOUBLE, I16, I32, I64, LIST, MAP, SET, STRING, STRUCT
from config.words import quoted

BASE_TYPES = {"bool": BOOL, "byte": BYTE, "i8": BYTE, "i16": I16, "i32": I32, "i64": I64,
              "double": DOUBLE, "string": STRING}

_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*|#[^\n]*", re.DOTALL)
_OPEN = re.compile(r"(struct|union|enum)\s+(\w+)\s*\{")
_FIELD = re.compile(r"(\d+)\s*:\s*(?:(?:optional|required)\s+)?(.+?)\s+(\w+)\s*(?:=.*)?;?,?")
_ENUM_VALUE = re.compile(r"\w+\s*(?:=\s*-?\d+)?\s*[,;]?")


class IdlError(ValueError):
    """The IDL text is not the Thrift this module reads (a packaging fault, not bad input)."""


# A field's type: a base type's name ("i32"), a declared struct's or enum's name, or
# ("list", T), ("set", T), ("map", K, V).
IdlType = str | tuple[Any, ...]


@attrs.frozen(slots=True)
class Field:
    name: str
    type: IdlType


@attrs.frozen(slots=True)
class Idl:
    structs: dict[str, dict[int, Field]]  # structs and unions
    enums: frozenset[str]

    def wire_type(self, t: IdlType) -> int:
        """The TType code a value of `t` travels as."""
        if isinstance(t, tuple):
            return {"list": LIST, "set": SET, "map": MAP}[t[0]]
        if t in BASE_TYPES:
            return BASE_TYPES[t]
        return I32 if t in self.enums else STRUCT


def read_idl(text: str) -> Idl:
    """The field tables of every struct and union in `text`; raises IdlError."""
    structs: dict[str, dict[int, Field]] = {}
    enums: set[str] = set()
    block: tuple[str, str] | None = None
    for number, line in enumerate(_COMMENT.sub(lambda m: "\n" * m.group().count("\n"), text).splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if block is None:
            opened = _OPEN.fullmatch(line)
            if opened is None:
                raise IdlError(f"line {number}: expected a struct, union or enum, found {quoted(line)}")
            block = (opened.group(1), opened.group(2))
            if block[0] == "enum":
                enums.add(block[1])
            else:
                structs[block[1]] = {}
        elif line == "}":
            block = None
        elif block[0] == "enum":
            if not _ENUM_VALUE.fullmatch(line):
                raise IdlError(f"line {number}: expected an enum value, found {quoted(line)}")
        else:
            field = _FIELD.fullmatch(line)
            if field is None:
                raise IdlError(f"line {number}: expected a field (ID: TYPE NAME), found {quoted(line)}")
            structs[block[1]][int(field.group(1))] = Field(field.group(3), _type(field.group(2), number))
    if block is not None:
        raise IdlError(f"the {block[0]} {block[1]} is never closed")
    idl = Idl(structs, frozenset(enums))
    _check_names(idl)
    return idl


def _type(text: str, number: int) -> IdlType:
    text = text.replace(" ", "")
    container = re.fullmatch(r"(list|set|map)<(.+)>", text)
    if container is None:
        return text
    kind, inner = container.groups()
    parts = _split_top(inner)
    if len(parts) != (2 if kind == "map" else 1):
        raise IdlError(f"line {number}: {kind}<{inner}> has {len(parts)} type arguments")
    return (kind, *(_type(part, number) for part in parts))


def _split_top(text: str) -> list[str]:
    """`string,list<a>` -> ['string', 'list<a>']: commas outside angle brackets."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"<": 1, ">": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return parts + [text[start:]]


def _check_names(idl: Idl) -> None:
    def check(t: IdlType, where: str) -> None:
        if isinstance(t, tuple):
            for inner in t[1:]:
                check(inner, where)
        elif t not in BASE_TYPES and t not in idl.structs and t not in idl.enums:
            raise IdlError(f"{where} has the type {quoted(t)}, which the IDL does not declare")

    for name, fields in idl.structs.items():
        for fid, field in fields.items():
            check(field.type, f"{name}.{field.name} (field {fid})")
