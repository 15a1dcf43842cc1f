"""`executor/task/checkpointcompact.py`, the compaction as a file: a `.compact` file the task
planted beside the checkpoint is written over, never into the checkpoint; one that fails
before its rename leaves none; its DEBUG line says what it did; and the records it is fed
are read with a sparse checkpoint's holes stepped over (a terabyte appended by the task
costs nothing). Records as tests/integration/test_checkpoint.py's."""
from __future__ import annotations

import logging
import os

import pytest

from executor.task import checkpoint, checkpointcompact
from executor.task.checkpoint import COMPACT_FILE, CheckpointWriter, checkpoint_path, read_records
from executor.task.replay import replay
from tests.integration.test_checkpoint import STORY
from tests.integration.test_checkpoint_compaction import health
from tests.integration.test_tail import bytes_read_by_this_process

pytestmark = pytest.mark.timeout(10)


def test_a_compact_file_planted_before_a_compaction_is_written_over(tmp_path):
    writer = CheckpointWriter(tmp_path, compact_min_bytes=4096)
    written = list(STORY)
    writer.append_many(STORY)
    (tmp_path / ".stoker" / COMPACT_FILE).write_bytes(b'{"kind": "planted"}\n' * 100)
    n, inode = 0, checkpoint_path(tmp_path).stat().st_ino
    while checkpoint_path(tmp_path).stat().st_ino == inode:  # until the first compaction's rename
        n += 1
        written.append(health(n))
        writer.append(health(n))
    text = checkpoint_path(tmp_path).read_bytes()
    writer.close()
    assert b"planted" not in text  # (a later compaction would drop the lines of no known kind)
    assert replay(read_records(tmp_path)) == replay(written)


def test_a_compaction_that_fails_before_its_rename_leaves_no_compact_file(tmp_path, monkeypatch):
    writer = CheckpointWriter(tmp_path, compact_min_bytes=4096)
    writer.append_many(STORY)
    failures = []

    def fsync(fd: int) -> None:
        failures.append(fd)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(checkpointcompact.os, "fsync", fsync)
    with pytest.raises(OSError, match="Input/output error"):
        checkpointcompact.FileCompaction(writer._fd).replace(writer._dir, 0, "hello.0")
    assert failures and not (tmp_path / ".stoker" / COMPACT_FILE).exists()
    monkeypatch.undo()
    writer.close()


def test_a_compaction_says_what_it_did_in_one_debug_line(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="executor.task.checkpointcompact")
    writer = CheckpointWriter(tmp_path, label="hello.0", compact_min_bytes=4096)
    writer.append_many(STORY)
    n = 0
    while not (lines := [r.stoker_fields for r in caplog.records
                         if getattr(r, "stoker_event", "") == "checkpoint_compacted"]):
        n += 1
        writer.append(health(n))
    compacted = checkpoint_path(tmp_path).stat().st_size
    writer.close()
    (fields,) = lines
    assert fields == {"task": "hello.0", "bytes_before": fields["bytes_before"], "bytes_after": compacted,
                      "records": len(read_records(tmp_path))}
    assert fields["bytes_before"] > 4096 > compacted


def test_the_records_fed_to_a_compaction_step_over_a_sparse_checkpoint_s_hole(tmp_path):
    writer = CheckpointWriter(tmp_path)
    writer.append_many(STORY)
    path = checkpoint_path(tmp_path)
    size = path.stat().st_size
    os.truncate(path, size + (1 << 30))  # 1 GiB of hole, no newline in it
    with open(path, "ab") as f:
        f.write(b"\n" + checkpoint.json_line(health(1)).encode())
    before = bytes_read_by_this_process()
    records = list(checkpointcompact.stream_records(writer._fd, path.stat().st_size))
    assert bytes_read_by_this_process() - before < 1 << 20
    assert records == [*STORY, health(1)]
    writer.close()
