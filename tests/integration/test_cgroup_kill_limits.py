"""The supervisor's kill of its task cgroup (`TaskCgroup.kill_and_remove`,
`executor/procs/cgroups.py`) out of descriptors: a real cgroup-v2 cgroup killed the
`cgroup.freeze` way (a walk of the subtree), by a child process whose RLIMIT_NOFILE is
lowered and filled. Was: the walk took a cgroup it could not read (EMFILE) for an empty one,
so the pass went by its member in silence; the kill said it went through, the member lived
on until the deadline ('cannot remove ...: EBUSY (0 processes still in it ...)': not counted
either). Now the walk stops with `cgroupwalk.WalkCut`, the pass is repeated (RETRY_SECS
later), and what is said at the deadline names it. And a close whose kill its deadline cut
(a deep tree, a slow host) hands the tree to the watchdog and says so, then waits for it."""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import subprocess
import sys

import pytest

from config.spec import ProcessSpec
from executor.procs import cgrouplife, cgroups
from executor.procs.supervisor import Supervisor
from tests.integration.test_cgroup_v2 import v2_root
from tests.support import cgroups as cgroup_support
from tests.support.cgroups import FREEZER
from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(60)

_KILL = """
import json, os, resource, subprocess, sys, uuid
import attrs
from executor.procs import cgroups, cgroupwalk
from tests.support import cgroups as support

freed = sys.argv[1] == "freed"  # the descriptors given back at the first walk cut short
made = cgroups.create(f"stoker-test-{uuid.uuid4().hex[:8]}", sys.argv[2])  # the setting, and how to kill:
cg = attrs.evolve(made, how=sys.argv[3])
run = subprocess.Popen(["sleep", "600"])
cuts, fillers, real_walk = [], [], cgroupwalk.walk
limits = resource.getrlimit(resource.RLIMIT_NOFILE)

def walk(*args, **kwargs):  # the real walk, its cuts noted
    try:
        return real_walk(*args, **kwargs)
    except cgroupwalk.WalkCut as e:
        cuts.append(str(e))
        while freed and fillers:
            os.close(fillers.pop())
        raise

try:
    assert cg.take_in(run.pid)
    support.nest(cg.directory, 3, run.pid)  # below the task's: only the walk finds it
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, limits[1]))
    cgroupwalk.walk = walk
    try:
        while True:
            fillers.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        os.close(fillers.pop())  # one free: the walk opens the task's cgroup, not its list
    problem = cg.kill_and_remove(2.0)
finally:
    cgroupwalk.walk = real_walk
    for fd in fillers:
        os.close(fd)
    resource.setrlimit(resource.RLIMIT_NOFILE, limits)
    left = os.path.isdir(cg.directory)
    support.remove(cg.directory)
    cgroups.release(made)
    run.kill()
print(json.dumps({"problem": problem, "cuts": cuts, "status": run.wait(10), "left": left, "dir": cg.directory}))
"""


def _said(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    """(level, message) of each line logged at WARNING or above."""
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING]


def _drop(cg: cgroups.TaskCgroup, *runs: subprocess.Popen | None) -> None:
    """A test's task cgroup removed (thawed first, whatever happened) and released, and its
    `runs` killed and reaped (None: one whose Popen failed)."""
    cgroup_support.remove(cg.directory)
    cgroups.release(cg)
    for run in runs:
        if run is None:
            continue
        run.kill()
        run.wait()


def killed(way: str, setting: str = "auto", how: str = "freeze") -> dict:
    if setting == "auto":
        v2_root()
    elif (why := cgroup_support.unavailable(setting)) is not None:
        pytest.skip(f"no v1 freezer task cgroup here: {why}")
    done = subprocess.run([sys.executable, "-c", _KILL, way, setting, how], capture_output=True, text=True,
                          timeout=40, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_kill_pass_cut_short_by_emfile_is_repeated_and_goes_through():
    got = killed("freed")
    assert len(got["cuts"]) == 1 and got["cuts"][0].endswith("Too many open files (EMFILE)"), got
    assert (got["problem"], got["status"], got["left"]) == (None, -9, False), got


def test_a_kill_out_of_descriptors_to_its_deadline_says_so():
    got = killed("never freed")
    assert len(got["cuts"]) >= 2, got  # the pass repeated
    cut = "cannot read a cgroup's processes: Too many open files (EMFILE)"
    assert got["problem"] == (f"cannot kill through {got['dir']}: {cut}; cannot remove {got['dir']}: Device or "
                              f"resource busy (EBUSY) (its processes not counted: {cut} after 2.0 s)"), got
    assert (got["status"], got["left"]) == (-9, True), got  # (killed by the test's cleanup)


def test_a_v1_freezer_kill_out_of_descriptors_repeats_its_pass_only_retry_secs_apart():
    """Was: the pass again at once (wait_emptied looks POLL_SECS, 2 ms, later on v1: no
    cgroup.events): 474-530 walks cut short in the 2 s, each pass a freeze, against 38-40
    under v2. Now RETRY_SECS (0.1 s) apart: two cuts a pass (the kill's, the removal's)."""
    got = killed("never freed", FREEZER, "freezer")
    assert 2 <= len(got["cuts"]) <= 2 * (2.0 / cgroups.RETRY_SECS + 2), got
    assert got["problem"].startswith(f"cannot kill through {got['dir']}: cannot read"), got


@pytest.mark.parametrize("kind", ["auto", "freezer"])
def test_a_close_its_deadline_cuts_hands_the_tree_to_the_watchdog_and_says_so(kind, tmp_path, monkeypatch, caplog):
    """Was (a review: 2,100 levels, v1 freezer, the bound lowered to stand for a slow host):
    ERROR `cgroup_remove_failed` 'cannot kill through ...: its deadline passed; cannot remove
    ...: EBUSY (0 processes still in it ...)' though the member was dead, then `watchdog_stuck`:
    the close waited 1 s for the watchdog, which needed 1.67 s to remove the tree. Now one
    WARNING, `cgroup_close_cut`, and the close waits the watchdog's own bound for the cgroup
    longer: the tree is gone as it returns, and nothing is called stuck."""
    setting = FREEZER if kind == "freezer" else kind
    if (why := cgroup_support.unavailable(setting)) is not None:
        pytest.skip(f"no {kind} task cgroup here: {why}")
    monkeypatch.setattr(cgrouplife, "CGROUP_KILL_SECS", 0.0)  # a host too slow for a step of the walk
    groups = cgroup_support.CgroupTracker()
    sup = Supervisor(sandbox=tmp_path, task_label="cut.0", env={"PATH": os.environ["PATH"]},
                     post=lambda event: None, cgroups=setting)
    try:
        sup.start()
        directory = sup.cgroup
        assert directory is not None
        groups.add(directory)
        depth = 2100 if kind == "freezer" else 300  # v2's mkdir is slow (2,100 levels: 13.7 s); cut at any depth
        cgroup_support.nest(directory, depth, sup.spawn(ProcessSpec("deep", "sleep 600"), 0))
        dog = sup.watchdog_pid
        with caplog.at_level(logging.INFO):
            sup.close()
        said = _said(caplog)
        assert not os.path.exists(directory), said  # the watchdog's, before the close returned
    finally:
        sup.close()
        groups.cleanup()
    assert [level for level, _ in said] == ["WARNING"], said
    assert said[0][1].startswith("cgroup_close_cut ") and directory in said[0][1], said
    assert "stopped at its 0.0 s deadline (" in said[0][1], said
    assert f"the watchdog (pid {dog}), let go, kills what is left and removes it" in said[0][1], said


def test_a_close_its_deadline_cuts_with_no_watchdog_running_says_what_is_left_behind(monkeypatch, caplog):
    """Was: the same WARNING, "the watchdog, let go, kills what is left and removes it", when
    no watchdog ran (it could not start, or it exited): nothing did, and the line said the
    tree would go. Now an ERROR names the cgroup left behind with its processes."""
    if (why := cgroup_support.unavailable(FREEZER)) is not None:  # its kill walks: cut at any depth
        pytest.skip(f"no v1 freezer task cgroup here: {why}")
    monkeypatch.setattr(cgrouplife, "CGROUP_KILL_SECS", 0.0)
    life, cg = cgroup_support.task_cgroup_life("cut.0", FREEZER)
    run: subprocess.Popen[bytes] | None = None
    try:  # the cgroup is released whatever happens (a Popen that fails too): a later test may make one
        run = subprocess.Popen(["sleep", "600"])
        cgroup_support.nest(cg.directory, 2, run.pid)  # below the task's: the cut stops before it
        with caplog.at_level(logging.INFO):
            assert life.close(watchdog=None)
    finally:
        _drop(cg, run)
    said = _said(caplog)
    assert [level for level, _ in said] == ["ERROR"], said
    assert said[0][1].startswith("cgroup_close_cut ") and "the watchdog, let go" not in said[0][1], said
    assert f"no watchdog runs to finish it (it could not start, or it exited): {cg.directory}, the cgroups " \
           "below it and the processes still in them are left behind" in said[0][1], said


@pytest.mark.parametrize("way", ["deadline", "descriptors"])
def test_a_v1_freezer_kill_pass_cut_short_thaws_what_it_froze(way, monkeypatch):
    """Was: a pass its deadline (or EMFILE) cut left the tree FROZEN, its members alive, the
    SIGKILL the pass sent pending, until the watchdog thawed it. Now every exit of the pass
    thaws what it froze: the member killed before the cut dies at once."""
    if (why := cgroup_support.unavailable(FREEZER)) is not None:
        pytest.skip(f"no v1 freezer task cgroup here: {why}")
    from executor.procs import cgroupwalk

    made = cgroups.create(f"stoker-test-{os.urandom(4).hex()}", FREEZER)
    assert not isinstance(made, cgroups.NoCgroup), made
    runs: list[subprocess.Popen[bytes]] = []
    real_open = cgroupwalk.os.open
    try:  # the cgroup is released whatever happens (a Popen that fails too): a later test may make one
        runs += [subprocess.Popen(["sleep", "600"]) for _ in range(2)]
        top, deep = runs
        assert made.take_in(top.pid)
        cgroup_support.nest(made.directory, 2, deep.pid)  # below the task's: the cut stops before it
        if way == "descriptors":  # no cgroup below the top can be opened
            monkeypatch.setattr(cgroupwalk.os, "open", lambda path, flags, *a, dir_fd=None, **k: (
                _emfile() if dir_fd is not None and flags & os.O_DIRECTORY else real_open(path, flags, *a, dir_fd=dir_fd, **k)))
        problem = made.kill_and_remove(0.0 if way == "deadline" else 0.3)
        monkeypatch.undo()
        assert problem is not None, "the member below is still there"
        state = cgroups.read(made.directory, "freezer.state").strip()
        assert state == "THAWED", state
        assert top.wait(10) == -9  # thawed: its SIGKILL delivered
    finally:
        monkeypatch.undo()
        _drop(made, *runs)


def _emfile() -> int:
    raise OSError(errno.EMFILE, "Too many open files")


@pytest.mark.parametrize("watchdog", [4242, None], ids=["watchdog", "none"])
def test_a_v1_freezer_thaw_out_of_descriptors_says_the_cgroup_is_left_frozen_and_who_thaws_it(
        watchdog, monkeypatch, caplog):
    """Was: the kill's last thaw failed (EMFILE), the tree stayed FROZEN, its SIGKILLed
    members alive, and the line said only 'cannot thaw ...' beside the EBUSY, a WARNING when
    a watchdog ran. Now an ERROR says the cgroup is left FROZEN and who thaws it: the
    watchdog (its pid), or, when none runs, nobody."""
    if (why := cgroup_support.unavailable(FREEZER)) is not None:
        pytest.skip(f"no v1 freezer task cgroup here: {why}")
    from executor.procs import cgroupwalk

    monkeypatch.setattr(cgrouplife, "CGROUP_KILL_SECS", 0.3)
    life, cg = cgroup_support.task_cgroup_life("frozen.0", FREEZER)
    run: subprocess.Popen[bytes] | None = None
    real_open = cgroupwalk.os.open
    try:  # the cgroup is released whatever happens (a Popen that fails too): a later test may make one
        run = subprocess.Popen(["sleep", "600"])
        assert cg.take_in(run.pid)
        monkeypatch.setattr(cgroupwalk.os, "open", lambda path, flags, *a, dir_fd=None, **k: (
            _emfile() if path == "freezer.state" and flags & os.O_WRONLY else real_open(path, flags, *a, dir_fd=dir_fd, **k)))
        with caplog.at_level(logging.INFO):
            assert life.close(watchdog=watchdog)
        monkeypatch.undo()
        assert cgroups.read(cg.directory, "freezer.state").strip() == "FROZEN"
    finally:
        monkeypatch.undo()
        with contextlib.suppress(OSError):
            cgroups._write(cg.directory, "freezer.state", "THAWED")
        _drop(cg, run)
    said = _said(caplog)
    assert [level for level, _ in said] == ["ERROR"], said
    assert "it is left FROZEN, its thaw failed: cannot thaw a cgroup of" in said[0][1], said
    who = (f"the watchdog (pid {watchdog}), let go, thaws it" if watchdog else "left behind FROZEN, none thaws them")
    assert who in said[0][1], said
