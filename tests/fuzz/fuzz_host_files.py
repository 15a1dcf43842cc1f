"""The small JSON files readers trust no further than their fields: a host registry entry
(executor/host/entry.py), `.stoker/usage.json` (executor/task/usagefigures.py), and the
control socket's request and reply lines (executor/host/controlwire.py).

Contract, by the first byte: an entry reads as a RegistryEntry or None, and one that reads
survives `to_json` -> `from_json`; a usage file reads as a UsageRecord or None, and its
figures and percents are computed without raising; a control request parses or raises
ControlError with a message, and one that parses survives `encode_request` ->
`parse_request`; a reply line parses or is None, and survives `encode_reply`; the task's
definition beside the checkpoint (`.stoker/task.json`, which the task could plant) renders
on the observer's task page (executor/observe/pages.py) as UTF-8 with every `<` escaped.
"""
from __future__ import annotations

import json
import math

from tests.fuzz.harness import Finding, expect, main

INSTRUMENT = ("executor.host", "executor.task", "executor.observe.pages")


def load() -> None:
    global entry, controlwire, usagefigures, pages
    from executor.host import controlwire, entry
    from executor.observe import pages
    from executor.task import usagefigures


def seeds() -> list[bytes]:
    doc = {"version": 1, "sandbox": "/var/lib/mesos/sb", "supervisor_pid": 4000, "supervisor_start": 81234,
           "supervisor_boot": "b-1", "front_end": "run", "registered": 1700000000.5, "task_id": "t-1",
           "job_key": "c/r/e/j", "label": "j", "marker": "m", "ended": None, "stoker_dir": "2049:131",
           "earlier_task_ids": ["t-0"]}
    usage = {"marker": "m", "boot": "b", "cpu_reserved": 0.5, "ram_reserved": 67108864,
             "disk_reserved": 1073741824, "disk_check_secs": 60.0, "disk_error": "",
             "disk_sample": {"used_bytes": 4096, "files": 3, "unreadable": 0, "secs": 0.01, "wall": 1.7e9}}
    return [b"\x00" + json.dumps(doc).encode(), b"\x01" + json.dumps(usage).encode(),
            b'\x02{"op": "kill", "grace_secs": 5}', b'\x02{"op": "restart", "process": "web"}',
            b'\x03{"ok": true, "done": false, "message": "killing"}',
            b'\x04{"task_id": "t", "task": {"processes": [{"name": "web", "cmdline": "serve", "daemon": true}]}}']


def _entry(doc: object) -> None:
    found = entry.RegistryEntry.from_json(doc)
    if found is not None and entry.RegistryEntry.from_json(json.loads(json.dumps(found.to_json()))) != found:
        raise Finding(f"{found!r} does not survive to_json/from_json")


def _usage(doc: object) -> None:
    if not isinstance(doc, dict):
        return
    record = usagefigures.usage_record(doc)
    figures = usagefigures.figures(record, "", usagefigures.Live(cpu_cores=0.5, rss_bytes=1 << 20))
    for value in (figures.cpu_percent, figures.ram_percent, figures.disk_percent):
        if value is not None and not math.isfinite(value):
            raise Finding(f"a percent of {value!r} from {doc!r}")


def _request(line: bytes) -> None:
    request = expect(controlwire.ControlError, controlwire.parse_request, line)
    if request is not None and controlwire.parse_request(controlwire.encode_request(request)) != request:
        raise Finding(f"{request!r} does not survive encode_request/parse_request")


def _reply(line: bytes) -> None:
    reply = controlwire.parse_reply(line)
    if reply is not None and controlwire.parse_reply(controlwire.encode_reply(reply)) != reply:
        raise Finding(f"{reply!r} does not survive encode_reply/parse_reply")


def _definition(doc: object) -> None:
    if not isinstance(doc, dict):
        return
    from types import SimpleNamespace

    page = pages._definition(SimpleNamespace(definition=doc, definition_problem=""))
    page.encode("utf-8")  # a UnicodeEncodeError is a finding: the page is sent as UTF-8
    if page.count("<") != page.count(">"):
        raise Finding(f"an unescaped < or > in {page!r}")


def target(data: bytes) -> None:
    if not data:
        return
    kind, rest = data[0] % 5, data[1:]
    if kind in (2, 3):
        (_request if kind == 2 else _reply)(rest)
        return
    try:
        doc = json.loads(rest)
    except (ValueError, RecursionError):
        return
    (_entry, _usage, None, None, _definition)[kind](doc)


main(__name__)
