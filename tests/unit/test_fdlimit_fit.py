"""`executor/procs/fdlimit.py`'s `fit` and `ready_ceiling` on this process's own soft
descriptor limit (put back after each test; a hard limit lowered could not be raised again
without CAP_SYS_RESOURCE, so those below what a task needs are the test's own `getrlimit`):
raised to what the task's logs need, never above the hard limit nor below what it was, each
outcome in one line; and what the runs made ready before the first step may hold."""
from __future__ import annotations

import logging
import resource
from collections.abc import Iterator

import pytest

from config.spec import LoggerSpec, LogMode
from executor.procs import fdlimit

ROTATING = [LoggerSpec(mode=LogMode.ROTATE)] * 10
NEEDED = fdlimit.needed(ROTATING)  # 64 + 10 * 6 + 10 * 9 = 214


@pytest.fixture
def limit() -> Iterator[None]:
    kept = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, kept)


HARD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def _set(soft: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, HARD))


def _limits(monkeypatch, soft: int, hard: int) -> list[tuple[int, int]]:
    """This process's limits read as (soft, hard); the pairs `fit` then sets."""
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(fdlimit.resource, "getrlimit", lambda which: (soft, hard))
    monkeypatch.setattr(fdlimit.resource, "setrlimit", lambda which, pair: calls.append(pair))
    return calls


def _lines(caplog) -> list[tuple[int, str, dict[str, object]]]:
    return [(r.levelno, r.stoker_event, r.stoker_fields) for r in caplog.records
            if getattr(r, "stoker_event", "").startswith("descriptor_limit")]


def test_a_limit_that_is_enough_is_left_as_it_is(limit, caplog):
    assert NEEDED == 214
    _set(NEEDED)
    assert fdlimit.fit(ROTATING, "web.0") == NEEDED
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (NEEDED, HARD) and _lines(caplog) == []


def test_a_soft_limit_below_what_is_needed_is_raised_to_it_in_one_line(limit, caplog):
    caplog.set_level(logging.INFO)
    _set(100)
    assert fdlimit.fit(ROTATING, "web.0") == NEEDED
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (NEEDED, HARD)
    (level, event, fields), = _lines(caplog)
    assert (level, event) == (logging.INFO, "descriptor_limit_raised")
    assert fields == {"task": "web.0", "soft": 100, "to": NEEDED, "hard": HARD,
                      "reason": "the task's logs may hold 150 descriptors at once (and 64 are kept for the "
                                "supervisor's own)"}


def test_a_hard_limit_below_what_is_needed_is_reached_and_named(caplog, monkeypatch):
    caplog.set_level(logging.INFO)
    calls = _limits(monkeypatch, 100, 150)
    assert fdlimit.fit(ROTATING, "web.0") == 150
    assert calls == [(150, 150)]
    (raised, low) = _lines(caplog)
    assert raised[:2] == (logging.INFO, "descriptor_limit_raised") and raised[2]["to"] == 150
    assert low == (logging.WARNING, "descriptor_limit_low", {
        "task": "web.0", "soft": 150, "hard": 150, "needed": NEEDED,
        "reason": f"the hard descriptor limit 150 is below the {NEEDED} the task's logs may need: runs may "
                  "fail to start with EMFILE (raise ulimit -Hn, or LimitNOFILE for a service)"})


def test_a_soft_limit_at_the_hard_one_is_only_named(caplog, monkeypatch):
    caplog.set_level(logging.INFO)
    calls = _limits(monkeypatch, 120, 120)
    assert fdlimit.fit(ROTATING, "web.0") == 120 and calls == []
    assert [(level, event) for level, event, _ in _lines(caplog)] == [(logging.WARNING, "descriptor_limit_low")]


def test_a_limit_that_cannot_be_raised_is_a_warning_and_the_soft_one_stays(limit, caplog, monkeypatch):
    _set(100)

    def refused(*args: object) -> None:
        raise ValueError("not allowed")

    monkeypatch.setattr(fdlimit.resource, "setrlimit", refused)
    assert fdlimit.fit(ROTATING, "web.0") == 100
    (level, event, fields), = _lines(caplog)
    assert (level, event) == (logging.WARNING, "descriptor_limit_low")
    assert fields == {"task": "web.0", "soft": 100, "hard": HARD, "needed": NEEDED,
                      "error": "ValueError: not allowed",
                      "reason": "the soft descriptor limit could not be raised: runs may fail to start with "
                                "EMFILE (raise ulimit -n)"}


def test_an_unlimited_or_unknown_limit(monkeypatch):
    calls = _limits(monkeypatch, resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    assert fdlimit.fit(ROTATING, "web.0") == resource.RLIM_INFINITY and calls == []
    assert fdlimit.ready_ceiling() == 1 << 31
    calls = _limits(monkeypatch, 100, resource.RLIM_INFINITY)
    assert fdlimit.fit(ROTATING, "web.0") == NEEDED and calls == [(NEEDED, resource.RLIM_INFINITY)]

    def unknown(which: int) -> tuple[int, int]:
        raise OSError("no limit to read")

    monkeypatch.setattr(fdlimit.resource, "getrlimit", unknown)
    assert fdlimit.fit(ROTATING, "web.0") == NEEDED
    assert fdlimit.ready_ceiling() == 0


def test_the_runs_made_ready_ahead_leave_the_supervisor_its_own(limit):
    _set(1000)
    assert fdlimit.ready_ceiling() == 1000 - fdlimit.OWN == 936
