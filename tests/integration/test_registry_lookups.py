"""`executor.host.registrylookup` at its edges: a sandbox found among others', the listing
of a root that is not there, of the files in a root that are no task's (but those the
registry or a file system keeps there by design), and a root that fails while it is read."""
from __future__ import annotations

import errno
import time

import pytest

from config.registry import RegistrySettings
from executor.host import registrylookup
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.identity import own_identity
from executor.host.registry import Registry, RegistryUnreadable
from executor.host.registrylookup import find_sandbox, listing

pytestmark = pytest.mark.timeout(20)


def entry(sandbox, task_id: str, gone: int = 0) -> RegistryEntry:
    """This process's entry, or with `gone` an ended supervisor's (another start of its pid:
    an entry of its own)."""
    me = own_identity()
    return RegistryEntry(sandbox=str(sandbox), supervisor_pid=me.pid, supervisor_start=me.start_ticks + gone,
                         supervisor_boot=me.boot_id, front_end=FrontEnd.RUN, registered_wall=time.time(),
                         task_id=task_id)


def registry(root) -> Registry:
    return Registry(RegistrySettings(registry_root=str(root), registry_retention_secs=86400.0))


def test_a_sandbox_is_found_among_others(tmp_path):
    reg = registry(tmp_path / "root")
    a, b = entry(tmp_path / "a", "t-a", gone=100), entry(tmp_path / "b", "t-b")
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
    reg.write(entry(tmp_path / "a", "t-a"))
    root = tmp_path / "root"
    for name in ("notes.txt", ".x.abc.tmp", "ports.r.claims", ".nfs0001", "lost+found"):
        (root / name).write_text("")
    (root / "zz-dir").mkdir()
    found, denied, unread, others = listing(reg)
    assert [item.entry.task_id for item in found] == ["t-a"] and (denied, unread) == (0, [])
    assert sorted(others) == ["notes.txt", "zz-dir"]


def test_a_root_that_fails_while_it_is_read_is_unreadable_in_words(tmp_path, monkeypatch):
    reg = registry(tmp_path / "root")
    reg.write(entry(tmp_path / "a", "t-a"))

    def failing(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(registrylookup, "prune", failing)
    with pytest.raises(RegistryUnreadable) as unreadable:
        listing(reg)
    assert str(unreadable.value) == f"cannot read the registry {tmp_path / 'root'}: Input/output error (EIO)"
