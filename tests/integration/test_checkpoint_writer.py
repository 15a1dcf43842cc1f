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
