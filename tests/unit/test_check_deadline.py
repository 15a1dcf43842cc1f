"""The TCP and HTTP checks' deadline (`healthcheck.loopback.Deadline`), on a fake clock: a
check found past it by more than STALL_SECS (this process was not running: stopped, paused
with its host, starved) gets its timeout again, once per attempt, with one INFO line; a
delay below STALL_SECS (a scheduler's on a busy host) gives nothing."""
from __future__ import annotations

import logging

import pytest

from healthcheck.base import STALL_SECS
from healthcheck.loopback import Deadline
from tests.support.fake_clock import FakeClock

TIMEOUT_SECS = 0.5


def _stalled(caplog) -> list[dict]:  # type: ignore[no-untyped-def]
    return [r.stoker_fields for r in caplog.records if getattr(r, "stoker_event", "") == "health_check_stalled"]


def test_a_check_paused_past_its_deadline_gets_its_timeout_again_once(caplog):
    clock = FakeClock()
    due = Deadline(TIMEOUT_SECS, "TCP connect to localhost:8080", clock)
    clock.advance(TIMEOUT_SECS + 1.0)  # paused across the deadline
    with caplog.at_level(logging.INFO, logger="healthcheck"):
        assert due.left() == pytest.approx(TIMEOUT_SECS)
        clock.advance(TIMEOUT_SECS + 1.0)  # paused across the new one too: no third
        with pytest.raises(TimeoutError):
            due.left()
    assert due.expired and not due.resumed()
    [fields] = _stalled(caplog)
    assert fields["check"] == "TCP connect to localhost:8080" and fields["timeout_secs"] == "0.5", fields
    assert fields["late_secs"] == 1.0, fields


def test_a_step_that_ended_by_its_timeout_past_a_pause_is_given_the_time_again():
    """A connect's wait that ended by its own timeout, woken long past the deadline (the
    process stopped meanwhile), is not the attempt's end: `resumed` says to try again."""
    clock = FakeClock()
    due = Deadline(TIMEOUT_SECS, "", clock)
    due.left()
    clock.advance(TIMEOUT_SECS + 0.8)
    assert due.resumed() and not due.expired
    assert due.left() == pytest.approx(TIMEOUT_SECS)


def test_a_delay_below_the_stall_threshold_gives_nothing(caplog):
    clock = FakeClock()
    due = Deadline(TIMEOUT_SECS, "", clock)
    clock.advance(TIMEOUT_SECS + STALL_SECS * 0.8)
    with caplog.at_level(logging.INFO, logger="healthcheck"), pytest.raises(TimeoutError):
        due.left()
    assert due.expired and not _stalled(caplog)


def test_the_stall_line_says_the_check_its_timeout_how_late_to_the_millisecond_and_why(caplog):
    clock = FakeClock()
    due = Deadline(TIMEOUT_SECS, clock=clock)  # no check named: none in the line
    clock.advance(TIMEOUT_SECS + 1.23456)
    with caplog.at_level(logging.INFO, logger="healthcheck"):
        assert due.resumed()
    assert _stalled(caplog) == [{
        "check": "", "timeout_secs": "0.5", "late_secs": 1.235,
        "reason": "this process was not running at the check's deadline (stopped or starved): "
                  "the check gets its timeout again"}]


def test_at_the_deadline_no_time_is_left(caplog):
    clock = FakeClock()
    due = Deadline(TIMEOUT_SECS, "", clock)
    clock.advance(TIMEOUT_SECS)
    with pytest.raises(TimeoutError) as raised:
        due.left()
    assert str(raised.value) == "the health check's deadline passed" and due.expired


def test_exactly_stall_secs_past_the_deadline_is_no_stall(caplog):
    """STALL_SECS late is a busy host's delay still; only more is a pause. (A clock from 0
    and a timeout of STALL_SECS: each time here is exact in binary.)"""
    clock = FakeClock(0.0)
    due = Deadline(STALL_SECS, "", clock)
    clock.advance(STALL_SECS)
    clock.advance(STALL_SECS)
    with caplog.at_level(logging.INFO, logger="healthcheck"), pytest.raises(TimeoutError):
        due.left()
    assert not _stalled(caplog)


def test_a_connect_with_no_time_left_and_no_pause_expires_the_attempt():
    """`connect` past the deadline (by less than a pause) tries nothing and ends the attempt:
    `expired`, which the HTTP check reads to call its failure a timeout."""
    clock = FakeClock()
    due = Deadline(TIMEOUT_SECS, "", clock)
    clock.advance(TIMEOUT_SECS + STALL_SECS / 2)
    with pytest.raises(TimeoutError):
        due.connect(9)
    assert due.expired
