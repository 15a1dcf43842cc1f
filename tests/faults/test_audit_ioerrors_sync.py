"""The checkpoint when its syncs fail: part of the I/O-error audit (`test_audit_ioerrors.py`).

- The directory sync that makes a compaction's rename durable (and the one that makes the
  checkpoint's creation durable) was tried once and its failure ignored: records written
  after it went into a file a crash could unlink (the rename undone), while the writer
  called them synced. Such a step is now held like one whose write failed, until the
  name is made again (a compaction: a later sync of the directory may succeed without
  writing what the failed one did not; on a real device the checkpoint was gone after a
  remount) and synced; the held records are not encoded or written meanwhile (each step
  wrote them all, about 3 MB, and cut them back off).
- Once a thousand records are held (a checkpoint that cannot be written), they are tried
  again every few seconds, not at each step (60 ms of CPU a step for 10,000).
- Pinned, no change: a sync that fails once (injected, and on a real device whose writes
  fail, read back after a remount): its step is written again whole.
"""
from __future__ import annotations

import errno
import logging
import os
import stat
import time
from collections.abc import Callable

import pytest

from executor.events import ProcessState
from executor.task import checkpoint
from executor.task.checkpoint import CheckpointWriter, read_records
from executor.task.journal import Journal
from executor.task.records import ProcessRecord
from tests.support import faultyfs
from tests.support.journalsteps import HEADER

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]

def _run(journal: Journal, run: int) -> None:
    journal._pending.append(ProcessRecord(
        process="web", run=run, from_=ProcessState.WAITING, to=ProcessState.RUNNING,
        reason="x" * 200, pid=1000 + run, wall=1_700_000_001.0 + run))


class SyncFails:
    """os.fsync of a directory (`kind=stat.S_ISDIR`) or of a regular file (`stat.S_ISREG`)
    fails with EIO `times` times; the other kind's syncs work."""

    def __init__(self, times: int, kind: Callable[[int], bool] = stat.S_ISDIR) -> None:
        self.left = times
        self.failed = 0
        self._kind = kind
        self._real = os.fsync

    def __call__(self, fd: int) -> None:
        if self.left and self._kind(os.fstat(fd).st_mode):
            self.left -= 1
            self.failed += 1
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        self._real(fd)


def _compacted_with_failing_syncs(sandbox, monkeypatch, times: int) -> tuple[Journal, SyncFails, int]:
    """A journal over a small checkpoint whose directory syncs fail `times` times, stepped
    until a step compacted the checkpoint (its directory sync the first to fail): the
    journal, the failing fsync, and the next run's number."""
    writer = CheckpointWriter(sandbox, label="web.0", compact_min_bytes=4096)
    journal = Journal("web.0", wall_clock=lambda: 1_700_000_000.0)
    journal.open(writer, HEADER)
    journal.flush()
    fails = SyncFails(times=times)
    monkeypatch.setattr(checkpoint.os, "fsync", fails)
    run = 0
    while fails.failed == 0 and run < 100:  # until a step compacts the checkpoint
        _run(journal, run)
        journal.flush()
        run += 1
    assert fails.failed == 1, "no compaction happened"
    return journal, fails, run


def test_a_failed_directory_sync_after_a_compaction_holds_the_next_records(
        tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    sandbox = tmp_path / "sandbox"
    # the compaction's directory sync fails, then the next step's
    journal, fails, run = _compacted_with_failing_syncs(sandbox, monkeypatch, times=2)
    _run(journal, run)
    journal.flush()  # its directory sync fails too: held, not claimed synced
    held = len(journal._pending)
    _run(journal, run + 1)
    journal.flush()  # the directory syncs: everything held lands
    journal.close()
    pids = [r["pid"] for r in read_records(sandbox) if r.get("kind") == "process"]
    assert held >= 1, "a step whose directory sync failed was called durable"
    assert pids == sorted(set(pids)) and pids[-2:] == [1000 + run, 1001 + run], pids
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2 and "EIO" in " ".join(errors), errors  # the compaction's, the step's
    assert "checkpoint_write_recovered" in caplog.text


def test_while_the_directory_sync_keeps_failing_the_held_records_are_not_written(
        tmp_path, monkeypatch, caplog):
    """A directory whose sync never works again (a bad block under it): each step used to
    encode and write every held record (up to 10,000, about 3 MB), sync them, and cut them
    back off, 65 ms of CPU and 3 MB of disk writes per step for a chatty task. The name is
    now made again (a compaction: what is kept) and synced first: the held records wait."""
    caplog.set_level(logging.INFO)
    sandbox = tmp_path / "sandbox"
    journal, fails, run = _compacted_with_failing_syncs(sandbox, monkeypatch, times=1_000_000)
    encoded: list[int] = []
    real_with_wall = checkpoint._with_wall
    monkeypatch.setattr(checkpoint, "_with_wall", lambda r, now: encoded.append(1) or real_with_wall(r, now))
    before = read_records(sandbox)
    for more in range(1, 6):
        _run(journal, run + more)
        journal.flush()
    assert len(journal._pending) == 5 and fails.failed == 6, (len(journal._pending), fails.failed)
    assert encoded == [], f"{len(encoded)} held records encoded while the directory sync failed"
    assert read_records(sandbox) == before
    fails.left = 0  # it works again: everything held lands, once, in order
    _run(journal, run + 6)
    journal.flush()
    journal.close()
    pids = [r["pid"] for r in read_records(sandbox) if r.get("kind") == "process"]
    assert pids == [1000 + n for n in range(run)] + [1000 + run + n for n in range(1, 7)], pids
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2, errors  # the compaction's sync, the first held step: not one a step


class ReadOnlySink:
    """A checkpoint on a file system turned read-only: each write fails (EROFS), after the
    records were encoded (what a write costs)."""

    def __init__(self) -> None:
        self.tries = 0
        self.failing = True
        self.records: list[dict] = []

    def append_many(self, records) -> None:
        self.tries += 1
        docs = [dict(r) for r in records]
        if self.failing:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        self.records.extend(docs)

    def close(self, ended: bool = False) -> None:
        self.failing = True


def test_many_held_records_are_tried_again_once_every_few_seconds(monkeypatch):
    """A chatty task on a read-only sandbox holds up to 10,000 records; each step encoded
    them all for a write that failed: 60 ms of CPU a step, 30% of a core at five steps a
    second. Once a thousand are held, a step tries again only every `HELD_RETRY_SECS`."""
    from executor.task import journal as journal_module

    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])  # the journal's clock
    monkeypatch.setattr(journal_module, "HELD_RETRY_FROM", 50)  # (1,000: a slow test)
    sink = ReadOnlySink()
    journal = Journal("web.0", wall_clock=lambda: 1_700_000_000.0)
    journal.open(sink, HEADER)
    for run in range(journal_module.HELD_RETRY_FROM + 10):
        _run(journal, run)
        journal.flush()
    tries = sink.tries
    assert tries <= journal_module.HELD_RETRY_FROM + 1, tries  # every step, while few are held
    for run in range(100):
        _run(journal, 5000 + run)
        journal.flush()
    assert sink.tries == tries, sink.tries - tries
    sink.failing = False
    now[0] += journal_module.HELD_RETRY_SECS
    journal.flush()
    assert not journal._pending and len(sink.records) == journal_module.HELD_RETRY_FROM + 111


def test_a_step_whose_sync_failed_once_is_written_again_whole_with_the_next(
        tmp_path, monkeypatch, caplog):
    """The fsyncgate case: a sync that failed once and works again. The failed step's
    records are not called synced on the strength of the next sync (which could succeed
    for pages the kernel dropped): they are cut back off and written again, once each."""
    caplog.set_level(logging.INFO)
    sandbox = tmp_path / "sandbox"
    journal = Journal("web.0", wall_clock=lambda: 1_700_000_000.0)
    journal.open(CheckpointWriter(sandbox, label="web.0"), HEADER)
    _run(journal, 0)
    journal.flush()
    monkeypatch.setattr(checkpoint.os, "fsync", SyncFails(times=1, kind=stat.S_ISREG))
    _run(journal, 1)
    journal.flush()  # its sync fails: held
    held = len(journal._pending)
    on_disk = [r.get("pid") for r in read_records(sandbox) if r.get("kind") == "process"]
    _run(journal, 2)
    journal.flush()
    journal.close()
    pids = [r["pid"] for r in read_records(sandbox) if r.get("kind") == "process"]
    assert held == 1 and on_disk == [1000], (held, on_disk)  # cut back off, not left unsynced
    assert pids == [1000, 1001, 1002], pids
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "checkpoint_write_failed" in errors[0] and "EIO" in errors[0], errors
    assert "checkpoint_write_recovered" in caplog.text


def test_records_whose_sync_failed_on_a_real_device_reach_it_with_the_next_sync(tmp_path, caplog):
    """The fsyncgate case on a real device: the write lands in the page cache, its sync
    fails (the device cannot store it: EIO, or ENOSPC as the loop device passes on its
    file's), the kernel may drop those pages, and a later
    sync succeeds. Read back from the device (the file system mounted again), every
    record is there once, in order: the step whose sync failed was written again."""
    caplog.set_level(logging.INFO)
    with faultyfs.flaky(tmp_path / "fs", sync=False) as fs:
        sandbox = fs.path / "sandbox"
        journal = Journal("web.0", wall_clock=lambda: 1_700_000_000.0)
        journal.open(CheckpointWriter(sandbox, label="web.0"), HEADER)
        _run(journal, 0)
        journal.flush()
        fs.fail()
        run = 1
        while not journal._pending and run < 50:  # until a step's sync fails
            _run(journal, run)
            journal.flush()
            run += 1
        assert journal._pending, "no sync failed"
        fs.recover()
        for more in range(3):  # the first sync after it may still report the error
            _run(journal, run + more)
            journal.flush()
        journal.close()
        fs.remounted()
        pids = [r["pid"] for r in read_records(sandbox) if r.get("kind") == "process"]
    assert pids == [1000 + n for n in range(run + 3)], pids
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and ("EIO" in errors[0] or "ENOSPC" in errors[0]), errors


def test_records_after_a_failed_directory_sync_on_a_real_device_keep_their_name(tmp_path, caplog):
    """The fsyncgate case for the directory: the checkpoint is made while its directory's
    new block cannot reach the device, whose sync fails; once the device works, a later
    sync of the directory succeeds without writing what the failed one did not (Linux drops
    the page's error once reported). The records written then were called synced, and
    after a remount the file was gone, with them. The name is now made again (the file
    compacted to a new one and renamed over) before the directory is synced."""
    caplog.set_level(logging.INFO)
    with faultyfs.flaky(tmp_path / "fs", sync=False) as fs:
        sandbox = fs.path / "sandbox"
        sandbox.mkdir()
        os.sync()
        fs.fail()  # `.stoker`'s block, new, cannot reach the device
        journal = Journal("web.0", wall_clock=lambda: 1_700_000_000.0)
        journal.open(CheckpointWriter(sandbox, label="web.0"), HEADER)
        _run(journal, 0)
        journal.flush()
        assert journal._pending, "the directory synced with the device full"
        fs.recover()
        for run in range(1, 4):  # a sync after it may still report the error
            _run(journal, run)
            journal.flush()
        assert not journal._pending, "not written once the device worked again"
        journal.close()
        fs.remounted()
        written = read_records(sandbox)
    pids = [r["pid"] for r in written if r.get("kind") == "process"]
    assert [r["kind"] for r in written[:1]] == ["header"] and pids == [1000, 1001, 1002, 1003], written
