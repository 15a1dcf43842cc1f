"""Which task an inspection or control command's TARGET names (`executor/cli/targets.py`'s
`resolve` and `registered`), called as the commands call them, on real directories and a
real registry (`tests/support/statuscli.py`'s `registered_task`): a sandbox by its path, by
`$MESOS_SANDBOX` or the current directory; a task by its id; and each refusal's sentence
(exit 2 by `UsageError`): no such sandbox, not a directory, no task of that id, a task
whose sandbox is gone (with what to do when its supervisor still runs), another host's."""
from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import executor
from config.registry import RegistrySettings
from executor.cli.targets import Target, registered, resolve
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.identity import identity_of, own_identity
from executor.host.registry import Registry
from executor.task.unrecorded import unreachable
from tests.support.children import sleeping_child
from tests.support.statuscli import GONE, RUNNING, registered_task
from tests.support.targetcli import args_of, refused, registry_in

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def child() -> Iterator[int]:
    """A live process to name as a task's supervisor."""
    yield from sleeping_child()


@pytest.fixture
def registry(tmp_path: Path) -> RegistrySettings:
    return registry_in(tmp_path)


def test_a_directory_is_the_sandbox_given_or_from_mesos_sandbox_or_the_current_one(tmp_path, registry,
                                                                                  monkeypatch):
    assert resolve(str(tmp_path), args_of(registry)) == Target(tmp_path, None)
    monkeypatch.setenv("MESOS_SANDBOX", str(tmp_path / "root"))
    (tmp_path / "root").mkdir()
    assert resolve(None, args_of(registry)) == Target(tmp_path / "root", None)
    monkeypatch.delenv("MESOS_SANDBOX")
    monkeypatch.chdir(tmp_path)
    assert resolve(None, args_of(registry)) == Target(tmp_path, None)


def test_what_names_no_directory_is_refused_with_what_it_is(tmp_path, registry, monkeypatch):
    (tmp_path / "file").write_text("")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    assert refused("", registry) == "sandbox '' does not exist"
    assert refused(str(tmp_path / "file"), registry) == f"sandbox '{tmp_path}/file' is not a directory"
    assert refused(str(tmp_path / "file" / "sub"), registry) == f"sandbox '{tmp_path}/file/sub' does not exist"
    assert refused(str(tmp_path / "loop"), registry) == f"sandbox '{tmp_path}/loop': Too many levels of symbolic links"
    monkeypatch.setenv("MESOS_SANDBOX", str(tmp_path / "gone"))  # no TARGET: never looked up as a task id
    assert refused(None, registry) == f"sandbox '{tmp_path}/gone' does not exist"


def test_a_task_id_is_looked_up_in_the_registry(tmp_path, registry):
    registered_task(registry, tmp_path / "sb", "web-0-1", RUNNING, alive=True)
    target = resolve("web-0-1", args_of(registry))
    assert target.sandbox == tmp_path / "sb" and target.entry is not None and target.entry.task_id == "web-0-1"
    assert registered(target, args_of(registry)) is target.entry
    assert registered(Target(tmp_path / "sb", None), args_of(registry)) == target.entry  # found by its sandbox
    assert registered(Target(tmp_path, None), args_of(registry)) is None


def test_an_id_no_task_has_is_refused_naming_the_registry(registry):
    others = "; a task of another user's is in that user's registry: name its sandbox" if os.geteuid() == 0 else ""
    assert refused("no-such-0", registry) == (
        f"sandbox 'no-such-0' does not exist, and no task in the registry '{registry.registry_root}' has that "
        f"id, or an id that begins so (`stoker ps --all` lists them){others}")
    assert refused("no/such", registry) == "sandbox 'no/such' does not exist"  # a path: no id has a slash


def test_a_task_whose_sandbox_was_deleted_is_refused_or_taken_as_gone(tmp_path, registry):
    registered_task(registry, tmp_path / "lost", "lost-0", RUNNING, alive=False)
    registered_task(registry, tmp_path / "live", "live-0", RUNNING, alive=True)
    shutil.rmtree(tmp_path / "lost")
    shutil.rmtree(tmp_path / "live")
    assert refused("lost-0", registry) == f"task 'lost-0': its sandbox '{tmp_path}/lost' no longer exists"
    assert resolve("lost-0", args_of(registry), deleted=True).sandbox == tmp_path / "lost"  # `stoker status`: GONE
    said = f"task 'live-0': its sandbox '{tmp_path}/live' no longer exists; {unreachable(os.getpid())}"
    assert refused("live-0", registry) == said
    assert refused("live-0", registry, deleted=True) == said  # its supervisor runs: not GONE
    me = own_identity()  # an entry naming this pid with another start: a reused pid, its supervisor gone
    Registry(registry).write(RegistryEntry(
        sandbox=str(tmp_path / "reused"), supervisor_pid=me.pid, supervisor_start=me.start_ticks + 100,
        supervisor_boot=me.boot_id, front_end=FrontEnd.RUN, registered_wall=time.time(), task_id="reused-0"),
        prune=False)
    assert refused("reused-0", registry) == f"task 'reused-0': its sandbox '{tmp_path}/reused' no longer exists"
    Registry(registry).write(RegistryEntry(  # this pid and start, of another boot: gone too
        sandbox=str(tmp_path / "rebooted"), supervisor_pid=me.pid, supervisor_start=me.start_ticks,
        supervisor_boot="another-boot", front_end=FrontEnd.RUN, registered_wall=time.time(), task_id="rebooted-0"),
        prune=False)
    assert refused("rebooted-0", registry).endswith("/rebooted' no longer exists")


def test_another_host_s_task_is_its_target_for_status_only(tmp_path, registry):
    (tmp_path / "sb").mkdir()
    Registry(registry).write(RegistryEntry(
        sandbox=str(tmp_path / "sb"), supervisor_pid=GONE, supervisor_start=5, supervisor_boot="their-boot",
        front_end=FrontEnd.RUN, registered_wall=time.time(), task_id="far-0", host_id="their-machine",
        host_name="farhost"), prune=False)
    far = resolve("far-0", args_of(registry), command="status")
    assert far.sandbox == tmp_path / "sb" and far.entry is not None and far.entry.host_name == "farhost"
    assert refused("far-0", registry, command="kill") == (
        f"task 'far-0' runs on host 'farhost', not this one: its supervisor (pid {GONE} there) registered it "
        f"in the registry '{registry.registry_root}', which the two hosts share; `stoker kill` on 'farhost' "
        f"reaches it")
    assert "`stoker status` on 'farhost'" in refused("far-0", registry)

    Registry(registry).write(RegistryEntry(
        sandbox=str(tmp_path / "sb"), supervisor_pid=GONE + 1, supervisor_start=5, supervisor_boot="their-boot",
        front_end=FrontEnd.RUN, registered_wall=time.time(), task_id="far-1", host_id="their-machine",
        host_name="farhost", ended_wall=time.time()), prune=False)
    assert refused("far-1", registry, command="kill").startswith("task 'far-1' ran on host 'farhost', not this one")


def test_a_relative_target_where_the_working_directory_was_deleted_is_still_a_task_id(tmp_path, registry,
                                                                                       monkeypatch):
    registered_task(registry, tmp_path / "sb", "web-0-1", RUNNING, alive=True)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    (tmp_path / "cwd").rmdir()
    assert resolve("web-0-1", args_of(registry)).sandbox == tmp_path / "sb"
    assert refused("sb", registry).startswith(f"sandbox 'sb': {executor.working_directory_unnamed()}, and no task ")


def test_an_id_two_live_supervisors_tasks_have_is_refused(tmp_path, registry, child):
    him = identity_of(child)
    assert him is not None
    registered_task(registry, tmp_path / "mine", "twice-0", RUNNING, alive=True)
    Registry(registry).write(RegistryEntry(
        sandbox=str(tmp_path / "his"), supervisor_pid=him.pid, supervisor_start=him.start_ticks,
        supervisor_boot=him.boot_id, front_end=FrontEnd.RUN, registered_wall=time.time(), task_id="twice-0"),
        prune=False)
    said = refused("twice-0", registry)
    assert said.endswith(": name the sandbox instead") and str(tmp_path / "his") in said, said
