"""A supervisor's close that raises midway still ends what it owns (`Supervisor.close`).

Was: an error in the close's kill (a test's patched `proctree.send` timing out under load)
left the close there: the state CLOSING, the watchdog held, the reaper's user kept, and a
second close (the fixture's) returned at once. In a test process the reaper's thread then
went on reaping the worker's other children (12 later tests of that worker failed). Now
each step runs whatever an earlier one raised, and the first error is raised at the end.
"""
from __future__ import annotations

import pytest

from executor.procs.cgroups import SETTING_AUTO
from executor.procs.containment import Containment
from executor.procs.reaper import Reaper
from tests.support.supervision import Harness, alive
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)


class _Broken(Exception):
    """The close's kill failing, as a bug or a test's patch would."""


@pytest.mark.parametrize("cgroups", ["off", SETTING_AUTO])
def test_a_close_whose_kill_raises_still_ends_its_run_watchdog_and_reaper(tmp_path, tracker, monkeypatch, cgroups):
    h = Harness(tmp_path / "sandbox", tracker, cgroups=cgroups)
    run = h.spawn("p", "exec sleep 600")
    dog = h.sup.watchdog_pid
    assert dog is not None and alive(dog)

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise _Broken("the close's kill failed")
    monkeypatch.setattr(Containment, "kill_all", broken)
    with pytest.raises(_Broken):
        h.sup.close()
    reaper = Reaper._instance
    assert reaper is not None and reaper.users == 0, "the closed supervisor still holds the reaper"
    # the run is killed all the same: by the task's cgroup, or else by the watchdog let go
    wait_for(lambda: not alive(run) and not alive(dog), 10, message="the run and the watchdog gone")
    wait_for(lambda: reaper.thread is None, 10, message="the reaper's thread ended")
    h.sup.close()  # closed: a second close has nothing left to do, and raises nothing


def test_a_start_that_raised_after_the_reaper_s_is_closed_without_it(tmp_path, tracker, monkeypatch):
    """A start cut short after it took the reaper (here: the OOM shield's), before its
    containment: its close let the reaper's user be (was: held for good, its thread never ending),
    and it is CLOSED at once, as one closed before its start (nothing of it to kill)."""
    from executor.procs import oomcount
    from executor.procs.supervisor import Supervisor, SupervisorState

    def broken() -> None:
        raise _Broken("no shield")
    monkeypatch.setattr(oomcount, "shield", broken)
    sup = Supervisor(sandbox=tmp_path, task_label="test.0", env={}, post=lambda event: None, cgroups="off")
    try:
        with pytest.raises(_Broken):
            sup.start()
    finally:
        sup.close()
    assert sup._state is SupervisorState.CLOSED
    reaper = Reaper._instance
    assert reaper is not None and reaper.users == 0, "the supervisor whose start failed still holds the reaper"
    wait_for(lambda: reaper.thread is None, 10, message="the reaper's thread ended")


def test_a_close_whose_later_step_raises_raises_that_error_with_every_other_step_done(tmp_path, tracker, monkeypatch):
    """A step after the task's kill failing (the wait for the reaper's thread): the close
    raises that error, not another of its own, and still ends what it owns: the state CLOSED
    (a spawn refused as closed), the reaper's user and its orphan hook let go."""
    from config.spec import ProcessSpec
    from executor.procs.supervisor import SpawnError

    h = Harness(tmp_path / "sandbox", tracker, cgroups="off")
    run = h.spawn("p", "exec sleep 600")

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise _Broken("the reaper's thread could not be waited for")
    monkeypatch.setattr(Reaper, "join_unused", broken)
    with pytest.raises(_Broken):
        h.sup.close()
    monkeypatch.undo()
    reaper = Reaper._instance
    assert reaper is not None and reaper.users == 0, "the closed supervisor still holds the reaper"
    assert [hook for hook in reaper._orphan_hooks if getattr(hook, "__self__", None) is h.sup] == []
    with pytest.raises(SpawnError, match="is closed"):
        h.sup.spawn(ProcessSpec("q", "true"), 0)
    wait_for(lambda: not alive(run), 10, message="the run gone")
    wait_for(lambda: reaper.thread is None, 10, message="the reaper's thread ended")


def test_a_second_close_of_a_start_that_failed_lets_go_of_the_reaper_no_second_time(tmp_path, tracker, monkeypatch):
    """Another supervisor holds the reaper too: the failed one's close lets go of its own
    user once; a second close does nothing (was it to let go again, the other's user went)."""
    from executor.procs import oomcount
    from executor.procs.supervisor import Supervisor

    h = Harness(tmp_path / "running", tracker, cgroups="off")

    def broken() -> None:
        raise _Broken("no shield")
    monkeypatch.setattr(oomcount, "shield", broken)
    (tmp_path / "failed").mkdir()
    sup = Supervisor(sandbox=tmp_path / "failed", task_label="test.1", env={}, post=lambda event: None, cgroups="off")
    try:
        with pytest.raises(_Broken):
            sup.start()
    finally:
        sup.close()
    sup.close()
    reaper = Reaper._instance
    assert reaper is not None and reaper.users == 1, "the running supervisor's user of the reaper was let go"
    h.sup.close()


def _failed_start(tmp_path, monkeypatch, early_runs=()):  # type: ignore[no-untyped-def]
    """A supervisor whose start raised after it took the reaper (the OOM shield's), closed."""
    from executor.procs import oomcount
    from executor.procs.supervisor import Supervisor

    def broken() -> None:
        raise _Broken("no shield")
    monkeypatch.setattr(oomcount, "shield", broken)
    sup = Supervisor(sandbox=tmp_path, task_label="test.0", env={}, post=lambda event: None, cgroups="off",
                     marker=MARKER, early_runs=list(early_runs))
    with pytest.raises(_Broken):
        sup.start()
    return sup


MARKER = "0123456789abcdef0123456789abcdef"


def test_the_early_runs_of_a_start_that_failed_are_killed_with_its_reason(tmp_path, tracker, monkeypatch, caplog):
    """The early start's runs of a supervisor whose start failed before its drains were made:
    killed by its close with its reason, and their exits taken with no drains to wait for. Was:
    each run's watcher waited 10 s for drains no start would make, on the reaper's thread (the
    thread outlived the supervisor), then failed on None (`reaper_callback_failed`, ERROR)."""
    import logging
    import os

    from executor.procs import spawn
    from executor.procs.earlyfork import EarlyRun

    env = spawn.task_env({"PATH": os.environ["PATH"]}, tmp_path, MARKER)
    pid = os.posix_spawn("/bin/sh", ["/bin/sh", "-c", "exec sleep 600"], env, setpgroup=0)
    tracker.add(pid)
    sup = _failed_start(tmp_path, monkeypatch, [EarlyRun("p", 0, pid, "exec sleep 600", env)])
    with caplog.at_level(logging.WARNING, logger="executor"):
        sup.close()
    wait_for(lambda: not alive(pid), 10, message="the early run killed")
    [reason] = [r.stoker_fields["reason"] for r in caplog.records if getattr(r, "stoker_event", "") == "early_run_killed"]
    assert reason == "the supervisor could not start"
    reaper = Reaper._instance
    assert reaper is not None
    wait_for(lambda: reaper.thread is None, 5, message="the reaper's thread ended")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_failed_start_s_close_whose_first_step_raises_still_lets_go_of_the_reaper(tmp_path, tracker, monkeypatch):
    from executor.procs.adoption import EarlyRuns

    sup = _failed_start(tmp_path, monkeypatch)

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise _Broken("the early runs could not be given up")
    monkeypatch.setattr(EarlyRuns, "give_up_rest", broken)
    with pytest.raises(_Broken, match="given up"):
        sup.close()
    reaper = Reaper._instance
    assert reaper is not None and reaper.users == 0, "the supervisor whose start failed still holds the reaper"


@pytest.mark.parametrize("cgroups", ["off", SETTING_AUTO])
def test_the_runs_a_close_kills_are_posted_as_killed_and_nothing_once_it_is_closed(tmp_path, tracker, cgroups):
    """While it kills (CLOSING) the close posts each run's exit as any other, the owner's last
    word on it (SIGKILL); once CLOSED, nothing more."""
    import signal

    from executor.procs.supervisor import SupervisorState

    h = Harness(tmp_path / "sandbox", tracker, cgroups=cgroups)
    run = h.spawn("p", "exec sleep 600")
    h.sup.close()
    assert h.sup._state is SupervisorState.CLOSED
    event = h.events.get_nowait()  # posted before the close returned
    assert (event.process, event.pid, event.status.signal) == ("p", run, signal.SIGKILL)
    assert h.events.empty()


def test_a_close_whose_last_step_raises_raises_that_error_closed_all_the_same(tmp_path, tracker, monkeypatch):
    """The descriptors' close, the last step, failing: its error is the one the close raises
    (the first), and the supervisor is CLOSED."""
    from executor.procs.supervisor import Supervisor, SupervisorState

    h = Harness(tmp_path / "sandbox", tracker, cgroups="off")
    h.spawn("p", "exec sleep 600")

    def broken(self) -> None:  # type: ignore[no-untyped-def]
        raise _Broken("the descriptors could not be closed")
    monkeypatch.setattr(Supervisor, "_close_fds", broken)
    with pytest.raises(_Broken, match="descriptors"):
        h.sup.close()
    monkeypatch.undo()
    assert h.sup._state is SupervisorState.CLOSED
    h.sup._close_fds()  # (what the broken step left)


@pytest.mark.parametrize("step", ["release", "_close_fds"])
def test_a_failed_start_s_close_whose_later_step_raises_raises_that_error(tmp_path, tracker, monkeypatch, step):
    """A start that failed after it took the reaper: its close's letting go of the reaper, or
    of its descriptors, failing is the error the close raises."""
    from executor.procs.supervisor import Supervisor

    sup = _failed_start(tmp_path, monkeypatch)
    owner = Reaper if step == "release" else Supervisor

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise _Broken(f"{step} failed")
    monkeypatch.setattr(owner, step, broken)
    with pytest.raises(_Broken, match=f"{step} failed"):
        sup.close()
    monkeypatch.undo()
    if step == "release":  # (what the broken step left)
        assert sup._reaper is not None
        sup._reaper.release()
    else:
        sup._close_fds()
