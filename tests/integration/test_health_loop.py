"""The health loop with real checkers, a real loopback server and a real snooze file."""
from __future__ import annotations

import logging
import threading
import time

import pytest

from executor.logs import start_thread
from healthcheck.http_check import HttpChecker
from healthcheck.loop import HealthLoop
from healthcheck.policy import Attempt, AttemptOutcome
from tests.support.http_server import Hang, Reply
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)

# Wall-clock bounds here only guard against a hang or a wait waited out; the order of events
# is the rule. A loaded machine can delay any thread by a second or more.
GUARD_SECS = 10.0


class Recorder:
    """Wraps a checker to record when each attempt started and ended; collects results."""

    def __init__(self, checker) -> None:
        self.checker = checker
        self.lock = threading.Lock()
        self.spans: list[tuple[float, float]] = []
        self.results: list[tuple[Attempt, float, float]] = []  # attempt, latency, at

    def check(self) -> Attempt:
        started = time.monotonic()
        attempt = self.checker.check()
        with self.lock:
            self.spans.append((started, time.monotonic()))
        return attempt

    def describe(self) -> str:
        return self.checker.describe()

    def on_result(self, attempt: Attempt, latency_secs: float) -> None:
        with self.lock:
            self.results.append((attempt, latency_secs, time.monotonic()))

    def outcomes(self) -> list[AttemptOutcome]:
        with self.lock:
            return [a.outcome for a, _, _ in self.results]


def make_loop(loops, recorder, tmp_path, interval_secs=0.05, **kwargs) -> HealthLoop:
    loop = HealthLoop(
        recorder, interval_secs, tmp_path / ".healthchecksnooze", recorder.on_result,
        start_thread=start_thread, **kwargs
    )
    loops.append(loop)
    return loop


def test_results_arrive_in_order_spaced_after_each_attempt_ends(server, loops, tmp_path):
    server.script = [Reply(503, b"no"), Reply(503, b"no"), Reply(200, b"ok")]
    recorder = Recorder(HttpChecker(server.port, timeout_secs=GUARD_SECS))
    loop = make_loop(loops, recorder, tmp_path, interval_secs=0.05)
    loop.start()
    wait_for(lambda: len(recorder.outcomes()) >= 4, timeout_secs=GUARD_SECS)
    loop.stop()
    assert recorder.outcomes()[:4] == [
        AttemptOutcome.FAILED,
        AttemptOutcome.FAILED,
        AttemptOutcome.PASSED,
        AttemptOutcome.PASSED,
    ]
    spans = recorder.spans
    # Each next attempt starts at least interval_secs after the previous one ended.
    gaps = [spans[i + 1][0] - spans[i][1] for i in range(len(spans) - 1)]
    assert all(gap >= 0.05 - 0.002 for gap in gaps), gaps
    # ...and the loop does not stall between attempts (a guard; bench/ measures the drift).
    assert all(gap < GUARD_SECS for gap in gaps), gaps
    # Each result carries its attempt's latency: measured, within the check's timeout.
    latencies = [lat for _, lat, _ in recorder.results]
    assert all(0.0 <= lat < GUARD_SECS for lat in latencies)
    assert server.requests[:4] == [("GET", "/health")] * 4


def test_slow_checks_never_overlap(server, loops, tmp_path):
    server.script = [Reply(200, b"ok", delay_secs=0.1)]
    recorder = Recorder(HttpChecker(server.port, timeout_secs=1.0))
    loop = make_loop(loops, recorder, tmp_path, interval_secs=0.02)
    loop.start()
    wait_for(lambda: len(recorder.spans) >= 3, timeout_secs=GUARD_SECS)
    loop.stop()
    spans = recorder.spans
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end + 0.02 - 0.002


def test_snooze_file_skips_checks_until_removed(server, loops, tmp_path):
    server.script = [Reply(503, b"down")]
    recorder = Recorder(HttpChecker(server.port, timeout_secs=1.0))
    loop = make_loop(loops, recorder, tmp_path, interval_secs=0.02)
    snooze = tmp_path / ".healthchecksnooze"
    loop.start()
    wait_for(lambda: AttemptOutcome.FAILED in recorder.outcomes())
    snooze.touch()
    wait_for(lambda: recorder.outcomes()[-2:] == [AttemptOutcome.SNOOZED] * 2)
    requests_while_snoozed = len(server.requests)
    snoozed_results = [r for r in recorder.results if r[0].outcome is AttemptOutcome.SNOOZED]
    assert all(lat == 0.0 for _, lat, _ in snoozed_results)
    assert snoozed_results[0][0] == Attempt.snoozed()
    snooze.unlink()
    wait_for(lambda: recorder.outcomes()[-1] is AttemptOutcome.FAILED)
    loop.stop()
    outcomes = recorder.outcomes()
    first_snooze = outcomes.index(AttemptOutcome.SNOOZED)
    assert AttemptOutcome.FAILED in outcomes[first_snooze:]
    # While snoozed no request reached the server (at most one in flight when it appeared).
    assert requests_while_snoozed <= outcomes[:first_snooze].count(AttemptOutcome.FAILED) + 1


def test_a_snooze_directory_does_not_snooze(server, loops, tmp_path):
    (tmp_path / ".healthchecksnooze").mkdir()
    recorder = Recorder(HttpChecker(server.port, timeout_secs=1.0))
    loop = make_loop(loops, recorder, tmp_path, interval_secs=0.02)
    loop.start()
    wait_for(lambda: len(recorder.outcomes()) >= 2)
    loop.stop()
    assert AttemptOutcome.SNOOZED not in recorder.outcomes()


def test_stop_is_prompt_mid_interval(server, loops, tmp_path):
    recorder = Recorder(HttpChecker(server.port, timeout_secs=GUARD_SECS))
    loop = make_loop(loops, recorder, tmp_path, interval_secs=3 * GUARD_SECS)
    loop.start()
    # The first attempt runs at once, not an interval later.
    wait_for(lambda: len(recorder.outcomes()) == 1, timeout_secs=GUARD_SECS)
    assert loop.stop(timeout_secs=GUARD_SECS)  # the interval's wait is woken, not waited out
    assert not loop.running
    assert len(recorder.outcomes()) == 1


def test_no_result_is_delivered_after_stop_returns(server, loops, tmp_path):
    server.script = [Hang()]
    recorder = Recorder(HttpChecker(server.port, timeout_secs=2.0))
    loop = make_loop(loops, recorder, tmp_path, interval_secs=0.02)
    loop.start()
    wait_for(lambda: len(server.requests) == 1, timeout_secs=GUARD_SECS)
    assert loop.stop(timeout_secs=0.05) is False  # the check is still hanging
    # The check ends on its own at its 2 s timeout; its result must be dropped.
    wait_for(lambda: len(recorder.spans) == 1, timeout_secs=GUARD_SECS)
    wait_for(lambda: not loop.running, timeout_secs=GUARD_SECS)
    assert recorder.results == []


def test_callback_errors_are_logged_and_the_loop_keeps_going(server, loops, tmp_path, caplog):
    calls = []

    def on_result(attempt: Attempt, latency_secs: float) -> None:
        calls.append(attempt)
        raise ValueError(f"bad callback {len(calls)}")

    loop = HealthLoop(
        HttpChecker(server.port), 0.02, tmp_path / ".healthchecksnooze", on_result, task="web.0",
        start_thread=start_thread,
    )
    loops.append(loop)
    with caplog.at_level(logging.ERROR, logger="healthcheck.loop"):
        loop.start()
        wait_for(lambda: len(calls) >= 3)
        loop.stop()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors
    assert errors[0].getMessage().startswith("health_result_callback_failed ")
    assert "ValueError" in errors[0].getMessage()
    assert "bad callback 1" in errors[0].getMessage()
    assert "task=web.0" in errors[0].getMessage()
    assert errors[0].exc_info is not None and errors[0].exc_info[0] is ValueError  # with its traceback


def test_a_raising_checker_becomes_a_failed_attempt(loops, tmp_path):
    class Broken:
        def check(self) -> Attempt:
            raise RuntimeError("kaput")

        def describe(self) -> str:
            return "broken"

    results = []
    loop = HealthLoop(Broken(), 0.02, tmp_path / "snooze", lambda a, lat: results.append(a),
                      start_thread=start_thread)
    loops.append(loop)
    loop.start()
    wait_for(lambda: len(results) >= 2)
    loop.stop()
    assert results[0] == Attempt.failed("internal health check error: RuntimeError: kaput")


def test_latency_uses_the_injected_clock(loops, tmp_path):
    ticks = iter(range(0, 1000, 7))

    class Ok:
        def check(self) -> Attempt:
            return Attempt.passed()

        def describe(self) -> str:
            return "ok"

    latencies = []
    loop = HealthLoop(
        Ok(), 0.02, tmp_path / "snooze", lambda a, lat: latencies.append(lat),
        clock=lambda: float(next(ticks)), start_thread=start_thread,
    )
    loops.append(loop)
    loop.start()
    wait_for(lambda: len(latencies) >= 2)
    loop.stop()
    assert latencies[:2] == [7.0, 7.0]


def test_zero_interval_is_rejected(tmp_path):
    with pytest.raises(ValueError):
        HealthLoop(HttpChecker(1), 0, tmp_path / "s", lambda a, lat: None, start_thread=start_thread)
