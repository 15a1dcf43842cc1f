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
