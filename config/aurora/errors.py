"""The one error for a TaskInfo.data that cannot be used, and how it shows what arrived.

Owns `TaskDataError` (a `TaskDocumentError`, so whatever already turns a bad task document
into TASK_FAILED handles it too) and `received(data)`, the short description of the bytes
every message carries: their length and the first bytes in hex and as printable text.
Pure: no I/O.
"""
from __future__ import annotations

from config.errors import TaskDocumentError

# How many leading bytes a message shows.
SHOWN_BYTES = 16


class TaskDataError(TaskDocumentError):
    """TaskInfo.data is neither task format, or an Aurora AssignedTask Stoker cannot use."""


def received(data: bytes) -> str:
    """'168 bytes: 0b 00 01 ... |......T1........|': the length, then the first bytes."""
    if not data:
        return "0 bytes"
    head = data[:SHOWN_BYTES]
    hex_bytes = " ".join(f"{b:02x}" for b in head)
    printable = "".join(chr(b) if 0x20 <= b < 0x7f else "." for b in head)
    more = " ..." if len(data) > SHOWN_BYTES else ""
    unit = "byte" if len(data) == 1 else "bytes"
    return f"{len(data)} {unit}: {hex_bytes}{more} |{printable}|"


def aurora_error(data: bytes, problem: str) -> TaskDataError:
    """The error for an AssignedTask that is malformed or unusable, showing what arrived."""
    return TaskDataError(f"invalid Aurora task in TaskInfo.data ({received(data)}): {problem}")
