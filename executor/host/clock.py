"""Wall times for people: ISO 8601 dates with the local time zone's offset, and ages.

`iso_time(1796552100.0)` is `2026-12-06T10:15:00+00:00` on a host in UTC; `age(185)` is
`3m05s`; `when(wall, now)` puts both together: `2026-12-06T10:15:00+00:00 (3m05s ago)`.
Formatting only: the caller passes the times.
"""
from __future__ import annotations

import math


def iso_time(wall: float | None) -> str:
    """The wall time as ISO 8601 with the local offset, to the second; '-' when unknown."""
    if wall is None or not math.isfinite(wall):
        return "-"
    import datetime  # only when a date is shown: a supervisor's start never needs one

    try:
        return datetime.datetime.fromtimestamp(wall).astimezone().isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return "-"


def age(secs: float | None) -> str:
    """3.2s, 4m05s, 2h03m, 3d04h; '-' when unknown."""
    if secs is None or not math.isfinite(secs):
        return "-"
    secs = max(0.0, secs)
    if secs < 60:
        return f"{secs:.1f}s"
    minutes, s = divmod(int(secs), 60)
    if minutes < 60:
        return f"{minutes}m{s:02d}s"
    hours, m = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{m:02d}m"
    days, h = divmod(hours, 24)
    return f"{days}d{h:02d}h"


def when(wall: float | None, now_wall: float) -> str:
    """'2026-12-06T10:15:00+00:00 (3m05s ago)'; '-' when unknown."""
    if wall is None or not math.isfinite(wall):
        return "-"
    return f"{iso_time(wall)} ({age(now_wall - wall)} ago)"
