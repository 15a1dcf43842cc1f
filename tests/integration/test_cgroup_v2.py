"""The task cgroup in the cgroup-v2 (unified) hierarchy, with real cgroups and processes
(`executor/procs/cgroups.py`). This host is hybrid: its controllers are bound to v1, and
`cgroup2` is mounted at /sys/fs/cgroup/unified with none bound, which is enough: a task
cgroup needs only the core files (`cgroup.procs`, `cgroup.kill`, `cgroup.freeze`,
`cgroup.events`). `auto` picks the v2 hierarchy first (`cgroup_paths.own_places`).

- Both ways of killing a v2 cgroup (`cgroup.kill`, Linux 5.14 and later; `cgroup.freeze`
  then SIGKILL each member, 5.2 to 5.13, taken here by the same cgroup with `how` set so)
  kill a run and the daemon it double-forked into a session of its own, and remove the
  cgroup.
- A delegated subtree (what systemd's `Delegate=` hands a unit's `User=`: the directory and
  its `cgroup.procs`, `cgroup.threads` and `cgroup.subtree_control` chowned), given as
  STOKER_CGROUPS: a non-root process in it makes its task's cgroup below, enters it, and
  kills its daemon through it; one root still owns it is refused, with the reason.

Every cgroup made is removed at teardown (`tests/support/cgroups.py`), every process killed."""
from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from executor.procs import cgrouplost, cgroups, cgroupwalk, oomcount
from executor.procs.cgroup_paths import CgroupKind, own_places
from executor.procs.watchdog import start_watchdog
from tests.support import cgroups as cgroup_support
from tests.support.stoker_proc import REPO, measured
from tests.support.users import stoker_as
from tests.support.waiting import exit_code, wait_for

pytestmark = pytest.mark.timeout(60)
FREEZER = cgroup_support.FREEZER  # the test run's own (tests/support/sessioncgroup.py)

# A run that, once let go (a line on stdin: it is in the cgroup by then), double-forks a
# daemon into a session of its own, which writes its pid to argv[1], and then sleeps.
RUN = """
import os, sys, time
sys.stdin.readline()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        with open(sys.argv[1] + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(sys.argv[1] + ".tmp", sys.argv[1])
        time.sleep(600)
    os._exit(0)
os.wait()
time.sleep(600)
"""


def v2_root() -> Path:
    """The v2 cgroup this process is in (skips the test where there is none, or no root)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the v2 cgroups here are root's")
    places = own_places(Path("/proc/self/cgroup").read_text(), Path("/proc/self/mountinfo").read_text())
    v2 = next((p for p in places if p.kind is CgroupKind.V2), None)
    if v2 is None or not os.access(v2.directory, os.W_OK):
        pytest.skip("no writable cgroup-v2 hierarchy shows this process's cgroup")
    return Path(v2.directory)


def exited(pid_fd: int) -> bool:
    """Whether the process of `pid_fd` has exited (a pidfd polls readable then), within 10 s."""
    watch = select.poll()
    watch.register(pid_fd, select.POLLIN)
    return bool(watch.poll(10_000))


def task_cgroup(how: str, setting: str) -> tuple[cgroups.TaskCgroup, cgroups.TaskCgroup]:
    """A task cgroup made as `setting` says (skipped where it cannot be), and the same killed
    the way `how` names."""
    v2_root()
    if setting != "auto" and (why := cgroup_support.unavailable(setting)) is not None:
        pytest.skip(why)
    made = cgroups.create(f"stoker-test-{uuid.uuid4().hex[:8]}", setting)
    assert isinstance(made, cgroups.TaskCgroup), made
    return made, attrs.evolve(made, how=how)


def kill_and_remove(cg: cgroups.TaskCgroup, by: str) -> None:
    """`cg` killed and removed by the supervisor's code, or by the watchdog once its pipe
    closes (as the supervisor's death closes it)."""
    if by == "watchdog":
        dog = start_watchdog("no-such-marker", cg.directory, cg.how)
        try:
            dog.close_pipe()
            assert exit_code(dog.pid, 20) == 0
        except AssertionError:  # was: one that timed out went on beside the next tests, loading the host
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(dog.pid, signal.SIGKILL)
                os.waitpid(dog.pid, 0)
            raise
    else:
        assert cg.kill_and_remove(10) is None


@contextlib.contextmanager
def sleeper_in(how: str, setting: str) -> Iterator[tuple[cgroups.TaskCgroup, subprocess.Popen, int]]:
    """A task cgroup (`task_cgroup`), a `sleep` taken into it and a pidfd of it; the sleep
    killed, the cgroup removed and released at the end, whatever happened."""
    made, cg = task_cgroup(how, setting)
    run = subprocess.Popen(["sleep", "600"])
    try:
        fd = os.pidfd_open(run.pid)
        try:
            assert cg.take_in(run.pid)
            yield cg, run, fd
        finally:
            os.close(fd)
    finally:
        run.kill()
        run.wait(10)
        cgroup_support.remove(cg.directory)
        cgroups.release(made)


def assert_killed(cg: cgroups.TaskCgroup, run: subprocess.Popen, fd: int) -> None:
    """The sleep of `sleeper_in` SIGKILLed, its cgroup removed."""
    assert exited(fd)
    assert run.wait(10) == -signal.SIGKILL and not os.path.exists(cg.directory)


def daemon_pid(pid_file: Path) -> int:
    wait_for(pid_file.exists, timeout_secs=10, message="the daemon's pid file")
    return int(pid_file.read_text())


@pytest.mark.parametrize("how", ["kill", "freeze"])
def test_a_v2_task_cgroup_kills_the_run_and_its_escaped_daemon_and_is_removed(tmp_path, how):
    root = v2_root()
    made = cgroups.create(f"stoker-test-{uuid.uuid4().hex[:8]}", "auto")
    assert isinstance(made, cgroups.TaskCgroup), made
    cg = attrs.evolve(made, how=how)
    assert (cg.place.kind, Path(cg.directory).parent, made.how) == (CgroupKind.V2, root, "kill")
    assert cg.describe() == {"kill": f"cgroup2 cgroup {cg.directory} (cgroup.kill)",
                             "freeze": f"cgroup2 cgroup {cg.directory} (cgroup.freeze, then SIGKILL)"}[how]
    pid_file = tmp_path / "daemon.pid"
    run = subprocess.Popen([sys.executable, "-c", RUN, str(pid_file)], stdin=subprocess.PIPE)
    fds: list[int] = []
    daemon = 0
    try:
        fds.append(os.pidfd_open(run.pid))
        assert cg.take_in(run.pid)
        run.stdin.write(b"go\n")
        run.stdin.close()
        daemon = daemon_pid(pid_file)
        fds.append(os.pidfd_open(daemon))
        assert (cg.holds(run.pid), cg.holds(daemon)) == (True, True)  # born inside, though in its own session
        assert {run.pid, daemon} <= set(cgroupwalk.pids(cg.directory))  # (and the middle one, while it exits)
        assert cg.kill_and_remove(10) is None
        assert all(exited(fd) for fd in fds)
        assert run.wait(10) == -signal.SIGKILL
        assert not os.path.exists(cg.directory)
    finally:
        for fd in fds:
            os.close(fd)
        with contextlib.suppress(ChildProcessError):  # when a Supervisor made this
            if daemon:
                os.waitpid(daemon, os.WNOHANG)  # process the subreaper, the daemon was its child
        run.kill()
        run.wait(10)
        cgroup_support.remove(cg.directory)
        cgroups.release(made)


@pytest.mark.parametrize(("depth", "name"), [(1, "i"), (1000, "i"), (2, ".-i x")])
@pytest.mark.parametrize("by", ["supervisor", "watchdog"])
@pytest.mark.parametrize(("how", "setting"), [("kill", "auto"), ("freeze", "auto"), ("freezer", FREEZER)])
def test_a_run_that_moved_into_a_cgroup_of_its_own_below_the_task_s_is_killed_too(how, setting, by, depth, name):
    """A task's root process may make cgroups below the task's (a container runtime, a
    `systemd-run --scope`) and move runs into them. `cgroup.kill` kills the whole subtree;
    was: the freeze ways (v2 `cgroup.freeze`, 5.2 to 5.13; the v1 freezer) SIGKILLed the
    task cgroup's own members only, so one below lived on, thawed, and the cgroup stayed
    (`cannot remove ...: EBUSY (0 processes still in it after 10 s)`); the watchdog, once
    the supervisor is gone, the same (exit 1, the cgroup left). 1,000 levels deep: was, the
    supervisor's walk (os.walk, recursive in Python 3.11) raised RecursionError, the task
    left frozen. Named `.-i x` (cgroupfs refuses a newline): was, the watchdog's glob `*/` left out a name
    starting with `.` (its member never killed, the cgroup left, exit 1)."""
    with sleeper_in(how, setting) as (cg, run, fd):
        inner = Path(cg.directory)
        for _ in range(depth):
            inner = inner / name
            inner.mkdir()
        (inner / "cgroup.procs").write_text(str(run.pid))
        assert cg.holds(run.pid) and cgroupwalk.pids(cg.directory) == [run.pid]  # below the task's
        kill_and_remove(cg, by)
        assert_killed(cg, run, fd)


def test_a_run_nested_deeper_than_a_path_can_name_is_killed_and_its_cgroups_removed():
    """2,100 cgroups below the task's: the innermost's path is longer than PATH_MAX (4,096
    bytes). The v1 freezer's (the v2 ways walk the same, `cgroupwalk.py`; their 2,100 levels
    took 20-30 s to make and remove here, 4 s in the freezer). Was: each cgroup was reached by its full path (a lookup per name of it: N²/2 in
    all, 1 s per walk of 1,000 levels on a loaded core, and the kill walked four times: its
    10 s bound ran out in CI), and those beyond 4,096 bytes not at all (ENAMETOOLONG, left
    out of the walk): the run was never killed, the cgroups stayed (EBUSY, '0 processes
    still in it after 10 s'). Now a walk by directory descriptors (`cgroupwalk.py`)."""
    with sleeper_in("freezer", FREEZER) as (cg, run, fd):
        cgroup_support.nest(cg.directory, 2100, run.pid)
        assert cgroupwalk.pids(cg.directory) == [run.pid]  # below the task's, too deep for a path
        assert cg.kill_and_remove(10) is None
        assert_killed(cg, run, fd)


@pytest.mark.parametrize("by", ["supervisor", "watchdog"])
@pytest.mark.parametrize(("how", "setting", "state", "frozen"), [("freeze", "auto", "cgroup.freeze", "1"),
                                                                 ("freezer", FREEZER, "freezer.state", "FROZEN")])
def test_a_run_in_a_cgroup_below_the_task_s_that_froze_itself_is_killed_too(how, setting, state, frozen, by):
    """A member may freeze a cgroup it made below the task's. v2: SIGKILL ends a frozen
    process. Was, v1: a frozen process dies only once thawed, and a cgroup frozen itself
    stays frozen when its parent thaws: the run lived on, the cgroup stayed (EBUSY, '1
    processes still in it after 10 s'; the watchdog: exit 1)."""
    with sleeper_in(how, setting) as (cg, run, fd):
        inner = Path(cg.directory, "i")
        try:
            inner.mkdir()
            (inner / "cgroup.procs").write_text(str(run.pid))
            (inner / state).write_text(frozen)
            kill_and_remove(cg, by)
            assert_killed(cg, run, fd)
        finally:
            with contextlib.suppress(OSError):
                (inner / state).write_text({"1": "0", "FROZEN": "THAWED"}[frozen])


def test_a_lost_attempt_s_cgroup_is_one_named_so_never_a_path_its_marker_leads_to(tmp_path):
    """A re-run removes a lost attempt's `stoker-MARKER` (`leftovers.end_lost_attempts`);
    the marker and the directory its header names are the sandbox's checkpoint's, which the
    task may write: neither one with `/../` nor a directory named otherwise must name
    another cgroup (here an empty one beside it, which an rmdir removes)."""
    root = v2_root()
    marker = uuid.uuid4().hex
    made = [root / cgroups.task_name(marker), root / cgroups.task_name(marker) / "x", root / f"other-{marker}"]
    try:
        for directory in made:
            directory.mkdir()
        assert cgrouplost.lost_cgroups(marker, []) == {str(made[0])}
        assert cgrouplost.lost_cgroups(f"{marker}/x/../../other-{marker}", []) == set()
        plain = tmp_path / cgroups.task_name(marker)  # named so, on no cgroup mount
        plain.mkdir()
        for recorded in (made[2], made[0] / "x", plain, f"{made[0]}/x/../../{made[0].name}"):
            assert cgrouplost.lost_cgroups(marker, [], str(recorded)) == {str(made[0])}, recorded
    finally:
        for directory in reversed(made):
            with contextlib.suppress(OSError):
                directory.rmdir()


def test_the_supervising_process_in_its_task_cgroup_is_never_killed_with_it():
    v2_root()
    made = cgroups.create(f"stoker-test-{uuid.uuid4().hex[:8]}", "auto")
    assert isinstance(made, cgroups.TaskCgroup), made
    try:
        made.enter()
        assert made.holds(os.getpid()) is True
        assert made.kill_and_remove(5) == \
            f"the supervising process is still in {made.directory}; not killing it"
        made.leave()
        assert made.holds(os.getpid()) is False
        assert made.kill_and_remove(5) is None
    finally:
        if made.entered:
            made.leave()
        cgroup_support.remove(made.directory)
        cgroups.release(made)


# As the delegate (argv[1]: the delegated cgroup, STOKER_CGROUPS): make the task's cgroup,
# enter it, fork a daemon as a run would, leave, kill it through the cgroup.
DELEGATE = """
import os, select, sys, time
from executor.procs import cgroups, oomcount
made = cgroups.create("stoker-task-" + sys.argv[2], sys.argv[1])
if isinstance(made, cgroups.NoCgroup):
    print("none", made.reason)
    sys.exit(0)
made.enter()
read, write = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.write(write, str(os.getpid()).encode())
        time.sleep(600)
    os._exit(0)
os.wait()
made.leave()
daemon = int(os.read(read, 32))
fd = os.pidfd_open(daemon)
problem = made.kill_and_remove(10)
watch = select.poll()
watch.register(fd, select.POLLIN)
print(made.how, made.directory, problem, bool(watch.poll(10_000)), os.path.exists(made.directory))
"""


@pytest.fixture
def delegated():
    """An empty v2 cgroup below this process's, and a command running Python as nobody in it
    (None when nobody may run this checkout's Python)."""
    unit = v2_root() / f"stoker-deleg-{uuid.uuid4().hex[:8]}"
    python = stoker_as(65534, 65534)
    if python is None:
        pytest.skip("no setpriv, or no Python nobody may run")
    unit.mkdir()
    try:
        yield unit, ["sh", "-c", f'echo $$ > {unit}/cgroup.procs && exec "$@"', "sh", *python[:-2]]
    finally:
        for below in unit.iterdir():
            if below.is_dir():
                cgroup_support.remove(str(below))
        unit.rmdir()


def as_delegate(command: list[str], unit: Path) -> list[str]:
    env = measured({"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO)})
    done = subprocess.run([*command, "-c", DELEGATE, str(unit), uuid.uuid4().hex[:8]], env=env, cwd="/",
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_a_non_root_delegate_kills_its_daemon_through_a_cgroup_below_the_delegated_one(delegated):
    unit, command = delegated
    said = as_delegate(command, unit)  # root still owns it: no Delegate=
    assert said[:1] == ["none"] and f"cannot make {unit}/stoker-task-" in " ".join(said), said
    assert "Permission denied" in " ".join(said), said
    for name in ("", "cgroup.procs", "cgroup.threads", "cgroup.subtree_control"):
        os.chown(unit / name, 65534, 65534)
    how, directory, problem, daemon_exited, left = as_delegate(command, unit)
    assert (how, os.path.dirname(directory), problem, daemon_exited, left) == \
        ("kill", str(unit), "None", "True", "False")


def test_the_oom_count_is_v1_s_here_and_v2_alone_has_none_without_its_memory_controller():
    """The count's v2 lookup (the nearest cgroup with `memory.events`, up to the mount) on
    real files: this host binds the memory controller to v1, so the v2 walk from a task's v2
    cgroup finds no count, and the counter is v1's `memory.oom_control`. On a v2-only host
    with memory enabled (unreachable here) the walk stops at the first `memory.events`."""
    root = v2_root()
    if "memory" in (root / "cgroup.controllers").read_text().split():
        pytest.skip("the memory controller is v2's here: the count is memory.events")
    made = cgroups.create(f"stoker-test-{uuid.uuid4().hex[:8]}", "auto")
    assert isinstance(made, cgroups.TaskCgroup), made
    try:
        made.enter()
        proc_cgroup, mountinfo = Path("/proc/self/cgroup").read_text(), Path("/proc/self/mountinfo").read_text()
        made.leave()
        v2_lines = "".join(line + "\n" for line in mountinfo.splitlines() if " - cgroup2 " in line)
        assert f"0::{made.place.path}" in proc_cgroup.splitlines()
        assert oomcount.find_counter(proc_cgroup, v2_lines) is None  # walked up to the mount: none
        assert oomcount.count(made.directory, v2=True) is None
        counter = oomcount.find_counter(proc_cgroup, mountinfo)
        assert counter is not None and not counter.v2 and counter.count() is not None
    finally:
        if made.entered:
            made.leave()
        cgroup_support.remove(made.directory)
        cgroups.release(made)
