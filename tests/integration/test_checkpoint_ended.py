"""An ended task's checkpoint folded once more as its writer closes (`CheckpointWriter.close`
with `ended`, which the journal asks for once the task's terminal record is written): its
readers, for the days its registry entry stays, replay a few records, and the view they
show is the same. Records as test_checkpoint.py's; a real file, a real tmpfs for the disk
that fills."""
from __future__ import annotations

import logging

import pytest

from executor.events import TaskStage, TaskState, TaskTransition
from executor.task.checkpoint import (
    ENDED_COMPACT_BYTES,
    CheckpointWriter,
    checkpoint_path,
    json_line,
    read_records,
)
from executor.task.journal import Journal
from executor.task.replay import replay
from tests.integration.test_checkpoint import STORY
from tests.integration.test_checkpoint_compaction import health
from tests.support.fake_ports import FakeCheckpoint
from tests.support.journalsteps import HEADER, WALL, start_run
from tests.support.limits import fill, tmpfs

pytestmark = pytest.mark.timeout(30)

END = [{"kind": "task", "from": "STARTING", "to": "RUNNING", "reason": "started", "wall": 1001.0},
       {"kind": "task", "from": "RUNNING", "to": "FINISHED", "reason": "all processes finished",
        "wall": 2000.0}]


def written(directory, checks: int, *, ended: bool) -> tuple[int, int]:
    """A task's story, `checks` health records, its end; closed with `ended`: the file's
    size before the close and after it."""
    writer = CheckpointWriter(directory)
    writer.append_many(STORY)
    for first in range(1, checks + 1, 10):  # one batch a step, as the owner writes
        writer.append_many([health(n) for n in range(first, min(first + 10, checks + 1))])
    writer.append_many(END)
    before = checkpoint_path(directory).stat().st_size
    writer.close(ended=ended)
    return before, checkpoint_path(directory).stat().st_size


def test_an_ended_task_past_the_bound_is_folded_to_few_records_that_replay_to_the_same_view(tmp_path):
    folded, kept = tmp_path / "folded", tmp_path / "kept"
    before, after = written(folded, 150, ended=True)
    assert ENDED_COMPACT_BYTES <= before < 64 * 1024  # past this bound, under the running one's
    assert written(kept, 150, ended=False) == (before, before)  # not ended: left as written
    assert replay(read_records(folded)) == replay(read_records(kept))
    assert replay(read_records(folded)).health.attempts == 150
    assert after < before / 4 and len(read_records(folded)) < len(read_records(kept)) / 5
    assert not (folded / ".stoker" / "checkpoint.jsonl.compact").exists()


def test_an_ended_task_under_the_bound_is_left_as_written(tmp_path):
    before, after = written(tmp_path, 20, ended=True)
    assert before < ENDED_COMPACT_BYTES and after == before


def test_an_ended_task_at_the_bound_exactly_is_folded(tmp_path):
    writer = CheckpointWriter(tmp_path)
    writer.append_many(STORY + [health(n) for n in range(1, 60)])
    last = dict(END[-1], reason="")
    room = ENDED_COMPACT_BYTES - checkpoint_path(tmp_path).stat().st_size - len(json_line(last).encode())
    assert room > 0
    writer.append_many([dict(last, reason="r" * room)])
    assert checkpoint_path(tmp_path).stat().st_size == ENDED_COMPACT_BYTES
    writer.close(ended=True)
    assert checkpoint_path(tmp_path).stat().st_size < ENDED_COMPACT_BYTES  # (the long last record kept)


def test_a_close_not_told_of_an_end_leaves_the_file_as_written(tmp_path):
    """A writer closed plainly (the record `stoker run` writes between two attempts, a task
    stopped before its end was written) folds nothing."""
    writer = CheckpointWriter(tmp_path)
    writer.append_many(STORY + [health(n) for n in range(1, 151)] + END)
    before = checkpoint_path(tmp_path).read_bytes()
    writer.close()
    assert checkpoint_path(tmp_path).read_bytes() == before and len(before) > ENDED_COMPACT_BYTES


def test_a_fold_the_full_disk_refuses_leaves_the_file_whole_and_says_so(tmp_path, caplog):
    with tmpfs(tmp_path / "fs") as fs:
        writer = CheckpointWriter(fs)
        writer.append_many(STORY + [health(n) for n in range(1, 151)] + END)
        records = read_records(fs)
        filler = fill(fs)
        with caplog.at_level(logging.ERROR, logger="executor.task.checkpoint"):
            writer.close(ended=True)
        filler.unlink()
        assert read_records(fs) == records
        assert not (fs / ".stoker" / "checkpoint.jsonl.compact").exists()
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("checkpoint_compaction_failed ") and "ENOSPC" in line


def test_the_journal_asks_for_the_fold_only_once_the_end_is_written():
    killing = TaskTransition(TaskStage.RUNNING, TaskStage.KILLING, "stop", ends_as=TaskState.KILLED)
    killed = TaskTransition(TaskStage.KILLING, TaskStage.KILLED, "killed")
    ended, stopping = FakeCheckpoint(), FakeCheckpoint()
    for sink, steps in ((ended, (killing, killed)), (stopping, (killing,))):
        journal = Journal("web.0", wall_clock=lambda: WALL)
        journal.open(sink, HEADER)
        start_run(journal, 0)
        for step in steps:
            journal.transition(step)
        journal.close()
    assert (ended.closed, ended.closed_ended) == (True, True)
    assert (stopping.closed, stopping.closed_ended) == (True, False)  # KILLING: no end yet
