"""Wall times for people (`executor/host/clock.py`): an ISO 8601 date with the local offset,
an age in its two largest units at each boundary, both together; '-' for what is unknown."""
from __future__ import annotations

import math
import time

import pytest

from executor.host.clock import age, iso_time, when


@pytest.mark.parametrize(("secs", "said"), [
    (-5.0, "0.0s"), (0.0, "0.0s"), (0.25, "0.2s"), (59.94, "59.9s"),
    (60.0, "1m00s"), (185.0, "3m05s"), (3599.0, "59m59s"),
    (3600.0, "1h00m"), (3660.0, "1h01m"), (86399.0, "23h59m"),
    (86400.0, "1d00h"), (90000.0, "1d01h"), (31 * 86400.0, "31d00h"),
    (None, "-"), (math.inf, "-"), (math.nan, "-"),
])
def test_an_age_is_its_two_largest_units(secs, said):
    assert age(secs) == said


@pytest.mark.parametrize("wall", [None, math.inf, -math.inf, math.nan, 1e300])
def test_a_time_unknown_or_past_any_calendar_is_a_dash(wall):
    assert iso_time(wall) == "-"
    assert when(wall, 1796552100.0) == ("-" if wall is None or not math.isfinite(wall) else "- (0.0s ago)")


def test_a_time_is_iso_8601_to_the_second_with_the_local_offset_and_its_age(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        assert iso_time(1796552100.7) == "2026-12-06T10:15:00+00:00"
        assert when(1796552100.0, 1796552285.0) == "2026-12-06T10:15:00+00:00 (3m05s ago)"
        monkeypatch.setenv("TZ", "EST+5")
        time.tzset()
        assert iso_time(1796552100.0) == "2026-12-06T05:15:00-05:00"
    finally:
        monkeypatch.undo()
        time.tzset()
