"""TBinaryProtocol at the byte level: which format a TaskInfo.data is in, and whether an
AssignedTask's bytes are whole and small enough to hand to the Thrift decoder.

Owns `sniff(data)` (Stoker's JSON task document, an Aurora AssignedTask, or neither and
why) and `check_struct(data)`, one walk over a TBinaryProtocol struct that decodes nothing
and raises `TaskDataError` for the first thing wrong: a type code that is not Thrift's, a
negative length, a length or an element count that the remaining bytes cannot hold
("truncated at byte N"), nesting deeper than `MAX_DEPTH`, more than `MAX_VALUES` fields
and elements, bytes after the struct, or more than `MAX_BYTES` in all. The Thrift library
reads whatever passes, so on any input its time and memory stay bounded by those limits.
Pure: no I/O.

The wire format: a struct is fields then STOP (one 0x00 byte); a field is its type byte, a
big-endian i16 id and the value; strings are an i32 length and the bytes; a map is key
type, value type, i32 count, then the pairs; a set or list is element type, i32 count,
then the elements. Unions are structs with one field, enums i32.
"""
from __future__ import annotations

import enum
import re
from collections.abc import Callable

import attrs

from config.aurora.errors import aurora_error
from config.words import quoted

# TType codes; enums travel as I32, unions as STRUCT.
STOP, BOOL, BYTE, DOUBLE, I16, I32, I64 = 0, 2, 3, 4, 6, 8, 10
STRING, STRUCT, MAP, SET, LIST = 11, 12, 13, 14, 15
TYPE_NAMES = {BOOL: "BOOL", BYTE: "BYTE", DOUBLE: "DOUBLE", I16: "I16", I32: "I32", I64: "I64",
              STRING: "STRING", STRUCT: "STRUCT", MAP: "MAP", SET: "SET", LIST: "LIST"}
FIXED_SIZE = {BOOL: 1, BYTE: 1, DOUBLE: 8, I16: 2, I32: 4, I64: 8}
# The fewest bytes one value of each type takes: what a claimed element count must fit in.
MIN_SIZE = {**FIXED_SIZE, STRING: 4, STRUCT: 1, MAP: 6, SET: 5, LIST: 5}

# The same bound as Stoker's JSON task document; Aurora's tasks are a few kilobytes.
MAX_BYTES = 4 * 1024 * 1024
# Structs and containers inside each other, the AssignedTask itself counted. Aurora's
# deepest is 7 (AssignedTask > TaskConfig > constraints > Constraint > TaskConstraint >
# ValueConstraint > values).
MAX_DEPTH = 32
# Fields plus container elements (a map entry counts twice). A real task has a few hundred;
# at the limit the check and the decode take about 0.2 s and 3 MB.
MAX_VALUES = 20_000

_JSON_SPACE = b" \t\r\n"
_BASE64 = re.compile(rb"[A-Za-z0-9+/]+={0,2}")


class WireFormat(enum.Enum):
    STOKER_JSON = "stoker-json"  # {"job": ..., "instance": N}: config/document.py
    AURORA_THRIFT = "aurora-thrift"  # a TBinaryProtocol AssignedTask from Aurora's scheduler


@attrs.frozen(slots=True)
class Unknown:
    reason: str  # why the bytes are neither format, for the error message


def sniff(data: bytes) -> WireFormat | Unknown:
    """Which task format DATA is in, from its first bytes: a JSON object starts with
    optional whitespace and '{' (no Thrift struct can: '{' is not a type code), a
    TBinaryProtocol struct with a field type byte (or STOP, for an empty struct)."""
    if not data:
        return Unknown("it is empty")
    if data.lstrip(_JSON_SPACE)[:1] == b"{":
        return WireFormat.STOKER_JSON
    if data[0] == STOP or data[0] in TYPE_NAMES:
        return WireFormat.AURORA_THRIFT
    return Unknown(_why_neither(data))


def _why_neither(data: bytes) -> str:
    stripped = data.strip(_JSON_SPACE)
    first = data[0]
    if not stripped:
        return "it holds only whitespace"
    if data[:2] == b"\x80\x01":
        return "it starts with a TBinaryProtocol message header (0x8001), not a bare struct"
    if data[:2] in (b"\x1f\x8b", b"\x78\x9c", b"\x78\x01", b"\x78\xda"):
        return "it looks compressed (gzip or zlib), and Aurora sends TaskInfo.data uncompressed"
    if stripped[:1] in b'["-0123456789tfn':
        return (f"it looks like JSON starting with {quoted(chr(stripped[0]))}, "
                f"but a task document is a JSON object ('{{')")
    if len(stripped) % 4 == 0 and _BASE64.fullmatch(stripped):  # (so it decodes: at most 2 '=', at the end)
        return "it looks like base64 text, and TaskInfo.data must be the decoded bytes"
    shown = repr(chr(first)) if 0x20 <= first < 0x7f else f"0x{first:02x}"
    return (f"it starts with {shown}, which is neither '{{' (a JSON task document) nor a Thrift field "
            f"type (a TBinaryProtocol struct starts with 0x00 or one of "
            f"{', '.join(f'0x{t:02x}' for t in TYPE_NAMES)})")


class _Problem(Exception):
    pass


# Names a path of field ids (4, 25, 2 -> "task.executorConfig.data"), or None if unknown.
FieldNamer = Callable[[tuple[int, ...]], "str | None"]


def check_struct(data: bytes, what: str = "AssignedTask", names: FieldNamer | None = None) -> None:
    """Raise TaskDataError unless DATA is exactly one well-formed TBinaryProtocol struct
    within the limits; `what` names the struct in messages, `names` its fields."""
    if len(data) > MAX_BYTES:
        raise aurora_error(data, f"it is {len(data)} bytes, over the {MAX_BYTES} byte limit")
    if not data:
        raise aurora_error(data, "it is empty")
    scan = _Scan(data, what, names)
    try:
        scan.struct(1)
        if scan.pos != len(data):
            raise _Problem(f"the {what} ends at byte {scan.pos}, but the data goes on for "
                           f"{_bytes(len(data) - scan.pos)}")
    except _Problem as problem:
        raise aurora_error(data, str(problem)) from None


class _Scan:
    """One pass over the bytes; `path` names where it is, e.g. field 4.25.2 or 4.32[3]."""

    def __init__(self, data: bytes, what: str, names: FieldNamer | None) -> None:
        self.data = data
        self.what = what
        self.names = names
        self.pos = 0
        self.values = 0
        self.path: list[int | str] = []  # field ids, and "[i]" for the i-th element

    def where(self) -> str:
        if not self.path:
            return f"the {self.what}"
        dotted = ""
        for part in self.path:
            dotted += part if isinstance(part, str) else f".{part}" if dotted else str(part)
        name = self.names(tuple(p for p in self.path if isinstance(p, int))) if self.names else None
        return f"field {dotted} ({name})" if name else f"field {dotted}"

    def take(self, size: int, what: str) -> int:
        start, remain = self.pos, len(self.data) - self.pos
        if size > remain:
            raise _Problem(f"truncated at byte {len(self.data)}: {what} of {self.where()} at byte {start} "
                           f"needs {_bytes(size)}, only {remain} remain")
        self.pos += size
        return start

    def byte(self, what: str) -> int:
        return self.data[self.take(1, what)]

    def int_(self, size: int, what: str) -> int:
        start = self.take(size, what)
        return int.from_bytes(self.data[start:start + size], "big", signed=True)

    def type_code(self, what: str, allow_stop: bool = False) -> int:
        at = self.pos
        code = self.byte(what)
        if code in TYPE_NAMES or (allow_stop and code == STOP):
            return code
        raise _Problem(f"not a TBinaryProtocol struct: {what} of {self.where()} at byte {at} is {code}, "
                       f"not a Thrift type")

    def count(self, size: int, what: str, at: int) -> int:
        if size < 0:
            raise _Problem(f"not a TBinaryProtocol struct: {self.where()} claims {size} {what} at byte {at}")
        return size

    def enter(self, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise _Problem(f"{self.where()} at byte {self.pos} is nested {depth} deep, over the limit of "
                           f"{MAX_DEPTH} structs and containers")

    def tally(self, added: int) -> None:
        self.values += added
        if self.values > MAX_VALUES:
            raise _Problem(f"{self.where()} at byte {self.pos} brings the fields and elements to "
                           f"{self.values}, over the limit of {MAX_VALUES}")

    def struct(self, depth: int) -> None:
        self.enter(depth)
        while True:
            ftype = self.type_code("the next field type (or STOP)", allow_stop=True)
            if ftype == STOP:
                return
            fid = self.int_(2, "the field id")
            self.path.append(fid)
            self.tally(1)
            self.value(ftype, depth)
            self.path.pop()

    def value(self, ttype: int, depth: int) -> None:
        if ttype in FIXED_SIZE:
            self.take(FIXED_SIZE[ttype], f"the {TYPE_NAMES[ttype]} value")
        elif ttype == STRING:
            at = self.pos
            size = self.count(self.int_(4, "the string length"), "bytes", at)
            remain = len(self.data) - self.pos
            if size > remain:
                raise _Problem(f"truncated at byte {len(self.data)}: the string of {self.where()} "
                               f"at byte {at} claims {_bytes(size)}, only {remain} remain")
            self.pos += size
        elif ttype == STRUCT:
            self.struct(depth + 1)
        else:
            self.container(ttype, depth + 1)

    def container(self, ttype: int, depth: int) -> None:
        self.enter(depth)
        at = self.pos
        types: tuple[int, ...]
        if ttype == MAP:
            types = (self.type_code("the key type"), self.type_code("the value type"))
            size = self.count(self.int_(4, "the entry count"), "entries", at)
        else:  # SET, LIST
            types = (self.type_code("the element type"),)
            size = self.count(self.int_(4, "the element count"), "elements", at)
        self.elements(size, types, at, depth)

    def elements(self, size: int, types: tuple[int, ...], at: int, depth: int) -> None:
        need, remain = size * sum(MIN_SIZE[t] for t in types), len(self.data) - self.pos
        if need > remain:
            raise _Problem(f"truncated at byte {len(self.data)}: {self.where()} at byte {at} claims {size} "
                           f"{'entries' if len(types) == 2 else 'elements'}, which need at least "
                           f"{_bytes(need)}, and only {remain} remain")
        self.tally(size * len(types))
        if all(t in FIXED_SIZE for t in types):  # their bytes are all there: MIN_SIZE is their size
            self.pos += size * sum(FIXED_SIZE[t] for t in types)
            return
        for index in range(size):
            self.path.append(f"[{index}]")
            for ttype in types:
                self.value(ttype, depth)
            self.path.pop()


def _bytes(size: int) -> str:
    return "1 byte" if size == 1 else f"{size} bytes"
