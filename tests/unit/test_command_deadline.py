"""The shell check's deadline (`executor.procs.commands._Due`), on a fake clock: a runner
found past it by more than STALL_SECS (it was not running: stopped, paused, frozen, starved)
gives the command its timeout again, once per attempt, so a command that hangs while its
supervisor is frozen and thawed over and over still ends within twice its timeout and the
pauses; a delay below STALL_SECS (a scheduler's on a busy host) gives nothing."""
from __future__ import annotations

import pytest

from executor.procs.commands import _Due
from healthcheck.base import STALL_SECS
from tests.support.fake_clock import FakeClock

TIMEOUT_SECS = 0.5


def test_a_runner_paused_past_the_deadline_gives_the_command_its_timeout_again_once():
    clock = FakeClock()
    due = _Due(clock.now + TIMEOUT_SECS, TIMEOUT_SECS, clock)
    clock.advance(TIMEOUT_SECS + 1.0)  # paused across the deadline
    assert due.left() == pytest.approx(TIMEOUT_SECS)
    clock.advance(TIMEOUT_SECS + 1.0)  # paused across the new one too: no third
    assert due.left() == pytest.approx(-1.0)
    assert due.left() == pytest.approx(-1.0)


def test_a_scheduling_delay_below_the_stall_threshold_gives_nothing():
    clock = FakeClock()
    due = _Due(clock.now + TIMEOUT_SECS, TIMEOUT_SECS, clock)
    clock.advance(TIMEOUT_SECS + STALL_SECS * 0.8)
    assert due.left() == pytest.approx(-STALL_SECS * 0.8)


def test_frozen_and_thawed_every_100_ms_a_hung_command_ends_within_twice_its_timeout():
    """Every look at the deadline comes 60 ms late (thawed 100 ms after each freeze): the
    deadline moves once, then passes."""
    clock = FakeClock()
    started = clock.now
    due = _Due(clock.now + TIMEOUT_SECS, TIMEOUT_SECS, clock)
    for _ in range(100):  # bounded, so endless extensions fail the test, not hang it
        if (left := due.left()) <= 0:
            break
        clock.advance(left + 0.06)
    assert clock.now - started <= 2 * TIMEOUT_SECS + 2 * 0.06
