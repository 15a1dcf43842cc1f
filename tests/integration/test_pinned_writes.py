"""What a task's owner writes in `.stoker` (its checkpoint, `task.json`, `usage.json`, and
`stoker run`'s record between two attempts) goes through the `.stoker` its host session
pinned and locked (`HostSession.stoker_dir`), never a path looked up again: a job's
processes share the sandbox, and one that renamed `.stoker` and put a symlink or a
directory of its own in its place between the session's pin and the owner's start neither
gets the supervisor's files nor makes the task lose its checkpoint. Real sessions, real
owners and a real process (`true`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from config.spec import JobSpec, ProcessSpec, TaskSpec
from executor.events import TaskState
from executor.host.entry import FrontEnd
from executor.host.session import HostSession
from executor.task.checkpoint import read_records
from executor.task.checkpointbetween import append_between
from executor.task.wiring import owner_for
from tests.support.fake_ports import HeardReporter

pytestmark = pytest.mark.timeout(20)


def swap_stoker(sandbox: Path, planted: str) -> Path:
    """What a job's process may do: rename `.stoker` away and plant a symlink to a
    directory elsewhere ("symlink") or a directory of its own ("directory") in its place.
    Returns where the supervisor's files must not go."""
    (sandbox / ".stoker").rename(sandbox / ".stoker-real")
    if planted == "symlink":
        target = sandbox.parent / "elsewhere"
        target.mkdir()
        (sandbox / ".stoker").symlink_to(target)
        return target
    (sandbox / ".stoker").mkdir()
    return sandbox / ".stoker"


@pytest.mark.parametrize("planted", ["symlink", "directory"])
def test_a_task_s_files_go_into_the_stoker_its_session_pinned_not_one_put_in_its_place(tmp_path, planted):
    """`write_definition`, `UsageWriter` and the checkpoint each opened `.stoker` by path as
    the task started: through a planted symlink each was refused (the task ran without a
    checkpoint: one ERROR line), into a planted directory each wrote (the task's own, where
    `stoker status` trusts nothing). Now all go into the one the session pinned."""
    sandbox = tmp_path / "sb"
    sandbox.mkdir()
    session = HostSession.open(sandbox, front_end=FrontEnd.RUN)  # the front-end pins it first
    try:
        decoy = swap_stoker(sandbox, planted)
        job = JobSpec(role="r", environment="e", cluster="c", name="web", instance=0, task_id="web-0-1",
                      task=TaskSpec(name="web", processes=(ProcessSpec("p", "true"),)))
        final = owner_for(job, sandbox, {"PATH": "/usr/bin:/bin"}, HeardReporter()).run()
    finally:
        session.close()
    assert final.state is TaskState.FINISHED
    assert os.listdir(decoy) == []
    pinned = sandbox / ".stoker-real"
    assert {"checkpoint.jsonl", "task.json", "usage.json"} <= set(os.listdir(pinned))
    (sandbox / ".stoker").unlink() if planted == "symlink" else (sandbox / ".stoker").rmdir()
    pinned.rename(sandbox / ".stoker")
    records = read_records(sandbox)
    assert records[0]["kind"] == "header" and records[0]["task_id"] == "web-0-1"
    assert records[-1]["to"] == "FINISHED", records[-1]
    assert json.loads((sandbox / ".stoker" / "task.json").read_text())["task_id"] == "web-0-1"
    assert json.loads((sandbox / ".stoker" / "usage.json").read_text())["marker"] == records[0]["marker"]


def test_stoker_run_s_record_between_attempts_goes_into_the_pinned_stoker(tmp_path):
    """The RESTARTING record `stoker run` writes between two attempts opened `.stoker` by
    path too."""
    session = HostSession.open(tmp_path, front_end=FrontEnd.RUN)
    try:
        decoy = swap_stoker(tmp_path, "symlink")
        append_between(tmp_path, {"kind": "restart", "delay_secs": 1.0}, "web.0", session.stoker_dir)
    finally:
        session.close()
    assert os.listdir(decoy) == []
    written = (tmp_path / ".stoker-real" / "checkpoint.jsonl").read_text()
    assert json.loads(written)["kind"] == "restart"


def test_a_session_taking_an_early_start_s_lock_refuses_a_stoker_put_in_place_of_the_locked_one(tmp_path):
    """The early start locks `.stoker/supervisor.lock` and forks the task's first runs before
    the session opens `.stoker` again by path: a run that swapped it meanwhile had the session
    pin (and the task write its checkpoint into) a directory of the run's own, the sandbox's
    lock held in the other. The start fails instead, saying why."""
    import fcntl

    from executor.procs.sandboxfs import UnsafePath

    def early_lock() -> int:
        (tmp_path / ".stoker").mkdir(mode=0o700, exist_ok=True)
        fd = os.open(tmp_path / ".stoker" / "supervisor.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd

    HostSession.open(tmp_path, front_end=FrontEnd.RUN, held_lock=early_lock()).close()  # not swapped
    held = early_lock()
    swap_stoker(tmp_path, "directory")
    with pytest.raises(UnsafePath, match=r"\.stoker is not the directory this start made and locked"):
        HostSession.open(tmp_path, front_end=FrontEnd.RUN, held_lock=held)
    with pytest.raises(OSError):
        os.fstat(held)  # the session let the lock go with its failure
    assert os.listdir(tmp_path / ".stoker") == []


def test_a_stoker_renamed_away_is_said_once_by_the_writer_and_by_status_as_such(tmp_path, caplog, capsys):
    """`.stoker` renamed after the start: the supervisor went on writing into it under its
    new name without a word, and `stoker status TASK_ID` said the task was NEW, "starting
    and has recorded nothing so far" (and `status SANDBOX`: "is this a task sandbox?")."""
    import logging

    from config.registry import RegistrySettings
    from executor.cli.main import main
    from executor.host.identity import own_identity
    from executor.host.registry import Registry
    from executor.task.checkpoint import CheckpointWriter

    me, root = own_identity(), tmp_path / "root"
    (tmp_path / "sb").mkdir()
    sandbox = tmp_path / "sb"
    session = HostSession.open(sandbox, RegistrySettings(registry_root=str(root)), FrontEnd.RUN)
    try:
        session.task_started(task_id="web-0-1", job_key="c/r/e/web", label="web.0", marker="m4rk",
                             post=lambda _request: None)
        writer = CheckpointWriter(sandbox, label="web.0", stoker_dir=session.stoker_dir())
        header = {"kind": "header", "task": "web.0", "job_key": "c/r/e/web", "task_id": "web-0-1",
                  "sandbox": str(sandbox), "ports": {}, "supervisor_pid": me.pid,
                  "supervisor_start": me.start_ticks, "supervisor_boot": me.boot_id, "marker": "m4rk",
                  "processes": ["web"], "health": "none"}
        with caplog.at_level(logging.WARNING, logger="executor.task.checkpoint"):
            writer.append(header)
            (sandbox / ".stoker").rename(sandbox / ".stoker.moved")
            for to in ("STARTING", "RUNNING"):
                writer.append({"kind": "task", "from": "NEW", "to": to, "reason": "r"})
        writer.close()
        said = [r.getMessage() for r in caplog.records if "stoker_dir_moved" in r.getMessage()]
        assert len(said) == 1 and f"now {sandbox}/.stoker.moved" in said[0]
        assert len((sandbox / ".stoker.moved" / "checkpoint.jsonl").read_text().splitlines()) == 3
        for target in ("web-0-1", str(sandbox)):
            assert main(["status", target, "--root", str(root)]) == 1
            (err,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("stoker: ")]
            assert err.startswith(f"stoker: error: {sandbox}/.stoker is not the directory its supervisor made "
                                  f"(there is none): it was renamed or removed since the task started; its "
                                  f"supervisor (pid {me.pid}) still runs"), err
        for target in ("web-0-1", str(sandbox)):  # was: "... is not a task sandbox: .stoker: No such file"
            assert main(["kill", target, "--root", str(root)]) == 1
            (err,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("stoker: ")]
            assert (f"{sandbox}/.stoker' is not the directory its supervisor (pid {me.pid}) made (there is "
                    "none): it was renamed or removed since the task started; rename that back to .stoker "
                    "to control the task") in err, err
        # `stoker ps`'s row says NEW 0/0 (nothing read): the note under it says why (only
        # --json said it, while the supervisor runs).
        assert main(["ps", "--root", str(root)]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[2].startswith(f"web-0-1: {sandbox}/.stoker is not the directory its supervisor made "
                                 "(there is none)") and len(out) == 3, out
        assert Registry(RegistrySettings(registry_root=str(root))).entries()
    finally:
        session.close()


def test_status_by_path_reads_the_usage_record_through_its_registry_entrys_pin(tmp_path, capsys):
    """`stoker status SANDBOX` of a registered task whose supervisor had ended said its usage
    figures were unverified (no pin, no live lock holder), where `stoker status TASK_ID`
    read the same record through the pinned `.stoker`: the path is looked up in the registry."""
    from config.registry import RegistrySettings
    from executor.cli.main import main
    from executor.host.identity import own_identity
    from executor.task.checkpoint import CheckpointWriter
    from executor.task.usagefile import UsageWriter

    me, root, sandbox = own_identity(), tmp_path / "root", tmp_path / "sb"
    sandbox.mkdir()
    session = HostSession.open(sandbox, RegistrySettings(registry_root=str(root)), FrontEnd.RUN)
    try:
        session.task_started(task_id="web-0-1", job_key="c/r/e/web", label="web.0", marker="m4rk",
                             post=lambda _request: None)
        writer = CheckpointWriter(sandbox, label="web.0", stoker_dir=session.stoker_dir())
        writer.append({"kind": "header", "task": "web.0", "job_key": "c/r/e/web", "task_id": "web-0-1",
                       "sandbox": str(sandbox), "ports": {}, "supervisor_pid": me.pid,
                       "supervisor_start": me.start_ticks, "supervisor_boot": me.boot_id, "marker": "m4rk",
                       "processes": ["web"], "health": "none"})
        writer.append({"kind": "task", "from": "NEW", "to": "FAILED", "reason": "r"})
        writer.close()
        UsageWriter(sandbox, "m4rk", "web.0", TaskSpec(name="web", processes=(ProcessSpec("web", "true"),),
                                                       cpu=0.5, ram_bytes=1 << 26, disk_bytes=1 << 23),
                    None, wall=lambda: 1.0).start()
    finally:
        session.close()  # its supervisor ended: no one holds the lock
    for target in ("web-0-1", str(sandbox)):
        assert main(["status", target, "--root", str(root), "--json"]) == 0
        resources = json.loads(capsys.readouterr().out)["resources"]
        assert resources["cpu_reserved"] == 0.5 and resources["unverified"] is None, (target, resources)


def test_a_stoker_renamed_away_is_said_at_the_next_disk_sample_or_file_beside_the_checkpoint(tmp_path, caplog):
    """An idle task writes no record for hours: its `.stoker` renamed away was said only at
    the next record. Its next disk sample (usage.json, `_TaskFiles` wires the usage writer
    to the checkpoint's `say_if_moved`) says it, as does a held.json written beside it."""
    import logging

    from executor.events import DiskSampled
    from executor.task.checkpoint import CheckpointWriter
    from executor.task.usagefile import UsageWriter
    from executor.task.wiring import _TaskFiles

    usage = UsageWriter(tmp_path, "m4rk", "web.0", TaskSpec(name="web", processes=(ProcessSpec("web", "true"),)),
                        60.0)
    files = _TaskFiles(CheckpointWriter(tmp_path, label="web.0"), usage)
    try:
        files.append_many([{"kind": "header", "task": "web.0"}])
        stoker_dir = os.open(tmp_path / ".stoker", os.O_RDONLY | os.O_DIRECTORY)
        usage.start(stoker_dir)  # as the session's pinned fd is given
        os.close(stoker_dir)
        (tmp_path / ".stoker").rename(tmp_path / ".stoker.moved")
        with caplog.at_level(logging.WARNING):
            usage.sampled(DiskSampled(4096, files=1, unreadable=0, secs=0.01))
            said = [r.getMessage() for r in caplog.records if "stoker_dir_moved" in r.getMessage()]
            assert len(said) == 1 and f"now {tmp_path}/.stoker.moved" in said[0], said
            files.replace_beside("held.json", b"{}")  # said once: not again
    finally:
        files.close()
    assert len([r for r in caplog.records if "stoker_dir_moved" in r.getMessage()]) == 1
    assert not (tmp_path / ".stoker").exists()
