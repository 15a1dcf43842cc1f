"""The checkpoint as a reader sees it (executor/task/checkpoint.py's line parser, records.py,
replay.py, compaction.py): lines of JSON, some torn, some planted.

Contract: `parse_lines` never raises; `replay` never raises and names each damaged record in
its warnings; every record that reads back survives `to_json` -> `parse` unchanged;
`compact` of the records read never raises; and `stoker status`'s text of the view
(executor/cli/views.py `format_status`) is UTF-8 a terminal cannot be driven by: no
escape, CSI or carriage return, whatever a planted record holds.
"""
from __future__ import annotations

import json

from tests.fuzz.harness import Finding, main

INSTRUMENT = ("executor.task", "executor.cli.views")


def load() -> None:
    global parse_lines, records, replay, compact, format_status
    from executor.cli.views import format_status
    from executor.task import records
    from executor.task.compaction import compact
    from executor.task.records import parse_lines
    from executor.task.replay import replay


def seeds() -> list[bytes]:
    from tests.unit.test_records import RECORDS

    lines = [json.dumps({**r.to_json(), "wall": 1700000000.0 + i}).encode() for i, r in enumerate(RECORDS)]
    return [b"\n".join(lines), *lines, b"\n".join(lines[:3]) + b'\n{"kind": "phase", "to"']


def target(data: bytes) -> None:
    docs = parse_lines(data.split(b"\n"), keep_unreadable=True)
    text = format_status(replay(docs), 1_700_000_100.0)
    text.encode("utf-8")  # a UnicodeEncodeError is a finding: stdout is UTF-8
    if any(c in text for c in "\x1b\x9b\r"):
        raise Finding(f"stoker status would print {text!r}")
    read = []
    for doc in docs:
        rec = records.parse(doc)
        if rec is None:
            continue
        read.append(rec)
        again = records.parse(json.loads(json.dumps(rec.to_json())))
        if again != rec:
            raise Finding(f"{rec!r} reads back as {again!r}")
    compact(read)


main(__name__)
