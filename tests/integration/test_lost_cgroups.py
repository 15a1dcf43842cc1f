"""A lost attempt's task cgroup, as a re-run finds and removes it (`cgrouplost.lost_cgroups`,
`cgrouplost.remove_emptied`, `leftovers.end_lost_attempts`), with real namespaces, mounts,
cgroups and processes.

- Left frozen in the v1 freezer (its supervisor and watchdog SIGKILLed as the watchdog's
  kill had frozen it, or an operator froze it): a frozen process dies only once thawed, so
  the re-run's SIGKILL left them in it, frozen for good, and the cgroup with them.
- A marker the task planted in its checkpoint (the task may write it), naming a live task's
  cgroup beside the re-run's (then `stoker-` and that task's marker's first 16 characters,
  which /proc/PID/cgroup shows anyone): the re-run removed the empty cgroups below it (that
  task's own, a container runtime's), then waited 2 s on it. Now one holding a process of
  another task is left alone, and said so; and the name holds the whole marker, so 16
  characters name no cgroup (a starting task's, made and empty, was removed).
- An empty lost cgroup outside the re-run's own cgroups (another session's, under
  `STOKER_CGROUPS=DIR`) waited for a later start's stale sweep there: now the header names
  where it was made, and the re-run removes it (this user's only).
- In a cgroup namespace the kernel shows a process outside it at a path with `..` levels
(`/../x/stoker-ID`, /proc/PID/cgroup), and a cgroup hierarchy mounted inside it (a
container's own /sys/fs/cgroup) shows only the namespace's subtree, rooted at `/`: that
process's cgroup is on none of this namespace's mounts. Joined to the mount point as it
was, the path named a directory outside the cgroup file system, and the re-run's rmdir
removed it (and the empty directories below it).

Every cgroup made is removed at teardown, every process killed; the mount lives and ends
with a mount namespace of the test's own."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from executor.procs import cgroups
from executor.procs.cgroup_paths import CgroupKind, own_places
from executor.procs.spawn import TASK_MARKER
from executor.task import leftovers
from executor.task.checkpoint import CheckpointWriter
from executor.task.leftovers import end_lost_attempts
from tests.support import cgroups as cgroup_support
from tests.support.stoker_proc import REPO
from tests.support.users import throwaway_user
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)

# The re-run's look-up as `end_lost_attempts` does it (then its removal), from a cgroup
# namespace rooted at argv[1], with the freezer hierarchy mounted at argv[2] inside it.
RERUN = """
import json, subprocess, sys
from executor.procs import cgrouplost
subprocess.run(["mount", "-t", "cgroup", "-o", "freezer", "none", sys.argv[2]], check=True)
found = sorted(cgrouplost.lost_cgroups(sys.argv[3], [int(sys.argv[4])]))
said = [cgrouplost.remove_emptied(d, 5) for d in found]
print(json.dumps({"found": found, "said": said}))
"""


def _namespaced() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: cgroup namespaces, mounts, the freezer's cgroups")
    if not shutil.which("unshare") or not os.access(cgroup_support.FREEZER, os.W_OK):
        pytest.skip("no unshare(1), or no writable cgroup-v1 freezer here")


def test_a_marked_process_outside_the_re_run_s_cgroup_namespace_names_no_directory(tmp_path):
    """The marked process is in `G/x/stoker-ID`, the re-run in `G/ns`'s namespace with the
    freezer mounted at `mnt/d`: `mnt/d/../x/stoker-ID` is `mnt/x/stoker-ID`, a plain
    directory here, which must stay (as must the one below it)."""
    _namespaced()
    tag = uuid.uuid4().hex
    group = Path(cgroup_support.FREEZER, f"lostns-{tag[:8]}")
    lost = group / "x" / cgroups.task_name(tag)
    plain = tmp_path / "mnt" / "x" / cgroups.task_name(tag)
    (plain / "inner").mkdir(parents=True)
    (tmp_path / "mnt" / "d").mkdir()
    marked = None
    try:
        (group / "ns").mkdir(parents=True)
        lost.mkdir(parents=True)
        marked = subprocess.Popen(["sleep", "600"])
        (lost / "cgroup.procs").write_text(str(marked.pid))
        enter = f'echo $$ > {group / "ns" / "cgroup.procs"} && exec unshare --cgroup "$@"'
        rerun = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", enter, "sh",
             sys.executable, "-c", RERUN, str(group / "ns"), str(tmp_path / "mnt" / "d"),
             tag, str(marked.pid)],
            cwd=REPO, capture_output=True, text=True, timeout=30)
        assert rerun.returncode == 0, rerun.stderr
        assert json.loads(rerun.stdout) == {"found": [], "said": []}
        assert (plain / "inner").is_dir()
    finally:
        if marked is not None:
            marked.kill()
            marked.wait(10)
        for directory in (lost, lost.parent, group / "ns", group):
            with contextlib.suppress(OSError):
                directory.rmdir()


def _lost_attempt(sandbox: Path, marker: str, cgroup: Path | None = None) -> None:
    """A checkpoint whose one attempt recorded no end, its supervisor of another boot (its
    task cgroup made at `cgroup`, the header says)."""
    sandbox.mkdir()
    writer = CheckpointWriter(sandbox)
    writer.append_many([
        {"kind": "header", "task": "web.0", "job_key": "c/r/e/web", "task_id": "web-0-1",
         "sandbox": str(sandbox), "ports": {}, "supervisor_pid": 1, "supervisor_start": 1,
         "supervisor_boot": "00000000-0000-4000-8000-000000000000", "marker": marker,
         "processes": ["web"], "health": "none", "wall": 1.0, "cgroup": str(cgroup or "")},
        {"kind": "task", "from": "NEW", "to": "RUNNING", "reason": "launched", "wall": 1.0}])
    writer.close()


def test_a_lost_attempt_s_processes_left_frozen_in_the_v1_freezer_are_killed_and_it_removed(tmp_path):
    _namespaced()
    marker = uuid.uuid4().hex
    lost = Path(cgroup_support.FREEZER, cgroups.task_name(marker))
    _lost_attempt(tmp_path / "sb", marker)
    frozen = None
    try:
        lost.mkdir()
        frozen = subprocess.Popen(["sleep", "600"], env={**os.environ, TASK_MARKER: marker})
        (lost / "cgroup.procs").write_text(str(frozen.pid))
        (lost / "freezer.state").write_text("FROZEN")
        wait_for(lambda: (lost / "freezer.state").read_text().strip() == "FROZEN", 10, message="frozen")
        (attempt,) = end_lost_attempts(tmp_path / "sb")
        assert frozen.wait(10) == -9
        assert attempt.killed == (frozen.pid,)
        assert attempt.cgroups == (f"removed its cgroup {lost}",), attempt.describe()
        assert not lost.exists()
    finally:
        with contextlib.suppress(OSError):
            (lost / "freezer.state").write_text("THAWED")
        if frozen is not None:
            frozen.kill()
            frozen.wait(10)
        with contextlib.suppress(OSError):
            lost.rmdir()


def _v2_home() -> str:
    if os.geteuid() != 0:
        pytest.skip("needs root: the cgroups here are root's")
    places = own_places(Path("/proc/self/cgroup").read_text(), Path("/proc/self/mountinfo").read_text())
    home = next((p.directory for p in places if p.kind is CgroupKind.V2), None)
    if home is None or not os.access(home, os.W_OK):
        pytest.skip("no writable cgroup-v2 hierarchy shows this process's cgroup")
    return home


def test_a_planted_marker_naming_a_live_task_s_cgroup_leaves_it_alone(tmp_path):
    """The cgroup the planted marker names holds a process of another task (one it runs
    inside, with its own marker): neither it nor the one below it is touched."""
    planted, live_marker = uuid.uuid4().hex, uuid.uuid4().hex
    live = Path(_v2_home(), cgroups.task_name(planted))
    _lost_attempt(tmp_path / "sb", planted)  # no process carries it
    task = None
    try:
        (live / "inner").mkdir(parents=True)  # the live task's own, empty
        task = subprocess.Popen(["sleep", "600"], env={**os.environ, TASK_MARKER: live_marker})
        (live / "cgroup.procs").write_text(str(task.pid))
        (attempt,) = end_lost_attempts(tmp_path / "sb")
        assert attempt.killed == ()
        assert attempt.cgroups == (f"left {live} alone: another task's or another user's process(es) "
                                   f"are in it: {task.pid}",)
        assert task.poll() is None and (live / "inner").is_dir()
    finally:
        if task is not None:
            task.kill()
            task.wait(10)
        for directory in (live / "inner", live):
            with contextlib.suppress(OSError):
                directory.rmdir()


def test_a_planted_16_character_marker_leaves_a_starting_task_s_empty_cgroup(tmp_path):
    """Was (the cgroup named by the marker's first 16 characters): a task that had made its
    cgroup and not yet entered it lost it to a re-run whose checkpoint named those 16."""
    live_marker = uuid.uuid4().hex
    starting = Path(_v2_home(), cgroups.task_name(live_marker))
    _lost_attempt(tmp_path / "sb", live_marker[:16])
    try:
        starting.mkdir()
        assert end_lost_attempts(tmp_path / "sb") == []
        assert starting.is_dir()
    finally:
        with contextlib.suppress(OSError):
            starting.rmdir()


@pytest.mark.parametrize("owner", ["this user", "another user"])
def test_a_lost_attempt_s_empty_cgroup_elsewhere_is_found_where_its_header_says(tmp_path, owner):
    """Was: its cgroup outside the re-run's (another session's, a `STOKER_CGROUPS=DIR`), with
    no process left in it to show it, waited for a later start's stale sweep under the same
    parent. Another user's cgroup of that name and place (the header is the task's to
    write) is left."""
    marker = uuid.uuid4().hex
    parent = Path(_v2_home(), f"lostelse-{marker[:8]}")
    lost = parent / cgroups.task_name(marker)
    _lost_attempt(tmp_path / "sb", marker, lost)
    try:
        lost.mkdir(parents=True)
        with contextlib.ExitStack() as stack:
            if owner == "another user":
                bob, _ = stack.enter_context(throwaway_user())
                os.chown(lost, bob.pw_uid, -1)
                assert end_lost_attempts(tmp_path / "sb") == []
                assert lost.is_dir()
            else:
                (attempt,) = end_lost_attempts(tmp_path / "sb")
                assert attempt.cgroups == (f"removed its cgroup {lost}",), attempt.describe()
                assert not lost.exists()
    finally:
        for directory in (lost, parent):
            with contextlib.suppress(OSError):
                directory.rmdir()


def test_a_lost_cgroup_its_watchdog_removed_first_is_said_to_be_already_gone(tmp_path):
    """Was: `removed its cgroup DIR` though the re-run's rmdir found it gone (the attempt's
    own watchdog, told by the supervisor's death, removed it between the re-run's look-up
    and its removal)."""
    gone = tmp_path / "stoker-0123456789abcdef"
    gone.mkdir()
    gone.rmdir()  # as the other side does
    assert leftovers._remove_lost(str(gone), []) == \
        f"its cgroup {gone} was already gone (removed first by another: its own watchdog)"
