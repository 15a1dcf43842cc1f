"""Whether a task's health check still runs, and the verdict shown for it: `check_runs`
(`executor/task/inspectionjson.py`) as `stoker status`' health lines (`views._health_lines`)
and `stoker ps`' HEALTH (`health_current`, `failed_by_health_check`, `health_shown`) use
it, each rule on its own (test_ps_health.py shows them through whole tasks)."""
from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from executor.cli.views import _health_lines
from executor.host.truth import Truth
from executor.task.inspection import Inspection
from executor.task.inspectionjson import check_runs, failed_by_health_check, health_current, health_shown
from executor.task.replay import replay
from executor.task.taskview import HealthAttemptView, HealthView
from tests.unit.test_ps_health import BY_CHECK, task

ALIVE = Truth(state="RUNNING", alive=True, ended=False)


@pytest.mark.parametrize("attempt_state, truth, runs", [
    ("RUNNING", None, True),  # its supervisor not looked at
    ("RUNNING", ALIVE, True),
    ("KILLING", ALIVE, True),  # a kill under way: the check runs until the kill ends
    ("FINISHED", None, False), ("FAILED", ALIVE, False), ("KILLED", ALIVE, False),  # the attempt ended
    ("RUNNING", Truth(state="RUNNING", alive=False, ended=False), False),  # its supervisor is gone
    ("RUNNING", Truth(state="KILLED", alive=True, ended=False), False),  # the task ended
    ("RUNNING", Truth(state="RESTARTING", alive=True, ended=False), False),  # between two attempts
])
def test_a_check_runs_while_neither_its_attempt_nor_its_task_ended_under_a_live_supervisor(attempt_state, truth, runs):
    assert check_runs(attempt_state, truth) is runs


def inspection(docs: list[dict] | None, truth: Truth = ALIVE) -> Inspection:
    view = replay(docs or [])
    return Inspection(sandbox=Path("/sb"), view=view, attempt=view.current if docs else None, truth=truth)


def test_an_ended_attempt_s_verdict_is_not_current_whatever_its_task_s_truth_says():
    """The attempt's own state counts: one ended is not its check's now even beside a truth
    of a task running on (another attempt's)."""
    ended = inspection(task(("KILLED", "killed by the operator (stoker kill)")))
    assert ended.attempt is not None and ended.attempt.state == "KILLED"
    assert health_current(ended) is False
    assert health_current(inspection(task())) is True


def test_no_attempt_has_no_current_verdict_and_was_not_failed_by_its_check():
    nothing = inspection(None)
    assert (health_current(nothing), failed_by_health_check(nothing)) == (False, False)


@pytest.mark.parametrize("ends, by_check", [
    (BY_CHECK, True), (BY_CHECK[:1], True),  # FAILED by it; being killed to end so
    ([("KILLED", BY_CHECK[0][1])], False),  # the words, not a failure: KILLED
    ([], False),  # RUNNING
])
def test_a_failed_check_ended_the_attempt_only_when_it_ended_or_ends_failed_by_it(ends, by_check):
    docs = task(*ends)
    docs[-1]["reason"] = BY_CHECK[0][1]  # every attempt's last reason the check's words
    assert failed_by_health_check(inspection(docs)) is by_check


@pytest.mark.parametrize("health, current, by_check, shown", [
    ("RUNNING", True, False, "RUNNING"), ("RUNNING", False, False, "was:RUNNING"),
    ("FAILED", False, True, "was:FAILED (ended it)"), ("STARTING", False, False, "was:STARTING"),
    ("none", False, False, "none"), ("-", False, False, "-"),  # no check, no attempt: nothing was
])
def test_a_row_s_health_is_marked_was_only_for_a_verdict_no_check_gives_now(health, current, by_check, shown):
    assert health_shown({"health": health, "health_current": current, "failed_by_health_check": by_check}) == shown


def attempt_with(health: HealthView):
    attempt = replay(task()).current
    assert attempt is not None
    return attrs.evolve(attempt, health=health)


def health_view(checker: str = "HTTP GET /health", state: str | None = "RUNNING",
                last: tuple[HealthAttemptView, ...] = ()) -> HealthView:
    return HealthView(checker=checker, state=state, attempts=3, consecutive_failures=1, consecutive_successes=2,
                      last_attempts=last)


@pytest.mark.parametrize("checker, state, first", [
    ("none", None, "health: no check configured"),
    ("none", "RUNNING", "health: RUNNING (none); attempts=3 consecutive_failures=1 consecutive_successes=2"),
    ("HTTP GET /health", None,
     "health: no attempt yet (HTTP GET /health); attempts=3 consecutive_failures=1 consecutive_successes=2"),
])
def test_status_says_no_check_only_where_there_is_none_and_no_verdict_as_none_yet(checker, state, first):
    attempt = attempt_with(health_view(checker, state))
    assert _health_lines(attempt, ALIVE) == [first]
    ended = attrs.evolve(attempt, state="KILLED")  # no verdict: nothing to mark was:
    assert _health_lines(ended, None)[0] == (first if state is None else first.replace(": ", ": was:", 1))


def test_status_lists_the_last_attempts_with_their_latency_in_ms_or_a_dash():
    last = (HealthAttemptView(wall=0.0, outcome="passed", reason="", latency_secs=0.25),
            HealthAttemptView(wall=float("nan"), outcome="failed", reason="refused", latency_secs=None))
    attempt = attempt_with(health_view(last=last))
    from executor.host.clock import iso_time

    assert _health_lines(attempt, ALIVE)[1:] == [f"  {iso_time(0.0)}  passed     250.0 ms",
                                                 "  -  failed            -  refused"]
