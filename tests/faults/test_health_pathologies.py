"""Fault 4: health endpoints and health commands that misbehave.

The real `HealthLoop` + `HttpChecker` / `ShellChecker` (with the supervisor's `run_command`,
the product's one shell-command runner) + `HealthPolicy`, in-process, against a `ScriptedHTTPServer` that hangs, drips its body, sends
100 MB, redirects to itself or resets the connection, and against shell commands that ignore
SIGTERM and leave grandchildren. For each: the loop keeps its schedule (every attempt is cut
off at its timeout, long before the peer would let it go; the next one starts no sooner than
interval after the previous ended), the verdict is FAILED at exactly attempt
n = m + max_consecutive_failures + min_consecutive_successes with the right reason, and no
process of a health command survives.

The wall-clock bounds here only guard against a hang (an attempt the timeout did not cut
off, a loop that stalls): each pathology would hold an attempt for 30 s or more, and a
loaded machine can delay any thread by a second. How close to its timeout and interval the
loop keeps is measured, and printed as a figure; bench/bench_health.py measures it end to end.
"""
from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

import attrs
import pytest

from executor.logs import start_thread
from executor.procs.supervisor import Supervisor
from healthcheck.checkers import ShellChecker
from healthcheck.http_check import HttpChecker
from healthcheck.loop import HealthLoop
from healthcheck.policy import Attempt, HealthPolicy, HealthState, Verdict
from tests.support import proc_scan
from tests.support.fault_sizes import size
from tests.support.http_server import Drip, Hang, Huge, Redirect, Reset, ScriptedHTTPServer
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]

TIMEOUT_SECS = 0.2
INTERVAL_SECS = 0.1
INITIAL_INTERVAL_SECS = 0.2  # m = 2 grace attempts
MAX_CONSECUTIVE_FAILURES = size(1, 6)
MIN_CONSECUTIVE_SUCCESSES = 1
# An attempt the timeout cuts off ends within TIMEOUT_SECS and a little; every pathology below
# holds it for 30 s or more. This is the line between the two, not a speed claim.
HANG_GUARD_SECS = 5.0


@attrs.define
class Observed:
    spans: list[tuple[float, float]] = attrs.Factory(list)
    verdicts: list[Verdict] = attrs.Factory(list)

    @property
    def durations(self) -> list[float]:
        return [end - start for start, end in self.spans]

    @property
    def gaps(self) -> list[float]:
        """The time between one attempt's end and the next one's start."""
        return [nxt[0] - cur[1] for cur, nxt in zip(self.spans, self.spans[1:])]


class Timed:
    """Wraps a checker to record when each attempt started and ended."""

    def __init__(self, checker, observed: Observed) -> None:
        self._checker = checker
        self._observed = observed
        self._lock = threading.Lock()

    def check(self) -> Attempt:
        started = time.monotonic()
        try:
            return self._checker.check()
        finally:
            with self._lock:
                self._observed.spans.append((started, time.monotonic()))

    def describe(self) -> str:
        return self._checker.describe()


def run_until_verdict(checker, tmp_path: Path) -> tuple[Observed, HealthPolicy]:
    """Runs the loop with the policy until FAILED (or a generous deadline); the owner's part:
    stop the loop as soon as the policy says FAILED."""
    policy = HealthPolicy(INITIAL_INTERVAL_SECS, INTERVAL_SECS, MAX_CONSECUTIVE_FAILURES,
                          MIN_CONSECUTIVE_SUCCESSES)
    observed = Observed()
    failed = threading.Event()
    loop: HealthLoop | None = None

    def on_result(attempt: Attempt, latency_secs: float) -> None:
        verdict = policy.record(attempt)
        observed.verdicts.append(verdict)
        if verdict.state is HealthState.FAILED:
            assert loop is not None
            loop.stop_async()
            failed.set()

    loop = HealthLoop(Timed(checker, observed), INTERVAL_SECS, tmp_path / ".healthchecksnooze",
                      on_result, task="faults.0", start_thread=start_thread)
    budget = policy.n * (TIMEOUT_SECS + INTERVAL_SECS + HANG_GUARD_SECS)
    loop.start()
    try:
        failed.wait(budget)
    finally:
        assert loop.stop(timeout_secs=TIMEOUT_SECS + HANG_GUARD_SECS), "the health loop did not stop"
    return observed, policy


def check_schedule_and_verdict(observed: Observed, policy: HealthPolicy, reason_words: tuple[str, ...],
                               figures, label: str) -> None:
    n = policy.n
    durations, gaps = observed.durations, observed.gaps
    figures.add(f"{label}: attempts", f"{len(observed.spans)} (expected n={n})")
    figures.add(f"{label}: max attempt duration", f"{max(durations) * 1000:.0f} ms "
                f"(timeout {TIMEOUT_SECS * 1000:.0f} ms)")
    figures.add(f"{label}: gaps between attempts", f"{min(gaps, default=0.0) * 1000:.1f} to "
                f"{max(gaps, default=0.0) * 1000:.1f} ms (interval {INTERVAL_SECS * 1000:.0f} ms)")
    states = [v.state for v in observed.verdicts]
    assert states == [HealthState.STARTING] * (n - 1) + [HealthState.FAILED], states
    assert len(observed.spans) == n, f"{len(observed.spans)} attempts, expected {n}"
    final = observed.verdicts[-1]
    assert final.attempt == n and final.changed
    assert any(w in final.reason for w in reason_words), final.reason
    assert max(durations) < TIMEOUT_SECS + HANG_GUARD_SECS, durations  # cut off, not waited out
    # The next attempt never starts sooner than interval after the previous one ended (1 ms:
    # the clock's rounding), and the loop does not stall between attempts.
    assert all(INTERVAL_SECS - 0.001 <= gap < INTERVAL_SECS + HANG_GUARD_SECS for gap in gaps), gaps


# ---- HTTP ----

HTTP_PATHOLOGIES = {
    "hang": ([Hang()], ("timed out after 0.2 s",)),
    "slow drip": ([Drip(body=b"ok" * 1000, bytes_per_step=1, step_secs=0.02)], ("timed out after 0.2 s",)),
    "100 MB body": ([Huge(size_bytes=100 * 1024 * 1024)], ("only the first 65536 bytes read",)),
    "redirect loop": ([Redirect(location="/health", status=302)],
                      ("answered HTTP 302 (redirect to /health, not followed)",)),
    "connection reset": ([Reset()], ("connection reset by peer", "connection closed without an answer")),
}


@pytest.fixture
def server():
    srv = ScriptedHTTPServer()
    yield srv
    srv.close()


@pytest.mark.parametrize("label", list(HTTP_PATHOLOGIES))
def test_http_endpoint_pathology_keeps_the_schedule_and_fails_at_attempt_n(server, tmp_path,
                                                                           figures, label):
    script, words = HTTP_PATHOLOGIES[label]
    server.script = script
    checker = HttpChecker(port=server.port, timeout_secs=TIMEOUT_SECS)
    observed, policy = run_until_verdict(checker, tmp_path)
    check_schedule_and_verdict(observed, policy, words, figures, f"HTTP {label}")
    assert len(server.requests) == policy.n, "one request per attempt, none after FAILED"


# ---- shell ----

# The daemon writes its pid once it is in its own session; the command waits for that, so
# the daemon has surely left the command's process group before the command ends.
DAEMONIZE = ("rm -f daemon.pid; (setsid bash -c 'echo $$ > daemon.pid; exec sleep 30' &); "
             "while [ ! -s daemon.pid ]; do sleep 0.005; done; ")
TIMED_OUT = ("timed out after 0.2 s (process group killed)",)
SHELL_PATHOLOGIES = {
    "ignores SIGTERM": ("trap '' TERM; sleep 30", TIMED_OUT),
    "ignores SIGTERM, grandchildren in its group ignore it too": (
        "trap '' TERM; (trap '' TERM; sleep 30) & (trap '' TERM; exec sleep 31) & wait", TIMED_OUT),
    "grandchild in its own session": ("trap '' TERM; setsid sleep 30 & wait", TIMED_OUT),
    "grandchildren left behind by a failing command": (
        "sleep 30 & (trap '' TERM; exec sleep 31) & exit 3", ("exited with status 3",)),
    "daemonized grandchild left behind by a failing command": (
        DAEMONIZE + "exit 3", ("exited with status 3",)),
    "daemonized grandchild, then the command hangs": (DAEMONIZE + "trap '' TERM; sleep 30", TIMED_OUT),
}


@pytest.fixture
def command_env():
    """The health commands' environment, with a marker that finds every process they make."""
    entry = f"STOKER_FAULTS_HEALTH_MARKER={uuid.uuid4().hex}"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), entry.split("=")[0]: entry.split("=")[1]}
    yield env, entry
    proc_scan.kill_carrying(entry)


@pytest.fixture
def run_command(command_env, tmp_path):
    """The supervisor's `run_command`, as a task's shell check gets it: the commands are
    forked in the sandbox and reaped by the one reaper."""
    env, _ = command_env
    supervisor = Supervisor(sandbox=tmp_path, task_label="faults.0", env=env, post=lambda event: None)
    try:
        supervisor.start()  # inside: a start that raises midway is closed too (its reaper released)
        yield supervisor.run_command
    finally:
        supervisor.close()


@pytest.mark.parametrize("label", list(SHELL_PATHOLOGIES))
def test_shell_check_pathology_keeps_the_schedule_fails_and_leaves_nothing(command_env, run_command,
                                                                           tmp_path, figures, label):
    command, words = SHELL_PATHOLOGIES[label]
    env, entry = command_env
    checker = ShellChecker(command, TIMEOUT_SECS, run_command)
    observed, policy = run_until_verdict(checker, tmp_path)
    check_schedule_and_verdict(observed, policy, words, figures, f"shell {label}")
    survivors = proc_scan.pids_carrying(entry)
    if survivors:  # SIGKILLed processes need a moment to become zombies
        try:
            wait_for(lambda: not proc_scan.pids_carrying(entry), HANG_GUARD_SECS)
        except AssertionError:
            pass
        survivors = proc_scan.pids_carrying(entry)
    figures.add(f"shell {label}: processes left", len(survivors))
    assert not survivors, f"{len(survivors)} processes of the health command survived: {sorted(survivors)}"
