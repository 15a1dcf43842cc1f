"""What reading the registry again costs (`stoker observe` reads it on every request): an
entry whose file did not change is not opened or parsed again (`executor/host/entrycache.py`),
one that changed is (replaced whole, or rewritten in place with its size and mtime put
back), one that is gone is forgotten; a supervisor is looked at once a reading
(`identity.one_reading`), and the boot's id is read once a process."""
from __future__ import annotations

import os
import time

import pytest

from config.registry import RegistrySettings
from executor.cli.main import main
from executor.host import identity
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.entrycache import EntryCache, stamp_of
from executor.host.registry import Registry, RegistryUnreadable
from executor.observe.server import ObserverApp
from tests.support.faultyfs import ext4
from tests.support.keptreader import kept_reader
from tests.support.opens import opens
from tests.support.statuscli import RUNNING, header, write
from tests.support.users import as_nobody, needs_root, open_sandbox
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)
ME = identity.own_identity()
GONE = ME.pid + 1_000_000  # a supervisor that is not running
RACY_MS = 200  # the window of the test that waits it out (an observer's: 50 ms, or 2 s for whole seconds)
# As an observer keeps them (each test's root its own), but an entry written a moment ago
# kept too (`racy_ns=0`): an observer's keeps it once its file is its window old (the last test).
KEPT: EntryCache = EntryCache(racy_ns=0, fine_ns=0)


def _entry(sandbox, task_id: str, *, pid: int = GONE, start: int = 1, ended: bool = True) -> RegistryEntry:
    return RegistryEntry(sandbox=str(sandbox), supervisor_pid=pid, supervisor_start=start,
                         supervisor_boot=ME.boot_id, front_end=FrontEnd.RUN, registered_wall=time.time(),
                         task_id=task_id, ended_wall=time.time() if ended else None)


@pytest.fixture
def settings(tmp_path):
    settings = RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=3600)
    reg = Registry(settings)
    for n in range(3):
        reg.write(_entry(tmp_path / f"sb{n}", f"t-{n}", pid=GONE + n), prune=False)
    return settings


def _ids(settings: RegistrySettings) -> list[str]:
    return [item.entry.task_id for item in Registry(settings, kept=KEPT).read()]


def test_an_entry_that_did_not_change_is_not_opened_or_parsed_again(settings):
    assert _ids(settings) == ["t-0", "t-1", "t-2"]
    parsed = KEPT.parsed
    with opens() as opened:
        assert _ids(settings) == ["t-0", "t-1", "t-2"]
    assert not [name for name in opened if name.endswith(".json")], opened  # before: each opened again
    assert KEPT.parsed == parsed


def test_an_entry_replaced_whole_is_read_again(settings):
    _ids(settings)
    name = next(n for n in os.listdir(settings.registry_root) if n.startswith(f"{GONE + 2}-"))
    sandbox = Registry(settings).read()[2].entry.sandbox
    Registry(settings).write(_entry(sandbox, "t-9", pid=GONE + 2), prune=False)  # a new file renamed over
    assert _ids(settings) == ["t-0", "t-1", "t-9"]
    assert name in os.listdir(settings.registry_root)


def test_an_entry_rewritten_in_place_with_its_size_and_mtime_put_back_is_read_again(settings):
    """Its size and mtime are the stamp's; its change time (which no one can set) is not."""
    _ids(settings)
    path = os.path.join(settings.registry_root, next(n for n in os.listdir(settings.registry_root)
                                                     if n.startswith(f"{GONE + 2}-")))
    before = os.stat(path)
    with open(path, "r+b") as f:
        data = f.read()
        f.seek(0)
        f.write(data.replace(b'"t-2"', b'"t-8"'))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    assert _ids(settings) == ["t-0", "t-1", "t-8"]


def test_an_entry_removed_is_forgotten_and_one_damaged_is_not_listed(settings):
    _ids(settings)
    names = sorted(os.listdir(settings.registry_root))
    os.unlink(os.path.join(settings.registry_root, names[0]))
    with open(os.path.join(settings.registry_root, names[1]), "r+b") as f:
        f.write(b"x")  # damaged in place
    assert len(_ids(settings)) == 1
    assert KEPT.kept(settings.registry_root) == 2  # the damaged one's reading kept too: not an entry


def test_a_gone_supervisor_is_looked_at_once_a_reading(settings, tmp_path):
    """The registry's pruning and then each task's inspection looked at every supervisor (its
    /proc/PID/stat), twice a request."""
    Registry(settings).write(_entry(tmp_path / "sb-lost", "lost", pid=GONE + 3, ended=False), prune=False)
    reader = kept_reader(settings)
    reader.tasks()
    with opens(key=str) as opened:
        assert {t.row["task_id"] for t in reader.tasks()} == {"t-0", "t-1", "t-2", "lost"}
    assert [opened[f"/proc/{GONE + n}/stat"] for n in range(4)] == [1, 1, 1, 1], opened  # before: 2 each


@pytest.mark.parametrize("path", ["/", "/metrics"])
def test_an_observer_answer_looks_at_each_supervisor_once(settings, path):
    app = ObserverApp(kept_reader(settings), loopback=True)
    environ = {"PATH_INFO": path, "HTTP_HOST": "localhost", "REQUEST_METHOD": "GET"}
    b"".join(app(environ, lambda status, headers: None))
    with opens(key=str) as opened:
        body = b"".join(app(environ, lambda status, headers: None))
    assert b"t-2" in body or path == "/metrics"
    assert [opened[f"/proc/{GONE + n}/stat"] for n in range(3)] == [1, 1, 1], opened  # before: 2 each
    assert not [name for name in opened if name.endswith(".json")], opened  # its entries kept


def test_stoker_ps_looks_at_each_supervisor_once_and_reads_proc_locks_once_at_most(settings, tmp_path, capsys):
    for n in range(3, 6):  # LOST: looked up in /proc/locks
        Registry(settings).write(_entry(tmp_path / f"sb{n}", f"t-{n}", pid=GONE + n, ended=False), prune=False)
        stamped = dict(header(GONE + n, 1), boot=identity.boot_secs() - 60)  # its lock taken a minute ago
        write(tmp_path / f"sb{n}", [stamped, *RUNNING])
        (tmp_path / f"sb{n}/.stoker/supervisor.lock").touch()  # as a supervisor leaves it
    with opens(key=str) as opened:
        assert main(["ps", "--all", "--root", settings.registry_root]) == 0
    out = capsys.readouterr().out
    assert all(f"t-{n}" in out for n in range(6)), out
    assert [opened[f"/proc/{GONE + n}/stat"] for n in range(6)] == [1] * 6, opened  # before: 2 each
    assert opened["/proc/locks"] <= 1, opened  # before: once each LOST task


def test_the_boots_id_is_read_once_a_process():
    identity.boot_id()
    with opens() as opened:
        for _ in range(3):
            assert identity.own_identity().boot_id == ME.boot_id
            assert identity.is_alive(ME.pid, ME.start_ticks, ME.boot_id)
    assert opened["boot_id"] == 0  # before: once each look at a live process


def test_an_entry_changed_within_a_tick_of_its_reading_is_read_again_until_it_is_older(settings):
    """A file's times are the kernel's coarse clock's: a rewrite in place of the same size (or
    a chmod, or a new entry on the inode a rename freed) in the tick of the reading that kept
    it leaves its stamp as it was, and the old entry was answered until the next change. An
    entry whose file changed less than RACY_NS before its reading is read again."""
    kept: EntryCache = EntryCache(racy_ns=RACY_MS * 10**6, fine_ns=RACY_MS * 10**6)
    reg = Registry(settings, kept=kept)
    assert [item.entry.task_id for item in reg.read()] == ["t-0", "t-1", "t-2"]
    with opens() as opened:
        reg.read()
    assert len([name for name in opened if name.endswith(".json")]) == 3, opened  # before: none
    newest = max(os.stat(os.path.join(settings.registry_root, n)).st_ctime_ns
                 for n in os.listdir(settings.registry_root))
    wait_for(lambda: time.time_ns() - newest > RACY_MS * 10**6, message="the entries are older than the window")
    reg.read()  # now kept
    with opens() as opened:
        assert [item.entry.task_id for item in reg.read()] == ["t-0", "t-1", "t-2"]
    assert not [name for name in opened if name.endswith(".json")], opened


@needs_root
def test_an_entry_kept_then_made_unreadable_is_refused_again_and_a_symlink_is_not_read():
    """A chmod moves its file's change time: the entry is opened again, and refused (as another
    user, nobody: root reads it anyway); a symlink put in its place is never followed."""
    with open_sandbox() as top:
        os.chmod(top, 0o755)
        os.mkdir(top / "home", 0o755)
        os.chown(top / "home", 65534, 65534)  # nobody's, as its home

        def ask() -> str:
            settings = RegistrySettings(registry_root=str(top / "home" / "root"), registry_retention_secs=3600)
            reg = Registry(settings, kept=EntryCache(racy_ns=0, fine_ns=0))
            reg.write(_entry(top / "sb", "t-1"), prune=False)
            name = os.listdir(settings.registry_root)[0]
            path = os.path.join(settings.registry_root, name)
            seen = [item.entry.task_id for item in reg.read()]
            os.chmod(path, 0)
            try:
                reg.read()
            except RegistryUnreadable as exc:
                seen.append(str(exc).split(" (")[0])
            os.rename(path, path + ".away")
            os.chmod(path + ".away", 0o600)
            os.symlink(name + ".away", path)
            return repr((seen, reg.read_all()))

        assert as_nobody(ask) == repr((["t-1", f"cannot read 1 of the entries in the registry {top}/home/root"],
                                       ([], [])))


def test_on_a_file_system_of_whole_seconds_an_entry_changed_in_the_second_it_was_read_is_read_again(tmp_path):
    """An ext4 of 128-byte inodes keeps a file's times in whole seconds (an ext3 too): an
    entry rewritten in place at the same size, or written anew on the inode the rename before
    freed, in the second it was read has the stamp it had. Before: the old entry answered
    (until the next change, or forever). Each round checks that the race took place."""
    with ext4(tmp_path / "fs", whole_seconds=True) as fs:
        settings = RegistrySettings(registry_root=str(fs.path / "root"), registry_retention_secs=3600)
        reg, raced = Registry(settings), 0
        for n in range(10):
            reg.write(_entry(fs.path / "sb", "t-a"), prune=False)
            kept = Registry(settings, kept=EntryCache())  # as an observer's
            assert [item.entry.task_id for item in kept.read()] == ["t-a"]
            (name,) = os.listdir(settings.registry_root)
            before = os.stat(os.path.join(settings.registry_root, name))
            reg.write(_entry(fs.path / "sb", "t-b"), prune=False)  # each a new file renamed over
            reg.write(_entry(fs.path / "sb", "t-c"), prune=False)  # on the inode t-b's rename freed
            after = os.stat(os.path.join(settings.registry_root, name))
            raced += stamp_of(after) == stamp_of(before)
            assert [item.entry.task_id for item in kept.read()] == ["t-c"], (n, raced)
        assert raced, "no round wrote its entries within one second on one inode"
