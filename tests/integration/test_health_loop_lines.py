"""The health loop's own lines and edges (`healthcheck/loop.py`), its thread in this process
with a check that answers at once (or raises, or waits on an event the test sets): the
snooze file's two lines, once each, and none while it was never there; a check that raised,
its line with the check and the error; a stop that waits out its bound, its WARNING; a stop
asked from the result's own callback or before the start; the thread's name; a look for the
snooze file cut short by a MemoryError, looked for again."""
from __future__ import annotations

import logging
import threading

import pytest

from config.spec import health_problems
from executor.logs import start_thread
from healthcheck.loop import HealthLoop
from healthcheck.policy import Attempt
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)


class Check:
    """Passes at once; raises `raises` instead when set; waits for `release` first when set."""

    def __init__(self, raises: Exception | None = None, release: threading.Event | None = None) -> None:
        self.raises, self.release, self.started = raises, release, threading.Event()

    def check(self) -> Attempt:
        self.started.set()
        if self.release is not None:
            self.release.wait(10)
        if self.raises is not None:
            raise self.raises
        return Attempt.passed()

    def describe(self) -> str:
        return "the test's check"


def _loop(loops, tmp_path, check: Check, results: list, **kwargs) -> HealthLoop:
    loop = HealthLoop(check, 0.01, tmp_path / ".healthchecksnooze", lambda a, lat: results.append((a, lat)),
                      start_thread=start_thread, **kwargs)
    loops.append(loop)
    return loop


def _lines(caplog) -> list[tuple[str, str, dict]]:
    return [(r.levelname, r.stoker_event, r.stoker_fields) for r in caplog.records
            if r.name == "healthcheck.loop" and hasattr(r, "stoker_event")]


def test_the_snooze_file_s_coming_and_going_are_said_once_each(loops, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="healthcheck.loop")
    results: list = []
    loop = _loop(loops, tmp_path, Check(), results, task="web.0")
    loop.start()
    wait_for(lambda: len(results) >= 3, 10, message="three attempts")
    assert _lines(caplog) == []  # never snoozed: nothing to say
    snooze = tmp_path / ".healthchecksnooze"
    snooze.touch()
    wait_for(lambda: len(results) >= 3 and results[-3][0] == Attempt.snoozed() == results[-1][0], 10,
             message="three snoozed attempts")
    snooze.unlink()
    wait_for(lambda: results[-1][0] == Attempt.passed() == results[-3][0], 10, message="three passed again")
    loop.stop()
    assert _lines(caplog) == [
        ("INFO", "health_snooze", {"task": "web.0", "path": snooze, "snoozed": True,
                                   "reason": "health checks are not run while the file exists and count as passed"}),
        ("INFO", "health_snooze", {"task": "web.0", "path": snooze, "snoozed": False,
                                   "reason": "the snooze file is gone, health checks run again"})]


def test_a_check_that_raised_is_said_with_its_error_and_traceback(loops, tmp_path, caplog):
    results: list = []
    loop = _loop(loops, tmp_path, Check(raises=RuntimeError("kaput")), results, task="web.0",
                 clock=lambda: 5.0)
    loop.start()
    wait_for(lambda: results, 10, message="an attempt")
    loop.stop()
    assert results[0] == (Attempt.failed("internal health check error: RuntimeError: kaput"), 0.0)
    (line, *_) = [r for r in caplog.records if getattr(r, "stoker_event", "") == "health_check_internal_error"]
    assert line.levelno == logging.ERROR and line.stoker_fields == {
        "task": "web.0", "check": "the test's check", "error": "RuntimeError: kaput"}, line.stoker_fields
    assert line.exc_info is not None and line.exc_info[0] is RuntimeError


def test_a_stop_that_waits_out_its_bound_says_so_and_drops_the_result(loops, tmp_path, caplog):
    release, results = threading.Event(), []
    check = Check(release=release)
    loop = _loop(loops, tmp_path, check, results, task="web.0")
    loop.start()
    assert check.started.wait(10)
    try:
        assert loop.stop(timeout_secs=0.05) is False
    finally:
        release.set()
    assert _lines(caplog) == [("WARNING", "health_loop_stop_slow", {
        "task": "web.0", "check": "the test's check", "waited_secs": 0.05,
        "reason": "the check is still running; its result will be dropped"})]
    assert loop.stop(timeout_secs=5.0) is True and results == []


def test_a_stop_asked_by_the_result_s_own_callback_or_before_the_start(loops, tmp_path, caplog):
    answers: list = []
    loop: HealthLoop

    def on_result(attempt: Attempt, latency_secs: float) -> None:
        answers.append(loop.stop())  # on the loop's own thread: it cannot wait for itself

    loop = HealthLoop(Check(), 0.01, tmp_path / ".healthchecksnooze", on_result, start_thread=start_thread)
    loops.append(loop)
    unstarted = _loop(loops, tmp_path, Check(), [])
    assert unstarted.stop() is True and not unstarted.running  # not started: nothing to wait for
    loop.start()
    wait_for(lambda: answers and not loop.running, 10, message="the loop stopped by its callback")
    assert answers == [False] and _lines(caplog) == []


def test_the_loop_s_thread_is_named_by_its_task_and_starts_once(loops, tmp_path):
    results: list = []
    named, unnamed = _loop(loops, tmp_path, Check(), results, task="web.0"), _loop(loops, tmp_path, Check(), results)
    named.start()
    unnamed.start()
    threads = {t.name: t for t in threading.enumerate()}
    assert threads["health-loop web.0"].daemon and threads["health-loop"].daemon, sorted(threads)
    with pytest.raises(RuntimeError, match=r"^HealthLoop\.start\(\) called twice$"):
        named.start()


def test_an_interval_of_zero_is_refused_in_the_spec_s_words(tmp_path):
    with pytest.raises(ValueError) as refused:
        HealthLoop(Check(), 0, tmp_path / "s", lambda a, lat: None, start_thread=start_thread)
    assert str(refused.value) == "invalid health loop: " + "; ".join(health_problems(interval_secs=0))


def test_a_look_for_the_snooze_file_that_found_no_memory_is_made_again(loops, tmp_path):
    """Its look cut short by a MemoryError: the file is looked for again, and the attempt is
    snoozed while it is there (not a failure for want of memory)."""
    (tmp_path / ".healthchecksnooze").touch()
    results: list = []
    loop = _loop(loops, tmp_path, Check(), results)
    real, refused = loop._is_snoozed, []

    def once_without_memory() -> bool:
        if not refused:
            refused.append(True)
            raise MemoryError
        return real()

    loop._is_snoozed = once_without_memory  # type: ignore[method-assign]
    loop.start()
    wait_for(lambda: len(results) >= 2, 10, message="two attempts")
    loop.stop()
    assert [a for a, _ in results[:2]] == [Attempt.snoozed(), Attempt.snoozed()], results
