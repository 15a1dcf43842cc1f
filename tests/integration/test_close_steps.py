"""A supervisor's close, step by step (`exitby.close_task`, `Supervisor._close_fds`):
what each step hands the next. The cgroup's close is given the watchdog's pid, the time left
until the exit time and what the kill could not end; one that raises leaves the watchdog to
what the cgroup says of this process (left it or not), and the close raises its error."""
from __future__ import annotations

import math
import time

import pytest

from executor.procs.cgroups import SETTING_AUTO
from executor.procs.containment import Containment
from executor.procs.reaper import Reaper
from tests.support.supervision import Harness, alive

pytestmark = pytest.mark.timeout(60)


class _Broken(Exception):
    """A step of the close failing, as a bug or a test's patch would."""


def _seen_by_cgroup_close(monkeypatch, raises: bool = False) -> list[tuple]:  # type: ignore[no-untyped-def]
    """The arguments of each `Containment.close` (the real one runs; then raises when `raises`)."""
    seen: list[tuple] = []
    real = Containment.close

    def close(self, watchdog=None, within_secs=None, stuck=frozenset()):  # type: ignore[no-untyped-def]
        seen.append((watchdog, within_secs, stuck))
        left = real(self, watchdog, within_secs, stuck)
        if raises:
            raise _Broken("the cgroup's close failed after it left the cgroup")
        return left
    monkeypatch.setattr(Containment, "close", close)
    return seen


def test_the_cgroup_s_close_gets_the_watchdog_the_time_left_and_what_the_kill_left(tmp_path, tracker, monkeypatch):
    h = Harness(tmp_path / "sandbox", tracker, cgroups=SETTING_AUTO)
    h.spawn("p", "exec sleep 600")
    dog = h.sup.watchdog_pid
    assert dog is not None
    h.sup._exit_by.set(time.monotonic() + 30)
    killed: list[frozenset[int]] = []
    real_kill = Containment.kill_all
    monkeypatch.setattr(Containment, "kill_all", lambda self, *a: killed.append(real_kill(self, *a) | _STUCK) or killed[-1])
    seen = _seen_by_cgroup_close(monkeypatch)
    h.sup.close()
    [(watchdog, within_secs, stuck)] = seen
    assert watchdog == dog
    assert within_secs is not None and math.isfinite(within_secs) and 0 < within_secs <= 30
    assert killed == [stuck] and _STUCK <= stuck


_STUCK = frozenset({4194305})  # what a kill could not end (D state), as it names it: no pid ever (PID_MAX_LIMIT + 1)


def test_a_kill_that_raises_leaves_the_cgroup_s_close_nothing_stuck(tmp_path, tracker, monkeypatch):
    h = Harness(tmp_path / "sandbox", tracker, cgroups=SETTING_AUTO)
    h.spawn("p", "exec sleep 600")

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise _Broken("the close's kill failed")
    monkeypatch.setattr(Containment, "kill_all", broken)
    seen = _seen_by_cgroup_close(monkeypatch)
    with pytest.raises(_Broken):
        h.sup.close()
    assert [stuck for _, _, stuck in seen] == [frozenset()]


def test_a_cgroup_close_that_raises_once_out_lets_the_watchdog_go_and_raises_its_error(tmp_path, tracker, monkeypatch):
    h = Harness(tmp_path / "sandbox", tracker, cgroups=SETTING_AUTO)
    h.spawn("p", "exec sleep 600")
    dog = h.sup.watchdog_pid
    assert dog is not None
    _seen_by_cgroup_close(monkeypatch, raises=True)
    with pytest.raises(_Broken):
        h.sup.close()
    assert h.sup._containment is not None and h.sup._containment.closed.left
    assert not alive(dog), "the watchdog was not let go and waited for, though this process left the cgroup"
    reaper = Reaper._instance
    assert reaper is not None and reaper.users == 0


def test_the_watchdog_and_the_reaper_s_thread_are_waited_for_within_the_exit_time(tmp_path, tracker, monkeypatch):
    """Nothing stuck: the watchdog let go is waited for its whole `WATCHDOG_EXIT_SECS`, neither
    cut nor busy; the reaper's thread no longer than the exit time leaves; the state CLOSED and
    /dev/null's descriptor given up."""
    from executor.procs.runlogs import RunLogs
    from executor.procs.supervisor import SupervisorState
    from executor.procs.watchdog import WATCHDOG_EXIT_SECS, WatchdogKeeper

    h = Harness(tmp_path / "sandbox", tracker, cgroups=SETTING_AUTO)
    h.spawn("p", "exec sleep 600")
    h.sup._exit_by.set(time.monotonic() + WATCHDOG_EXIT_SECS / 2)
    waits: list[tuple] = []
    real_wait, real_join = WatchdogKeeper.wait_gone, Reaper.join_unused
    monkeypatch.setattr(WatchdogKeeper, "wait_gone", lambda self, secs=WATCHDOG_EXIT_SECS, cut=False, busy=False: (
        waits.append(("watchdog", secs, cut, busy)), real_wait(self, secs, cut=cut, busy=busy))[1])
    monkeypatch.setattr(Reaper, "join_unused", lambda self, secs: (waits.append(("reaper", secs)), real_join(self, secs))[1])
    pumps: list[object] = []
    real_stop = RunLogs.stop_pump
    monkeypatch.setattr(RunLogs, "stop_pump", lambda self, exit_by: (pumps.append(exit_by), real_stop(self, exit_by))[1])
    h.sup.close()
    assert [w[0] for w in waits] == ["watchdog", "reaper"]
    assert waits[0][1:] == (WATCHDOG_EXIT_SECS, False, False) and waits[0][2] is False and waits[0][3] is False
    assert 0 < waits[1][1] <= WATCHDOG_EXIT_SECS / 2
    assert h.sup._state is SupervisorState.CLOSED and h.sup._devnull == -1
    assert pumps == [h.sup._exit_by]  # the logs' pump stopped once, by the exit time


@pytest.mark.parametrize("step", ["stop_pump", "on_orphans", "wait_gone", "logs_close"])
def test_a_later_step_that_raises_is_the_close_s_error_and_the_rest_is_done(tmp_path, tracker, monkeypatch, step):
    """The logs' pump stopped, the orphan hook's removal, the wait for
    the watchdog, the logs' close: each one's error
    is the one the close raises (not another, of the step's bookkeeping), the state CLOSED."""
    from executor.procs.runlogs import RunLogs
    from executor.procs.supervisor import SupervisorState
    from executor.procs.watchdog import WatchdogKeeper

    h = Harness(tmp_path / "sandbox", tracker, cgroups=SETTING_AUTO)
    h.spawn("p", "exec sleep 600")

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise _Broken(step)
    owner, name = {"stop_pump": (RunLogs, "stop_pump"),
                   "on_orphans": (Reaper, "on_orphans"), "wait_gone": (WatchdogKeeper, "wait_gone"),
                   "logs_close": (RunLogs, "close")}[step]
    monkeypatch.setattr(owner, name, broken)
    with pytest.raises(_Broken, match=f"^{step}$"):
        h.sup.close()
    monkeypatch.undo()
    assert h.sup._state is SupervisorState.CLOSED
    reaper = Reaper._instance
    assert reaper is not None and reaper.users == 0


def test_a_start_that_raised_before_its_watchdog_is_closed_without_one(tmp_path, tracker, monkeypatch):
    """A start cut short after its containment, before its watchdog (none to let go or wait
    for): its close ends the rest all the same, the reaper's user let go."""
    from executor.procs import supervisor as supervisor_module
    from executor.procs.supervisor import Supervisor, SupervisorState

    def broken(**kwargs) -> None:  # type: ignore[no-untyped-def]
        raise _Broken("no watchdog")
    monkeypatch.setattr(supervisor_module, "WatchdogKeeper", broken)
    sup = Supervisor(sandbox=tmp_path, task_label="test.0", env={}, post=lambda event: None, cgroups="off")
    with pytest.raises(_Broken, match="no watchdog"):
        sup.start()
    assert sup._containment is not None and sup._watchdog is None
    sup.close()
    assert sup._state is SupervisorState.CLOSED
    reaper = Reaper._instance
    assert reaper is not None and reaper.users == 0, "the supervisor whose start failed still holds the reaper"


def test_a_watchdog_let_go_that_raises_is_the_close_s_error_and_the_rest_is_done(tmp_path, tracker, monkeypatch):
    from executor.procs.supervisor import SupervisorState
    from executor.procs.watchdog import WatchdogKeeper
    from tests.support.waiting import wait_for

    h = Harness(tmp_path / "sandbox", tracker, cgroups=SETTING_AUTO)
    h.spawn("p", "exec sleep 600")
    dog, real = h.sup.watchdog_pid, WatchdogKeeper.let_go

    def broken(self) -> None:  # type: ignore[no-untyped-def]
        raise _Broken("let_go")
    monkeypatch.setattr(WatchdogKeeper, "let_go", broken)
    with pytest.raises(_Broken, match="^let_go$"):
        h.sup.close()
    assert h.sup._state is SupervisorState.CLOSED
    assert h.sup._watchdog is not None and dog is not None
    real(h.sup._watchdog)  # (what the broken step left)
    wait_for(lambda: not alive(dog), 10, message="the watchdog gone")


def test_a_close_that_left_the_cgroup_cut_busy_and_stuck_says_so_to_the_watchdog_s_wait_and_waits_no_more(
        tmp_path, tracker, monkeypatch):
    """What the cgroup's close reports (its deadline cut it, a member would not die, only
    what the kill named stuck) reaches the wait for the watchdog, and a stuck close waits
    for neither the watchdog nor the reaper's thread (none dies sooner)."""
    from executor.procs.watchdog import WatchdogKeeper
    from tests.support.waiting import wait_for

    h = Harness(tmp_path / "sandbox", tracker, cgroups=SETTING_AUTO)
    h.spawn("p", "exec sleep 600")
    real_close, real_wait, real_join = Containment.close, WatchdogKeeper.wait_gone, Reaper.join_unused

    def close(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        left = real_close(self, *args, **kwargs)
        self.closed.cut_at_close = self.closed.busy_at_close = self.closed.stuck_at_close = True
        return left
    waits: list[tuple] = []
    monkeypatch.setattr(Containment, "close", close)
    monkeypatch.setattr(WatchdogKeeper, "wait_gone", lambda self, *args, **kwargs: (
        waits.append(("watchdog", args, kwargs)), real_wait(self, *args, **kwargs))[1])
    monkeypatch.setattr(Reaper, "join_unused", lambda self, secs: (waits.append(("reaper", secs)), real_join(self, secs))[1])
    h.sup.close()
    assert waits == [("watchdog", (0.0,), {"cut": True, "busy": True}), ("reaper", 0.0)]
    reaper = Reaper._instance
    assert reaper is not None
    wait_for(lambda: reaper.thread is None, 10, message="the reaper's thread ended")
