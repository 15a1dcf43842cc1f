"""The test run's own cgroup (tests/support/sessioncgroup.py): a run that leaves a task
cgroup behind fails, naming it, and what it left (the cgroup, a process) is killed and
removed; a clean run passes and leaves nothing. Each is a pytest run of its own, with the
suite's conftest as a plugin, in a cgroup below this run's."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from executor.procs import cgrouplost
from tests.support import pidnames, proc_scan, sessioncgroup
from tests.support.cgroups import FREEZER
from tests.support.stoker_proc import REPO
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

LEAKS = """
import os, subprocess

def test_leaks(tmp_path):
    here = open("/proc/self/cgroup").read().split("0::", 1)[1].splitlines()[0]
    os.mkdir("MOUNT" + here + "/stoker-0123456789abcdef")
    sleeper = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    (tmp_path.parent.parent / "sleeper").write_text(str(sleeper.pid))
"""


def _v2_mount() -> str:
    """Where this process's cgroup2 hierarchy is mounted (as the leaking test finds its own)."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[fields.index("-") + 1] == "cgroup2" and fields[3] == "/":
            return fields[4]
    pytest.skip("no cgroup2 hierarchy mounted at its root")


def _in(home: Path | None, command: list[str]) -> list[str]:
    """`command`, started in the cgroup `home` (None: this process's)."""
    return command if home is None else ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(home), *command]


def _pytest(tmp_path: Path, text: str, own: Path, *options: str, exit_secs: str = "0.5",
            meanwhile: Callable[[subprocess.Popen], None] = lambda run: None, home: Path | None = None) -> tuple[int, str]:
    """Run pytest on `text` (`meanwhile` given the run as it starts; in the cgroup `home`,
    below `own`, if given); its exit status and output, once its cgroup is gone. What the
    run leaves gets `exit_secs` to exit on its own (what these tests leave never does: the
    whole wait is spent; was 5 s), what it SIGKILLed 10 s to leave (a bound, not a wait)."""
    (tmp_path / "test_it.py").write_text(text.replace("MOUNT", _v2_mount()))
    with subprocess.Popen(_in(home, [sys.executable, "-m", "pytest", "-q", *options, "-p", "tests.conftest", "-p",
                                     "no:cacheprovider", "--rootdir", str(tmp_path), "--basetemp", str(tmp_path / "base"),
                                     str(tmp_path / "test_it.py")]),
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO), "STOKER_TEST_RUN_EXIT_SECS": exit_secs,
                                             "STOKER_TEST_RUN_KILLED_SECS": "10"},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as run:
        meanwhile(run)
        said, _ = run.communicate(timeout=90)
    left = sessioncgroup.made_by(home or own, run.pid)
    try:
        assert not left, "the run's cgroup was left"
    finally:
        for d in left:
            with contextlib.suppress(OSError):
                d.rmdir()
    return run.returncode, said


@pytest.fixture
def own_cgroup() -> Path:
    if os.geteuid() != 0:
        pytest.skip("the run's cgroup needs root")
    here = Path("/proc/self/cgroup").read_text().split("0::", 1)[1].splitlines()[0]
    return Path(_v2_mount() + here)


def test_a_run_that_leaves_a_task_cgroup_fails_naming_it_and_what_it_left_is_removed(tmp_path, own_cgroup):
    status, said = _pytest(tmp_path, LEAKS, own_cgroup)  # the cgroup it left is gone (there)
    assert (tmp_path / "sleeper").exists(), said
    sleeper = pidnames.pid_in(tmp_path / "sleeper")  # (a process that took its pid since is not it)
    assert status == 1, said
    assert "1 passed" in said
    assert "left 1 cgroup(s) behind" in said and "stoker-0123456789abcdef" in said, said
    assert f"left 1 process(es) running, killed now: {sleeper} sleep 1000" in said, said
    assert not proc_scan.is_live(sleeper)  # its cgroup was empty before it was removed


# As a test giving STOKER_CGROUPS=DIR for the v1 freezer leaks: a task cgroup there.
LEAKS_FREEZER = """
from pathlib import Path
from tests.support.cgroups import FREEZER

def test_leaks(tmp_path):
    (Path(FREEZER) / "stoker-fedcba9876543210").mkdir()
    (tmp_path.parent.parent / "made").write_text(FREEZER)
"""


def test_a_run_that_leaves_a_task_cgroup_in_its_v1_freezer_one_fails_naming_it(tmp_path, own_cgroup):
    """Was: a `stoker-*` left where a test's STOKER_CGROUPS=DIR for the v1 freezer made it
    (the freezer hierarchy's root, outside the run's cgroup2 one) stayed, unseen."""
    if not os.path.isdir(FREEZER):
        pytest.skip("no v1 freezer hierarchy here")
    status, said = _pytest(tmp_path, LEAKS_FREEZER, own_cgroup)
    inner = Path((tmp_path / "made").read_text())
    assert inner.parent == Path(FREEZER) and inner.name.startswith(sessioncgroup.PREFIX), inner  # the run's own
    assert status == 1 and "1 passed" in said, said
    assert "left 1 cgroup(s) behind" in said and str(inner / "stoker-fedcba9876543210") in said, said
    assert not inner.exists(), said  # removed, with the run's own


# As a test that froze a task's v1 freezer cgroup leaks: the process in it stays frozen.
LEAKS_FROZEN = """
import subprocess
from pathlib import Path
from tests.support.cgroups import FREEZER

def test_leaks(tmp_path):
    frozen = Path(FREEZER) / "stoker-00112233445566ff"
    frozen.mkdir()
    sleeper = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    (frozen / "cgroup.procs").write_text(str(sleeper.pid))
    (frozen / "freezer.state").write_text("FROZEN")
    (tmp_path.parent.parent / "sleeper").write_text(str(sleeper.pid))
"""


def test_a_process_left_frozen_in_the_v1_freezer_is_killed_and_both_cgroups_removed(tmp_path, own_cgroup):
    """Was: the run's cgroup2 one was killed through and waited for (its whole
    STOKER_TEST_RUN_KILLED_SECS) before the freezer's were thawed: a frozen process dies only
    once thawed, so it was still in it, and the run's `testrun-PID` stayed for good."""
    if not os.path.isdir(FREEZER):
        pytest.skip("no v1 freezer hierarchy here")
    status, said = _pytest(tmp_path, LEAKS_FROZEN, own_cgroup)  # the run's cgroup2 one is gone
    sleeper = pidnames.pid_in(tmp_path / "sleeper")
    assert status == 1 and "1 passed" in said, said
    assert "left 1 cgroup(s) behind" in said and "stoker-00112233445566ff" in said, said
    assert f"left 1 process(es) running, killed now: {sleeper} sleep 1000" in said, said
    assert not proc_scan.is_live(sleeper)
    assert not list(Path(FREEZER).glob(f"{sessioncgroup.PREFIX}*/stoker-00112233445566ff")), said


def test_a_clean_run_passes_and_leaves_nothing(tmp_path, own_cgroup):
    status, said = _pytest(tmp_path, "def test_nothing():\n    assert True\n", own_cgroup)
    assert status == 0, said
    assert "ERROR: this run" not in said


@pytest.mark.parametrize("option", ["--markers", "--help"])
def test_a_run_that_starts_no_session_leaves_no_cgroup(tmp_path, own_cgroup, option):
    """Was: `pytest --markers` or `--help` as root configured (made the run's cgroup and
    moved in) but never finished a session (where it was removed): its `testrun-PID` stayed
    until a later run's sweep, if one came in that same cgroup."""
    status, said = _pytest(tmp_path, "def test_nothing():\n    assert True\n", own_cgroup, option)
    assert status == 0, said


def test_a_ctrl_c_as_the_run_waits_for_what_it_left_kills_and_removes_it(tmp_path, own_cgroup):
    """Was: a Ctrl-C in the wait (up to 30 s, silent: the leftovers are named after it) ended
    it there: the process the run left lived on, in the run's cgroup, which no later run's
    sweep can remove while it is not empty. Now what is left is killed and removed first."""
    entry = f"STOKER_TESTS_SLEEPER={os.urandom(8).hex()}"
    name, _, value = entry.partition("=")
    text = ("import subprocess\n\ndef test_leaks(tmp_path):\n"
            f"    subprocess.Popen(['sleep', '1000'], start_new_session=True, env={{{name!r}: {value!r}}})\n"
            "    (tmp_path.parent.parent / 'left').write_text('')\n")

    def interrupt_its_wait(run: subprocess.Popen) -> None:
        wait_for(lambda: (tmp_path / "left").exists(), 60, message="the test run")
        wait_for(lambda: not Path(f"/proc/{run.pid}/cgroup").read_text().rstrip().rpartition("/")[2]
                 .startswith(f"{sessioncgroup.PREFIX}{run.pid}-"), 60, message="the run gone home to wait")
        run.send_signal(signal.SIGINT)

    try:
        status, said = _pytest(tmp_path, text, own_cgroup, exit_secs="60", meanwhile=interrupt_its_wait)
        assert not proc_scan.pids_carrying(entry), said
        assert status == pytest.ExitCode.INTERRUPTED and "Traceback" not in said, said
        assert "left 1 process(es) running, killed now" in said, said
    finally:
        proc_scan.kill_carrying(entry)


# A run SIGKILLed as its test runs: a process of its is left in its cgroup.
KILLED_MIDWAY = """
import subprocess, time

def test_hangs(tmp_path):
    subprocess.Popen(["sleep", "1000"], start_new_session=True, env=ENV)
    (tmp_path.parent.parent / "started").write_text("")
    time.sleep(1000)
"""


def _held_in(cgroup: Path, entry: str) -> subprocess.Popen:
    """A `sleep` carrying `entry`, moved into `cgroup` (made here): a stand-in for a run's."""
    cgroup.mkdir()
    name, _, value = entry.partition("=")
    sleeper = subprocess.Popen(["sleep", "1000"], start_new_session=True, env={name: value})
    (cgroup / "cgroup.procs").write_text(str(sleeper.pid))
    return sleeper


def test_the_next_run_kills_and_removes_what_a_sigkilled_run_left_never_a_live_runs(tmp_path, own_cgroup):
    """Was: the sweep removed only empty `testrun-*` cgroups whose pid was gone: a run
    SIGKILLed left its processes alive in its cgroup until a person killed them (1,001 of
    them, 57 minutes). Now an ended run's (its pid gone, or another process's: the start
    time in the name differs) are killed and removed; a live run's, and one named as an
    older checkout names it while its pid lives, are left alone."""
    entry = f"STOKER_TESTS_SWEPT={os.urandom(8).hex()}"
    name, _, value = entry.partition("=")
    home = own_cgroup / f"sweep-{os.getpid()}"  # its own: the runs of the tests beside sweep theirs
    home.mkdir()
    (tmp_path / "killed").mkdir()
    (tmp_path / "killed" / "test_it.py").write_text(KILLED_MIDWAY.replace("ENV", repr({name: value})))
    killed = subprocess.Popen(_in(home, [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
                                         "--rootdir", str(tmp_path / "killed"), "--basetemp", str(tmp_path / "killed" / "base"),
                                         str(tmp_path / "killed" / "test_it.py")]), cwd=tmp_path / "killed",
                              env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    live = subprocess.Popen(["sleep", "1000"])  # a live run's first process, as the sweep sees it
    stands = []
    try:
        wait_for(lambda: (tmp_path / "killed" / "started").exists(), 60, message="the run to be killed")
        (left,) = sessioncgroup.made_by(home, killed.pid)
        killed.kill()
        killed.wait(10)
        own = sessioncgroup.name_of(live.pid)
        reused = home / f"{sessioncgroup.PREFIX}{live.pid}-1-{sessioncgroup.namespaces()}"  # its pid another's since
        older = home / f"{sessioncgroup.PREFIX}{live.pid}"  # an older checkout's run
        stands = [_held_in(d, entry) for d in (home / str(own), reused, older)]
        status, said = _pytest(tmp_path, "def test_nothing():\n    assert True\n", own_cgroup, home=home)
        assert status == 0, said
        assert f"WARNING: an earlier run's cgroup {left} " in said and f"{reused} " in said, said
        assert not left.exists() and not reused.exists(), said
        assert (home / str(own)).exists() and older.exists(), said
        assert [s.poll() for s in stands] == [None, -signal.SIGKILL, None], said
        assert len(proc_scan.pids_carrying(entry)) == 2, said  # the killed run's sleeper too
    finally:
        for process in (killed, live, *stands):
            process.kill()
            process.wait(10)
        proc_scan.kill_carrying(entry)
        cgrouplost.remove_emptied(str(home), 10)  # emptied: those below it first


def test_a_run_that_cannot_leave_its_cgroup_says_so_and_names_no_process_killed(tmp_path):
    """Was: a run that could not move back home (EBUSY: a controller enabled there since;
    here, a home that is gone) said `left 1 process(es) running, killed now: cannot leave
    DIR`, of no process, none killed."""
    run = sessioncgroup.SessionCgroup(tmp_path / "testrun-1", tmp_path / "gone")
    left = sessioncgroup.end(run)
    assert (left.cgroups, left.processes) == ([], [])
    (line,) = left.lines(run.directory)
    assert line.startswith(f"this run cannot leave its cgroup {run.directory} for {run.home} ("), line
    assert line.endswith("what it left there is neither checked, killed nor removed"), line


# A live run, waiting (up to 60 s) for the test that started it to let it end.
WAITS = """
import time
from pathlib import Path

def test_waits(tmp_path):
    flag = tmp_path.parent.parent
    (flag / "started").write_text("")
    deadline = time.monotonic() + 60
    while not (flag / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
"""


def test_the_sweep_leaves_alone_a_live_run_in_another_time_namespace(tmp_path, own_cgroup):
    """Was: a run started in a time namespace (`unshare --time --boottime`) reads every start
    time shifted, its own too; the next run outside it, in the same cgroup, read its pid's
    start time otherwise, took it for another process's, and SIGKILLed the live run."""
    if subprocess.run(["unshare", "--time", "--boottime", "1000", "true"], capture_output=True).returncode:
        pytest.skip("no time namespace here")
    home = own_cgroup / f"timens-{os.getpid()}"  # its own: the runs of the tests beside sweep theirs
    home.mkdir()
    (tmp_path / "live").mkdir()
    (tmp_path / "live" / "test_it.py").write_text(WAITS)
    live = subprocess.Popen(_in(home, ["unshare", "--time", "--boottime", "1000", sys.executable, "-m", "pytest", "-q",
                                       "-p", "tests.conftest", "-p", "no:cacheprovider", "--rootdir", str(tmp_path / "live"),
                                       "--basetemp", str(tmp_path / "live" / "base"), str(tmp_path / "live" / "test_it.py")]),
                            cwd=tmp_path / "live", env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: (tmp_path / "live" / "started").exists(), 60, message="the live run")
        status, said = _pytest(tmp_path, "def test_nothing():\n    assert True\n", own_cgroup, home=home)
        assert status == 0, said
        assert "an earlier run's cgroup" not in said, said
        assert live.poll() is None, said
        (tmp_path / "live" / "go").write_text("")
        out, _ = live.communicate(timeout=90)
        assert live.returncode == 0, out
    finally:
        live.kill()
        live.wait(10)
        cgrouplost.remove_emptied(str(home), 10)
