"""The observer's kept views of tasks whose supervisor is gone (ended or LOST): only the view
and the stamp of its file are kept, not the fold that made it (`ViewCache.settle`: about 9 KB
of Python objects a task of 10 processes, 37 KB of RSS, kept for each of the thousands of
ended tasks a registry may list). Their pages, rows and `stoker status` views are the ones a
whole replay gives; a checkpoint that changes after all (a later run in the sandbox appends
to it, a rewrite) is noticed and replayed whole. And what a scrape opens for a LOST task: each
of the files it reads in `.stoker` once (the checkpoint was opened or looked at three times, and
`.stoker` opened seven times: the registry's pruning, the pin, the replay, the lock, the
checkpoint's time again, the held list, the usage file)."""
from __future__ import annotations

import fcntl
import json
import os
import time

import pytest

from config.registry import RegistrySettings
from executor.host import lock
from executor.host.identity import boot_secs
from executor.host.lock import LockTable
from executor.observe import metrics
from executor.observe.reader import EVERYONE, Reader
from executor.observe.scrape import TaskErrors, details
from tests.support.keptreader import kept_reader
from tests.support.opens import opens
from tests.support.statuscli import GONE, RUNNING, header, registered_task

pytestmark = pytest.mark.timeout(60)
FINISHED = {"kind": "task", "from": "RUNNING", "to": "FINISHED", "reason": "all processes ended", "wall": 1003.0}


def _shown(reader: Reader, task_id: str) -> tuple:
    """What the observer shows of a task whose supervisor is gone (its page's rows and status)."""
    detail = reader.task(task_id)
    return detail.row, {k: v for k, v in detail.status.items() if k != "resources"}, detail.figures


@pytest.fixture
def registry(tmp_path):
    settings = RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=3600)
    registered_task(settings, tmp_path / "live", "live", RUNNING, alive=True)
    registered_task(settings, tmp_path / "ended", "ended", [*RUNNING, FINISHED], alive=False, ended=True)
    registered_task(settings, tmp_path / "lost", "lost", RUNNING, alive=False)
    return settings, tmp_path


def test_only_a_live_tasks_fold_is_kept_and_the_others_show_what_a_whole_replay_shows(registry):
    settings, _ = registry
    reader = kept_reader(settings)
    rows = {t.row["task_id"]: t.row for t in reader.tasks()}
    assert {k: r["state"] for k, r in rows.items()} == {"live": "RUNNING", "ended": "FINISHED", "lost": "LOST"}, rows
    assert (len(reader.views), reader.views.folds()) == (3, 1)  # before: 3 folds, the ended and LOST ones'
    for task_id in ("ended", "lost"):
        kept, whole = _shown(reader, task_id), _shown(Reader(settings), task_id)
        assert kept == whole
    assert reader.views.read == 3  # the pages were the views kept, not read again
    assert {t.row["task_id"]: t.row for t in reader.tasks()} == rows


def test_an_ended_tasks_checkpoint_rewritten_or_appended_to_is_read_again_whole(registry):
    """The claim that a terminal task's checkpoint never grows again does not hold: a later `stoker
    run --sandbox` of the same sandbox appends its attempt to it (test_view_resume.py), an editor
    or a restore rewrites it. Without its fold, either is replayed whole, once."""
    settings, tmp_path = registry
    reader = kept_reader(settings)
    reader.tasks()
    path = tmp_path / "ended/.stoker/checkpoint.jsonl"
    before = path.stat()
    path.write_bytes(path.read_bytes().replace(b'"FINISHED"', b'"FAILED"  '))  # in place, the same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))
    assert _shown(reader, "ended")[0]["state"] == "FAILED" == _shown(Reader(settings), "ended")[0]["state"]
    with open(path, "a") as f:  # a later run's attempt, in the same file
        f.write(json.dumps(header(GONE + 1, 8, marker="later", wall=2000.0)) + "\n")
    rows = {t.row["task_id"]: t.row for t in reader.tasks()}
    assert rows == {t.row["task_id"]: t.row for t in Reader(settings).tasks()}
    assert (reader.views.read, reader.views.resumed) == (5, 0)  # before: the append went on from a fold


def test_an_ended_tasks_checkpoint_rewritten_with_its_size_and_time_put_back_is_read_again(registry):
    """The sandbox's owner rewrites the checkpoint in place, the same size, and sets its mtime back
    (or a write lands in the clock tick of the one read): its size and mtime are the stamp's, its
    change time (which no one can set) is not; the kept view was shown as it was before."""
    settings, tmp_path = registry
    reader = Reader(settings)
    reader.tasks()
    path = tmp_path / "ended/.stoker/checkpoint.jsonl"
    before = path.stat()
    path.write_bytes(path.read_bytes().replace(b'"FINISHED"', b'"FAILED"  '))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert _shown(reader, "ended")[0]["state"] == "FAILED" == _shown(Reader(settings), "ended")[0]["state"]

def test_a_lost_tasks_scrape_opens_each_file_of_its_stoker_directory_once(registry):
    settings, _ = registry
    reader, errors = Reader(settings), TaskErrors()
    window = metrics.Window(None, time.time())  # every task the registry keeps
    details(reader, EVERYONE, window, errors)  # read once: kept
    with opens() as opened:
        found, _ = details(reader, EVERYONE, window, errors)
    assert [d.row["state"] for d in found if d.row["task_id"] == "lost"] == ["LOST"] and errors.total == 0
    # each sandbox opened once for each file read in its `.stoker`: the checkpoint (and, of the two whose
    # supervisor is gone, its lock: one in another PID namespace?, in the `.stoker` opened for it), the
    # usage file, the held list of the LOST one (its leftovers), the watchdog's of the live one (before:
    # 5, 5 and 7, the checkpoint looked at three times: the registry's pruning, the replay, its time; the
    # pin apart; then 3, 3 and 4: `.stoker` opened again for the lock)
    assert {name: opened[name] for name in ("live", "ended", "lost")} == {"live": 3, "ended": 2, "lost": 3}, opened
    assert (opened[".stoker"], opened["checkpoint.jsonl"]) == (8, 3), opened
    assert opened["locks"] == 1, opened  # /proc/locks: once a scrape, not once a gone supervisor (2)


def test_a_gone_supervisors_page_opens_its_stoker_directory_once_a_file(registry):
    """A task of this boot whose supervisor is gone has its lock looked up (`lock.seen_here`: does it
    run in a PID namespace of its own?) in the `.stoker` its checkpoint was read from: `.stoker` was
    opened again for it (before: 4 times a page of an ended task, for 3 files read; 5 of a LOST one)."""
    settings, _ = registry
    reader = Reader(settings)
    for task_id, files in (("ended", ("checkpoint.jsonl", "task.json", "usage.json")),
                           ("lost", ("checkpoint.jsonl", "task.json", "usage.json", "held.json"))):
        reader.task(task_id)  # its view kept
        with opens() as opened:
            assert reader.task(task_id).row["state"] in ("FINISHED", "LOST")
        assert [opened[name] for name in files] == [1] * len(files), opened
        assert (opened[".stoker"], opened[task_id]) == (len(files), len(files)), opened


def test_a_lock_table_is_read_again_for_a_lock_taken_after_it_was_read(tmp_path):
    """`LockTable`: a supervisor that took its lock (and wrote its header) after the table was read
    is found, in a new reading; a lock taken before it (an ended task's: long ago) is not read again
    for; a header that does not say when (an older Stoker's) is, as each was before the table."""
    locks, path = LockTable(), tmp_path / "supervisor.lock"
    path.touch()
    with opens() as opened, open(path, "rb") as held:
        assert locks.holder(path.stat(), taken_by=boot_secs() - 60) is None  # read: nobody holds it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert locks.holder(path.stat(), taken_by=boot_secs() - 60) is None and opened["locks"] == 1
        assert locks.holder(path.stat(), taken_by=boot_secs()) == os.getpid() and opened["locks"] == 2
        assert locks.holder(path.stat(), taken_by=None) == os.getpid() and opened["locks"] == 3


def test_a_supervisor_of_another_boot_has_no_lock_looked_up(tmp_path):
    """After a reboot, the tasks of the boot before (their headers' boot-clock starts after today's
    uptime, as far as this boot's clock goes) hold no lock: none read /proc/locks again (each would,
    `taken_by`, on every page: 7.7 ms a task with 1,000 flocks held), nor at all."""
    (tmp_path / "supervisor.lock").touch()
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        locks = LockTable()
        with opens() as opened:
            for _ in range(3):
                assert lock.seen_here(fd, 1, 100, "another-boot", locks, taken_by=boot_secs() + 86400) is None
        assert opened["locks"] == 0, opened
    finally:
        os.close(fd)
