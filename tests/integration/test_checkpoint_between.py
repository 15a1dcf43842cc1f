"""One record written to a task's checkpoint between two attempts
(`executor/task/checkpointbetween.py`): it lands; a `.stoker` that cannot be had, or a disk
too full for it, costs that record, said in one WARNING line naming why; the directory fd it
was given is closed either way."""
from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import pytest

from executor import describe_os_error
from executor.host.sandbox import open_stoker_dir
from executor.procs.sandboxfs import UnsafePath
from executor.task.checkpoint import CheckpointWriter
from executor.task.checkpointbetween import append_between
from tests.support.limits import closed, fill, tmpfs
from tests.support.logevents import lines
from tests.support.stoker_proc import checkpoint_records

RECORD = {"kind": "restart", "delay_secs": 1.0, "reason": "failed"}
EMFILE, ENOSPC = (OSError(e, os.strerror(e)) for e in (errno.EMFILE, errno.ENOSPC))


def started(sandbox: Path) -> list[dict[str, object]]:
    """A checkpoint as an attempt left it (one record); its records."""
    writer = CheckpointWriter(sandbox)
    writer.append({"kind": "task", "from": "RUNNING", "to": "FAILED", "reason": "exit 1"})
    writer.close()
    return checkpoint_records(sandbox)


def test_the_record_lands_in_the_stoker_dir_given_and_its_fd_is_closed(tmp_path, caplog):
    started(tmp_path)
    given: list[int] = []

    def stoker_dir() -> int:
        given.append(open_stoker_dir(tmp_path))
        return given[-1]

    append_between(tmp_path, RECORD, "t.0", stoker_dir)
    last = checkpoint_records(tmp_path)[-1]
    assert {k: v for k, v in last.items() if k != "wall"} == RECORD and isinstance(last["wall"], float)
    assert closed(given[0]) and caplog.records == []


@pytest.mark.parametrize(("error", "said"), [
    (EMFILE, describe_os_error(EMFILE)),
    (UnsafePath("/s/.stoker is a symlink"), "/s/.stoker is a symlink"),
    (ValueError("a NUL in the path"), "a NUL in the path"),
], ids=["oserror", "unsafe", "valueerror"])
def test_a_stoker_dir_that_cannot_be_had_costs_the_record_in_one_warning(tmp_path, caplog, error, said):
    before = started(tmp_path)

    def stoker_dir() -> int:
        raise error

    append_between(tmp_path, RECORD, "t.0", stoker_dir)
    assert checkpoint_records(tmp_path) == before
    assert lines(caplog, "checkpoint_unavailable") == [
        f'checkpoint_unavailable task=t.0 reason="{said}" records_lost=1']
    assert [(r.name, r.levelno) for r in caplog.records] == [("executor.task.checkpointbetween", logging.WARNING)]


def test_a_full_disk_costs_the_record_in_one_warning(tmp_path, caplog):
    with tmpfs(tmp_path / "sandbox", "64k") as sandbox:
        before = started(sandbox)
        fill(sandbox)
        append_between(sandbox, {**RECORD, "reason": "x" * 8192}, "t.0")  # past the slack of the file's last page
        assert checkpoint_records(sandbox) == before
    assert lines(caplog, "checkpoint_write_failed") == [
        f'checkpoint_write_failed task=t.0 error="{describe_os_error(ENOSPC)}" records_lost=1']
    assert [(r.name, r.levelno) for r in caplog.records] == [("executor.task.checkpointbetween", logging.WARNING)]
