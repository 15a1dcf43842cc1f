"""A fake monotonic clock for pure unit tests: a number you move forward by hand.

It owns nothing but that number and refuses to go backwards, like `time.monotonic()`.
Never use it where real processes or sockets are involved.
"""
from __future__ import annotations


class FakeClock:
    """`clock.now` is the current time (starts at 1000.0); `clock()` returns it too."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = float(start)

    @property
    def now(self) -> float:
        return self._now

    def __call__(self) -> float:
        return self._now

    def advance(self, secs: float) -> float:
        """Move forward by `secs` (>= 0) and return the new time."""
        if secs < 0:
            raise ValueError(f"a monotonic clock cannot go backwards (advance by {secs} s)")
        self._now += secs
        return self._now

    def advance_to(self, at: float) -> float:
        """Move forward to the absolute time `at` (>= now) and return it."""
        if at < self._now:
            raise ValueError(f"a monotonic clock cannot go backwards (from {self._now} to {at})")
        self._now = float(at)
        return self._now
