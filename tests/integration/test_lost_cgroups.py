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
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.cli.main import main
from executor.procs import cgrouplost, cgroups
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


@contextlib.contextmanager
def _frozen_in(cgroup: Path, marker: str) -> Iterator[subprocess.Popen]:
    """A `sleep` carrying the task `marker`, in the v1 freezer cgroup `cgroup` (made here),
    FROZEN: a lost attempt's process its kill froze. Thawed, killed and removed at the end."""
    frozen = None
    try:
        cgroup.mkdir()
        frozen = subprocess.Popen(["sleep", "600"], env={**os.environ, TASK_MARKER: marker})
        (cgroup / "cgroup.procs").write_text(str(frozen.pid))
        (cgroup / "freezer.state").write_text("FROZEN")
        wait_for(lambda: (cgroup / "freezer.state").read_text().strip() == "FROZEN", 10, message="frozen")
        yield frozen
    finally:
        with contextlib.suppress(OSError):
            (cgroup / "freezer.state").write_text("THAWED")
        if frozen is not None:
            frozen.kill()
            frozen.wait(10)
        with contextlib.suppress(OSError):
            wait_for(lambda: not cgroups.read_pids(str(cgroup)), 10, message="emptied")
            cgroup.rmdir()


def test_a_lost_attempt_s_processes_left_frozen_in_the_v1_freezer_are_killed_and_it_removed(tmp_path):
    _namespaced()
    marker = uuid.uuid4().hex
    lost = Path(cgroup_support.FREEZER, cgroups.task_name(marker))
    _lost_attempt(tmp_path / "sb", marker)
    with _frozen_in(lost, marker) as frozen:
        (attempt,) = end_lost_attempts(tmp_path / "sb")
        assert frozen.wait(10) == -9
        assert attempt.killed == (frozen.pid,)
        assert attempt.cgroups == (f"removed its cgroup {lost}",), attempt.describe()
        assert not lost.exists()


def test_an_older_stoker_s_16_character_cgroup_left_frozen_is_thawed_so_its_killed_die(tmp_path):
    """The upgrade: a checkpoint an older Stoker wrote (no `cgroup` in its header), its task
    cgroup `stoker-` and the marker's first 16 characters, left FROZEN in the v1 freezer (its
    watchdog killed as its kill had frozen it). Was: the re-run found no cgroup of the new
    name, so thawed none; its SIGKILL by marker stayed pending, the process frozen for good
    (and the cgroup with it, which the stale sweep cannot remove). It is left for that sweep
    once empty, as design §9 says."""
    _namespaced()
    marker = uuid.uuid4().hex
    older = Path(cgroup_support.FREEZER, f"stoker-{marker[:16]}")
    _lost_attempt(tmp_path / "sb", marker)
    with _frozen_in(older, marker) as frozen:
        (attempt,) = end_lost_attempts(tmp_path / "sb")
        assert attempt.killed == (frozen.pid,)
        assert frozen.wait(10) == -9, attempt.describe()
        assert attempt.cgroups == (f"thawed its cgroup {older}, an older Stoker's left frozen (those killed in "
                                   "it die only once thawed; a later start's sweep removes it once empty)",)


def _v2_home() -> str:
    """The v2 cgroup this process is in (skips the test where there is none it may write)."""
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


def _end(lost: Path, *procs: subprocess.Popen) -> None:
    """The test's processes killed and reaped, then the lost cgroup removed once emptied."""
    for proc in procs:
        proc.kill()
        proc.wait(10)
    with contextlib.suppress(OSError):
        wait_for(lambda: not cgroups.read_pids(str(lost)), 10, message="emptied")
        lost.rmdir()


def test_a_root_task_s_marked_process_that_changed_user_in_its_own_cgroup_is_killed_and_it_removed(tmp_path, capsys):
    """A root task's daemon that dropped to bob (nginx's workers, say), in the attempt's own
    cgroup, root's (no other user may move a process in). Was: left, as another user's copy
    of the marker would be, running beside the re-run (its ports held), and the cgroup with
    it; `stoker status` showed it as another user's, counted nowhere. bob's own process
    carrying the marker outside it is still left, and named, and shown apart."""
    marker = uuid.uuid4().hex
    lost = Path(_v2_home(), cgroups.task_name(marker))
    _lost_attempt(tmp_path / "sb", marker, lost)
    env = {"PATH": os.environ["PATH"], TASK_MARKER: marker}
    with throwaway_user() as (bob, _):
        as_bob = {"user": bob.pw_uid, "group": bob.pw_gid, "extra_groups": []}
        daemon = subprocess.Popen(["sleep", "600"], env=env, **as_bob)  # type: ignore[call-overload]
        copy = subprocess.Popen(["sleep", "600"], env=env, **as_bob)  # type: ignore[call-overload]
        try:
            lost.mkdir()
            (lost / "cgroup.procs").write_text(str(daemon.pid))
            assert main(["status", str(tmp_path / "sb"), "--json"]) == 0
            doc = json.loads(capsys.readouterr().out)
            assert [p["pid"] for p in doc["leftovers"]] == [daemon.pid], doc["foreign_processes"]
            assert [p["pid"] for p in doc["foreign_processes"]] == [copy.pid]
            (attempt,) = end_lost_attempts(tmp_path / "sb")
            assert daemon.wait(10) == -9, attempt.describe()
            assert attempt.killed == (daemon.pid,) and attempt.cgroups == (f"removed its cgroup {lost}",)
            assert attempt.foreign == ((copy.pid, f"{bob.pw_name} (uid {bob.pw_uid})"),)
            assert copy.poll() is None
        finally:
            _end(lost, daemon, copy)


def test_status_counts_a_marked_process_in_the_task_cgroup_its_user_made_as_its_whoever_runs_it(tmp_path, capsys):
    """Root's `stoker status` of alice's lost attempt: bob's marked process in the task cgroup
    alice made (her task's `sudo -u bob`: only she, or root, may move a process in) is her
    task's leftover, judged by her ownership of the cgroup, not by the caller's; bob's outside it
    is shown apart."""
    marker = uuid.uuid4().hex
    lost = Path(_v2_home(), cgroups.task_name(marker))
    _lost_attempt(tmp_path / "sb", marker, lost)
    env = {"PATH": os.environ["PATH"], TASK_MARKER: marker}
    with throwaway_user() as (alice, _), throwaway_user() as (bob, _):
        for where, dirs, files in os.walk(tmp_path / "sb"):
            for name in [where, *(os.path.join(where, n) for n in dirs + files)]:
                os.chown(name, alice.pw_uid, alice.pw_gid)
        as_bob = {"user": bob.pw_uid, "group": bob.pw_gid, "extra_groups": []}
        daemon = subprocess.Popen(["sleep", "600"], env=env, **as_bob)  # type: ignore[call-overload]
        copy = subprocess.Popen(["sleep", "600"], env=env, **as_bob)  # type: ignore[call-overload]
        try:
            lost.mkdir()
            os.chown(lost, alice.pw_uid, -1)
            (lost / "cgroup.procs").write_text(str(daemon.pid))
            assert main(["status", str(tmp_path / "sb"), "--json"]) == 0
            doc = json.loads(capsys.readouterr().out)
            assert [p["pid"] for p in doc["leftovers"]] == [daemon.pid], doc["foreign_processes"]
            assert [p["pid"] for p in doc["foreign_processes"]] == [copy.pid]
        finally:
            _end(lost, daemon, copy)


@pytest.mark.parametrize("level", ["\ud800", "a\0b"])
def test_a_header_s_cgroup_path_no_file_name_can_hold_ends_nothing_and_raises_nothing(tmp_path, level):
    """The header is the task's to write: a `cgroup` with a lone surrogate or a NUL at a level
    on a cgroup mount. Was: UnicodeEncodeError / ValueError out of the re-run's look-up (its
    realpath), a traceback where `end_lost_attempts` never raises."""
    marker = uuid.uuid4().hex
    _lost_attempt(tmp_path / "sb", marker, Path(_v2_home(), level, cgroups.task_name(marker)))
    assert end_lost_attempts(tmp_path / "sb") == []


def test_a_lost_cgroup_its_watchdog_removed_first_is_said_to_be_already_gone(tmp_path):
    """Was: `removed its cgroup DIR` though the re-run's rmdir found it gone (the attempt's
    own watchdog, told by the supervisor's death, removed it between the re-run's look-up
    and its removal)."""
    gone = tmp_path / "stoker-0123456789abcdef"
    gone.mkdir()
    gone.rmdir()  # as the other side does
    assert leftovers._remove_lost(str(gone), []) == \
        f"its cgroup {gone} was already gone (removed first by another: its own watchdog)"


def test_a_marker_that_is_not_a_whole_one_names_no_cgroup():
    # `.` and `..` joined to this process's own cgroups would name them and their parents; 16
    # characters, an older Stoker's length, would name a live task's made and not yet entered
    for marker in (".", "..", "a/b", "\0", uuid.uuid4().hex[:16], uuid.uuid4().hex.upper()):
        assert cgrouplost.lost_cgroups(marker, [os.getpid()]) == set(), marker


@contextlib.contextmanager
def _made(*directories: Path):
    """The cgroups `directories` (each after those above it), removed again at the end."""
    try:
        for directory in directories:
            directory.mkdir()
        yield
    finally:
        for directory in reversed(directories):
            with contextlib.suppress(OSError):
                directory.rmdir()


def test_a_lost_cgroup_is_the_one_named_above_each_marked_process_however_deep(tmp_path):
    """Not below this process's cgroup, the marked process in one below the named one, a
    process gone since its pid was found listed before it."""
    marker = uuid.uuid4().hex
    top = Path(_v2_home(), f"lostat-{marker[:8]}")
    lost = top / "x" / cgroups.task_name(marker)
    gone = subprocess.Popen(["true"])
    gone.wait()
    with _made(top, top / "x", lost, lost / "inner"):
        marked = subprocess.Popen(["sleep", "600"])
        try:
            (lost / "inner" / "cgroup.procs").write_text(str(marked.pid))
            assert cgrouplost.lost_cgroups(marker, [gone.pid, marked.pid]) == {str(lost)}
        finally:
            marked.kill()
            marked.wait(10)


def _opened_by_this_process(path: Path) -> bool:
    """Whether a descriptor of this process names `path`. Another thread (the removal's) opens
    and closes its own meanwhile: one listed may be gone at its readlink (CI: FileNotFoundError)."""
    return any(_names(f"/proc/self/fd/{fd}") == str(path) for fd in os.listdir("/proc/self/fd"))


def _names(link: str) -> str | None:
    try:
        return os.readlink(link)
    except OSError:  # closed since it was listed
        return None


def test_a_lost_cgroup_is_removed_with_those_below_it_once_its_last_process_has_left():
    # the removal waits on the cgroup's events (`populated 0`) while a process is still in it
    lost = Path(_v2_home(), cgroups.task_name(uuid.uuid4().hex))
    with _made(lost, lost / "inner"):
        held = subprocess.Popen(["sleep", "600"])
        said: list[str | None] = []
        removal = threading.Thread(target=lambda: said.append(cgrouplost.remove_emptied(str(lost), 30)))
        try:
            (lost / "cgroup.procs").write_text(str(held.pid))
            removal.start()
            wait_for(lambda: _opened_by_this_process(lost / "cgroup.events") or not removal.is_alive(), 10,
                     message="the removal waits on the cgroup's events")
            assert removal.is_alive(), said  # not given up at the first rmdir
        finally:
            held.kill()
            held.wait(10)
            removal.join(40)
    assert said == [None] and not lost.exists()


def test_a_lost_cgroup_still_busy_at_the_deadline_is_said_with_its_processes():
    lost = Path(_v2_home(), cgroups.task_name(uuid.uuid4().hex))
    with _made(lost):
        held = subprocess.Popen(["sleep", "600"])
        try:
            (lost / "cgroup.procs").write_text(str(held.pid))
            assert cgrouplost.remove_emptied(str(lost), 0) == (
                f"cannot remove {lost}: Device or resource busy (EBUSY) (1 processes in it)")
        finally:
            held.kill()
            held.wait(10)


def test_a_directory_it_cannot_remove_for_another_reason_is_said_at_once(tmp_path):
    # not waited on until the deadline as a busy cgroup is (a directory not a cgroup, not empty)
    (tmp_path / "file").write_text("")
    assert cgrouplost.remove_emptied(str(tmp_path), 3600) == (
        f"cannot remove {tmp_path}: Directory not empty (ENOTEMPTY) (0 processes in it)")
