"""The observer's kept checkpoint views (`executor/task/viewcache.py`) and a change in the clock
tick of their reading: a file's times are the kernel's coarse clock's (whole seconds on an ext3,
or an ext4 of 128-byte inodes), so a checkpoint rewritten in place at the same size in the second
it was read has the stamp it had, and its kept view was answered (until the next change, or
forever for a task that ended). A view whose reading began within its window of its file's change
(`entrycache.racy`: FINE_RACY_NS for fine times, RACY_NS for whole seconds) is served again only
once what its fold read is still the whole file (hashed again), else replayed."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from config.registry import RegistrySettings
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.entrycache import FINE_RACY_NS, RACY_NS, EntryCache, fine, stamp_of
from executor.host.identity import own_identity
from executor.host.registry import Registry
from executor.observe.reader import Reader
from executor.task.checkpoint import open_checkpoint, records_at
from executor.task.inspection import inspect_sandbox
from executor.task.replay import Fold
from executor.task.viewcache import Seen, ViewCache, resumable
from tests.support.faultyfs import ext4
from tests.support.statuscli import RUNNING, header, write
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)
ME = own_identity()
GONE = ME.pid + 1_000_000  # a supervisor that is not running
FINISHED = {"kind": "task", "from": "RUNNING", "to": "FINISHED", "reason": "all processes ended", "wall": 1003.0}


def _task(root: Path, sandbox: Path, *, alive: bool) -> RegistrySettings:
    """A task in `sandbox` (its supervisor this test's process, or one gone that let go), alone
    in the registry `root`."""
    settings = RegistrySettings(registry_root=str(root), registry_retention_secs=3600)
    pid, start = (ME.pid, ME.start_ticks) if alive else (GONE, 1)
    write(sandbox, [header(pid, start), *RUNNING, *(() if alive else (FINISHED,))])
    Registry(settings).write(RegistryEntry(
        sandbox=str(sandbox), supervisor_pid=pid, supervisor_start=start, supervisor_boot=ME.boot_id,
        front_end=FrontEnd.RUN, registered_wall=time.time(), task_id="web-0-1",
        ended_wall=None if alive else time.time()), prune=False)
    return settings


def _pid(reader: Reader) -> int | None:
    attempt = reader.task("web-0-1").inspection.attempt
    assert attempt is not None and attempt.processes[0].current is not None
    return attempt.processes[0].current.pid


def _rewritten(path: Path) -> None:
    """The checkpoint rewritten in place, the same size: its process's pid 4242 is 4343."""
    with open(path, "r+b") as f:
        data = f.read()
        assert data.count(b'"pid":4242') == 1, data
        f.seek(0)
        f.write(data.replace(b'"pid":4242', b'"pid":4343'))


@pytest.mark.parametrize("alive", [True, False], ids=["live", "ended"])
def test_on_a_file_system_of_whole_seconds_a_checkpoint_rewritten_in_the_second_it_was_read_is_read_again(
        tmp_path, alive):
    """Before: the kept view (pid 4242) was answered in each round the rewrite kept the stamp,
    the live task's (whose fold is kept) as the ended one's. Each round checks that the race took
    place."""
    with ext4(tmp_path / "fs", whole_seconds=True) as fs:
        raced = 0
        for n in range(10):
            sandbox = fs.path / f"sb{n}"
            reader = Reader(_task(fs.path / f"root{n}", sandbox, alive=alive))
            assert _pid(reader) == 4242
            path = sandbox / ".stoker/checkpoint.jsonl"
            before = os.stat(path)
            _rewritten(path)
            raced += stamp_of(os.stat(path)) == stamp_of(before)
            assert _pid(reader) == 4343, (n, raced)
        assert raced, "no round rewrote its checkpoint within the second it was read"


@pytest.mark.parametrize("alive", [True, False], ids=["live", "ended"])
def test_a_view_read_within_the_window_of_its_files_change_is_kept_once_that_is_older(tmp_path, alive):
    """A live task's view is served again once its fold's hash of the whole file holds (no replay),
    an ended one's (no fold kept) is replayed; once the file's change is older than the window at a
    reading, its view is served by its stamp alone, as before (no read, no hash)."""
    reader = Reader(_task(tmp_path / "root", tmp_path / "sb", alive=alive))
    reader.views = ViewCache(racy_ns=RACY_NS * 30, fine_ns=RACY_NS * 30)  # a window no reading here outlasts
    assert _pid(reader) == 4242
    assert _pid(reader) == 4242
    assert (reader.views.read, reader.views.verified) == ((1, 1) if alive else (2, 0))
    reader.views.racy_ns = reader.views.fine_ns = 0  # the window has passed since the file's change
    assert _pid(reader) == 4242  # verified, or replayed, once more: kept
    counts = reader.views.read, reader.views.verified
    assert _pid(reader) == 4242
    assert (reader.views.read, reader.views.verified) == counts


def test_on_a_file_system_of_fine_times_a_view_and_an_entry_are_trusted_once_their_change_is_50_ms_old(tmp_path):
    """An ext4 of 256-byte inodes keeps a file's times to the kernel's clock tick: once the
    checkpoint's and the entry's change is FINE_RACY_NS old at a reading's start, the next reading
    takes both by their stamps alone (no parse, no hash), though the window of whole seconds (here
    a minute, which no reading outlasts) has not passed. Before: hashed and parsed again for 2 s."""
    with ext4(tmp_path / "fs") as fs:
        settings = _task(fs.path / "root", fs.path / "sb", alive=True)
        reader = Reader(settings)
        reader.entries, reader.views = EntryCache(racy_ns=RACY_NS * 30), ViewCache(racy_ns=RACY_NS * 30)
        files = [fs.path / "sb/.stoker/checkpoint.jsonl", *(fs.path / "root").iterdir()]
        assert all(fine(stamp_of(os.stat(f))) for f in files)  # a tick lands on .000000000 once in a billion
        changed = max(os.stat(f).st_ctime_ns for f in files)
        assert _pid(reader) == 4242
        wait_for(lambda: time.time_ns() - changed > FINE_RACY_NS, message="the files' change is 50 ms old")
        assert _pid(reader) == 4242  # verified and parsed again, once
        counts = reader.views.read, reader.views.verified, reader.entries.parsed
        assert _pid(reader) == 4242
        assert (reader.views.read, reader.views.verified, reader.entries.parsed) == counts


def _read_while_rewritten(sandbox: Path, cache: ViewCache) -> bool:
    """The checkpoint replayed into `cache` as `inspection._replayed` does, rewritten in place (pid
    4242 to 4343) after its bytes were read, before its fold is kept; whether that kept its stamp."""
    read_at, fd = cache.clock(), open_checkpoint(sandbox)
    try:
        st = os.fstat(fd)
        seen = Seen(st.st_size)
        fold = Fold().feed(records_at(fd, sandbox, 0, st.st_size + 1, keep_unreadable=True, tee=seen.tee))
        _rewritten(sandbox / ".stoker/checkpoint.jsonl")
        cache.put((str(sandbox), ""), stamp_of(st), (fold.view(), ""), resumable(fd, fold, stamp_of(st), st.st_size + 1, seen),
                  read_at)
        return stamp_of(os.fstat(fd)) == stamp_of(st)
    finally:
        os.close(fd)


def test_a_checkpoint_rewritten_in_place_while_it_was_read_in_the_second_of_its_stamp_is_read_again(tmp_path):
    """The fold holds the bytes read, its hash was of the file's bytes after the read (the
    rewritten ones), and the stamp stayed: the racy view was 'verified' by that hash and served
    (pid 4242), then by its stamp alone once the window passed: forever. Now its hash is of the
    bytes it was made of: replayed (4343). Each round checks that the race took place."""
    with ext4(tmp_path / "fs", whole_seconds=True) as fs:
        raced = 0
        for n in range(10):
            sandbox, cache = fs.path / f"sb{n}", ViewCache()
            write(sandbox, [header(ME.pid, ME.start_ticks), *RUNNING])
            raced += _read_while_rewritten(sandbox, cache)
            for _ in range(2):
                view = inspect_sandbox(sandbox, cache=cache).view
                assert view is not None and view.current is not None
                assert view.current.processes[0].current.pid == 4343, (n, raced)
        assert raced, "no round rewrote its checkpoint within the second it was read"
