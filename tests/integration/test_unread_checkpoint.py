"""A task whose checkpoint cannot be read (here a directory in its place) as `inspect_sandbox`
judges it, field by field: UNKNOWN under a supervisor that let go, LOST since its registry
entry under one gone without letting go, LOST with no time at all without an entry; the
entry's `.stoker` and registration kept; the problem said as it is (a live supervisor's
unreachable only when its sandbox is gone)."""
from __future__ import annotations

import os
import shutil

import pytest

from config.registry import RegistrySettings
from executor.host.registry import Registry
from executor.host.truth import LOST, UNKNOWN, SinceSource
from executor.task.inspection import inspect_sandbox
from tests.support.statuscli import RUNNING, registered_task
from tests.support.users import as_nobody, needs_root, open_sandbox

pytestmark = pytest.mark.timeout(60)


def _unreadable(tmp_path, *, alive: bool = False, ended: bool = False):
    """The sandbox and its registry entry, its checkpoint a directory."""
    settings = RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=3600)
    sandbox = tmp_path / "sb"
    registered_task(settings, sandbox, "web-0-1", RUNNING, alive=alive, ended=ended)
    os.unlink(sandbox / ".stoker/checkpoint.jsonl")
    os.mkdir(sandbox / ".stoker/checkpoint.jsonl")
    (listed,) = Registry(settings).read()
    return sandbox, listed.entry


def test_an_unread_checkpoint_of_a_supervisor_that_let_go_is_unknown_and_keeps_its_entry_s_words(tmp_path):
    sandbox, entry = _unreadable(tmp_path, ended=True)
    seen = inspect_sandbox(sandbox, entry)
    assert (seen.truth.state, seen.truth.alive, seen.truth.ended) == (UNKNOWN, False, True)
    assert seen.view is None and not seen.sandbox_gone
    assert (seen.pinned, seen.registered_wall) == (entry.stoker_dir, entry.registered_wall) != ("", None)
    assert seen.problem.startswith(f"cannot read the checkpoint in {sandbox}/.stoker: ")
    assert "cannot be reached" not in seen.problem


def test_an_unread_checkpoint_of_a_supervisor_gone_without_letting_go_is_lost_since_its_entry(tmp_path):
    sandbox, entry = _unreadable(tmp_path)
    seen = inspect_sandbox(sandbox, entry)
    assert (seen.truth.state, seen.truth.ended) == (LOST, False)
    assert (seen.truth.since_wall, seen.truth.since) == (entry.registered_wall, SinceSource.REGISTRY)
    assert "cannot be reached" not in seen.problem


@needs_root
def test_a_checkpoint_its_reader_may_not_read_is_lost_since_it_was_last_written(tmp_path):
    """Another user's checkpoint (root's, 0600) read by nobody: its supervisor gone without
    letting go, LOST since the checkpoint's mtime, which nobody may still stat (`.stoker` 0755)."""
    settings = RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=3600)
    with open_sandbox() as top:
        sandbox = top / "sb"
        registered_task(settings, sandbox, "web-0-1", RUNNING, alive=False)
        for path, mode in ((top, 0o755), (sandbox, 0o755), (sandbox / ".stoker", 0o755),
                           (sandbox / ".stoker/checkpoint.jsonl", 0o600)):
            os.chmod(path, mode)
        os.utime(sandbox / ".stoker/checkpoint.jsonl", (1_000_000_000, 1_000_000_000))
        (listed,) = Registry(settings).read()
        assert inspect_sandbox(sandbox, listed.entry).truth.since == SinceSource.LAST_RECORD  # root reads it

        def ask() -> str:
            truth = inspect_sandbox(sandbox, listed.entry).truth
            return f"{truth.state} {truth.since} {truth.since_wall}"

        assert as_nobody(ask) == f"{LOST} {SinceSource.CHECKPOINT_MTIME} 1000000000.0"


def test_an_unread_checkpoint_without_an_entry_is_lost_since_no_time(tmp_path):
    sandbox, _ = _unreadable(tmp_path, alive=True)
    seen = inspect_sandbox(sandbox)
    assert (seen.truth.state, seen.truth.since_wall, seen.truth.since) == (LOST, None, None)
    assert (seen.pinned, seen.registered_wall) == ("", None)


def test_a_deleted_sandbox_without_an_entry_is_said_so(tmp_path):
    sandbox, _ = _unreadable(tmp_path, alive=True)
    shutil.rmtree(sandbox)
    seen = inspect_sandbox(sandbox)
    assert seen.sandbox_gone and seen.problem
