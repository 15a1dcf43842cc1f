"""TaskInfo.data in either form: Stoker's JSON task document or Aurora's AssignedTask.

Owns `decode_task_data`, the one entry point for the executor: it tells the two formats
apart by their first bytes (`binary.sniff`) and hands the bytes to `config.document.decode`
or `config.aurora.wire.decode_assigned_task` (imported only on that path). Raises only `TaskDocumentError` (a bad JSON document) or its subclass
`TaskDataError` (anything else), each with a message that says what arrived and why it
cannot be used. No I/O beyond loading the packaged Thrift IDL, no logging.
"""
from __future__ import annotations

from typing import assert_never

from config.aurora.binary import MAX_BYTES, Unknown, WireFormat, sniff
from config.aurora.errors import TaskDataError, received
from config.aurora.task import AuroraTask
from config.document import TaskDocument
from config.document import decode as decode_document


def decode_task_data(data: bytes | bytearray | memoryview | str) -> TaskDocument | AuroraTask:
    """The task in TaskInfo.data: a TaskDocument (Stoker's JSON) or an AuroraTask."""
    raw = _as_bytes(data)
    if len(raw) > MAX_BYTES:
        raise TaskDataError(f"TaskInfo.data ({received(raw)}) is over the {MAX_BYTES} byte limit")
    found = sniff(raw)
    match found:
        case WireFormat.STOKER_JSON:
            return decode_document(raw)
        case WireFormat.AURORA_THRIFT:
            from config.aurora.wire import decode_assigned_task

            return decode_assigned_task(raw)
        case Unknown(reason=reason):
            raise TaskDataError(f"TaskInfo.data ({received(raw)}) is neither a Stoker task document "
                                f"(JSON) nor an Aurora AssignedTask (Thrift): {reason}")
        case _:
            assert_never(found)


def _as_bytes(data: object) -> bytes:
    if isinstance(data, str):
        try:
            return data.encode("utf-8")
        except UnicodeEncodeError:
            raise TaskDataError("TaskInfo.data is text that is not UTF-8 "
                                "(it contains unpaired surrogates)") from None
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TaskDataError(f"TaskInfo.data must be bytes or text, not {type(data).__name__}")
