"""A task named by what an operator reads in `stoker ps` rather than its whole id
(`executor/host/registrylookup.py`'s `find_named`, through `executor/cli/targets.py`'s
`resolve` as the commands call it): the beginning of its id, its job key
`CLUSTER/ROLE/ENV/NAME`, or the key and an instance; one running task or a refusal naming
each candidate, never a guess between two; with none running, one job's newest end. Real
directories, a real registry (the `settings` fixture), a `sleep` (`sleeper`) as another live
supervisor."""
from __future__ import annotations

import os
import time
from pathlib import Path

import attrs
import pytest

from config.registry import RegistrySettings
from executor.cli.targets import resolve
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.identity import ProcessIdentity, identity_of, own_identity
from executor.host.registry import Registry
from executor.host.registrylookup import find_named, parse_job_key
from tests.support.targetcli import args_of, refused

pytestmark = pytest.mark.timeout(60)
KEY = "local/www-data/devel/hello"
_gone = iter(range(100, 100_000_000, 100))  # another start of this pid: a supervisor that is gone


def _task(settings: RegistrySettings, sandbox: Path, task_id: str, *, key: str = KEY, instance: int = 0,
          who: ProcessIdentity | None = None, ended: bool = False) -> RegistryEntry:
    """Task `task_id` of job `key`, its sandbox made; its supervisor `who` (this process when
    none is given and it has not `ended`; a gone one when it has)."""
    sandbox.mkdir()
    me = own_identity()
    pid, start = (who.pid, who.start_ticks) if who else (me.pid, me.start_ticks + (next(_gone) if ended else 0))
    entry = RegistryEntry(sandbox=str(sandbox), supervisor_pid=pid, supervisor_start=start,
                          supervisor_boot=me.boot_id, front_end=FrontEnd.RUN, registered_wall=time.time(),
                          task_id=task_id, job_key=key, label=f"{key.rpartition('/')[2]}.{instance}",
                          ended_wall=time.time() if ended else None)
    Registry(settings).write(entry, prune=False)
    return entry


def test_the_beginning_of_a_running_task_s_id_or_its_job_key_names_it(tmp_path, settings):
    _task(settings, tmp_path / "sb", "hello-0-7a64b6c1")
    for given in ("hello-0-7a64b6c1", "hello-0-7a", "hello", "h", KEY, f"{KEY}/0", f"{KEY}/00"):
        found = resolve(given, args_of(settings))
        assert found.sandbox == tmp_path / "sb" and found.entry is not None, given
        assert found.entry.task_id == "hello-0-7a64b6c1", given
    none = f"sandbox '{{}}' does not exist, and no task in the registry '{settings.registry_root}' has {{}}"
    assert refused("world", settings).startswith(none.format("world", "that id, or an id that begins so"))
    assert refused(f"{KEY}/1", settings).startswith(none.format(f"{KEY}/1", "that job key"))
    assert refused("local/www-data/devel/hell", settings).startswith(
        none.format("local/www-data/devel/hell", "that job key"))
    assert refused("a/b/c", settings) == "sandbox 'a/b/c' does not exist"  # a path, not a key
    assert refused("ello", settings).startswith(none.format("ello", "that id"))  # a beginning, not a part


def test_an_instance_of_a_job_whose_name_has_dots_is_named_by_its_key(tmp_path, settings):
    _task(settings, tmp_path / "sb", "api-0", key="c/r/e/web.api.v2", instance=3)
    assert resolve("c/r/e/web.api.v2/3", args_of(settings)).sandbox == tmp_path / "sb"
    assert refused("c/r/e/web.api.v2/2", settings).endswith("has that job key (`stoker ps --all` lists them)" + (
        "; a task of another user's is in that user's registry: name its sandbox" if os.geteuid() == 0 else ""))


def test_a_whole_id_is_that_task_even_where_it_begins_another_s(tmp_path, settings, sleeper):
    him = identity_of(sleeper.pid)
    assert him is not None
    _task(settings, tmp_path / "short", "web-0")
    _task(settings, tmp_path / "long", "web-0-b", who=him)
    assert resolve("web-0", args_of(settings)).sandbox == tmp_path / "short"
    assert resolve("web-0-", args_of(settings)).sandbox == tmp_path / "long"


def test_two_running_tasks_a_name_fits_are_refused_naming_each(tmp_path, settings, sleeper):
    """`stoker kill hello` with two `stoker run`s of the job on the host must kill neither."""
    him = identity_of(sleeper.pid)
    assert him is not None
    _task(settings, tmp_path / "one", "hello-0-aaaa")
    _task(settings, tmp_path / "two", "hello-0-bbbb", who=him)
    for given, what in (("hello-0", "the beginning of the ids"), (KEY, "the job key"),
                        (f"{KEY}/0", "the instance")):
        assert refused(given, settings) == (
            f"'{given}' is {what} of 2 running tasks: hello-0-aaaa (in {tmp_path}/one), "
            f"hello-0-bbbb (in {tmp_path}/two): name one by its task id or its sandbox")
    assert resolve("hello-0-a", args_of(settings)).sandbox == tmp_path / "one"


def test_a_running_task_is_named_before_the_ended_ones_it_shares_a_beginning_with(tmp_path, settings):
    _task(settings, tmp_path / "old", "hello-0-old", ended=True)
    _task(settings, tmp_path / "other", "hello-world-0-x", key="local/www-data/devel/hello-world", ended=True)
    _task(settings, tmp_path / "now", "hello-0-now")
    assert resolve("hello", args_of(settings)).sandbox == tmp_path / "now"
    assert resolve(KEY, args_of(settings)).sandbox == tmp_path / "now"


def test_with_none_running_one_job_s_newest_end_is_named_and_two_jobs_are_refused(tmp_path, settings):
    _task(settings, tmp_path / "first", "hello-0-1", ended=True)
    _task(settings, tmp_path / "second", "hello-0-2", ended=True)
    assert resolve("hello-0", args_of(settings)).sandbox == tmp_path / "second"  # one job, run twice
    assert resolve(f"{KEY}/0", args_of(settings)).sandbox == tmp_path / "second"
    assert find_named(Registry(settings).entries(), "") is None  # not the beginning of every id
    _task(settings, tmp_path / "third", "hello-1-3", instance=1, ended=True)
    assert resolve(f"{KEY}/1", args_of(settings)).sandbox == tmp_path / "third"
    assert refused(KEY, settings).startswith(f"'{KEY}' is the job key of 3 ended tasks: hello-0-1 (in ")
    assert refused("hello-", settings).startswith("'hello-' is the beginning of the ids of 3 ended tasks")


def test_an_earlier_attempt_s_id_names_its_supervisor_and_another_host_s_task_is_not_named(tmp_path, settings):
    entry = _task(settings, tmp_path / "sb", "hello-0-new")
    Registry(settings).write(attrs.evolve(entry, earlier_task_ids=("hello-0-old",)), prune=False)
    assert resolve("hello-0-o", args_of(settings)).entry.task_id == "hello-0-new"  # the id read before a restart
    (tmp_path / "far").mkdir()  # a root two hosts share: another host's task, its supervisor there
    Registry(settings).write(RegistryEntry(
        sandbox=str(tmp_path / "far"), supervisor_pid=2 ** 22 - 1, supervisor_start=5, supervisor_boot="their-boot",
        front_end=FrontEnd.RUN, registered_wall=time.time(), task_id="world-0-far", job_key="c/r/e/world",
        label="world.0", host_id="their-machine", host_name="farhost"), prune=False)
    listed = Registry(settings).entries()
    assert find_named(listed, "world") is None and find_named(listed, "c/r/e/world") is None
    assert refused("world-0-far", settings).startswith("task 'world-0-far' runs on host 'farhost'")  # its whole id


def test_only_a_key_of_four_parts_and_a_number_is_a_job_key():
    assert parse_job_key(KEY) == (KEY, "")
    assert parse_job_key(f"{KEY}/007") == (KEY, "7")
    for text in ("a/b/c", "/a/b/c/d", "a/b//d", f"{KEY}/x", f"{KEY}/0/1", "hello", ""):
        assert parse_job_key(text) is None, text
