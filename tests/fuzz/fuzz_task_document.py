"""Stoker's own task document in TaskInfo.data (config/document.py), and the dispatch
between the two task formats (config/aurora/taskdata.py).

Contract: `decode_task_data` returns a TaskDocument (or an AuroraTask) or raises
TaskDocumentError with a message; never one of the catch-all messages that mean an
exception nobody expected (`invalid task document: KeyError: ...`). A document that
decodes survives a round trip: `encode` of what it holds decodes to the same job.
"""
from __future__ import annotations

import re

from tests.fuzz.harness import Finding, expect, main

INSTRUMENT = ("config",)
_CATCH_ALL = re.compile(r"^invalid task document: [A-Z]\w*(Error|Exception|Exit|Interrupt)\b")


def load() -> None:
    global document, decode_task_data, TaskDocumentError
    from config import document
    from config.aurora.taskdata import decode_task_data
    from config.errors import TaskDocumentError


def seeds() -> list[bytes]:
    from tests.fuzz.task_seeds import documents

    return documents()


def target(data: bytes) -> None:
    try:
        task = decode_task_data(data)
    except TaskDocumentError as exc:
        if _CATCH_ALL.match(str(exc)):
            raise Finding(f"an unexpected exception behind the message: {exc}") from exc
        return
    if not isinstance(task, document.TaskDocument):
        return
    again = expect(TaskDocumentError, document.decode,
                   document.encode(task.job, task.instance, task.assigned_ports))
    if again is None or again.job.json_dumps() != task.job.json_dumps() \
            or (again.instance, again.assigned_ports) != (task.instance, task.assigned_ports):
        raise Finding(f"the document does not survive encode/decode: {again!r}")


main(__name__)
