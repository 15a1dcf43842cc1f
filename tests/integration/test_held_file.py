"""`.stoker/held.json` (`executor/task/heldfile.py`): what a watchdog held by pid and start time
outlives a supervisor killed with its watchdog. For a LOST attempt, `stoker status` lists
those processes still alive as themselves, and a re-run kills them with their descendants;
an entry whose start time is not the process's, a list of another attempt, and (for the
kill) a list another user may have written name nothing. Hand-made sandboxes, real
processes without the task's marker (as a daemon that is not dumpable looks to the scan).
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config.registry import RegistrySettings
from executor.cli.main import main
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.identity import own_identity
from executor.host.registry import Registry
from executor.host.sandbox import open_stoker_dir
from executor.procs import pidsignal, proctree, sandboxfs
from executor.task.checkpoint import CheckpointWriter
from executor.task.heldfile import read_held, write_held
from executor.task.leftovers import end_lost_attempts
from tests.support import pidnames, proc_scan
from tests.support.users import needs_root
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)

MARKER = "h3ld"


def lost_sandbox(sandbox: Path) -> None:
    """A checkpoint whose attempt recorded RUNNING and whose supervisor is gone."""
    me = own_identity()
    writer = CheckpointWriter(sandbox)
    writer.append_many([
        {"kind": "header", "task": "web.0", "job_key": "c/r/e/web", "task_id": "web-0-1",
         "sandbox": str(sandbox), "ports": {}, "supervisor_pid": me.pid,
         "supervisor_start": me.start_ticks + 100, "supervisor_boot": me.boot_id, "marker": MARKER,
         "processes": ["web"], "health": "none", "wall": 1000.0},
        {"kind": "task", "from": "NEW", "to": "STARTING", "reason": "launched", "wall": 1000.0},
        {"kind": "task", "from": "STARTING", "to": "RUNNING", "reason": "started", "wall": 1001.0}])
    writer.close()


@pytest.fixture
def daemons() -> Iterator[list[subprocess.Popen]]:
    """Two shells, each with a `sleep` child; no marker in their environment. Each in a
    session of its own, so that the `sleep` dies with it at the end."""
    procs = [subprocess.Popen(["sh", "-c", "sleep 60 & echo $!; wait"], stdout=subprocess.PIPE,
                              env={"PATH": os.environ["PATH"]}, text=True, start_new_session=True)
             for _ in range(2)]
    try:
        yield procs
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            p.stdout.close()


def write_list(sandbox: Path, marker: str, held: dict[int, int]) -> None:
    """The list, as the owner writes it (through `.stoker`'s fd)."""
    fd = open_stoker_dir(sandbox, create=True)
    try:
        write_held(fd, marker, held)
    finally:
        os.close(fd)


def start_of(pid: int) -> int:
    stat = pidsignal.read_stat(pid)
    assert stat is not None
    return stat[2]


def test_status_lists_the_held_processes_of_a_lost_task_alive_as_themselves(tmp_path, capsys, daemons):
    held, reused = daemons
    lost_sandbox(tmp_path)
    write_list(tmp_path, MARKER, {held.pid: start_of(held.pid), reused.pid: start_of(reused.pid) + 100})
    assert main(["status", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["leftovers"] == [{"pid": held.pid, "process": "", "run": None,
                                 "command": "sh -c sleep 60 & echo $!; wait"}]
    write_list(tmp_path, "another attempt's", {held.pid: start_of(held.pid)})
    assert main(["status", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["leftovers"] == []


def test_a_rerun_kills_what_the_lost_attempt_s_watchdog_held_and_its_children(tmp_path, daemons):
    held, reused = daemons
    child = pidnames.named(int(held.stdout.readline()))  # the held shell's, alive: it waits for it
    lost_sandbox(tmp_path)
    write_list(tmp_path, MARKER, {held.pid: start_of(held.pid), reused.pid: start_of(reused.pid) + 100})
    (lost,) = end_lost_attempts(tmp_path)
    assert set(lost.killed) == {held.pid, child}
    wait_for(lambda: held.poll() is not None and not proc_scan.is_live(child), 10,
             message="the held shell and its child gone")
    assert reused.poll() is None, "a pid whose start time changed was killed"


@needs_root
def test_a_list_another_user_wrote_is_listed_but_never_killed_by(tmp_path, daemons):
    held, _ = daemons
    lost_sandbox(tmp_path)
    write_list(tmp_path, MARKER, {held.pid: start_of(held.pid)})
    os.chown(tmp_path / ".stoker" / "held.json", 65534, 65534)
    assert read_held(tmp_path, MARKER) == [(held.pid, start_of(held.pid))]
    assert read_held(tmp_path, MARKER, trusted_only=True) == []
    assert end_lost_attempts(tmp_path) == []
    assert held.poll() is None


def register_lost(sandbox: Path, root: Path) -> None:
    """`lost_sandbox`'s task in the host registry at `root`, its `.stoker` pinned."""
    me = own_identity()
    real = os.open(sandbox / ".stoker", os.O_RDONLY | os.O_DIRECTORY)
    try:
        pin = sandboxfs.dir_id(real)
    finally:
        os.close(real)
    Registry(RegistrySettings(registry_root=str(root))).write(RegistryEntry(
        sandbox=str(sandbox), supervisor_pid=me.pid, supervisor_start=me.start_ticks + 100,
        supervisor_boot=me.boot_id, front_end=FrontEnd.RUN, registered_wall=1000.0, task_id="web-0-1",
        marker=MARKER, stoker_dir=pin))


def test_ps_json_says_whose_a_lost_task_s_leftovers_are_as_status_json_does(tmp_path, capsys, daemons):
    """Was: `stoker ps --json` listed a LOST task's leftovers without the uid they were judged
    against (`task_uid`, `task_uid_source`), which `stoker status --json` gives."""
    held, _ = daemons
    sandbox, root = tmp_path / "sb", tmp_path / "root"
    sandbox.mkdir()
    lost_sandbox(sandbox)  # its header names no run_uid: the sandbox's owner is the task's user
    write_list(sandbox, MARKER, {held.pid: start_of(held.pid)})
    register_lost(sandbox, root)
    assert main(["ps", "--root", str(root), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert [p["pid"] for p in row["leftovers"]] == [held.pid], row
    assert (row.get("task_uid"), row.get("task_uid_source")) == (os.getuid(), "sandbox_owner"), row
    assert main(["status", str(sandbox), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["task_uid"], doc["task_uid_source"]) == (row["task_uid"], row["task_uid_source"])


def test_a_held_list_in_a_stoker_dir_the_task_planted_names_nothing(tmp_path, capsys, daemons):
    """A task that owns its sandbox may rename `.stoker` and plant its own; the registry pins
    the real one, and `stoker ps` and `status TASK_ID` read nothing else: a planted
    `held.json` named any process of the host as the LOST task's leftover."""
    held, stranger = daemons
    sandbox, root = tmp_path / "sb", tmp_path / "root"
    sandbox.mkdir()
    lost_sandbox(sandbox)
    write_list(sandbox, MARKER, {held.pid: start_of(held.pid)})
    register_lost(sandbox, root)

    def leftovers() -> list[int]:
        assert main(["ps", "--root", str(root), "--json"]) == 0
        (row,) = json.loads(capsys.readouterr().out)
        return [p["pid"] for p in row["leftovers"]]

    assert leftovers() == [held.pid]  # the real list, read through the pinned .stoker
    (sandbox / ".stoker").rename(sandbox / ".stoker-real")
    (sandbox / ".stoker").mkdir()
    write_list(sandbox, MARKER, {stranger.pid: start_of(stranger.pid)})  # planted by the task
    assert leftovers() == []


@contextlib.contextmanager
def web_owner(sandbox: Path, **fakes: Any) -> Iterator[tuple[Any, Any]]:
    """The owner of a one-process task (`web`), started over fake processes (`fakes`: their
    attributes set first) with a real checkpoint in `sandbox`, and those processes; closed on
    the way out."""
    from config.spec import JobSpec, ProcessSpec, TaskSpec
    from executor.task.owner import TaskOwner
    from executor.task.ports import OwnerPorts
    from tests.support.fake_clock import FakeClock
    from tests.support.fake_ports import Effects, FakeProcs, RecordingReporter

    clock = FakeClock()
    effects = Effects(clock)
    procs = FakeProcs(effects)
    for name, value in fakes.items():
        setattr(procs, name, value)
    job = JobSpec(role="r", environment="e", cluster="c", name="web", instance=0, task_id="web-0-1",
                  task=TaskSpec(name="web", processes=(ProcessSpec("web", "serve"),)))
    owner = TaskOwner(job, OwnerPorts(procs=procs, open_checkpoint=lambda: CheckpointWriter(sandbox),
                                      reporter=RecordingReporter(effects), checker=None,
                                      start_health=None, start_lifecycle=None),  # type: ignore[arg-type]
                      sandbox=sandbox, clock=clock)
    owner.start()
    try:
        yield owner, procs
    finally:
        owner.close()


def test_the_owner_writes_the_list_into_the_stoker_dir_it_opened_not_the_one_at_its_path(tmp_path, daemons):
    """A task that renames `.stoker` and puts a symlink in its place: the list was written by
    path at each step (refused through the symlink, taken by a directory of the task's own
    had it planted one), so its supervisor's `.stoker` kept a stale list or none. It goes
    through the directory the checkpoint was opened in, as the checkpoint does."""
    held, _ = daemons
    sandbox, outside = tmp_path / "sb", tmp_path / "outside"
    outside.mkdir()
    with web_owner(sandbox, held=lambda: {held.pid: start_of(held.pid)}) as (owner, procs):
        (sandbox / ".stoker").rename(sandbox / ".stoker-real")
        (sandbox / ".stoker").symlink_to(outside)
        assert owner.step() is False
    assert os.listdir(outside) == []
    (sandbox / ".stoker").unlink()
    (sandbox / ".stoker-real").rename(sandbox / ".stoker")
    assert read_held(sandbox, procs.marker) == [(held.pid, start_of(held.pid))]


def test_a_rerun_reads_nothing_from_a_stoker_dir_put_in_place_of_the_one_it_locked(tmp_path, daemons):
    """A leftover of the lost attempt renames `.stoker` and plants its own, whose checkpoint
    and list name a process of the host: the re-run read them by path and killed it. It reads
    only the `.stoker` its session locked (`pinned`)."""
    held, stranger = daemons
    lost_sandbox(tmp_path)
    write_list(tmp_path, MARKER, {held.pid: start_of(held.pid)})
    real = os.open(tmp_path / ".stoker", os.O_RDONLY | os.O_DIRECTORY)
    try:
        pin = sandboxfs.dir_id(real)
    finally:
        os.close(real)
    (tmp_path / ".stoker").rename(tmp_path / ".stoker-real")
    lost_sandbox(tmp_path)
    write_list(tmp_path, MARKER, {stranger.pid: start_of(stranger.pid)})
    assert end_lost_attempts(tmp_path, pin) == []
    assert stranger.poll() is None and held.poll() is None
    (tmp_path / ".stoker").rename(tmp_path / ".stoker-planted")
    (tmp_path / ".stoker-real").rename(tmp_path / ".stoker")
    (lost,) = end_lost_attempts(tmp_path, pin)
    assert held.pid in lost.killed and stranger.poll() is None


def test_a_rerun_kills_the_children_a_held_process_forks_while_it_is_being_killed(tmp_path):
    """A held process that forks as the re-run's kill walks its tree: the kill walked once,
    so a child forked between the walk and the parent's SIGSTOP ran on, orphaned. Now it
    walks again, the parents stopped, until a walk finds no one new (as the marker's kill)."""
    forker = subprocess.Popen(["sh", "-c", "while :; do sleep 60 & done"], start_new_session=True,
                              env={"PATH": os.environ["PATH"]}, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(proctree.children(forker.pid)) > 50, 5, message="the forker forking")
        lost_sandbox(tmp_path)
        write_list(tmp_path, MARKER, {forker.pid: start_of(forker.pid)})
        (lost,) = end_lost_attempts(tmp_path)
        assert forker.pid in lost.killed

        def survivors() -> list[int]:
            return [p.pid for p in proctree.scan().values() if p.pgrp == forker.pid and p.pid != forker.pid]

        wait_for(lambda: not survivors(), 10, message="no child of the held process left (each dies at its kill)")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(forker.pid, signal.SIGKILL)
        forker.wait()


def test_the_owner_writes_its_watchdogs_pid_for_the_figures_with_nothing_held(tmp_path):
    """`stoker status` left out of the task's figures any child of its supervisor whose
    command line said `stoker-watchdog`, which a task's daemon can say too: it leaves out the
    pid the supervisor wrote, from the first step on, before any process is held."""
    from executor.task.heldfile import read_watchdog

    with web_owner(tmp_path, watchdog_pid=4242) as (owner, procs):
        assert owner.step() is False
        assert read_watchdog(tmp_path, procs.marker) == 4242 and read_held(tmp_path, procs.marker) == []
        assert read_watchdog(tmp_path, "another-attempt") is None
