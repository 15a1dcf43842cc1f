"""The early start's runs as the supervisor takes them over (`executor/procs/adoption.py`):
the run asked for adopted (its exit, even one that came first, posted then), one that is not
that run, or never asked for, given up (killed with its process group, its exit never
posted), and the early watchdog reaped as it retires. Real runs (`posix_spawn`ed as the early
start spawns them: a group of their own, the run's marker in their environment) and the one
reaper of this process.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path

import pytest

from config.spec import ProcessSpec
from executor.procs import runenv, spawn
from executor.procs.adoption import EarlyRuns
from executor.procs.earlyfork import EarlyRun
from executor.procs.reaper import Reaper, Watcher
from executor.procs.spawn import RunChild
from tests.support.limits import closed
from tests.support.logevents import records
from tests.support.supervision import Tracker, alive, read_pids
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)

MARKER = "0123456789abcdef0123456789abcdef"
SLEEPS = "exec sleep 600"


class Early:
    """Runs forked as an early start forks them, handed to an `EarlyRuns`, whose posted exits
    are in `posted` and whose runs' table is `table`; `start` gives it this process's reaper."""

    def __init__(self, tmp_path: Path, tracker: Tracker, *runs: tuple[str, int, str],
                 watchdog: tuple[int, int] | None = None) -> None:
        self.tracker = tracker
        self.env = spawn.task_env({"PATH": os.environ["PATH"]}, tmp_path, MARKER)
        self.pids = {(name, run): self._fork(name, run, cmdline) for name, run, cmdline in runs}
        self.table: dict[tuple[str, int], RunChild] = {}
        self.posted: list[tuple[str, int, int]] = []
        self.reaper: Reaper | None = None
        early = [EarlyRun(name, run, self.pids[(name, run)], cmdline, self.env) for name, run, cmdline in runs]
        self.runs = EarlyRuns(early, MARKER, runs_by_key=self.table, lock=threading.Lock(),
                              post_exit=lambda child, status: self.posted.append((child.process, child.run, status)),
                              label="test.0", watchdog=watchdog, reaper=lambda: self.reaper)

    def _fork(self, name: str, run: int, cmdline: str) -> int:
        pid = os.posix_spawn("/bin/sh", ["/bin/sh", "-c", cmdline], runenv.run_env(self.env, MARKER, name, run),
                             setpgroup=0)
        self.tracker.add(pid)
        return pid

    def start(self) -> Reaper:
        """The supervisor's start: its reaper takes the runs (each run's status set as reaped)."""
        watchers = self.runs.watchers(lambda child: Watcher(on_reaped=lambda pid, status: child.reaped(status)))
        self.reaper = Reaper.acquire(watchers)
        return self.reaper

    def close(self) -> None:
        """Its runs still watched killed with their groups and reaped by the reaper (one a test's
        cleanup reaped instead stayed watched for good: the reaper's thread never ended), then
        let go."""
        reaper = self.reaper
        if reaper is None:
            return
        left = [pid for pid in self.pids.values() if reaper.is_registered(pid)]
        for pid in left:  # unreaped: it still leads its group, what it started with it (a test that failed early)
            os.killpg(pid, signal.SIGKILL)
        try:
            wait_for(lambda: not any(reaper.is_registered(pid) for pid in left), 5, message="the runs reaped")
        finally:
            reaper.release()

    def adopt(self, name: str, run: int = 0, *, cmdline: str = SLEEPS, env: dict[str, str] | None = None,
              same_user: bool = True) -> int | None:
        return self.runs.adopt(ProcessSpec(name, cmdline), run, self.env if env is None else env, same_user)

    def child(self, name: str, run: int = 0) -> RunChild:
        return self.table[(name, run)]


@pytest.fixture
def early(tmp_path: Path, tracker: Tracker, caplog: pytest.LogCaptureFixture):  # type: ignore[no-untyped-def]
    """`early(*runs, watchdog=None)`: an `Early`, its reaper let go after the test."""
    made: list[Early] = []
    caplog.set_level(logging.DEBUG, logger="executor.procs.supervisor")

    def make(*runs: tuple[str, int, str], watchdog: tuple[int, int] | None = None) -> Early:
        made.append(Early(tmp_path, tracker, *runs, watchdog=watchdog))
        return made[-1]
    try:
        yield make
    finally:
        for one in made:
            one.close()


def lines(caplog: pytest.LogCaptureFixture, event: str) -> list[dict]:
    return [dict(r.stoker_fields, level=r.levelname) for r in records(caplog, event)]


def test_the_run_asked_for_is_adopted_and_runs_on_with_nothing_posted(early, caplog):
    e = early(("p", 0, SLEEPS))
    e.start()
    pid = e.pids[("p", 0)]
    assert e.adopt("p") == pid
    assert e.child("p").adopted and alive(pid)
    assert e.posted == []
    assert lines(caplog, "process_adopted") == [
        {"task": "test.0", "process": "p", "run": 0, "pid": pid, "level": "DEBUG"}]
    assert not e.runs and e.runs.children() == []


def test_an_adopted_run_that_exited_first_has_its_exit_posted_as_it_is_adopted(early):
    e = early(("p", 0, "exit 3"))
    e.start()
    wait_for(lambda: e.child("p").status is not None, 5, message="the run reaped")
    assert e.posted == []  # held back while not adopted
    assert e.adopt("p", cmdline="exit 3") == e.pids[("p", 0)]
    [(name, run, status)] = e.posted
    assert (name, run, os.waitstatus_to_exitcode(status)) == ("p", 0, 3)


@pytest.mark.parametrize(("kind", "why"), [
    ("command", "its command is not the task's"),
    ("environment", "its environment is not the task's"),
    ("user", "the task runs as another user"),
])
def test_a_run_that_is_not_the_one_asked_for_is_killed_and_its_exit_never_posted(early, caplog, kind, why):
    e = early(("p", 0, SLEEPS))
    e.start()
    pid, child = e.pids[("p", 0)], e.child("p")
    asked = {"command": {"cmdline": "exec sleep 601"}, "environment": {"env": {**e.env, "EXTRA": "1"}},
             "user": {"same_user": False}}[kind]
    assert e.adopt("p", **asked) is None
    wait_for(lambda: child.status is not None, 5, message="the early run killed and reaped")
    assert ("p", 0) not in e.table
    assert lines(caplog, "early_run_killed") == [
        {"task": "test.0", "process": "p", "run": 0, "pid": pid, "reason": why, "level": "WARNING"}]
    assert not child.adopted and child.status is not None
    assert e.posted == []


def test_a_claim_says_which_run_it_found_and_takes_it_once(early):
    e = early(("p", 0, SLEEPS), ("q", 1, SLEEPS))
    e.start()
    assert e.runs.claim(ProcessSpec("p", SLEEPS), 1, e.env, True) == (None, None)  # no run 1 of p
    child, why = e.runs.claim(ProcessSpec("q", SLEEPS), 1, e.env, True)
    assert child is not None and (child.process, child.run, child.pid, why) == ("q", 1, e.pids[("q", 1)], None)
    assert e.runs.claim(ProcessSpec("q", SLEEPS), 1, e.env, True) == (None, None)  # taken
    assert [c.process for c in e.runs.children()] == ["p"] and e.runs
    assert e.adopt("r") is None  # none such: nothing given up
    assert alive(e.pids[("p", 0)])


def test_the_runs_never_asked_for_are_given_up_once_and_the_adopted_one_left(early, caplog):
    e = early(("p", 0, SLEEPS), ("q", 0, SLEEPS), ("r", 0, SLEEPS))
    e.start()
    assert e.adopt("q") == e.pids[("q", 0)]
    assert e.runs.give_up_rest("the task did not start it first") is True
    assert e.runs.give_up_rest("again") is False
    wait_for(lambda: not alive(e.pids[("p", 0)]) and not alive(e.pids[("r", 0)]), 5, message="p and r killed")
    assert alive(e.pids[("q", 0)])
    assert sorted((line["process"], line["reason"]) for line in lines(caplog, "early_run_killed")) == [
        ("p", "the task did not start it first"), ("r", "the task did not start it first")]
    assert list(e.table) == [("q", 0)] and e.posted == []


def test_an_early_run_s_oom_kills_as_it_was_forked_are_its_run_s(tmp_path, tracker):
    """What its memory cgroup had counted as it was forked (`oomcount.py`) goes with it."""
    env = spawn.task_env({"PATH": os.environ["PATH"]}, tmp_path, MARKER)
    runs = EarlyRuns([EarlyRun("p", 0, 4321, SLEEPS, env, oom_kills=2), EarlyRun("q", 0, 4322, SLEEPS, env)], MARKER,
                     runs_by_key={}, lock=threading.Lock(), post_exit=lambda child, status: None, label="test.0")
    assert [(c.process, c.pid, c.oom_kills, c.marker) for c in runs.children()] == [
        ("p", 4321, 2, runenv.run_marker(MARKER, "p", 0)), ("q", 4322, None, runenv.run_marker(MARKER, "q", 0))]


def test_an_early_watchdog_already_gone_is_retired_with_nothing_raised(early):
    """Its pipe's reader gone (the watchdog ended): the retire's write fails (EPIPE), quietly,
    and the pipe is closed all the same."""
    read, write = os.pipe()
    os.close(read)
    e = early(watchdog=(os.getpid(), write))
    e.runs.retire_watchdog()
    assert closed(write)


def test_rest_hands_every_waiting_run_once(early):
    e = early(("p", 0, SLEEPS), ("p", 1, SLEEPS))
    assert sorted((c.process, c.run, c.adopted) for c in e.runs.rest()) == [("p", 0, False), ("p", 1, False)]
    assert e.runs.rest() == [] and not e.runs


@pytest.mark.parametrize("started", [False, True], ids=["before-the-reaper", "unreaped"])
def test_a_run_given_up_while_it_lives_is_killed_with_its_whole_group(early, tmp_path, started):
    """Its top not reaped (or no reaper yet): the group's id is still its, and the whole group
    goes, a member that does not carry the run's marker too."""
    pids = tmp_path / "pids"
    e = early(("p", 0, f"env -u {runenv.RUN_MARKER} sleep 600 & echo $! > {pids}.new; mv {pids}.new {pids}; "
                       "exec sleep 600"))  # (whole when it appears)
    if started:
        e.start()
    [unmarked] = read_pids(pids)
    e.tracker.add(unmarked)
    e.runs.give_up_rest("given up")
    assert wait_for(lambda: not alive(e.pids[("p", 0)]) and not alive(unmarked), 5, message="the whole group killed")


def test_a_run_given_up_after_it_was_reaped_loses_its_marked_group_members_only(early, tmp_path):
    """Its top reaped: its pid (and its group's id) may be another's, so only the members of
    its group that carry its marker are killed: not one without the marker, nor one with it in
    a group of its own, nor another run's."""
    pids = tmp_path / "pids"
    e = early(("p", 0, f"sleep 600 & a=$!; env -u {runenv.RUN_MARKER} sleep 600 & b=$!; "
                       f"setsid sleep 600 & c=$!; echo $a $b $c > {pids}.new; mv {pids}.new {pids}"),
              ("q", 0, SLEEPS))
    e.start()
    marked, unmarked, apart = read_pids(pids)
    e.tracker.add(marked, unmarked, apart)
    wait_for(lambda: e.child("p").status is not None, 5, message="the top reaped")
    wait_for(lambda: os.getpgid(apart) != e.pids[("p", 0)], 5, message="setsid done")
    assert e.adopt("q") == e.pids[("q", 0)]
    e.runs.give_up_rest("given up")
    wait_for(lambda: not alive(marked), 5, message="the marked member killed")
    assert alive(unmarked) and alive(apart) and alive(e.pids[("q", 0)])
    assert e.posted == []


def test_the_early_watchdog_is_reaped_once_the_supervisor_starts_and_told_to_retire(early):
    read, write = os.pipe()
    dog = os.posix_spawn("/bin/sh", ["/bin/sh", "-c", "exec cat > /dev/null"], {}, file_actions=[
        (os.POSIX_SPAWN_DUP2, read, 0), (os.POSIX_SPAWN_CLOSE, write)])
    os.close(read)
    e = early(("p", 0, SLEEPS), watchdog=(dog, write))
    e.tracker.add(dog)
    watchers = e.runs.watchers(lambda child: Watcher())
    assert sorted(watchers) == sorted([dog, e.pids[("p", 0)]])
    assert list(e.table) == [("p", 0)] and not e.child("p").adopted
    e.reaper = Reaper.acquire(watchers)
    e.runs.retire_watchdog()  # `retire\n`, its pipe closed: the stand-in ends at its end
    wait_for(lambda: not e.reaper.is_registered(dog), 5, message="the watchdog reaped")
    assert closed(write)


def test_with_no_early_watchdog_there_is_none_to_watch_or_retire(early):
    e = early(("p", 0, SLEEPS))
    assert list(e.runs.watchers(lambda child: Watcher())) == [e.pids[("p", 0)]]
    e.runs.retire_watchdog()
    assert bool(e.runs)


def test_a_run_killed_before_it_was_asked_for_is_not_posted_when_given_up(early):
    e = early(("p", 0, SLEEPS))
    e.start()
    os.kill(e.pids[("p", 0)], signal.SIGKILL)
    wait_for(lambda: e.child("p").status is not None, 5, message="the run reaped")
    e.runs.give_up_rest("given up")
    assert e.posted == [] and ("p", 0) not in e.table


def _idle_in_echild_wait(reaper: Reaper) -> bool:
    """The reaper's thread is in `_wait_once`'s wait for a fork (no child to wait for)."""
    thread = reaper._thread
    frame = sys._current_frames().get(thread.ident or 0) if thread is not None else None
    names = []
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    return names[:1] == ["wait"] and "_wait_once" in names


def test_runs_handed_to_a_reaper_already_idle_with_no_child_are_heard(tracker):
    """Another user holds the reaper, its thread waiting with no child (waitid's ECHILD) for
    the next fork: runs forked outside it and handed to it (`acquire(adopt)`) wake it too
    (was: it waited on, and the runs' exits were never heard)."""
    held = Reaper.acquire()
    try:
        wait_for(lambda: _idle_in_echild_wait(held), 5, message="the reaper idle with no child")
        pid = os.posix_spawn("/bin/sh", ["/bin/sh", "-c", "exit 5"], {})
        tracker.add(pid)
        statuses: list[int] = []
        reaper = Reaper.acquire({pid: Watcher(on_reaped=lambda pid, status: statuses.append(status))})
        try:
            wait_for(lambda: statuses, 5, message="the handed run's exit heard")
            assert os.waitstatus_to_exitcode(statuses[0]) == 5
        finally:
            reaper.release()
    finally:
        held.release()
