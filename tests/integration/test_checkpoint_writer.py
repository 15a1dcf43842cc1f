"""The checkpoint's writer at its small edges, on real files: where the next record starts
after a file's last byte (`_fresh_line`), the line's form (`json_line`), a `.stoker`
descriptor that cannot be duplicated, and a checkpoint that cannot be opened costing the
checkpoint, not the task (`open_writer`)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from executor.task.checkpoint import (
    CheckpointError,
    CheckpointWriter,
    NoCheckpoint,
    checkpoint_path,
    json_line,
    open_writer,
)
from tests.support.limits import no_descriptor_left

RECORD = {"kind": "task", "from": "", "to": "STARTING", "reason": "again", "wall": 1.0}


@pytest.mark.parametrize(("before", "after"), [
    (b"", b""),
    (b'{"kind":"header"}\n', b'{"kind":"header"}\n'),  # whole: no blank line between
    (b'{"kind":"header"}\n{"kind":"ta', b'{"kind":"header"}\n{"kind":"ta\n'),  # torn: a fresh line
    (b'{"kind":"header"}\n{', b'{"kind":"header"}\n{\n'),  # torn right after a newline
])
def test_a_record_starts_on_a_line_of_its_own_whatever_the_file_ends_with(tmp_path: Path, before: bytes,
                                                                         after: bytes) -> None:
    (tmp_path / ".stoker").mkdir()
    checkpoint_path(tmp_path).write_bytes(before)
    writer = CheckpointWriter(tmp_path)
    try:
        writer.append(RECORD)
    finally:
        writer.close()
    assert checkpoint_path(tmp_path).read_bytes() == after + json_line(RECORD).encode()


def test_a_line_is_compact_json_and_says_what_json_cannot_in_words(tmp_path: Path) -> None:
    assert json_line({"a": 1, "b": [2, 3], "path": tmp_path}) == f'{{"a":1,"b":[2,3],"path":"{tmp_path}"}}\n'


def test_a_stoker_directory_that_cannot_be_duplicated_is_refused_naming_the_checkpoint(tmp_path: Path) -> None:
    (tmp_path / ".stoker").mkdir()
    fd = os.open(tmp_path / ".stoker", os.O_RDONLY | os.O_DIRECTORY)
    try:
        with no_descriptor_left(), pytest.raises(CheckpointError) as caught:
            CheckpointWriter(tmp_path, stoker_dir=fd)
    finally:
        os.close(fd)
    assert str(caught.value) == (f"cannot open the checkpoint {checkpoint_path(tmp_path)}: "
                                 "Too many open files (EMFILE)")


def test_a_checkpoint_that_cannot_be_opened_costs_the_checkpoint_with_one_line(tmp_path: Path, caplog) -> None:
    (tmp_path / ".stoker").mkdir()
    os.mkfifo(checkpoint_path(tmp_path))  # a task's plant before a restart
    with caplog.at_level(logging.INFO, logger="executor.task.checkpoint"):
        writer = open_writer(tmp_path, "web.0")
    assert isinstance(writer, NoCheckpoint)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("ERROR", f'checkpoint_unavailable task=web.0 reason="cannot open the checkpoint '
                  f'{checkpoint_path(tmp_path)}: it is a FIFO, not a regular file; the task runs without a '
                  f'checkpoint"')]


def test_a_stoker_directory_renamed_away_is_said_once_naming_the_task(tmp_path: Path, caplog) -> None:
    """`say_if_moved` (a disk sample's write beside the checkpoint): one WARNING, the first
    time; none while `.stoker` is where it was, none again after."""
    writer = open_writer(tmp_path, "web.0")
    assert isinstance(writer, CheckpointWriter)
    try:
        with caplog.at_level(logging.INFO, logger="executor.task.checkpoint"):
            writer.say_if_moved()
            (tmp_path / ".stoker").rename(tmp_path / "elsewhere")
            writer.say_if_moved()
            writer.say_if_moved()
    finally:
        writer.close()
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", f'stoker_dir_moved task=web.0 reason="{tmp_path}/.stoker was renamed or removed since the task '
                    f'started (the directory is now {tmp_path}/elsewhere); the checkpoint and the files beside it '
                    'go on there" consequence="`stoker status`, `stoker ps`, `stoker kill` and the observer do not '
                    'find the task\'s state until it is renamed back to .stoker"')]


def _grow_until(writer: CheckpointWriter, caplog, event: str, first: int) -> tuple[int, int]:
    """Health records appended until `event` is logged: (the number of the next record, the
    file's size when it was: the size the compaction was tried at)."""
    from tests.integration.test_checkpoint_compaction import health

    n = first
    while not any(event in r.getMessage() for r in caplog.records):
        writer.append(health(n))
        n += 1
        assert n < first + 10_000, f"no {event}"
    return n, checkpoint_path(writer.path.parent.parent).stat().st_size


def test_a_compaction_that_fails_says_where_and_when_it_tries_again(tmp_path: Path, caplog) -> None:
    """A directory where the compaction's file goes (EISDIR): the records stay, one ERROR
    line naming the file, the error and the size of the next try, twice the file's then."""
    from tests.integration.test_checkpoint import STORY

    writer = CheckpointWriter(tmp_path, label="web.0", compact_min_bytes=4096)
    try:
        writer.append_many(STORY)
        (tmp_path / ".stoker" / "checkpoint.jsonl.compact").mkdir()
        with caplog.at_level(logging.INFO, logger="executor.task.checkpoint"):
            n, before = _grow_until(writer, caplog, "checkpoint_compaction_failed", 1)
            caplog.clear()
            _, again = _grow_until(writer, caplog, "checkpoint_compaction_failed", n)
    finally:
        writer.close()
    compact = tmp_path / ".stoker" / "checkpoint.jsonl.compact"
    assert again >= 2 * before
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("ERROR", f'checkpoint_compaction_failed task=web.0 file={compact} error="Is a directory (EISDIR)" '
                  f'next_try_bytes={2 * again}')]


def test_a_compactor_that_does_not_load_leaves_the_records_and_tries_again_at_twice_the_size(
        tmp_path: Path, caplog, monkeypatch) -> None:
    """`checkpointcompact.py` that does not load (an installation upgraded in place under the
    supervisor): the records stay in the file, one ERROR line, and the next try at twice its
    size."""
    import sys

    from tests.integration.test_checkpoint import STORY

    monkeypatch.setitem(sys.modules, "executor.task.checkpointcompact", None)  # its import fails
    writer = CheckpointWriter(tmp_path, label="web.0", compact_min_bytes=4096)
    try:
        writer.append_many(STORY)
        with caplog.at_level(logging.INFO, logger="executor.task.checkpoint"):
            n, before = _grow_until(writer, caplog, "checkpoint_compaction_not_loaded", 1)
            lines = [(r.levelname, r.getMessage()) for r in caplog.records]
            caplog.clear()
            end, again = _grow_until(writer, caplog, "checkpoint_compaction_not_loaded", n)
    finally:
        writer.close()
    assert again >= 2 * before
    assert lines == [
        ("ERROR", 'checkpoint_compaction_not_loaded task=web.0 error="ModuleNotFoundError: import of '
                  'executor.task.checkpointcompact halted; None in sys.modules" '
                  f'next_try_bytes={2 * before} reason="the installation\'s checkpointcompact.py does not fit this '
                  'supervisor (upgraded in place?): the checkpoint grows uncompacted"')]
    from executor.task.checkpoint import read_records
    assert len(read_records(tmp_path)) == len(STORY) + end - 1  # every record kept, none compacted away
