"""The held list beside the checkpoint, `.stoker/held.json` (executor/task/heldfile.py
`held_pairs`): what a re-run kills and `stoker status` lists, read from a file the task
could have planted.

Contract: never raises; every pair it returns is two whole numbers, the pid above 0 and the
start above 0 before the offset is added; a list written in the writer's shape for this
marker and boot reads back as its pairs.
"""
from __future__ import annotations

import json

from tests.fuzz.harness import Finding, main

INSTRUMENT = ("executor.task",)


def load() -> None:
    global held_pairs
    from executor.task.heldfile import held_pairs


def seeds() -> list[bytes]:
    # two bytes of offset (signed), then the file
    return [b"\x00\x05" + b'{"marker": "m", "boot": "b", "held": [[4242, 81234], [4243, 81240]]}',
            b"\xff\xf0" + b'{"marker": "m", "boot": "b", "held": [[1, 2, 3], [-1, 5], [true, 5], [5.0, 6]]}',
            b"\x00\x00" + b'{"marker": "other", "boot": "b", "held": [[4242, 81234]]}',
            b"\x00\x01" + b"[4242, 81234, 4243, 81240]"]


def target(data: bytes) -> None:
    offset = int.from_bytes(data[:2], "big", signed=True)
    for pid, start in held_pairs(data[2:], "m", "b", offset):
        if type(pid) is not int or type(start) is not int or pid <= 0 or start - offset <= 0:
            raise Finding(f"a held pair ({pid!r}, {start!r}) from {data!r}")
    try:
        doc = json.loads(data[2:])
    except (ValueError, RecursionError):
        return
    if isinstance(doc, list) and all(isinstance(p, int) and not isinstance(p, bool) and p > 0 for p in doc):
        held = [[pid, start] for pid, start in zip(doc[::2], doc[1::2])]
        written = json.dumps({"marker": "m", "boot": "b", "held": held}).encode()
        if held_pairs(written, "m", "b", offset) != [(pid, start + offset) for pid, start in held]:
            raise Finding(f"the list {held!r} does not read back")


main(__name__)
