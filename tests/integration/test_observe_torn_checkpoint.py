"""The observer's pages of a task whose checkpoint a full disk cut short: its supervisor died
(or its cut-back failed) with a record written in part, so that the file ends inside a
record (the header too, or inside the escape of a character not ASCII), or in the zeros a crash may leave
after a file's last block. Every page answers, none 500, and what is whole is shown."""
from __future__ import annotations

import errno
import json
import os

import pytest

from config.registry import RegistrySettings
from executor.observe.reader import Reader
from executor.observe.server import ObserverApp
from executor.task import checkpoint
from executor.task.checkpoint import CheckpointWriter, checkpoint_path
from tests.support import limits
from tests.support.keptreader import kept_reader
from tests.support.statuscli import RUNNING, registered_task

pytestmark = pytest.mark.timeout(60)

LAST = {"kind": "process", "process": "web", "run": 2, "from": "RUNNING", "to": "FAILED",
        "reason": "café ☕ exited 1", "exit_code": 1, "wall": 1003.0}
RECORDS = [*RUNNING, LAST]  # after the header: 5 lines


def _cuts() -> dict[str, tuple[int | None, int, bytes]]:
    """Where each case cuts the checkpoint: (line, offset into it, bytes after the cut)."""
    cuts: dict[str, tuple[int | None, int, bytes]] = {}
    for line in range(len(RECORDS) + 1):
        for at in ("first byte", "middle", "before its newline"):
            cuts[f"line {line}, {at}"] = (line, {"first byte": 1, "middle": -2, "before its newline": -1}[at], b"")
    cuts["inside a \\u escape"] = (len(RECORDS), -3, b"")
    cuts["zeros after the last record"] = (None, 0, bytes(4096))
    cuts["zeros after a torn record"] = (len(RECORDS), -2, bytes(4096))
    return cuts


CUTS = _cuts()


def _cut(path, line: int | None, at: int, after: bytes) -> None:
    data = path.read_bytes()
    if line is not None:
        lines = data.splitlines(keepends=True)
        start = sum(len(x) for x in lines[:line])
        length = len(lines[line])
        if at == -3:  # inside the cup's escape (the writer's JSON is ASCII): `\\u26` kept
            offset = lines[line].index(b"\\u2615") + 4
        else:
            offset = {1: 1, -2: length // 2, -1: length - 1}[at]
        data = data[:start + offset]
    path.write_bytes(data + after)


def _get(app: ObserverApp, page: str) -> tuple[str, bytes]:
    path, _, query = page.partition("?")
    status: list[str] = []
    body = b"".join(app({"PATH_INFO": path, "QUERY_STRING": query, "HTTP_HOST": "localhost",
                         "REQUEST_METHOD": "GET"}, lambda s, headers: status.append(s)))
    return status[0], body


PAGES = ["/", "/api/tasks", "/metrics", "/tasks/torn", "/task/torn", "/api/tasks/torn",
         "/tasks/torn/processes/web/logs", "/api/tasks/torn/processes/web/logs?run=2"]


@pytest.mark.parametrize("alive", [True, False], ids=["running", "lost"])
@pytest.mark.parametrize("cut", list(CUTS))
def test_every_page_of_a_task_whose_checkpoint_was_cut_short_answers(tmp_path, cut, alive):
    settings = RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=3600)
    sandbox = tmp_path / "sandbox"
    registered_task(settings, sandbox, "torn", RECORDS, alive=alive)
    (sandbox / ".logs/web/2").mkdir(parents=True)
    (sandbox / ".logs/web/2/stdout").write_text("hello\n")
    _cut(checkpoint_path(sandbox), *CUTS[cut])
    app = ObserverApp(Reader(settings), loopback=True)
    answers = {page: _get(app, page) for page in PAGES}
    failed = {page: (s, body[:300]) for page, (s, body) in answers.items() if not s.startswith(("200", "404"))}
    assert not failed, failed
    listed = json.loads(answers["/api/tasks"][1])
    assert [row["task_id"] for row in listed] == ["torn"], listed
    assert b"torn" in answers["/"][1] and b"torn" in answers["/tasks/torn"][1]
    shown = json.loads(answers["/api/tasks/torn"][1])["status"]
    line, at, _ = CUTS[cut]
    if at == -1:  # a whole record whose newline was cut off: read as it is
        assert not shown.get("warnings") and not shown.get("problem"), shown
    elif line == 0:  # no whole record: told as its supervisor's, running or gone
        assert "holds no record" in shown["problem"], shown
    else:
        assert [w for w in shown["warnings"] if "a torn line" in w and w.endswith("skipped")], shown
        assert b"a torn line at offset" in answers["/tasks/torn"][1]
    assert (shown["state"] == "LOST") is not alive, shown


def _shown(app: ObserverApp) -> dict:
    status, body = _get(app, "/api/tasks/torn")
    assert status.startswith("200"), (status, body[:300])
    return json.loads(body)["status"]


def test_a_running_task_s_page_read_between_a_short_write_and_its_cut_back(tmp_path, monkeypatch):
    """The observer keeps a running task's fold and goes on from it with what is appended: a
    page read while the disk, full, had cut a record short (the supervisor not yet done with
    it) shows the torn line skipped; once the writer cut it back off and wrote it whole, the
    next shows that record, and no torn line, as a whole replay does."""
    settings = RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=3600)
    with limits.tmpfs(tmp_path / "fs") as fs:
        sandbox = fs / "sandbox"
        registered_task(settings, sandbox, "torn", RECORDS, alive=True)
        app = ObserverApp(kept_reader(settings), loopback=True)
        assert not _shown(app).get("warnings")
        writer = CheckpointWriter(sandbox)
        seen, cut = [], os.ftruncate

        def read_then_cut(fd: int, size: int) -> None:
            seen.append((os.fstat(fd).st_size - size, _shown(app)))
            cut(fd, size)

        monkeypatch.setattr(checkpoint.os, "ftruncate", read_then_cut)
        filler = limits.fill(fs)
        run = 2
        while not seen:  # until a record crosses into a page the full disk cannot give
            run += 1
            record = {**LAST, "run": run, "reason": "a reason " * 50}
            try:
                writer.append(record)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
        filler.unlink()
        writer.append(record)  # written again, whole, as the journal does once it fits
        writer.close()
        after, whole = _shown(app), _shown(ObserverApp(Reader(settings), loopback=True))
    (torn_bytes, during), = seen
    assert torn_bytes > 0, "the write was not cut short: no torn line to read"
    assert [w for w in during["warnings"] if "a torn line" in w], during
    assert not after.get("warnings"), after
    assert after == whole  # the fold gone on with shows what a whole replay shows
    (web,) = after["attempts"][-1]["processes"]
    assert [r["run"] for r in web["runs"]] == list(range(2, run + 1)), web["runs"]
    assert web["runs"][0]["state"] == "FAILED" and web["runs"][0]["exit_code"] == 1, web["runs"][0]
