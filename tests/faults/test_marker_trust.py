"""A task's marker is no secret, so a root re-run must never read a checkpoint another user
could have written (docs/design.md §9).

Every user may read each task's full `STOKER_TASK_MARKER` value: it is an argument of the
task's watchdog (`/proc/PID/cmdline` is world-readable). A root `stoker run` re-run kills
every process carrying the marker a lost attempt's checkpoint header names, whoever runs it
(`leftovers.end_lost_attempts`). What keeps one user from having root kill another's
processes is that the re-run refuses a sandbox another user owns (or could change) before
it reads anything in it: here alice plants bob's marker in a checkpoint of her sandbox, and
root's `stoker run` there kills nothing of bob's. And, should a checkpoint naming another
user's marker get past that (root's own task may write its checkpoint), the re-run kills by
marker only processes of its own user, and names the others it left.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from executor.cli.main import main
from executor.host import identity
from executor.host.sandbox import open_stoker_dir
from executor.procs import pidsignal
from executor.task.checkpoint import CheckpointWriter
from executor.task.heldfile import write_held
from executor.task.leftovers import end_lost_attempts
from tests.support.proc_scan import TASK_MARKER, is_live
from tests.support.stoker_proc import StokerProcess
from tests.support.users import needs_root, open_sandbox, throwaway_user

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]

CONFIG = """
    p = Process(name='p', cmdline='true')
    jobs = [Job(cluster='local', role='me', environment='test', name='once',
                task=Task(processes=[p], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
"""


def _plant(sandbox: Path, marker: str, owner: int, **header: object) -> None:
    """A checkpoint whose one attempt recorded no end, its supervisor gone, naming `marker`
    (and `header`'s further fields); the sandbox and everything in it then `owner`'s (theirs
    to write)."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    wall = time.time()
    writer = CheckpointWriter(sandbox)
    writer.append_many([
        {"kind": "header", "task": "once.0", "job_key": "local/me/test/once", "task_id": "once-0-1",
         "sandbox": str(sandbox), "ports": {}, "supervisor_pid": gone.pid, "supervisor_start": 1,
         "supervisor_boot": identity.boot_id(), "marker": marker, "processes": ["p"],
         "health": "none", "wall": wall, **header},
        {"kind": "task", "from": "NEW", "to": "RUNNING", "reason": "processes started", "wall": wall}])
    writer.close()
    for where, dirs, files in os.walk(sandbox):
        for name in [where, *(os.path.join(where, n) for n in dirs + files)]:
            os.chown(name, owner, owner, follow_symlinks=False)


def _rerun(tmp_path: Path, sandbox: Path) -> tuple[int, StokerProcess]:
    """`stoker run` of CONFIG in `sandbox` (a re-run: `_plant` gave it a checkpoint), to its
    end: its exit status, and the process, for what it said."""
    config = tmp_path / "once.aurora"
    config.write_text(textwrap.dedent(CONFIG))
    rerun = StokerProcess(["run", str(config), "--sandbox", str(sandbox)], tmp_path)
    try:
        return rerun.wait(30), rerun
    finally:
        rerun.close()


@needs_root
def test_root_rerun_in_another_user_s_sandbox_kills_no_process_its_checkpoint_names(tmp_path):
    marker = uuid.uuid4().hex  # bob's task's, as alice read it off its watchdog's command line
    with throwaway_user() as (alice, _), throwaway_user() as (bob, _), open_sandbox() as sandbox:
        victim = subprocess.Popen(["sleep", "60"], env={"PATH": os.environ["PATH"], TASK_MARKER: marker},
                                  user=bob.pw_uid, group=bob.pw_gid, extra_groups=[])
        try:
            _plant(sandbox, marker, alice.pw_uid)
            code, rerun = _rerun(tmp_path, sandbox)
            said = rerun.stdout() + rerun.stderr()
            assert victim.poll() is None and is_live(victim.pid), f"root killed bob's process:\n{said}"
            assert code != 0 and f"sandbox '{sandbox}' belongs to {alice.pw_name}" in rerun.stderr(), said
            assert "recorded no end" not in said
        finally:
            victim.kill()
            victim.wait()


@needs_root
def test_a_root_re_run_kills_by_marker_only_root_s_processes_and_names_the_others_left(tmp_path):
    """Was: root's re-run in its own sandbox, whose checkpoint names bob's marker, SIGKILLed
    bob's process along with root's (the kill by marker checked no uid)."""
    marker = uuid.uuid4().hex
    env = {"PATH": os.environ["PATH"], TASK_MARKER: marker}
    with throwaway_user() as (bob, _), open_sandbox() as sandbox:
        victim = subprocess.Popen(["sleep", "60"], env=env, user=bob.pw_uid, group=bob.pw_gid, extra_groups=[])
        own = subprocess.Popen(["sleep", "60"], env=env)  # the lost attempt's, root's
        try:
            _plant(sandbox, marker, 0)
            code, rerun = _rerun(tmp_path, sandbox)
            said = rerun.stdout() + rerun.stderr()
            assert code == 0, said
            assert own.wait(10) == -9, said
            assert victim.poll() is None and is_live(victim.pid), f"root killed bob's process:\n{said}"
            assert (f"killed the 1 process(es) it left running: {own.pid}; left the 1 process(es) of other "
                    f"users that carry its marker: {victim.pid} ({bob.pw_name} (uid {bob.pw_uid}))") in said, said
        finally:
            for proc in (victim, own):
                proc.kill()
                proc.wait()


@needs_root
def test_status_lists_as_a_lost_task_s_leftovers_only_its_user_s_marked_processes(tmp_path):
    """Was: `stoker status` listed bob's process carrying the marker of root's LOST task as
    that task's leftover (counted too: /metrics, `ps`'s running processes). Now it is shown
    apart, with its user."""
    marker = uuid.uuid4().hex
    env = {"PATH": os.environ["PATH"], TASK_MARKER: marker}
    with throwaway_user() as (bob, _), open_sandbox() as sandbox:
        other = subprocess.Popen(["sleep", "60"], env=env, user=bob.pw_uid, group=bob.pw_gid, extra_groups=[])
        own = subprocess.Popen(["sleep", "60"], env=env)
        try:
            _plant(sandbox, marker, 0)
            (tmp_path / "json").mkdir()
            (tmp_path / "text").mkdir()
            status = StokerProcess(["status", str(sandbox), "--json"], tmp_path / "json")
            text = StokerProcess(["status", str(sandbox)], tmp_path / "text")
            try:
                assert status.wait(30) == 0 and text.wait(30) == 0, status.stderr() + text.stderr()
            finally:
                status.close()
                text.close()
            doc = json.loads(status.stdout())
            assert [p["pid"] for p in doc["leftovers"]] == [own.pid], doc["leftovers"]
            assert doc["foreign_processes"] == [{"pid": other.pid, "user": f"{bob.pw_name} (uid {bob.pw_uid})",
                                                 "command": "sleep 60"}]
            said = text.stdout()
            assert "other users' processes carrying the task's marker" in said, said
            assert re.search(rf"^\s*{other.pid}\s+{bob.pw_name} \(uid {bob.pw_uid}\)\s+sleep 60$", said, re.M), said
        finally:
            for proc in (other, own):
                proc.kill()
                proc.wait()


@needs_root
def test_status_through_a_symlink_to_the_sandbox_counts_its_owner_s_processes_as_its_leftovers(tmp_path, capsys):
    """Was: the task's user was the owner of the path as given (lstat): `stoker status` through
    a symlink of root's to a role's sandbox (the Mesos agent's `runs/latest`) showed the role's
    leftover as another user's process, counted nowhere."""
    marker = uuid.uuid4().hex
    with throwaway_user() as (bob, _), open_sandbox() as sandbox:
        own = subprocess.Popen(["sleep", "60"], env={"PATH": os.environ["PATH"], TASK_MARKER: marker},
                               user=bob.pw_uid, group=bob.pw_gid, extra_groups=[])
        try:
            _plant(sandbox, marker, bob.pw_uid)
            (tmp_path / "latest").symlink_to(sandbox)
            assert main(["status", str(tmp_path / "latest"), "--json"]) == 0
            doc = json.loads(capsys.readouterr().out)
            assert [p["pid"] for p in doc["leftovers"]] == [own.pid], doc["foreign_processes"]
            assert doc["foreign_processes"] == [], doc
        finally:
            own.kill()
            own.wait()


@needs_root
def test_another_user_s_marked_process_its_root_watchdog_held_is_a_leftover_killed_and_not_named_left(tmp_path, capsys):
    """A root task's daemon that dropped to bob, held by its watchdog (the list is root's, no
    one else's to write: its every process counts). Was: `stoker status` showed it as another
    user's, not a leftover (the held list's leftovers skipped every pid carrying the
    marker), and the re-run, which killed it as held, said it had left it."""
    marker = uuid.uuid4().hex
    with throwaway_user() as (bob, _), open_sandbox() as sandbox:
        daemon = subprocess.Popen(["sleep", "60"], env={"PATH": os.environ["PATH"], TASK_MARKER: marker},
                                  user=bob.pw_uid, group=bob.pw_gid, extra_groups=[])
        try:
            _plant(sandbox, marker, 0)
            stoker_dir = open_stoker_dir(sandbox)
            try:
                write_held(stoker_dir, marker, {daemon.pid: pidsignal.read_stat(daemon.pid)[2]})  # type: ignore[index]
            finally:
                os.close(stoker_dir)
            assert main(["status", str(sandbox), "--json"]) == 0
            doc = json.loads(capsys.readouterr().out)
            assert [p["pid"] for p in doc["leftovers"]] == [daemon.pid], doc
            assert doc["foreign_processes"] == [], doc
            (lost,) = end_lost_attempts(sandbox)
            assert lost.killed == (daemon.pid,) and lost.foreign == (), lost.describe()
            assert daemon.wait(10) == -9
        finally:
            daemon.kill()
            daemon.wait()


@needs_root
@pytest.mark.parametrize("writer", ["alice", "root", "root, .stoker writable by all"])
def test_a_header_s_run_uid_counts_only_when_no_one_but_root_or_that_user_could_write_it(writer, capsys):
    """The header names bob as the user its processes ran as (a Docker task's image user,
    not the sandbox's owner). Written by root (the supervisor's `.stoker`), bob's marked
    process is its leftover; in a `.stoker` alice (the sandbox's owner: its processes share
    it) made, or one anyone may write, the name is not trusted: bob's process stays apart,
    or alice could have `stoker status` call any user's process her task's leftover."""
    marker = uuid.uuid4().hex
    with throwaway_user() as (alice, _), throwaway_user() as (bob, _), open_sandbox() as sandbox:
        other = subprocess.Popen(["sleep", "60"], env={"PATH": os.environ["PATH"], TASK_MARKER: marker},
                                 user=bob.pw_uid, group=bob.pw_gid, extra_groups=[])
        try:
            _plant(sandbox, marker, alice.pw_uid if writer == "alice" else 0, run_uid=bob.pw_uid)
            os.chown(sandbox, alice.pw_uid, alice.pw_gid)
            if writer.endswith("by all"):
                os.chmod(sandbox / ".stoker", 0o777)
            assert main(["status", str(sandbox), "--json"]) == 0
            doc = json.loads(capsys.readouterr().out)
            trusted = writer == "root"
            assert [p["pid"] for p in doc["leftovers"]] == ([other.pid] if trusted else []), doc
            assert [p["pid"] for p in doc["foreign_processes"]] == ([] if trusted else [other.pid]), doc
            # the uid they were judged against, and whence (was: only each attempt's `run_uid`, as recorded)
            assert (doc["task_uid"], doc["task_uid_source"]) == (
                (bob.pw_uid, "checkpoint_header") if trusted else (alice.pw_uid, "sandbox_owner")), doc
            assert [a["run_uid"] for a in doc["attempts"]] == [bob.pw_uid]  # as recorded, trusted or not
        finally:
            other.kill()
            other.wait()
