"""The host registry on disk (executor/host/registry.py): atomic owner-only entries, reads
that trust nothing, pruning by retention, and a registry that cannot be written never
stopping anything."""
from __future__ import annotations

import errno
import json
import logging
import os
import stat
import subprocess
import threading
import time

import attrs
import pytest

from config.registry import RegistrySettings
from executor.host import registrylookup
from executor.host.entry import FrontEnd, RegistryEntry, entry_name
from executor.host.identity import identity_of, own_identity
from executor.host.registry import Registry, RegistryUnreadable
from executor.host.registrylookup import find, find_sandbox, listing
from executor.host.replacefile import trusted_path
from tests.support.users import STRANGER, as_nobody, needs_root, open_sandbox

pytestmark = pytest.mark.timeout(20)
DAY = 86400.0


_gone = iter(range(100, 100_000_000, 100))  # starts a tick apart are one process (identity.same_start)


def entry(sandbox, *, alive=True, task_id="t-1", ended=None, registered=None) -> RegistryEntry:
    """This process's identity when `alive`; else another start time of its pid: a
    supervisor that is gone (each one different)."""
    me = own_identity()
    return RegistryEntry(sandbox=str(sandbox), supervisor_pid=me.pid,
                         supervisor_start=me.start_ticks + (0 if alive else next(_gone)),
                         supervisor_boot=me.boot_id, front_end=FrontEnd.RUN,
                         registered_wall=registered or time.time(), task_id=task_id,
                         ended_wall=ended)


def registry(root, retention=7 * DAY) -> Registry:
    return Registry(RegistrySettings(registry_root=str(root), registry_retention_secs=retention))


def age(path, secs) -> None:
    then = time.time() - secs
    os.utime(path, (then, then))


def test_an_entry_is_written_owner_only_and_read_back(tmp_path):
    root = tmp_path / "root"
    reg = registry(root)
    e = entry(tmp_path / "sb")
    assert reg.write(e)
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(root / e.name).st_mode) == 0o600
    assert [item.entry for item in reg.entries()] == [e]
    assert sorted(os.listdir(root)) == [e.name]  # no temporary file left
    later = entry(tmp_path / "sb", task_id="t-2")  # the same supervisor's next task
    reg.write(later)
    assert [item.entry.task_id for item in reg.entries()] == ["t-2"]


def test_a_reader_sees_the_old_entry_or_the_new_one_never_a_torn_one(tmp_path):
    reg = registry(tmp_path / "root")
    reg.write(entry(tmp_path / "sb", task_id="t-0"))
    stop = threading.Event()

    def rewrite():
        n = 0
        while not stop.is_set():
            n += 1
            reg.write(entry(tmp_path / "sb", task_id=f"t-{n}"))

    writer = threading.Thread(target=rewrite)
    writer.start()
    try:
        for _ in range(300):
            assert len(reg.entries()) == 1
    finally:
        stop.set()
        writer.join(5)


def test_reading_trusts_nothing_in_the_root(tmp_path):
    root = tmp_path / "root"
    reg = registry(root)
    good = entry(tmp_path / "sb")
    reg.write(good)
    secret = tmp_path / "secret.json"
    secret.write_text('{"not": "an entry"}')
    os.symlink(secret, root / "111-222.json")  # a symlink named like an entry
    os.mkfifo(root / "333-444.json")  # a FIFO: opening it must not block
    (root / "555-666.json").write_bytes(b"{" + b" " * 100_000 + b"}")  # too big
    (root / "777-888.json").write_text('{"sandbox": "/x"}')  # damaged
    (root / "999-1.json").write_text(good.to_json().__repr__())  # not JSON
    other = entry(tmp_path / "sb", task_id="mismatch")
    (root / "12-34.json").write_text(__import__("json").dumps(other.to_json()))  # wrong name
    started = time.monotonic()
    assert [item.entry for item in reg.entries()] == [good]
    assert time.monotonic() - started < 5


def test_an_untrusted_root_is_neither_read_nor_written(tmp_path, caplog):
    root = tmp_path / "open-to-all"
    root.mkdir()
    os.chmod(root, 0o777)
    reg = registry(root)
    with caplog.at_level(logging.WARNING):
        assert reg.write(entry(tmp_path / "sb")) is False
        assert reg.write(entry(tmp_path / "sb")) is False
    assert reg.entries() == [] and os.listdir(root) == []
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # said once
    assert "is not trusted" in warnings[0].getMessage() and warnings[0].stoker_event == "registry_problem"
    assert "it runs anyway, but `stoker ps` will not list it" in warnings[0].getMessage()


def test_a_root_its_own_group_may_write_is_not_trusted_though_its_levels_above_are(tmp_path):
    """`untrusted_level` lets the user's own group write a level (a umask of 002); the root
    itself holds the entries, and no one but its owner may write it."""
    root = tmp_path / "group-writable"
    root.mkdir(mode=0o700)
    root.chmod(0o770)
    with pytest.raises(OSError) as refused:
        registry(root).open_root()
    assert str(refused.value) == f"{root} is not trusted: it belongs to uid {os.geteuid()}, mode 770"


@pytest.mark.parametrize("root", ["file/root", "file", "/dev/null"])
def test_a_registry_that_cannot_be_made_is_one_warning_saying_what_is_in_its_way(tmp_path, caplog, monkeypatch,
                                                                                root):
    """`--root /dev/null` said "File exists (EEXIST)", a regular file "File exists" too, and
    one below a file "Not a directory": not which level is in the way, nor what it is. The
    warning comes once per root and process (`_warned`): /dev/null is one root for every
    test in a worker, so this one starts with none warned (run again in the same process,
    it found no warning)."""
    from executor.host import registry as registry_module

    monkeypatch.setattr(registry_module, "_warned", set())
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with caplog.at_level(logging.WARNING):
        assert registry(tmp_path / root).write(entry(tmp_path / "sb")) is False
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    what = "/dev/null is a character device" if root == "/dev/null" else f"{blocker} is a regular file"
    assert f"cannot register task t-1 in {tmp_path / root}: {what}, not a directory (ENOTDIR)" in warning


def test_a_task_id_finds_the_live_supervisor_first(tmp_path):
    reg = registry(tmp_path / "root")
    dead = entry(tmp_path / "a", alive=False, task_id="same", ended=time.time(), registered=2000.0)
    live = entry(tmp_path / "b", task_id="same", registered=1000.0)
    reg.write(dead)
    reg.write(live)
    listed = reg.entries()
    assert find(listed, "same").entry == live
    assert find(listed, "other") is None



def test_the_newest_of_a_sandbox_s_ended_runs_is_the_later_one_after_a_step_back_of_the_wall_clock(tmp_path):
    """Two runs in one sandbox, both ended, the wall clock stepped back an hour between them:
    the later run's registration reads older. `stoker status SANDBOX` (and a task id two
    ended runs had) means the later run: the supervisor that started later on the boot's
    clock (was: the earlier run's, by the wall clock: its attempt shown, not the latest)."""
    reg = registry(tmp_path / "root")
    now = time.time()
    earlier = entry(tmp_path / "sb", alive=False, task_id="same", ended=now - 3590, registered=now - 3595)
    later = entry(tmp_path / "sb", alive=False, task_id="same", ended=now - 3, registered=now - 3600 - 5)
    assert later.supervisor_start > earlier.supervisor_start
    reg.write(earlier)
    reg.write(later, prune=False)
    listed = reg.entries()
    assert find_sandbox(listed, str(tmp_path / "sb")).entry == later
    assert find(listed, "same").entry == later

@pytest.mark.skipif(os.geteuid() != 0, reason="reading as another user needs root")
def test_a_registry_another_user_may_not_read_says_so():
    """What `stoker ps` as a non-root operator meets in root's registry: the root (0700) or
    its entries (0600) it may not open. `read` says which (`entries` stays []: the observer's
    and a sandbox's lookups go on without it)."""
    with open_sandbox() as top:  # a directory every user may traverse (tmp_path is not)
        os.chmod(top, 0o755)
        _read_as_nobody_then_as_owner(top / "root")


def _read_as_nobody_then_as_owner(root) -> None:
    reg = registry(root)
    reg.write(entry(root.parent / "sb"))

    def read_as_nobody() -> str:
        def ask() -> str:  # another user, then one read of the registry
            try:
                return f"read {len(reg.read())}, entries {len(reg.entries())}"
            except RegistryUnreadable as exc:
                return f"{exc}; entries {len(reg.entries())}"

        return as_nobody(ask)

    assert read_as_nobody() == f"cannot read the registry {root}: Permission denied (EACCES); entries 0"
    os.chmod(root, 0o755)
    assert read_as_nobody() == (f"cannot read 1 of the entries in the registry {root} (Permission "
                                f"denied: another user's); entries 0")
    assert [item.entry.task_id for item in reg.read()] == ["t-1"]  # its owner reads it


def test_a_supervisor_not_yet_given_its_task_is_named_by_its_sandbox(tmp_path, caplog):
    """An executor registers before the agent's LAUNCH: its warning said `cannot register
    task ? in ...`. It names the sandbox now."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with caplog.at_level(logging.WARNING):
        assert registry(blocker / "root").write(entry(tmp_path / "sb", task_id="")) is False
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"cannot register the supervisor of {tmp_path / 'sb'} in {blocker / 'root'}: " in warning


def test_a_path_another_user_could_redirect_is_not_trusted(tmp_path):
    """Levels of root's or the user's, the user's own group's write and a sticky /tmp are
    trusted; a level others may write, or that another user owns (a symlink too), is not."""
    me, group = os.geteuid(), os.getegid()
    top = tmp_path / "top"
    (top / "a" / "b").mkdir(parents=True)
    assert trusted_path(str(top / "a" / "b" / "not-yet" / "root"), me, group)
    os.chmod(top / "a", 0o775)  # umask 002: group-writable, for the user's own group
    assert trusted_path(str(top / "a" / "b"), me, group)
    assert not trusted_path(str(top / "a" / "b"), me, group + 1)  # a group of others
    os.chmod(top / "a", 0o777)
    assert not trusted_path(str(top / "a" / "b"), me, group)
    os.chmod(top / "a", 0o1777)  # sticky, as /tmp
    assert trusted_path(str(top / "a" / "b"), me, group)
    os.chmod(top / "a", 0o755)
    (top / "link").symlink_to(top / "a" / "b")
    assert trusted_path(str(top / "link" / "root"), me, group)
    os.chmod(top / "a" / "b", 0o757)  # where the symlink leads: checked too
    assert not trusted_path(str(top / "link" / "root"), me, group)


@needs_root
def test_root_writes_no_entry_where_another_user_could_redirect_the_registry(tmp_path, caplog):
    """`STOKER_ROOT=/tmp/stoker-reg` for a root supervisor, where another user made
    /tmp/stoker-reg a symlink to a directory of root's (/etc, say): root wrote its entries
    there and pruned what looked like old ones. A registry on a path with a level another
    user owns or may write is neither written nor read now."""
    with open_sandbox() as top:
        target = top / "roots"  # root's, 0755
        target.mkdir(mode=0o755)
        theirs = top / "theirs"  # a directory of that user's, on a path root trusts
        theirs.mkdir()
        (theirs / "reg").symlink_to(target)
        os.chown(theirs, STRANGER, STRANGER)
        os.lchown(theirs / "reg", STRANGER, STRANGER)
        reg = registry(theirs / "reg")
        with caplog.at_level(logging.WARNING):
            assert reg.write(entry(top / "sb")) is False
        assert os.listdir(target) == []
        assert (f"is not trusted: {theirs} belongs to uid {STRANGER}, so another user "
                f"could redirect it") in caplog.text
        with pytest.raises(RegistryUnreadable, match="is not trusted"):
            reg.read()


def test_the_levels_it_makes_above_a_registry_are_the_user_s_alone(tmp_path):
    """Under a umask of 0, `~/.local/state` was made 0777 above the 0700 root: another
    user could rename the root away and plant one. Each level is made 0700 (as XDG asks),
    so the registry stays trusted and is written."""
    old = os.umask(0)
    try:
        assert registry(tmp_path / "home" / ".local" / "state" / "stoker").write(entry(tmp_path / "sb"))
    finally:
        os.umask(old)
    levels = [tmp_path / "home", tmp_path / "home" / ".local", tmp_path / "home" / ".local" / "state",
              tmp_path / "home" / ".local" / "state" / "stoker"]
    assert [stat.S_IMODE(os.stat(level).st_mode) for level in levels] == [0o700] * 4


def test_an_entry_of_another_stoker_version_stays_while_its_supervisor_runs(tmp_path):
    """A newer Stoker's entry (here a front-end this version does not know) cannot be read
    by this one: it is not listed, and it is not pruned as damaged while the supervisor its
    name names runs; a gone one's goes after the retention, as any damaged file does."""
    root = tmp_path / "root"
    reg = registry(root, retention=DAY)
    reg.write(entry(tmp_path / "mine", task_id="mine"))
    newer = {**entry(tmp_path / "sb", task_id="newer").to_json(), "version": 2, "front_end": "thermos"}
    supervisor = subprocess.Popen(["sleep", "30"])
    try:
        found = identity_of(supervisor.pid)
        assert found is not None
        live, gone = entry_name(found.pid, found.start_ticks), entry_name(found.pid, found.start_ticks + 100)
        for name in (live, gone):
            (root / name).write_text(json.dumps(newer))
            age(root / name, 2 * DAY)
        assert [item.entry.task_id for item in reg.entries()] == ["mine"]
        assert (root / live).exists()
        assert not (root / gone).exists()
    finally:
        supervisor.kill()
        supervisor.wait()


def test_stoker_ps_and_the_observer_name_an_entry_they_cannot_read_whose_supervisor_runs(
        tmp_path, capsys, monkeypatch):
    """Each reads every entry once: the names it could not read come from the same reading
    as the tasks (they were read a second time, in `stoker ps` and each observer page)."""
    from executor.cli.main import main
    from executor.host import registry as registry_module
    from executor.host import registrylookup
    from executor.observe.reader import Reader
    from executor.observe.server import ObserverApp

    root = tmp_path / "root"
    registry(root).write(entry(tmp_path / "mine", task_id="mine"))
    newer = {**entry(tmp_path / "sb").to_json(), "front_end": "thermos"}
    reads: list[str] = []
    real_read = registry_module.read_entry

    def read_entry(dir_fd, name, *rest):  # type: ignore[no-untyped-def]
        reads.append(name)
        return real_read(dir_fd, name, *rest)

    for module in (registry_module, registrylookup):  # the supervisor's pruning, the readers' reading
        monkeypatch.setattr(module, "read_entry", read_entry)
    supervisor = subprocess.Popen(["sleep", "30"])
    try:
        found = identity_of(supervisor.pid)
        assert found is not None
        name = entry_name(found.pid, found.start_ticks)
        (root / name).write_text(json.dumps(newer))
        (root / entry_name(found.pid, found.start_ticks + 100)).write_text(json.dumps(newer))  # gone
        assert main(["ps", "--root", str(root)]) == 0
        out, err = capsys.readouterr()
        assert sorted(reads) == sorted(os.listdir(root)), "an entry read twice"
        app = ObserverApp(Reader(RegistrySettings(registry_root=str(root), registry_retention_secs=DAY)),
                          loopback=True)
        page = b"".join(app({"PATH_INFO": "/", "HTTP_HOST": "localhost", "REQUEST_METHOD": "GET"},
                            lambda status, headers: None)).decode()
    finally:
        supervisor.kill()
        supervisor.wait()
    assert "mine" in out
    gone = entry_name(found.pid, found.start_ticks + 100)  # not named on a line of its own: counted
    assert err == (f"stoker ps: {root}/{name} is not an entry this version of Stoker reads "
                   f"(another version's, or damaged); its supervisor (pid {found.pid}) runs, "
                   f"and its task is not listed\n"
                   f"stoker ps: 1 file in the registry {root} is not a task it reads (put there by hand, not JSON, "
                   f"a field missing; a damaged entry goes once older than the retention, anything else stays): "
                   f"the first is {root}/{gone}\n")
    assert f"whose supervisor runs: {name}." in page


def test_the_bound_counts_every_file_read_and_a_cut_reading_prunes_no_unread_name(tmp_path, monkeypatch):
    """MAX_ENTRIES bounded only the entries that read as entries: a registry of damaged
    files was read whole, and a reading cut at the bound collected unreadable names only
    from before it. Now at most MAX_ENTRIES files are read, good or not, every name read
    that is no entry is collected, and a cut reading prunes none it did not read."""
    from executor.host import registry as registry_module
    from executor.host import registrylookup

    monkeypatch.setattr(registrylookup, "MAX_ENTRIES", 4)
    root = tmp_path / "root"
    reg = registry(root, retention=DAY)
    reg.write(entry(tmp_path / "mine", task_id="mine"))
    me = own_identity()
    damaged = [entry_name(me.pid, me.start_ticks + 1000 + n) for n in range(7)]  # named, gone
    for name in damaged:
        (root / name).write_text("{not an entry")
        age(root / name, 2 * DAY)
    opened: list[str] = []
    real_read = registry_module.read_entry
    for module in (registry_module, registrylookup):  # the supervisor's pruning, the readers' reading
        monkeypatch.setattr(module, "read_entry",
                            lambda dir_fd, name, *rest: opened.append(name) or real_read(dir_fd, name, *rest))
    unread: list[str] = []
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        found, read = registrylookup.read_files(reg, fd, None, unread)
    finally:
        os.close(fd)
    assert len(opened) == 4 == len(read)  # eight files named like entries: four read
    assert len(found) + len(unread) == 4 and set(unread) <= set(damaged)
    opened.clear()
    reg.entries()  # reads and prunes: only what it read may go
    assert len(opened) == 4
    assert len([n for n in damaged if (root / n).exists()]) >= 3  # unread: not judged damaged


def test_damaged_files_read_at_the_bound_are_pruned_so_a_full_registry_drains(tmp_path, monkeypatch):
    """A cut reading pruned no damaged file at all, even those it read: a registry holding
    MAX_ENTRIES damaged files (a full disk's truncated writes) stayed full for ever, each
    reading spent on them, and the live task past them was never listed."""
    from executor.host import registrylookup

    monkeypatch.setattr(registrylookup, "MAX_ENTRIES", 4)
    root = tmp_path / "root"
    reg = registry(root, retention=DAY)
    me = own_identity()
    damaged = [entry_name(me.pid, me.start_ticks + 1000 + n) for n in range(7)]
    root.mkdir(parents=True, exist_ok=True)
    for name in damaged:
        (root / name).write_text("{not an entry")
        age(root / name, 2 * DAY)
    reg.write(entry(tmp_path / "mine", task_id="mine"), prune=False)
    seen = [[listed.entry.task_id for listed in reg.entries()] for _ in range(3)]
    assert [n for n in damaged if (root / n).exists()] == [] and seen[-1] == ["mine"], seen


def test_an_entry_whose_sandbox_no_open_takes_is_skipped_and_every_other_task_listed(tmp_path):
    """A sandbox path with a NUL byte or a lone surrogate (no open() takes either), or a
    number no float holds: the entry is damaged. Its supervisor gone, the pruning judged it by
    its checkpoint (ValueError: `stoker ps`, every observer page and /metrics failed); its
    supervisor running, it is named as an entry this version cannot read."""
    root = tmp_path / "root"
    registry(root).write(entry(tmp_path / "mine", task_id="mine"))
    gone = [{**entry(tmp_path / "x", alive=False).to_json(), "sandbox": f"{tmp_path}/nul\0here"},
            {**entry(tmp_path / "x", alive=False).to_json(), "sandbox": f"{tmp_path}/\ud800"},
            {**entry(tmp_path / "x", alive=False).to_json(), "registered": 10 ** 400}]
    for doc in gone:
        (root / entry_name(doc["supervisor_pid"], doc["supervisor_start"])).write_text(json.dumps(doc))
    supervisor = subprocess.Popen(["sleep", "30"])
    try:
        found = identity_of(supervisor.pid)
        assert found is not None
        name = entry_name(found.pid, found.start_ticks)
        live = {**entry(tmp_path / "x").to_json(), "supervisor_pid": found.pid,
                "supervisor_start": found.start_ticks, "sandbox": f"{tmp_path}/nul\0there"}
        (root / name).write_text(json.dumps(live))
        listed, unread = registry(root).read_all()
    finally:
        supervisor.kill()
        supervisor.wait()
    assert [item.entry.task_id for item in listed] == ["mine"]
    assert unread == [name]
    assert len(os.listdir(root)) == 5  # damaged, not expired: kept for the retention


def test_entries_of_this_boot_are_listed_in_the_order_their_supervisors_started(tmp_path):
    """`stoker ps` listed by the wall clock of the registrations: after a step of the wall
    clock back between two, the later was listed first. This boot's entries are in the order
    their supervisors started on the boot's clock, after every earlier boot's (by the wall)."""
    reg = registry(tmp_path / "root")
    now = time.time()
    first = entry(tmp_path / "a", alive=False, task_id="first-0-1", ended=now, registered=now)
    second = entry(tmp_path / "b", alive=False, task_id="second-0-1", ended=now, registered=now - 3600)  # stepped back
    older_boot = attrs.evolve(entry(tmp_path / "c", alive=False, task_id="old-0-1", ended=now, registered=now + 60),
                              supervisor_boot="an-earlier-boot")
    assert second.supervisor_start > first.supervisor_start
    for e in (second, older_boot, first):
        assert reg.write(e, prune=False)
    assert [item.entry.task_id for item in reg.entries()] == ["old-0-1", "first-0-1", "second-0-1"]


def test_a_sandbox_is_found_among_others(tmp_path):
    reg = registry(tmp_path / "root")
    a = entry(tmp_path / "a", alive=False, task_id="t-a", ended=time.time())
    b = entry(tmp_path / "b", task_id="t-b")
    reg.write(a)
    reg.write(b)
    listed = reg.entries()
    assert find_sandbox(listed, str(tmp_path / "b")).entry == b
    assert find_sandbox(listed, str(tmp_path / "a")).entry == a
    assert find_sandbox(listed, str(tmp_path / "c")) is None


def test_a_root_that_is_not_there_lists_nothing():
    assert listing(registry("/nonexistent/stoker-registry")) == ([], 0, [], [])


def test_the_files_that_are_no_task_s_are_named_but_those_kept_there_by_design(tmp_path):
    reg = registry(tmp_path / "root")
    reg.write(entry(tmp_path / "a", task_id="t-a"))
    root = tmp_path / "root"
    for name in ("notes.txt", ".x.abc.tmp", "ports.r.claims", ".nfs0001", "lost+found"):  # (the last four by design)
        (root / name).write_text("")
    (root / "zz-dir").mkdir()
    found, denied, unread, others = listing(reg)
    assert [item.entry.task_id for item in found] == ["t-a"] and (denied, unread) == (0, [])
    assert sorted(others) == ["notes.txt", "zz-dir"]


def test_a_root_that_fails_while_it_is_read_is_unreadable_in_words(tmp_path, monkeypatch):
    reg = registry(tmp_path / "root")
    reg.write(entry(tmp_path / "a", task_id="t-a"))

    def failing(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(registrylookup, "prune", failing)
    with pytest.raises(RegistryUnreadable) as unreadable:
        listing(reg)
    assert str(unreadable.value) == f"cannot read the registry {tmp_path / 'root'}: Input/output error (EIO)"
