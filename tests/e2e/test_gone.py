"""A registry entry whose sandbox no longer holds its checkpoint, its supervisor gone: the
sandbox deleted (and left, or run again). `stoker ps --all` showed it NEW 0/0, `stoker status
TASK_ID` failed; now it is GONE, with why and its end as its entry recorded it."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(120)

JOB = """
jobs = [Job(cluster='local', role='me', environment='test', name='gone',
            task=Task(processes=[Process(name='p', cmdline='true')],
                      resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
"""


def stoker(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MESOS_", "STOKER_"))}
    env.update(PYTHONPATH=str(REPO), HOME=str(tmp_path))
    return subprocess.run([sys.executable, "-m", "executor", *args, "--root", str(tmp_path / "root")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def ran(tmp_path: Path) -> str:
    """`stoker run` of the job in `sb`, to its end; the task id it ran."""
    done = stoker(tmp_path, "run", "job.aurora", "--sandbox", str(tmp_path / "sb"))
    assert done.returncode == 0, done.stderr[-2000:]
    ids = [r["task_id"] for r in json.loads(stoker(tmp_path, "ps", "--all", "--json").stdout)]
    return ids[-1]


def test_an_entry_whose_sandbox_was_deleted_then_run_again_is_gone_with_its_end(tmp_path: Path) -> None:
    (tmp_path / "job.aurora").write_text(JOB)
    first = ran(tmp_path)
    shutil.rmtree(tmp_path / "sb")
    [row] = json.loads(stoker(tmp_path, "ps", "--all", "--json").stdout)
    assert (row["task_id"], row["state"], row["ended"]) == (first, "GONE", True)
    assert row["problem"].startswith("its sandbox no longer holds its checkpoint: removed; its supervisor "
                                     f"(pid {row['supervisor_pid']}) ended at "), row["problem"]
    assert stoker(tmp_path, "ps").stdout.startswith("no live tasks")  # ended: `--all` lists it

    second = ran(tmp_path)
    text = stoker(tmp_path, "ps", "--all").stdout
    [line] = [line for line in text.splitlines() if line.startswith(first + " ")]
    assert line.split()[2] == "GONE", text
    assert f"{first}: its sandbox no longer holds its checkpoint: now task {second}'s; its supervisor" in text
    status = stoker(tmp_path, "status", first)
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith(f"sandbox {tmp_path / 'sb'}  state=GONE\n"), status.stdout
    doc = json.loads(stoker(tmp_path, "status", first, "--json").stdout)
    assert (doc["state"], doc["supervisor_alive"]) == ("GONE", False)
    assert json.loads(stoker(tmp_path, "status", second, "--json").stdout)["state"] == "FINISHED"


def test_a_task_id_whose_sandbox_was_deleted_is_gone_in_status_too(tmp_path: Path) -> None:
    """`stoker status TASK_ID` of a task whose sandbox was deleted (and not run again), its
    supervisor gone: GONE, as `ps` says (was: `its sandbox ... no longer exists`, exit 2, the
    lookup's refusal before the inspection)."""
    (tmp_path / "job.aurora").write_text(JOB)
    first = ran(tmp_path)
    shutil.rmtree(tmp_path / "sb")
    status = stoker(tmp_path, "status", first)
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith(f"sandbox {tmp_path / 'sb'}  state=GONE\n"), status.stdout
    assert "  its sandbox no longer holds its checkpoint: removed; its supervisor (pid " in status.stdout
    doc = json.loads(stoker(tmp_path, "status", first, "--json").stdout)
    assert (doc["state"], doc["supervisor_alive"]) == ("GONE", False)
    assert doc["problem"].startswith("its sandbox no longer holds its checkpoint: removed; "), doc["problem"]
    for command in (["kill", first], ["tail", first, "p"]):  # nothing to control or read: refused as ever
        refused = stoker(tmp_path, *command)
        assert refused.returncode == 2 and "no longer exists" in refused.stderr, refused


def test_a_task_whose_checkpoint_file_was_deleted_is_gone_not_a_supervisor_that_recorded_nothing(
        tmp_path: Path) -> None:
    """Its checkpoint removed, its `.stoker` (and the definition written just before the
    checkpoint's first record) kept: GONE, with its end (was: NEW 0/0, "its supervisor let
    go of the sandbox before it recorded anything", which it had)."""
    (tmp_path / "job.aurora").write_text(JOB)
    first = ran(tmp_path)
    (tmp_path / "sb" / ".stoker" / "checkpoint.jsonl").unlink()
    [row] = json.loads(stoker(tmp_path, "ps", "--all", "--json").stdout)
    assert (row["task_id"], row["state"], row["ended"]) == (first, "GONE", True)
    assert row["problem"].startswith("its sandbox no longer holds its checkpoint: its file removed, its .stoker "
                                     f"kept; its supervisor (pid {row['supervisor_pid']}) ended at "), row["problem"]
    for target in (first, str(tmp_path / "sb")):
        status = stoker(tmp_path, "status", target)
        assert status.returncode == 0, status.stderr
        assert status.stdout.startswith(f"sandbox {tmp_path / 'sb'}  state=GONE\n"), status.stdout
    assert stoker(tmp_path, "tail", first, "p").returncode == 0  # its logs are still its own
    refused = stoker(tmp_path, "kill", first)  # (was: "its task is LOST")
    assert refused.returncode == 1 and refused.stderr.startswith(
        f"stoker: error: no live supervisor holds '{tmp_path / 'sb'}' (its task is GONE: its sandbox no longer holds "
        "its checkpoint: its file removed, its .stoker kept; "), refused


def test_a_gone_task_id_whose_sandbox_a_later_task_holds_tails_none_of_its_logs(tmp_path: Path) -> None:
    """`stoker tail OLD_ID PROCESS` once the sandbox was deleted and run again printed the
    later task's log as the old task's (exit 0, no word); it says whose the sandbox is now
    (exit 1). The later task's id tails it."""
    (tmp_path / "job.aurora").write_text(JOB.replace("cmdline='true'", "cmdline='echo second run'"))
    first = ran(tmp_path)
    shutil.rmtree(tmp_path / "sb")
    second = ran(tmp_path)
    refused = stoker(tmp_path, "tail", first, "p")
    assert (refused.returncode, refused.stdout) == (1, ""), refused
    assert refused.stderr.startswith(f"stoker: error: task {first!r} is GONE: the logs in '{tmp_path / 'sb'}' are "
                                     f"another task's (its sandbox no longer holds its checkpoint: now task "
                                     f"{second}'s; its supervisor (pid "), refused.stderr
    shown = stoker(tmp_path, "tail", second, "p")
    assert (shown.returncode, shown.stdout) == (0, "second run\n"), shown
    # (was: "not a task sandbox ... the task may have put another in its place"; the same when the new
    # `.stoker` took the old one's inode number, the one its entry pins)
    for command in (["kill", first], ["restart", first, "p"]):
        refused = stoker(tmp_path, *command)
        assert refused.returncode == 1, refused
        assert refused.stderr.startswith(f"stoker: error: no live supervisor holds '{tmp_path / 'sb'}' (its task is "
                                         f"GONE: its sandbox no longer holds its checkpoint: now task {second}'s; "), \
            refused.stderr


def test_a_sandbox_copied_back_is_not_said_to_be_a_later_task_s(tmp_path: Path) -> None:
    """A sandbox copied back (a restore; a move to another disk) holds a `.stoker` of its own
    task id that its supervisor did not make: GONE (not read, as any `.stoker` not pinned),
    said as such (was: "now task ID's", its own id, as if a later task had it), and its
    logs, its own, are tailed."""
    (tmp_path / "job.aurora").write_text(JOB.replace("cmdline='true'", "cmdline='echo its own'"))
    first = ran(tmp_path)
    shutil.copytree(tmp_path / "sb", tmp_path / "copy", symlinks=True)
    shutil.rmtree(tmp_path / "sb")
    (tmp_path / "copy").rename(tmp_path / "sb")
    [row] = json.loads(stoker(tmp_path, "ps", "--all", "--json").stdout)
    assert (row["task_id"], row["state"]) == (first, "GONE")
    assert row["problem"].startswith(f"its sandbox no longer holds its checkpoint: another .stoker has its name, "
                                     f"whose checkpoint names task {first} too (its sandbox copied back, or the "
                                     f"task's own making: not read); its supervisor (pid "), row["problem"]
    shown = stoker(tmp_path, "tail", first, "p")
    assert (shown.returncode, shown.stdout) == (0, "its own\n"), shown
