"""The host registry's pruning (executor/host/registry.py): ended and LOST tasks kept for the
retention, then gone; a LOST task's last sign of life its own checkpoint's (not a later task's
in its sandbox, and only up to a later supervisor's registration) or its entry's; a write
prunes too, unless told not to. The helpers are test_registry.py's."""
from __future__ import annotations

import os
import time

import attrs
import pytest

from executor.host.registry import STALE_TEMP_SECS, _older_than
from tests.integration.test_registry import DAY, age, entry, registry

pytestmark = pytest.mark.timeout(20)


def test_ended_and_lost_tasks_stay_until_the_retention_then_go(tmp_path):
    root = tmp_path / "root"
    reg = registry(root, retention=DAY)
    live = entry(tmp_path / "live", task_id="live")
    ended_recently = entry(tmp_path / "recent", alive=False, task_id="recent", ended=time.time() - 60)
    ended_long_ago = entry(tmp_path / "old", alive=False, task_id="old", ended=time.time() - 2 * DAY)
    for e in (live, ended_recently, ended_long_ago):
        reg.write(e)
    names = {item.entry.task_id for item in reg.entries()}
    assert names == {"live", "recent"}  # reading pruned the old one


def test_a_lost_task_goes_by_its_last_sign_the_checkpoint_s_or_the_entry_s(tmp_path):
    root = tmp_path / "root"
    reg = registry(root, retention=DAY)
    sandbox = tmp_path / "sb"
    (sandbox / ".stoker").mkdir(parents=True)
    checkpoint = sandbox / ".stoker" / "checkpoint.jsonl"
    checkpoint.write_text("{}\n")
    lost = entry(sandbox, alive=False, task_id="lost")  # gone, never marked ended
    reg.write(lost)
    age(root / lost.name, 3 * DAY)
    assert [i.entry.task_id for i in reg.entries()] == ["lost"]  # the checkpoint is recent
    age(checkpoint, 2 * DAY)
    assert reg.entries() == []
    assert not (root / lost.name).exists()


def _a_later_task_s_sandbox(tmp_path):
    """A registry (a day's retention) and a sandbox whose `.stoker` a later task writes in (its
    checkpoint fresh): the root, the registry, the sandbox and its `.stoker`'s stat."""
    root = tmp_path / "root"
    sandbox = tmp_path / "sb"
    (sandbox / ".stoker").mkdir(parents=True)
    (sandbox / ".stoker" / "checkpoint.jsonl").write_text("{}\n")  # the later task's, fresh
    return root, registry(root, retention=DAY), sandbox, os.stat(sandbox / ".stoker")


def test_a_lost_task_goes_by_its_own_checkpoint_not_a_later_task_s_in_its_sandbox(tmp_path):
    """Its sandbox deleted and run again (GONE): the later task's checkpoint, in another
    `.stoker` than the one its entry pins, is no sign of it (was: it kept the entry, listed by
    `stoker ps` as not ended, for as long as the later task wrote)."""
    root, reg, sandbox, st = _a_later_task_s_sandbox(tmp_path)
    lost = attrs.evolve(entry(sandbox, alive=False, task_id="lost"), stoker_dir=f"{st.st_dev}:{st.st_ino + 1}")
    reg.write(lost)
    age(root / lost.name, 2 * DAY)
    assert reg.entries() == []


@pytest.mark.parametrize(("later_secs_ago", "listed"), [(2 * DAY, ["later"]), (3600.0, ["lost", "later"]),
                                                        (None, ["lost"])])
def test_a_lost_task_s_checkpoint_counts_until_a_later_supervisor_took_its_stoker_dir(tmp_path, later_secs_ago,
                                                                                        listed):
    """Its sandbox run again in place, or deleted and run again into a `.stoker` given the
    old one's inode number (the pin matches): the checkpoint's writes after a later
    supervisor registered there are that task's, no sign of the lost one, which goes a
    retention after that registration at the latest (was: kept, listed by `stoker ps` as not
    ended, for as long as the later task wrote). Before it (an hour ago: the lost task may
    have written until then), or without one, the checkpoint counts as ever."""
    root, reg, sandbox, st = _a_later_task_s_sandbox(tmp_path)
    pin = f"{st.st_dev}:{st.st_ino}"
    # Of an earlier boot (three days ago): which came later is told by the wall clock then
    # (this boot's supervisors are told apart by their starts, `entry.registered_after`).
    lost = attrs.evolve(entry(sandbox, alive=False, task_id="lost", registered=time.time() - 3 * DAY),
                        stoker_dir=pin, supervisor_boot="an-earlier-boot")
    reg.write(lost)
    age(root / lost.name, 2 * DAY)
    if later_secs_ago is not None:
        later = entry(sandbox, task_id="later", registered=time.time() - later_secs_ago)
        reg.write(attrs.evolve(later, stoker_dir=pin), prune=False)
    assert [i.entry.task_id for i in reg.entries()] == listed


def test_a_write_prunes_too(tmp_path):
    root = tmp_path / "root"
    reg = registry(root, retention=DAY)
    old = entry(tmp_path / "old", alive=False, task_id="old", ended=time.time() - 2 * DAY)
    reg.write(old)
    age(root / old.name, 2 * DAY)  # written as it ended
    assert (root / old.name).exists()
    reg.write(entry(tmp_path / "new", task_id="new"))
    assert not (root / old.name).exists()


def test_a_write_told_not_to_prune_leaves_expired_entries_for_the_next_one(tmp_path):
    """A task's start (`HostSession.task_started`) follows the session's pruning write at
    once: it writes its entry without reading every other one again."""
    root = tmp_path / "root"
    reg = registry(root, retention=DAY)
    old = entry(tmp_path / "old", alive=False, task_id="old", ended=time.time() - 2 * DAY)
    reg.write(old)
    age(root / old.name, 2 * DAY)  # written as it ended
    new = entry(tmp_path / "new", task_id="new")
    assert reg.write(new, prune=False)
    assert (root / old.name).exists() and (root / new.name).exists()
    reg.write(new)
    assert not (root / old.name).exists()


def test_a_stale_temporary_goes_by_its_own_age_not_by_what_it_names(tmp_path):
    """A temporary name left in the registry is judged by its own modification time: a link
    whose target is fresh (or missing) goes all the same, and its target stays."""
    root = tmp_path / "root"
    reg = registry(root, retention=DAY)
    assert reg.write(entry(tmp_path / "mine", task_id="mine"), prune=False)
    target = tmp_path / "fresh"
    target.write_text("x")
    links = [root / f".a.{n}.tmp" for n in range(2)]
    links[0].symlink_to(target)
    links[1].symlink_to(tmp_path / "nowhere")
    then = time.time() - 2 * STALE_TEMP_SECS
    for link in links:
        os.utime(link, (then, then), follow_symlinks=False)
    assert [item.entry.task_id for item in reg.entries()] == ["mine"]
    assert not any(os.path.lexists(link) for link in links)
    assert target.exists()


def test_older_than_is_strictly_older_and_a_file_gone_meanwhile_is_not(tmp_path):
    """`_older_than`: a file exactly `secs` old is not older than `secs` (as `expired` judges
    an entry's end); one removed between the directory's listing and its look is not old
    (it is nothing to prune)."""
    kept, removed = tmp_path / "kept", tmp_path / "removed"
    for path in (kept, removed):
        path.write_text("x")
        os.utime(path, ns=(1_000_000_000 * 10**9, 1_000_000_000 * 10**9))
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        removed.unlink()  # after the listing a let-go made
        assert not _older_than(fd, "kept", 1_000_000_000 + 60.0, 60.0)
        assert _older_than(fd, "kept", 1_000_000_000 + 60.5, 60.0)
        assert not _older_than(fd, "removed", 1_000_000_000 + 120.0, 60.0)
    finally:
        os.close(fd)
