"""The watchdog's script (`executor/procs/watchdogsh.py`) under each shell a host's /bin/sh
may be: dash (Debian, Ubuntu), bash in its POSIX mode (RHEL, Fedora, Amazon Linux: bash run
as `sh`), busybox's ash (Alpine). Each that is installed runs the real script, as the
watchdog's `posix_spawn` runs it, on a real v1 freezer task cgroup: a member nested past
PATH_MAX (4,096 bytes) is killed and the whole tree removed.

Was, under bash: the walk went by full paths (bash's `cd -P NAME` re-resolves the whole
path at each step: minutes for 2,100 levels), and a full path past PATH_MAX is never looked
up: the member 2,100 cgroups deep was never listed, the watchdog waited out its 10 s, then
its marker passes (none here), and exited 1, the member alive and the tree left (90 s: the
watchdog was still at it). Now every shell walks by directory descriptors
(`/proc/self/fd/8`, one name opened per step). What runs is the script as shipped, without
its comments and indentation: bash reads it into the program the source writes."""
from __future__ import annotations

import ast
import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from executor.procs import cgroups, watchdogsh
from executor.procs.watchdogsh import WATCHDOG_COMMAND, WATCHDOG_ENV, WATCHDOG_NAME, WATCHDOG_SCRIPT
from tests.support import cgroups as cgroup_support
from tests.support.cgroups import FREEZER
from tests.support.headless import headless
from tests.support.zookeeper import require

pytestmark = pytest.mark.timeout(240)

SHELLS = {"dash": ["dash"], "bash": ["bash", "--posix"], "busybox": ["busybox", "sh"]}
ODD = (".x", "-y z", "..w")  # a name cgroupfs takes with a leading `.`, `-`, a space (not a newline)


def watchdog_under(shell: list[str], marker: str, directory: str, how: str) -> int:
    """The exit status of the watchdog's script run by `shell` on the task cgroup
    `directory`, its pipe closed at once (as the supervisor's death closes it)."""
    read_end, write_end = os.pipe()
    try:
        dog = subprocess.Popen([*shell, "-c", WATCHDOG_COMMAND, WATCHDOG_NAME, marker, directory, how, "", ""],
                               stdin=read_end, stdout=subprocess.DEVNULL, env=WATCHDOG_ENV, start_new_session=True)
    finally:
        os.close(read_end)
        os.close(write_end)
    try:
        return dog.wait(120)  # a bound, not the expected time (seconds, on a loaded host)
    finally:
        if dog.poll() is None:  # one that timed out must not go on beside the next tests
            dog.kill()
            dog.wait()


def require_shell(shell: str) -> None:
    """Skip the calling test where `shell` is not installed (busybox: `make hosttools`
    installs it); in CI, which installs it, fail it."""
    require(shell, None if shutil.which(SHELLS[shell][0]) else f"no {shell} here (`make hosttools` installs busybox)")


def _freezer_cgroup(shell: str) -> cgroups.TaskCgroup:
    """A v1 freezer task cgroup for a test run under `shell` (skipped where the shell or the
    freezer is missing)."""
    require_shell(shell)
    if (why := cgroup_support.unavailable(FREEZER)) is not None:
        pytest.skip(f"no v1 freezer task cgroup here: {why}")
    made = cgroups.create(f"stoker-test-{uuid.uuid4().hex[:8]}", FREEZER)
    assert isinstance(made, cgroups.TaskCgroup) and made.how == "freezer", made
    return made


@pytest.mark.parametrize("shell", SHELLS)
def test_the_watchdog_kills_a_member_nested_past_path_max_and_removes_the_tree(shell):
    made = _freezer_cgroup(shell)
    deep, odd = subprocess.Popen(["sleep", "600"]), subprocess.Popen(["sleep", "600"])
    try:
        cgroup_support.nest(made.directory, 2100, deep.pid)  # its path: some 4,300 bytes
        os.makedirs(os.path.join(made.directory, *ODD))
        cgroup_support.nest(os.path.join(made.directory, *ODD), 1, odd.pid)
        status = watchdog_under(SHELLS[shell], uuid.uuid4().hex, made.directory, made.how)
        assert (deep.wait(10), odd.wait(10)) == (-signal.SIGKILL, -signal.SIGKILL)
        assert (status, os.path.exists(made.directory)) == (0, False)
    finally:
        deep.kill()
        odd.kill()
        cgroup_support.remove(made.directory, 60)  # (thaws: a frozen process dies only once thawed)
        deep.wait()
        odd.wait()
        cgroups.release(made)


def walk_of_script() -> str:
    """The watchdog script's walk (its functions, from `walk() {` to `rmcg() {`), as it is."""
    start, end = WATCHDOG_SCRIPT.index("\nwalk() {"), WATCHDOG_SCRIPT.index("\nrmcg() {")
    return WATCHDOG_SCRIPT[start:end]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root, unshare")
@pytest.mark.parametrize("shell", SHELLS)
def test_the_watchdog_s_walk_never_goes_into_what_is_mounted_below_the_task_s_cgroup(shell, tmp_path):
    """Was: `cd -P` went into a directory mounted on one below (here a bind mount of one
    outside, in a mount namespace of the test's own), and the walk listed, thawed and
    killed there. Now a step to another mount (`mnt_id`) is not taken."""
    require_shell(shell)
    (tmp_path / "top" / "a").mkdir(parents=True)
    (tmp_path / "top" / "m").mkdir()
    (tmp_path / "outside" / "o").mkdir(parents=True)
    script = (f'mount --bind "$1/outside" "$1/top/m" || exit 3\n{walk_of_script()}\n'
              '_seen() { (cd -P "$_here" && pwd -P); }\nwalk _seen "$1/top"')
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", *SHELLS[shell], "-c", script,
                           "walk", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == [str(tmp_path / "top"), str(tmp_path / "top" / "a")]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root, unshare")
@pytest.mark.parametrize("shell", SHELLS)
def test_the_watchdog_s_removal_never_removes_a_cgroup_outside_the_task_s_through_a_bind_mount(shell):
    """Was: the removal's `find -xdev -depth -delete` went into a bind mount of the same
    hierarchy below the task's cgroup (one st_dev: -xdev let it) and removed the empty
    cgroup `e` there, outside the task's. Now nothing is removed when the walk met a mount
    below (the mount point's rmdir fails all the same): the watchdog says so (exit 1)."""
    made = _freezer_cgroup(shell)
    try:
        with cgroup_support.bound_beside(made.directory) as (outside, sleeper, unshared):
            status = watchdog_under([*unshared, *SHELLS[shell]], uuid.uuid4().hex, made.directory, made.how)
            assert (os.path.isdir(os.path.join(outside, "e")), sleeper.poll(), status) == (True, None, 1)
    finally:
        cgroup_support.remove(made.directory, 60)
        cgroups.release(made)


def written_script() -> str:
    """The script as `watchdogsh.py` writes it, with its comments and indentation: its
    argument to `shipped`, evaluated again (the module keeps the shipped form alone)."""
    path = Path(watchdogsh.__file__)
    made = next(node.value for node in ast.parse(path.read_text()).body
                if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "WATCHDOG_SCRIPT")
    assert isinstance(made, ast.Call) and ast.unparse(made.func) == "shipped", ast.unparse(made)
    return eval(compile(ast.Expression(made.args[0]), path, "eval"), vars(watchdogsh))


def program(script: str) -> str:
    """What bash makes of `script`: a function of it, printed back by `declare -f` from
    what bash parsed (no comment, bash's own layout)."""
    done = subprocess.run(["bash", "-c", 'eval "watchdog() {\n$1\n}" && declare -f watchdog', "bash", script],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_shipped_script_is_the_written_one_without_its_comments_and_indentation():
    """What the watchdog gets is `shipped(...)`'s form of the script (the shell keeps its
    text, dash twice: 3.9 KB instead of 7.0); bash reads it into the same program."""
    if shutil.which("bash") is None:
        pytest.skip("no bash here")
    written = written_script()
    assert "  # " in written and "\n  " in written  # what the shipped form leaves out
    assert [line for line in WATCHDOG_SCRIPT.splitlines() if line[:1] in ("", " ", "\t", "#") or " #" in line] == []
    assert program(WATCHDOG_SCRIPT) == program(written)


@pytest.mark.parametrize("shell", SHELLS)
def test_the_watchdog_kills_a_process_whose_first_thread_exited_while_others_run(shell):
    """`cgroup.kill` signals each process through its first thread: one whose first thread
    exited (`pthread_exit` in `main`) while another runs lived on, its environment (the
    marker) unreadable too; the watchdog waited out its 10 s, exited 1, and the process and
    the cgroup were left. Now, from its second pass, it SIGKILLs each member by its pid."""
    require_shell(shell)
    if (why := cgroup_support.unavailable("auto")) is not None:
        pytest.skip(f"no task cgroup here: {why}")
    made = cgroups.create(f"stoker-test-{uuid.uuid4().hex[:8]}", "auto")
    if not isinstance(made, cgroups.TaskCgroup) or made.how != "kill":
        if isinstance(made, cgroups.TaskCgroup):
            cgroup_support.remove(made.directory)
            cgroups.release(made)
        pytest.skip(f"no task cgroup killed by cgroup.kill here: {made}")
    try:
        with headless(made.take_in) as proc:  # in the cgroup, then its first thread exits
            status = watchdog_under(SHELLS[shell], uuid.uuid4().hex, made.directory, made.how)
            assert (proc.wait(10), status, os.path.exists(made.directory)) == (-signal.SIGKILL, 0, False)
    finally:
        if os.path.isdir(made.directory):
            cgroup_support.remove(made.directory)
        cgroups.release(made)
