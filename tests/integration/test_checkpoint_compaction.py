"""The checkpoint's compaction on disk: the file stays small and replays to the same view, a
crash at any step of a compaction loses nothing, a compaction that fails (no descriptor left
included) is tried again later, and the lines it keeps: a header over the readers' cap this
process wrote, never a longer line a task planted. Records as test_checkpoint.py's."""
import json
import math
import os
import subprocess
import sys
import threading

import pytest

from executor.task import checkpoint, checkpointcompact
from executor.task.checkpoint import CheckpointWriter, checkpoint_path, read_records
from executor.task.checkpointbetween import append_between
from executor.task.replay import replay
from tests.integration.test_checkpoint import HEADER, STORY
from tests.support.limits import KEEP_LOG_LINES
from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(10)


def health(n: int) -> dict:
    return {"kind": "health", "outcome": "passed", "reason": "", "latency_secs": 0.001,
            "state": "RUNNING", "attempts": n, "consecutive_failures": 0,
            "consecutive_successes": n, "wall": 1000.0 + n}


def test_the_file_stays_small_and_replays_to_the_same_view(tmp_path):
    writer = CheckpointWriter(tmp_path, compact_min_bytes=8192)
    written = list(STORY)
    writer.append_many(STORY)
    biggest = 0
    for first in range(1, 3001, 10):  # one fsync'd batch per step, as the owner writes
        batch = [health(n) for n in range(first, first + 10)]
        writer.append_many(batch)
        written += batch
        biggest = max(biggest, checkpoint_path(tmp_path).stat().st_size)
    writer.close()
    assert biggest < 2 * 8192 + 4096  # never past twice the threshold and one batch
    assert replay(read_records(tmp_path)) == replay(written)
    assert replay(read_records(tmp_path)).health.attempts == 3000
    assert not (tmp_path / ".stoker" / "checkpoint.jsonl.compact").exists()


class Crash(BaseException):
    """The process dies here (not an OSError: nothing may handle it)."""


STEPS = ["open the new file", "half written", "before its fsync", "before the rename",
         "before the directory's fsync"]


@pytest.mark.parametrize("step", STEPS)
def test_a_crash_at_any_step_of_a_compaction_loses_nothing(tmp_path, monkeypatch, step):
    writer = CheckpointWriter(tmp_path, compact_min_bytes=4096)
    written = list(STORY)
    writer.append_many(STORY)
    compacting = threading.Event()
    real_compact = CheckpointWriter._compact
    real_write, real_open = checkpointcompact.write_all, checkpointcompact.open_append
    real_fsync, real_rename = os.fsync, os.rename

    def compact(self):
        compacting.set()
        return real_compact(self)

    def crash_if(this: str) -> None:
        if compacting.is_set() and step == this:
            raise Crash(this)

    def open_append(dir_fd, name, truncate=False):
        if name == checkpoint.COMPACT_FILE:
            crash_if("open the new file")
        return real_open(dir_fd, name, truncate)

    def write_all(fd, data):
        if compacting.is_set() and step == "half written":
            real_write(fd, data[: len(data) // 2])
            raise Crash(step)
        real_write(fd, data)

    def fsync(fd):
        crash_if("before its fsync" if fd != writer._dir else "before the directory's fsync")
        real_fsync(fd)

    def rename(*args, **kwargs):
        crash_if("before the rename")
        real_rename(*args, **kwargs)

    monkeypatch.setattr(CheckpointWriter, "_compact", compact)
    monkeypatch.setattr(checkpointcompact, "write_all", write_all)  # the compaction's writes
    monkeypatch.setattr(checkpointcompact, "open_append", open_append)
    monkeypatch.setattr(checkpoint.os, "fsync", fsync)
    monkeypatch.setattr(checkpoint.os, "rename", rename)
    with pytest.raises(Crash):
        for n in range(1, 1000):
            written.append(health(n))
            writer.append(health(n))
    monkeypatch.undo()
    for fd in {writer._fd, writer._dir}:  # the process is gone: its fds with it
        os.close(fd)
    assert replay(read_records(tmp_path)) == replay(written)  # every record is there
    again = CheckpointWriter(tmp_path, compact_min_bytes=4096)  # the next supervisor
    assert not (tmp_path / ".stoker" / checkpoint.COMPACT_FILE).exists()
    more = [health(n) for n in range(1000, 1400)]
    again.append_many(more)
    again.close()
    assert replay(read_records(tmp_path)) == replay(written + more)


def test_a_compaction_that_fails_keeps_the_file_and_tries_again_later(tmp_path, monkeypatch, caplog):
    writer = CheckpointWriter(tmp_path, compact_min_bytes=4096)
    writer.append_many(STORY)
    real_rename = os.rename
    failures = []

    def rename(*args, **kwargs):
        failures.append(args)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.os, "rename", rename)
    for n in range(1, 200):
        writer.append(health(n))
    monkeypatch.setattr(checkpoint.os, "rename", real_rename)
    size = checkpoint_path(tmp_path).stat().st_size
    assert 1 <= len(failures) <= 1 + math.log2(size / 4096)  # once per doubling, not per append
    assert "checkpoint_compaction_failed" in caplog.text
    assert replay(read_records(tmp_path)).health.attempts == 199
    writer.close()


# The first compaction loads its module (`checkpointcompact`, with `compaction`), and a
# supervisor may have no descriptor left then (the import opens the module's file): in a
# fresh interpreter, where neither is loaded yet, EMFILE is that compaction failing (the
# records kept, tried again once the file doubled), not an error out of the write.
EMFILE_CHILD = """
import json, logging, sys
from pathlib import Path
from executor.task.checkpoint import CheckpointWriter
from tests.support.limits import no_descriptor_left
""" + KEEP_LOG_LINES + """
story, more = json.loads(sys.argv[2])
writer = CheckpointWriter(Path(sys.argv[1]), compact_min_bytes=4096)
writer.append_many(story)
with no_descriptor_left():
    for doc in more[:100]:
        writer.append(doc)
    without = "executor.task.checkpointcompact" in sys.modules
for doc in more[100:]:
    writer.append(doc)
writer.close()
print(json.dumps({"without": without, "after": "executor.task.checkpointcompact" in sys.modules, "lines": lines}))
"""


def test_a_first_compaction_with_no_descriptor_left_fails_and_is_done_later(tmp_path):
    more = [health(n) for n in range(1, 300)]
    done = subprocess.run([sys.executable, "-c", EMFILE_CHILD, str(tmp_path), json.dumps([STORY, more])],
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert (seen["without"], seen["after"]) == (False, True), seen
    assert any("checkpoint_compaction_failed" in line and "Too many open files" in line for line in seen["lines"]), seen
    assert replay(read_records(tmp_path)) == replay(STORY + more)
    assert checkpoint_path(tmp_path).stat().st_size < 8192  # compacted since


def test_a_header_over_the_line_cap_outlives_the_record_written_between_two_attempts(tmp_path):
    """`stoker run` writes the restart record between two attempts with a writer of its own
    (`checkpointbetween.append_between`); past 64 KiB it compacts the file. Its compaction read
    lines up to the longest it had written itself, one restart record, so the attempt's header
    over the readers' 1 MiB (10,000 processes), written by the attempt's writer in the same
    process, was dropped: `stoker status` said `task ?` with no warning, the attempt's
    processes WAITING. A line this process wrote is read back by any of its writers (its
    length costs no more memory than writing it did)."""
    many = [f"process-{number:05d}-{'n' * 100}" for number in range(10_000)]
    writer = CheckpointWriter(tmp_path)
    writer.append_many([{**HEADER, "processes": many}, *STORY[1:]])
    writer.close()
    append_between(tmp_path, {"kind": "restart", "delay_secs": 1.0, "reason": "failed"}, "hello.0")
    first = checkpoint_path(tmp_path).read_bytes().split(b"\n")[0]
    assert len(first) > 1 << 20  # (was: 119,323 bytes in all, the summary first)
    assert json.loads(first)["processes"] == many


def test_a_line_longer_than_any_this_process_wrote_is_still_dropped_by_a_compaction(tmp_path):
    """The cap grows only with what the process itself wrote: a line a task planted past it
    (2 MiB more than the longest written) is not read into memory, and not kept."""
    writer = CheckpointWriter(tmp_path, compact_min_bytes=8192)
    writer.append_many(STORY)
    longest = checkpoint._longest_written
    with open(checkpoint_path(tmp_path), "ab") as planted:
        planted.write(b'{"kind":"header","task":"' + b"x" * (longest + (2 << 20)) + b'"}\n')
    writer.append_many([health(n) for n in range(1, 11)])
    writer.close()
    assert checkpoint_path(tmp_path).stat().st_size < 8192
    assert replay(read_records(tmp_path)).health.attempts == 10
