"""A supervisor's pruning of the host registry as it lets go (executor/host/registry.py,
`registry.prune_some`): a bounded batch, whatever the registry holds, and never an entry
the retention keeps. A let-go read and parsed every entry: 42 ms each with 1,900 entries,
1.6-1.8 s each for 36 supervisors letting go at once."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from executor.host import registry as registry_module
from executor.host import registrylookup
from executor.host.entry import entry_name
from executor.host.identity import own_identity
from tests.integration.test_registry import DAY, age, entry, registry

pytestmark = pytest.mark.timeout(30)


def _gone_entries(root, tmp_path, count: int, *, ended_secs_ago: float, file_age_secs: float) -> list[str]:
    """`count` entries of supervisors that are gone, ended `ended_secs_ago`, their files as old
    as `file_age_secs`; their names."""
    reg = registry(root)
    names = []
    for n in range(count):
        gone = entry(tmp_path / f"sb{n}", alive=False, task_id=f"t-{n}", ended=time.time() - ended_secs_ago)
        reg.write(gone, prune=False)
        age(root / gone.name, file_age_secs)
        names.append(gone.name)
    return names


def _count_reads(monkeypatch) -> list[str]:
    opened: list[str] = []
    real_read = registry_module.read_entry
    for module in (registry_module, registrylookup):  # the supervisor's pruning, the readers' reading
        monkeypatch.setattr(module, "read_entry",
                            lambda dir_fd, name, *rest: opened.append(name) or real_read(dir_fd, name, *rest))
    return opened


def test_a_let_go_reads_a_bounded_batch_and_a_reading_prunes_the_rest(tmp_path, monkeypatch):
    root = tmp_path / "root"
    expired = _gone_entries(root, tmp_path, 300, ended_secs_ago=2 * DAY, file_age_secs=2 * DAY)
    opened = _count_reads(monkeypatch)
    reg = registry(root, retention=DAY)
    assert reg.write(entry(tmp_path / "mine", task_id="mine"))  # prunes, as a let-go does
    assert len(opened) == registry_module.PRUNE_BATCH  # was: all 300
    left = [name for name in expired if (root / name).exists()]
    assert len(left) == 300 - registry_module.PRUNE_BATCH
    assert [item.entry.task_id for item in reg.entries()] == ["mine"]  # a reader prunes every one
    assert sorted(os.listdir(root)) == [entry(tmp_path / "mine").name]


def test_a_let_go_reads_no_entry_whose_file_is_within_the_retention(tmp_path, monkeypatch):
    """An entry is written at its end: one whose file is newer than the retention has not
    expired, and is not opened (a crowded host's registry is mostly such entries)."""
    root = tmp_path / "root"
    kept = _gone_entries(root, tmp_path, 100, ended_secs_ago=60, file_age_secs=60)
    opened = _count_reads(monkeypatch)
    reg = registry(root, retention=DAY)
    assert reg.write(entry(tmp_path / "mine", task_id="mine"))
    assert opened == []  # was: all 100
    assert all((root / name).exists() for name in kept)
    assert len(reg.entries()) == 101


def test_a_let_go_skips_live_supervisors_unread_and_no_entry_it_cannot_prune_holds_back_the_rest(tmp_path, monkeypatch):
    """The batch starts at a point that moves with the clock: entries read and kept (an end
    within the retention, rewritten in an old file) do not fill every let-go's batch; a live
    supervisor's entry, however old its file, is not read at all."""
    monkeypatch.setattr(registry_module, "PRUNE_BATCH", 2)
    root = tmp_path / "root"
    stuck = _gone_entries(root, tmp_path, 4, ended_secs_ago=60, file_age_secs=2 * DAY)
    expired = _gone_entries(root, tmp_path, 4, ended_secs_ago=2 * DAY, file_age_secs=2 * DAY)
    live = entry(tmp_path / "live", task_id="live")
    registry(root).write(live, prune=False)
    age(root / live.name, 2 * DAY)
    assert live.name == entry_name(own_identity().pid, own_identity().start_ticks)
    opened = _count_reads(monkeypatch)
    reg = registry(root, retention=DAY)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        now_ms = int(time.time() * 1000)
        # n consecutive start points (mid-millisecond: no rounding skips one) visit each of n
        # entries; each prune shortens the list, so 9 + 8 + 7 + 6 steps prune the 4 for sure
        for step in range(9 + 8 + 7 + 6):
            registry_module.prune_some(fd, (now_ms + step + 0.5) / 1000, reg.retention_secs, reg.alive)
    finally:
        os.close(fd)
    assert live.name not in opened
    assert [name for name in expired if (root / name).exists()] == []
    assert all((root / name).exists() for name in stuck) and (root / live.name).exists()


def test_a_let_go_lists_the_registry_once_and_still_drops_a_stale_temporary_and_a_damaged_entry(tmp_path, monkeypatch):
    """The listing is what grows with the registry (0.30-0.36 s a let-go at 100,000 files, as
    a `DirEntry` for each, listed twice: once for the window, once more for the temporary and
    damaged files); it is listed once, the stale files it holds gone all the same."""
    root = tmp_path / "root"
    kept = _gone_entries(root, tmp_path, 5, ended_secs_ago=60, file_age_secs=60)
    stale_temp = root / ".1-2.json.abc.tmp"
    stale_temp.write_text("{")
    age(stale_temp, 2 * registry_module.STALE_TEMP_SECS)
    damaged = root / "999999999-1.json"  # no such supervisor
    damaged.write_text("not an entry")
    age(damaged, 2 * DAY)
    listings: list[str] = []
    for call in ("listdir", "scandir"):
        real = getattr(os, call)
        monkeypatch.setattr(registry_module.os, call, lambda *args, _real=real, _call=call: listings.append(_call) or _real(*args))
    reg = registry(root, retention=DAY)
    assert reg.write(entry(tmp_path / "mine", task_id="mine"))
    assert len(listings) == 1, listings  # was: two scandirs
    assert not stale_temp.exists() and not damaged.exists()
    assert all((root / name).exists() for name in kept)


READ_AT_THE_FD_LIMIT = r"""
import json, os, resource, sys, time
sys.path.insert(0, sys.argv[2])
from config.registry import RegistrySettings
from executor.host.registry import Registry, RegistryUnreadable, prune
from executor.host.registrylookup import read_files

reg = Registry(RegistrySettings(registry_root=sys.argv[1], registry_retention_secs=86400.0))
fd = reg.open_root()  # a reading's own first step, with descriptors to spare
lowest = os.dup(fd)
os.close(lowest)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (lowest + 1, hard))  # the listing's one: none for an entry
try:
    found, read = read_files(reg, fd)
    prune(fd, found, read, time.time(), reg.retention_secs, reg.alive)
    out = "read"
except OSError as exc:
    out = f"OSError: {exc.strerror}"
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
print(json.dumps(out))
"""


def test_an_entry_a_reading_had_no_descriptor_to_open_is_not_judged_damaged_and_dropped(tmp_path):
    """A LOST entry whose file is older than the retention is kept while its checkpoint is not
    (its last sign). A reading at the descriptor limit (an observer with every client's socket
    open: EMFILE) took each entry it could not open for a damaged file, and dropped it."""
    from executor.host.sandbox import CHECKPOINT_FILE
    from tests.support.stoker_proc import REPO

    root = tmp_path / "root"
    sandbox = tmp_path / "sb"
    (sandbox / ".stoker").mkdir(parents=True)
    (sandbox / ".stoker" / CHECKPOINT_FILE).write_text("{}\n")  # written just now
    lost = entry(sandbox, alive=False, task_id="lost", registered=time.time() - 3 * DAY)
    registry(root).write(lost, prune=False)
    age(root / lost.name, 2 * DAY)
    done = subprocess.run([sys.executable, "-c", READ_AT_THE_FD_LIMIT, str(root), str(REPO)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert (root / lost.name).exists()  # was: unlinked as damaged
    assert json.loads(done.stdout) == "OSError: Too many open files"  # said, not taken for damage
    assert [item.entry.task_id for item in registry(root, retention=DAY).entries()] == ["lost"]


def test_a_let_go_prunes_nothing_a_reading_does_not_read(tmp_path):
    """A let-go looks at regular files named like an entry only, as a reading does: an old
    file of another name, and an old link named like an entry, stay (by either)."""
    root = tmp_path / "root"
    reg = registry(root, retention=DAY)
    assert reg.write(entry(tmp_path / "mine", task_id="mine"), prune=False)
    other = root / "notes"
    other.write_text("{}")
    age(other, 2 * DAY)
    target = tmp_path / "elsewhere.json"
    target.write_text("{}")
    age(target, 2 * DAY)
    link = root / entry_name(4_000_000_000, 1)  # no such pid runs
    link.symlink_to(target)
    then = time.time() - 2 * DAY
    os.utime(link, (then, then), follow_symlinks=False)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        registry_module.prune_some(fd, time.time(), reg.retention_secs, reg.alive)
    finally:
        os.close(fd)
    assert other.exists() and link.is_symlink() and target.exists()
    assert [item.entry.task_id for item in reg.entries()] == ["mine"]
    assert other.exists() and link.is_symlink()


def test_a_lost_task_not_yet_expired_holds_back_no_other_entry_s_pruning(tmp_path):
    """An entry whose own file has not expired is passed over, and the entries after it in
    the same pass are judged still (a `break` there kept every one after it)."""
    root = tmp_path / "root"
    reg = registry(root, retention=DAY)
    lost = entry(tmp_path / "lost", alive=False, task_id="lost")  # recent: not expired
    old = entry(tmp_path / "old", alive=False, task_id="old", ended=time.time() - 2 * DAY)
    for e in (lost, old):
        assert reg.write(e, prune=False)
    age(root / old.name, 2 * DAY)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        found, read = registrylookup.read_files(reg, fd)
        in_order = sorted(found, key=lambda item: item.entry.task_id != "lost")  # the LOST one first
        assert [item.entry.task_id for item in in_order] == ["lost", "old"]
        gone = registry_module.prune(fd, in_order, read, time.time(), reg.retention_secs, reg.alive)
    finally:
        os.close(fd)
    assert gone == {old.name}
    assert (root / lost.name).exists() and not (root / old.name).exists()


def test_the_first_name_listed_does_not_hold_back_the_one_listed_last(tmp_path, monkeypatch):
    """One name looked at a let-go (PRUNE_LOOK 1): the start point, moved by the clock, comes
    to the directory's last name within as many milliseconds as it holds names; a fixed
    start would look at its first name only, every time."""
    monkeypatch.setattr(registry_module, "PRUNE_LOOK", 1)
    root = tmp_path / "root"
    names = _gone_entries(root, tmp_path, 8, ended_secs_ago=2 * DAY, file_age_secs=0)
    with os.scandir(root) as scan:
        last = [item.name for item in scan][-1]  # (the listing's order: the directory's own)
    age(root / last, 2 * DAY)  # the only one that has expired: the others' files are new
    reg = registry(root, retention=DAY)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        now_ms = int(time.time() * 1000)
        for step in range(len(names)):
            registry_module.prune_some(fd, (now_ms + step + 0.5) / 1000, reg.retention_secs, reg.alive)
    finally:
        os.close(fd)
    assert sorted(os.listdir(root)) == sorted(set(names) - {last})
