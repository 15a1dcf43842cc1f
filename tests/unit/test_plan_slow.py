"""`planahead.Slow`, the line a wait for a planning child says once when the child has not
answered SLOW_SECS after its fork: how long `poll` may wait before it is due (to the
millisecond, rounded up, never negative, no bound once said), said once, and its words.
A fake clock; the waits that use it are tests/integration/test_planahead.py's."""
from __future__ import annotations

import types

import pytest

from executor.cli import logsetup
from executor.local import planahead
from executor.local.planahead import Slow

pytestmark = pytest.mark.timeout(10)


@pytest.fixture
def clock(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(planahead, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    monkeypatch.setattr(planahead, "SLOW_SECS", 5.0)
    return now


@pytest.fixture
def said(monkeypatch):
    lines: list[tuple[str, str]] = []
    monkeypatch.setattr(logsetup, "say", lambda kind, message: lines.append((kind, message)))
    return lines


@pytest.mark.parametrize(("at", "wait_ms"), [(100.0, 5001), (102.5, 2501), (104.9995, 1), (105.0, 1),
                                             (105.2, 0), (160.0, 0)])
def test_a_wait_may_last_until_the_line_is_due_rounded_up_to_the_millisecond(clock, at, wait_ms):
    slow = Slow("'job.aurora': the job is still not planned", "planning", 60)
    clock[0] = at
    assert slow.wait_ms() == wait_ms


def test_once_said_a_wait_has_no_bound_and_the_line_is_not_said_again(clock, said):
    slow = Slow("'job.aurora': the job is still not planned", "planning", 60)
    clock[0] = 105.5
    slow.say()
    slow.say()
    assert slow.wait_ms() is None
    assert said == [("warning", "'job.aurora': the job is still not planned after 5 s; planning is stopped at "
                                "60 s (Ctrl-C stops it now)")]


def test_its_words_name_the_times_as_given(clock, monkeypatch):
    monkeypatch.setattr(planahead, "SLOW_SECS", 0.25)
    assert Slow("x: late", "loading", 1.5).message == "x: late after 0.25 s; loading is stopped at 1.5 s " \
                                                      "(Ctrl-C stops it now)"
