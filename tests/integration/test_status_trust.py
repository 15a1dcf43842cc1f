"""What `stoker status` tells of a sandbox whose checkpoint says little or was damaged, and
what it trusts there: real `stoker run`s, their real checkpoints cut or damaged, lock files
written as a task that owns its sandbox could write them."""
from __future__ import annotations

import fcntl
import json
import os
import textwrap
from pathlib import Path

from tests.support.statuscli import status
from tests.support.stoker_proc import StokerProcess, kill_leftovers, task_pids

FAILING = """
    jobs = [Job(cluster='local', role='me', environment='test', name='fails',
                task=Task(processes=[Process(name='bad', cmdline='exit 3', max_failures=1)],
                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB), finalization_wait=1))]
"""
SERVICE = """
    jobs = [Service(cluster='local', role='me', environment='test', name='web',
                    task=Task(processes=[Process(name='web', cmdline='exec sleep 300')],
                              resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB), finalization_wait=1))]
"""


def _stoker_run(tmp_path: Path, job: str) -> tuple[StokerProcess, Path]:
    """`stoker run` of `job` in TMP/sb, its registry in TMP/root (not the host's)."""
    config, sandbox, work = tmp_path / "job.aurora", tmp_path / "sb", tmp_path / "work"
    config.write_text(textwrap.dedent(job))
    work.mkdir()
    return StokerProcess(["run", str(config), "--sandbox", str(sandbox)], work,
                         env={"STOKER_ROOT": str(tmp_path / "root")}), sandbox


def test_status_json_of_a_sandbox_without_a_record_names_the_user_its_leftovers_are_judged_against(
        tmp_path, capsys, monkeypatch):
    """A real `stoker run` SIGKILLed, its checkpoint cut inside its header (no whole record):
    `--json` printed the short form (`supervisor_pid`, `problem`, leftovers) without
    `task_uid` / `task_uid_source`, which the contract names for every view: it is the
    sandbox's owner (no header names the task's user), as for an older Stoker's checkpoint."""
    monkeypatch.setenv("STOKER_ROOT", str(tmp_path / "root"))
    proc, sandbox = _stoker_run(tmp_path, SERVICE)
    try:
        proc.wait_output("task             STARTING → RUNNING", timeout_secs=30)
        pids = task_pids(sandbox)
        os.killpg(proc.pid, 9)
        proc.wait()
        kill_leftovers(pids)
        checkpoint = sandbox / ".stoker" / "checkpoint.jsonl"
        checkpoint.write_bytes(checkpoint.read_bytes()[:60])  # its header cut
        code, out, _ = status(capsys, sandbox, "--json")
    finally:
        proc.close()
        kill_leftovers(task_pids(sandbox))
    doc = json.loads(out)
    assert (code, doc["state"], doc["supervisor_pid"]) == (0, "LOST", proc.pid), doc
    assert "holds no record" in doc["problem"]
    assert (doc["task_uid"], doc["task_uid_source"]) == (os.stat(sandbox).st_uid, "sandbox_owner"), doc


def test_status_json_of_a_starting_supervisor_names_the_sandbox_owner_as_the_task_s_user(tmp_path, capsys):
    """No checkpoint, the lock held (a supervisor starting: NEW): the short form carries
    `task_uid` too."""
    (tmp_path / ".stoker").mkdir()
    fd = os.open(tmp_path / ".stoker" / "supervisor.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        code, out, _ = status(capsys, tmp_path, "--json", "--root", tmp_path / "root")
    finally:
        os.close(fd)
    doc = json.loads(out)
    assert (code, doc["state"], doc["supervisor_pid"]) == (0, "NEW", os.getpid()), doc
    assert (doc["task_uid"], doc["task_uid_source"]) == (os.stat(tmp_path).st_uid, "sandbox_owner")
