"""`ExitBy` on a clock the test moves: a wait's figures to the hundredth (its whole time, a
share of what is left, the note said once), the reasons and SIGKILL times kept as `set` is
called again, and the waking eventfd's flags and none to be had.

The clock (`_Clock`) is both `exitby`'s `time` and the ExitBy's condition: a wait on it moves
the clock by its timeout at once, or to the next thing the test scheduled (`at`), which runs
then, as another thread's `set` would."""
from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable

import pytest

from executor.procs import exitby
from executor.procs.exitby import ExitBy


class _Clock:
    """`time.monotonic` and a `threading.Condition` in one: `wait(timeout)` moves the clock
    by `timeout`, or to the first thing scheduled sooner, which it runs."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waited: list[float] = []  # each wait's timeout
        self._due: list[tuple[float, Callable[[], object]]] = []

    def monotonic(self) -> float:
        return self.now

    def at(self, when: float, then: Callable[[], object]) -> None:
        self._due = sorted([*self._due, (when, then)], key=lambda due: due[0])

    def wait(self, timeout: float) -> bool:
        assert timeout > 0, "a wait of no time: it spins until the clock moves on"
        self.waited.append(round(timeout, 6))
        if self._due and self._due[0][0] <= self.now + timeout:
            (self.now, then), self._due = self._due[0], self._due[1:]
            then()
            return True
        self.now += timeout
        return False

    def notify_all(self) -> None:
        return None  # (the waiter is this thread: it looks again as `wait` returns)

    def __enter__(self) -> _Clock:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    clock = _Clock()
    monkeypatch.setattr(exitby, "time", clock)
    return clock


def _on(clock: _Clock) -> ExitBy:
    exit_by = ExitBy()
    exit_by._cond = clock  # type: ignore[assignment]
    return exit_by


def _took(clock: _Clock, wait: Callable[[], bool]) -> tuple[bool, float]:
    began = clock.now
    result = wait()
    return result, round(clock.now - began, 6)


def test_a_wait_with_no_exit_time_runs_its_whole_time_and_no_more(clock):
    exit_by = _on(clock)
    assert _took(clock, lambda: exit_by.wait(lambda: False, 5.0)) == (False, 5.0)
    assert _took(clock, lambda: exit_by.wait(lambda: False, 5.0, share=0.25)) == (False, 5.0)  # no time to share
    assert exit_by.bound(clock.now + 7.0) == clock.now + 7.0  # no exit time: the wait's own end


def test_a_wait_that_is_no_leave_takes_its_share_of_the_exit_time_not_of_the_sigkill(clock):
    """A close of the ServerSet (no `to_kill`) after SHUTDOWN: a quarter of the 12 s left
    until the exit time, though the processes' SIGKILL comes 2 s in; a leave's (`to_kill`) is
    a quarter of those 2 s, and of the exit time's while no SIGKILL time is set."""
    exit_by = _on(clock)
    exit_by.set(clock.now + 12.0, kill_at=clock.now + 2.0)
    assert _took(clock, lambda: exit_by.wait(lambda: False, 60.0, share=0.25)) == (False, 3.0)
    assert _took(clock, lambda: exit_by.wait(lambda: False, 60.0, share=0.25, to_kill=True)) == (False, 0.0)
    no_kill = _on(clock)
    no_kill.set(clock.now + 8.0)
    assert _took(clock, lambda: no_kill.wait(lambda: False, 60.0, share=0.25, to_kill=True)) == (False, 2.0)


def test_a_share_of_less_than_a_second_left_is_that_share_and_of_none_left_none(clock):
    exit_by = _on(clock)
    exit_by.set(clock.now + 0.8)
    assert _took(clock, lambda: exit_by.wait(lambda: False, 60.0, share=0.25)) == (False, 0.2)
    assert _took(clock, lambda: exit_by.wait(lambda: False, 60.0)) == (False, 0.6)  # on to the exit time
    assert _took(clock, lambda: exit_by.wait(lambda: False, 60.0, share=0.25)) == (False, 0.0)  # past it


def test_an_exit_time_set_during_the_wait_and_then_moved_sooner_cuts_its_share_again(clock):
    """Set 1 s in, 8 s ahead: a quarter, 2 s more; moved to 2 s ahead 2 s in: a quarter of
    those, 0.5 s more. A `wake` meanwhile, with the time unchanged, cuts nothing more."""
    exit_by = _on(clock)
    began = clock.now
    clock.at(began + 1.0, lambda: exit_by.set(began + 9.0))
    clock.at(began + 1.5, exit_by.wake)
    clock.at(began + 2.0, lambda: exit_by.set(began + 4.0))
    assert _took(clock, lambda: exit_by.wait(lambda: False, 60.0, share=0.25)) == (False, 2.5)
    assert clock.waited == [60.0, 2.0, 1.5, 0.5]


def test_a_wait_is_said_once_after_its_time_with_what_is_left_of_it(clock):
    exit_by = _on(clock)
    began, said = clock.now, list[float]()

    def say(left: float) -> None:
        assert not said, "said again"
        said.append(left)
    assert _took(clock, lambda: exit_by.wait(lambda: clock.now >= began + 10.0, 60.0, noted=(4.0, say))) == (True, 60.0)
    assert said == [56.0] and clock.waited == [4.0, 56.0]


def test_the_first_reason_given_is_kept_and_the_soonest_sigkill_time(clock):
    exit_by = _on(clock)
    assert (exit_by.reason, exit_by.kill_at) == (None, None)
    exit_by.set(clock.now + 10.0)  # neither given: neither set
    assert (exit_by.reason, exit_by.kill_at) == (None, None)
    exit_by.set(clock.now + 10.0, kill_at=clock.now + 5.0, reason="executor shutting down (SHUTDOWN)")
    exit_by.set(clock.now + 10.0, kill_at=clock.now + 7.0, reason="executor shutting down (SIGTERM)")
    assert (exit_by.reason, exit_by.kill_at) == ("executor shutting down (SHUTDOWN)", clock.now + 5.0)
    exit_by.set(clock.now + 10.0, kill_at=clock.now + 3.0)
    exit_by.set(clock.now + 10.0)
    assert (exit_by.reason, exit_by.kill_at) == ("executor shutting down (SHUTDOWN)", clock.now + 3.0)


def test_a_waking_fd_neither_blocks_nor_outlives_an_exec():
    """Read by `bound` when it may be 0 (a blocking read would hang the close's kill), and
    never a child's."""
    with ExitBy().waking() as fd:
        assert fd >= 0 and not os.get_blocking(fd) and not os.get_inheritable(fd)


def test_with_no_eventfd_to_be_had_the_waking_is_none_and_the_exit_time_still_bounds(monkeypatch):
    """Out of descriptors: -1, a wait on none (it ends at the bound it read), nothing to
    write as the exit time is set, nothing to close as it ends."""
    def none_left(initval: int, flags: int) -> int:
        raise OSError(errno.EMFILE, "Too many open files")
    monkeypatch.setattr(os, "eventfd", none_left)
    exit_by = ExitBy()
    with exit_by.waking() as fd:
        assert fd == -1
        at = time.monotonic() + 100.0
        exit_by.set(at)
        assert exit_by.bound(at + 1.0, fd) == at
