"""Aurora's AssignedTask in TaskInfo.data (config/aurora/binary.py, config/aurora/wire.py).

Contract: `decode_task_data` on Thrift bytes returns an AuroraTask or raises TaskDataError
with a message, and never the messages that mean the structure check let something through
that the reader then choked on (`the Thrift decoder failed`) or a value of a type the IDL
does not allow reached the conversion (`unexpected value`); time and memory stay bounded
(binary.py's limits).
"""
from __future__ import annotations

from tests.fuzz.harness import Finding, main

INSTRUMENT = ("config.aurora",)
_CATCH_ALLS = ("the Thrift decoder failed", "unexpected value:")


def load() -> None:
    global decode_task_data, TaskDocumentError, AuroraTask
    from config.aurora.task import AuroraTask
    from config.aurora.taskdata import decode_task_data
    from config.errors import TaskDocumentError


def seeds() -> list[bytes]:
    from tests.fuzz.task_seeds import aurora_tasks

    return aurora_tasks()


def target(data: bytes) -> None:
    try:
        task = decode_task_data(data)
    except TaskDocumentError as exc:
        if any(what in str(exc) for what in _CATCH_ALLS):
            raise Finding(str(exc)) from exc
        return
    if not isinstance(task, AuroraTask) and data[:1] not in (b"{", b" ", b"\t", b"\r", b"\n", b"\xef"):
        raise Finding(f"Thrift bytes decoded as {type(task).__name__}")


main(__name__)
