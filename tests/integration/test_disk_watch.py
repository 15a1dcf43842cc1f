"""The disk-limit check's owner side (`executor/task/diskwatch.py`'s `DiskWatch`) over a real
sandbox: the sample a real sampling thread posts, what the owner is told of it (the reason to
fail the task, once it is over the limit), the line of each (DEBUG; WARNING for a sample that
failed; ERROR for the limit exceeded), the readers' record of each sample, and the schedule:
the next sample an interval after one ends, none while one runs, none after the stop. The
schedule's clock is the tests' fake one (`FakeClock`); the walk and its thread are real."""
from __future__ import annotations

import logging
import queue
import re
import threading
from pathlib import Path

import pytest

from executor.events import DiskSampled
from executor.task.diskwatch import DiskWatch, disk_check
from tests.support.fake_clock import FakeClock

pytestmark = pytest.mark.timeout(60)

KB = 1024


def _watch(sandbox: Path, limit_bytes: int, clock: FakeClock) -> tuple[DiskWatch, queue.SimpleQueue, list]:
    posted: queue.SimpleQueue = queue.SimpleQueue()
    recorded: list[DiskSampled] = []
    watch = DiskWatch("t.0", sandbox, limit_bytes, disk_check(sandbox, 60.0, under_agent=False), posted.put,
                      clock=clock, record=recorded.append)
    return watch, posted, recorded


def _lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "executor.task.diskwatch"]


def test_a_sample_under_the_limit_is_one_debug_line_recorded_and_the_next_is_an_interval_later(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="executor.task.diskwatch")
    (tmp_path / "data").write_bytes(b"x" * 8 * KB)
    clock = FakeClock(100.0)
    watch, posted, recorded = _watch(tmp_path, 10 * 1024 * KB, clock)
    watch.start()
    assert watch.deadline_at() is None  # one runs
    watch.tick()  # none while one runs
    sample = posted.get(timeout=10)
    assert posted.empty() and sample.used_bytes >= 8 * KB and sample.files == 1 and sample.error == ""
    assert 0 < sample.secs < 10
    clock.advance_to(130.0)
    assert watch.sampled(sample) is None
    assert recorded == [sample] and watch.deadline_at() == 130.0 + 60.0
    [(level, line)] = [(lv, t) for lv, t in _lines(caplog) if t.startswith("disk_sample ")]
    assert level == logging.DEBUG and line == (
        f"disk_sample task=t.0 used_bytes={sample.used_bytes} limit_bytes={10 * 1024 * KB} files={sample.files} "
        f"unreadable=0 secs={round(sample.secs, 3)}")
    watch.stop()
    assert watch.deadline_at() is None


def test_a_sandbox_over_its_limit_is_the_reason_to_fail_the_task_with_an_error_line(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="executor.task.diskwatch")
    (tmp_path / "data").write_bytes(b"x" * 8 * KB)
    watch, posted, recorded = _watch(tmp_path, KB, FakeClock(100.0))
    watch.start()
    sample = posted.get(timeout=10)
    reason = watch.sampled(sample)
    assert reason == f"Disk limit exceeded.  Reserved {KB} bytes vs used {sample.used_bytes} bytes."
    assert _lines(caplog) == [(logging.ERROR, f'disk_limit_exceeded task=t.0 reason="{reason}"')]
    assert recorded == [sample] and watch.deadline_at() is None  # no sample after it


def test_a_sample_that_failed_is_a_warning_and_the_check_goes_on(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="executor.task.diskwatch")
    clock = FakeClock(100.0)
    watch, posted, recorded = _watch(tmp_path / "gone", KB, clock)  # a sandbox that cannot be read
    watch.start()
    sample = posted.get(timeout=10)
    assert sample.used_bytes is None
    assert sample.error == f"the sandbox {tmp_path}/gone cannot be read: No such file or directory"
    assert watch.sampled(sample) is None and recorded == [sample]
    assert _lines(caplog) == [(logging.WARNING, f'disk_sample_failed task=t.0 reason="{sample.error}; '
                                                f'the next sample in 60 s"')]
    assert watch.deadline_at() == 100.0 + 60.0
    clock.advance_to(160.0)
    watch.tick()  # due: the next sample starts
    assert posted.get(timeout=10).used_bytes is None


def test_a_walk_that_raises_is_an_error_line_with_its_traceback_and_a_failed_sample(tmp_path, caplog, monkeypatch):
    from executor.task import diskusage

    def measure(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug in the walk")

    monkeypatch.setattr(diskusage, "measure", measure)
    caplog.set_level(logging.INFO, logger="executor.task.diskwatch")
    watch, posted, _ = _watch(tmp_path, KB, FakeClock(100.0))
    watch.start()
    sample = posted.get(timeout=10)
    assert (sample.used_bytes, sample.error) == (None, "internal error: RuntimeError: a bug in the walk")
    [record] = [r for r in caplog.records if r.getMessage().startswith("disk_sample_internal_error")]
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert record.getMessage() == 'disk_sample_internal_error task=t.0 error="RuntimeError: a bug in the walk"'


def test_a_sampling_thread_that_cannot_start_is_a_failed_sample(tmp_path, caplog, monkeypatch):
    from executor.task import diskwatch

    def start_thread(thread: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(diskwatch, "start_thread", start_thread)
    caplog.set_level(logging.INFO, logger="executor.task.diskwatch")
    watch, posted, recorded = _watch(tmp_path, KB, FakeClock(100.0))
    watch.start()
    assert posted.empty() and [s.error for s in recorded] == ["the sampling thread could not start "
                                                              "(can't start new thread)"]
    assert _lines(caplog)[0][0] == logging.WARNING and watch.deadline_at() == 100.0 + 60.0


def test_a_walk_the_task_s_stop_cuts_is_one_debug_line_from_a_daemon_thread(tmp_path, caplog, monkeypatch):
    from executor.task import diskusage

    for d in range(5):
        (tmp_path / f"d{d}").mkdir()
    begun, go = threading.Event(), threading.Event()
    real = diskusage.measure

    def measure(*args: object, **kwargs: object) -> object:
        begun.set()
        go.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(diskusage, "measure", measure)
    caplog.set_level(logging.DEBUG, logger="executor.task.diskwatch")
    watch, posted, _ = _watch(tmp_path, KB, FakeClock(100.0))
    watch.start()
    assert begun.wait(10)
    sampler = next(t for t in threading.enumerate() if t.name == "disk-sample t.0")
    assert sampler.daemon  # never waited for: a walk held in a system call holds up no exit
    watch.stop()
    go.set()
    sampler.join(10)
    [(level, line)] = _lines(caplog)
    took = re.fullmatch(r"disk_sample_cancelled task=t\.0 secs=(\d+\.\d{1,3})", line)
    assert level == logging.DEBUG and took is not None and float(took[1]) < 10, line
    assert posted.empty()
