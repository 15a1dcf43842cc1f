"""Table tests for the pure health policy (healthcheck/policy.py): no threads, no clocks.

Sequences are written one letter per attempt: P passed, F failed, Z snoozed. Expected states
one letter per attempt: S STARTING, R RUNNING, X FAILED.
"""
from __future__ import annotations

import ast
import pathlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.spec import CheckKind, HealthSpec
from healthcheck.policy import (
    Attempt,
    AttemptOutcome,
    HealthPolicy,
    HealthState,
    Verdict,
    grace_attempts,
)

LETTER = {"S": HealthState.STARTING, "R": HealthState.RUNNING, "X": HealthState.FAILED}


def attempts_of(seq: str) -> list[Attempt]:
    out = []
    for i, c in enumerate(seq, 1):
        if c == "P":
            out.append(Attempt.passed(f"pass {i}"))
        elif c == "F":
            out.append(Attempt.failed(f"HTTP 503 at attempt {i}"))
        elif c == "Z":
            out.append(Attempt.snoozed())
        else:
            raise ValueError(c)
    return out


def run(params: tuple, seq: str) -> tuple[HealthPolicy, list[Verdict]]:
    policy = HealthPolicy(*params)
    return policy, [policy.record(a) for a in attempts_of(seq)]


def states(verdicts: list[Verdict]) -> str:
    back = {v: k for k, v in LETTER.items()}
    return "".join(back[v.state] for v in verdicts)


# (initial_interval_secs, interval_secs, max_consecutive_failures, min_consecutive_successes)
DEFAULTS = (15.0, 10.0, 0, 1)

TABLE = [
    # initial 15 s, interval 10 s, 2 passes needed: m=2, n=4.
    ("style_example", (15, 10, 0, 2), "FFPP", "SSSR"),
    # docs/aurora.md §3, the worked examples.
    ("aurora_A", DEFAULTS, "FFP", "SSR"),
    ("aurora_B", DEFAULTS, "FFF", "SSX"),
    ("aurora_C", DEFAULTS, "PFF", "RRX"),
    # D differs: Aurora FAILs at iteration 7 after 6 checks (deadline fires one check late);
    # Stoker fails at attempt n=5, when 2 passes can no longer fit in 0 attempts left.
    ("aurora_D_stoker_fails_at_n", (15, 10, 1, 2), "FPFPFP", "SSSSXX"),
    # E differs: Aurora reaches RUNNING on check 6 = n + 1; Stoker fails at attempt 4, when
    # 2 consecutive passes no longer fit in the 1 attempt left of n=5.
    ("aurora_E_stoker_fails_earlier", (15, 10, 1, 2), "FFPFPP", "SSSXXX"),
    # F: same attempt as Aurora's fail-fast (5), but Stoker's reason is the budget sentence.
    ("aurora_F", (15, 10, 2, 3), "FFFPF", "SSSSX"),
    ("aurora_G", (15, 10, 2, 4), "FFFFF", "SSSSX"),
    ("aurora_H", (0, 10, 0, 1), "F", "X"),
    ("aurora_I", (15, 10, 2, 2), "PPFFF", "SRRRX"),
    # min_consecutive_successes > 1 with a failure between passes.
    ("min_succ_2_failure_between", (0, 10, 2, 2), "PFPP", "SSSR"),
    ("min_succ_3_failure_between", (0, 10, 3, 3), "PPFPPP", "SSSSSR"),
    ("min_succ_3_failure_too_late", (0, 10, 2, 3), "PPFPP", "SSXXX"),
    # max_consecutive_failures 0 and > 0, after RUNNING.
    ("max_fail_0_after_running", (0, 10, 0, 1), "PF", "RX"),
    ("max_fail_2_after_running", (0, 10, 2, 1), "PFFPFFF", "RRRRRRX"),
    ("max_fail_2_starting", (0, 10, 2, 1), "FFP", "SSR"),
    ("max_fail_2_starting_exhausted", (0, 10, 2, 1), "FFF", "SSX"),
    # initial_interval not a multiple of interval.
    ("grace_15_over_10_is_2", (15, 10, 0, 1), "FFP", "SSR"),
    ("grace_0.25_over_0.1_is_3", (0.25, 0.1, 0, 1), "FFFP", "SSSR"),
    ("grace_0.25_over_0.1_fourth_counts", (0.25, 0.1, 0, 1), "FFFF", "SSSX"),
    ("grace_smaller_than_interval_is_1", (1, 10, 0, 1), "FP", "SR"),
    # initial_interval 0: the first failure counts.
    ("no_grace_first_failure_counts", (0, 10, 1, 1), "FP", "SR"),
    ("no_grace_first_failure_fails", (0, 10, 0, 1), "F", "X"),
    # Grace also applies after RUNNING.
    ("grace_after_running", DEFAULTS, "PFP", "RRR"),
    # Snoozed attempts are passes.
    ("snoozed_counts_as_pass", (15, 10, 0, 2), "ZZ", "SR"),
    ("snoozed_resets_failure_streak", (0, 10, 1, 1), "PFZF", "RRRR"),
    ("snoozed_then_real", (15, 10, 0, 2), "FZP", "SSR"),
    # min_consecutive_successes 0 still needs one pass, and has an attempt for it after the
    # grace (n = m + maxfail + 1 = 3 here, as for 1).
    ("min_succ_0_needs_one_pass", (15, 10, 0, 0), "FP", "SR"),
    ("min_succ_0_pass_after_grace", (15, 10, 0, 0), "FFP", "SSR"),
    ("min_succ_0_budget", (15, 10, 0, 0), "FFF", "SSX"),
    # Terminal stickiness.
    ("failed_is_terminal", DEFAULTS, "FFFPPP", "SSXXXX"),
]


@pytest.mark.parametrize(
    "params, seq, expected", [t[1:] for t in TABLE], ids=[t[0] for t in TABLE]
)
def test_state_after_each_attempt_follows_the_table(params, seq, expected):
    _, verdicts = run(params, seq)
    assert states(verdicts) == expected


@pytest.mark.parametrize(
    "params, m, n",
    [
        (DEFAULTS, 2, 3),
        ((15, 10, 1, 2), 2, 5),
        ((0.3, 0.1, 0, 1), 3, 4),
        ((0.25, 0.1, 0, 1), 3, 4),
        ((1.1, 0.1, 0, 1), 11, 12),
        # Aurora's float ceil gives 4, 8 and 19 here (2.1 / 0.7 is 3.0000000000000004):
        # docs/aurora.md §11, "grace attempts".
        ((2.1, 0.7, 0, 1), 3, 4),
        ((4.2, 0.6, 0, 1), 7, 8),
        ((5.4, 0.3, 0, 1), 18, 19),
        ((0, 10, 0, 1), 0, 1),
        ((10, 10, 2, 3), 1, 6),
        ((0.1, 0.1, 0, 1), 1, 2),
    ],
)
def test_grace_and_budget_are_computed_without_float_surprises(params, m, n):
    policy = HealthPolicy(*params)
    assert (policy.m, policy.n) == (m, n)


def test_from_spec_reads_the_health_spec():
    spec = HealthSpec(
        kind=CheckKind.HTTP,
        initial_interval_secs=0.3,
        interval_secs=0.1,
        max_consecutive_failures=2,
        min_consecutive_successes=3,
    )
    policy = HealthPolicy.from_spec(spec)
    assert (policy.m, policy.n, policy.need) == (3, 8, 3)


@pytest.mark.parametrize(
    "params",
    [(15, 0, 0, 1), (15, -1, 0, 1), (-1, 10, 0, 1), (15, 10, -1, 1), (15, 10, 0, -1),
     (float("inf"), 10, 0, 1), (15, float("nan"), 0, 1)],
)
def test_invalid_parameters_are_rejected(params):
    with pytest.raises(ValueError):
        HealthPolicy(*params)


def test_attempts_say_what_they_are():
    assert Attempt.passed() == Attempt(AttemptOutcome.PASSED, "")
    assert Attempt.passed("HTTP 200") == Attempt(AttemptOutcome.PASSED, "HTTP 200")
    assert Attempt.failed("HTTP 503") == Attempt(AttemptOutcome.FAILED, "HTTP 503")
    assert Attempt.snoozed() == Attempt(AttemptOutcome.SNOOZED, "snoozed: .healthchecksnooze present")


@pytest.mark.parametrize("params, message", [
    ((15, 10, -1, 1), "invalid health check: max_consecutive_failures = -1 must be at least 0"),
    ((15, 10, -1, -2), "invalid health check: max_consecutive_failures = -1 must be at least 0; "
                       "min_consecutive_successes = -2 must be at least 0"),
    ((-1, 10, 0, 1), "invalid health check: initial_interval_secs = -1 must be at least 0"),
])
def test_invalid_parameters_are_named_in_one_message(params, message):
    with pytest.raises(ValueError) as info:
        HealthPolicy(*params)
    assert str(info.value) == message


@pytest.mark.parametrize("initial, interval, m", [
    (1.0000000004, 1.0, 1),  # within 5e-10 of a whole number: float noise, not an attempt
    (1.000000001, 1.0, 2),  # 1e-9 over: a real fraction of an interval, one more attempt
    (2.9999999996, 1.0, 3),
])
def test_grace_is_rounded_to_nine_decimal_places(initial, interval, m):
    assert grace_attempts(initial, interval) == m


@pytest.mark.parametrize("params, reason", [
    (DEFAULTS, "no health check made yet: 1 consecutive pass needed within 3 attempts"),
    ((0, 10, 0, 1), "no health check made yet: 1 consecutive pass needed within 1 attempt"),
    ((0, 10, 0, 0), "no health check made yet: 1 consecutive pass needed within 1 attempt"),  # was 0
    ((0, 10, 1, 2), "no health check made yet: 2 consecutive passes needed within 3 attempts"),
])
def test_the_reason_before_any_attempt_names_the_need_and_the_budget(params, reason):
    assert HealthPolicy(*params).reason == reason


@pytest.mark.parametrize("params, seq, ignored", [
    (DEFAULTS, "PFP", "-I-"),  # a pass is never ignored; a failure in grace is, also when RUNNING
    ((15, 10, 1, 1), "FFF", "II-"),  # m = 2: the third failure counts
    ((15, 10, 0, 0), "FFF", "II-"),  # min_consecutive_successes 0 as 1: the third counts
    ((0, 10, 1, 1), "F", "-"),  # no grace
])
def test_which_failures_grace_ignores(params, seq, ignored):
    _, verdicts = run(params, seq)
    assert "".join("I" if v.ignored else "-" for v in verdicts) == ignored
    assert all(v.ignored is True or v.ignored is False for v in verdicts)


def test_one_pass_reaches_running_in_the_singular():
    _, verdicts = run(DEFAULTS, "P")
    assert verdicts[0] == Verdict(HealthState.RUNNING,
                                  "1 consecutive health check passed (min_consecutive_successes=1)",
                                  changed=True, attempt=1)


def test_grace_attempts_of_exact_decimals():
    assert grace_attempts(0.3, 0.1) == 3
    assert grace_attempts(0.7, 0.1) == 7
    assert grace_attempts(0, 0.1) == 0


def test_failures_within_grace_are_not_counted():
    policy, verdicts = run((15, 10, 0, 2), "FF")
    assert policy.consecutive_failures == 0
    assert [v.ignored for v in verdicts] == [True, True]
    assert verdicts[0].reason == (
        "failure 1 of the first 2 attempts ignored (grace): HTTP 503 at attempt 1"
    )
    assert verdicts[1].reason == (
        "failure 2 of the first 2 attempts ignored (grace): HTTP 503 at attempt 2"
    )


def test_failure_within_grace_after_running_is_ignored_with_its_reason():
    policy, verdicts = run(DEFAULTS, "PF")
    assert verdicts[1] == Verdict(
        HealthState.RUNNING,
        "failure 2 of the first 2 attempts ignored (grace): HTTP 503 at attempt 2",
        changed=False,
        attempt=2,
        ignored=True,
    )
    assert policy.consecutive_successes == 0


def test_running_reason_names_the_passes_and_the_setting():
    _, verdicts = run((15, 10, 0, 2), "FFPP")
    assert [v.changed for v in verdicts] == [False, False, False, True]
    assert verdicts[2].reason == (
        "health check passed: pass 3 (1 of 2 consecutive passes needed, attempt 3 of 4)"
    )
    assert verdicts[3].reason == (
        "2 consecutive health checks passed (min_consecutive_successes=2)"
    )


def test_consecutive_failures_reason_has_numbers_and_last_reason():
    _, verdicts = run((15, 10, 2, 1), "PFFFF")
    assert verdicts[3].state is HealthState.RUNNING
    assert verdicts[3].reason == (
        "health check failed, 2 of 2 consecutive failures tolerated "
        "(max_consecutive_failures=2): HTTP 503 at attempt 4"
    )
    assert verdicts[4].changed
    assert verdicts[4].reason == (
        "3 consecutive health checks failed (max_consecutive_failures=2): "
        "HTTP 503 at attempt 5"
    )


def test_single_failure_reason_is_singular():
    _, verdicts = run(DEFAULTS, "FFF")
    assert verdicts[2].reason == (
        "1 consecutive health check failed (max_consecutive_failures=0): HTTP 503 at attempt 3"
    )


def test_budget_reason_names_need_budget_attempts_and_last_failure():
    # Example D: n = 5, the 5th attempt fails and 2 passes no longer fit.
    _, verdicts = run((15, 10, 1, 2), "FPFPF")
    assert verdicts[4].changed and verdicts[4].state is HealthState.FAILED
    assert verdicts[4].reason == (
        "not enough successful health checks in time: 2 consecutive passes needed within "
        "5 attempts, 5 made; last: HTTP 503 at attempt 5"
    )


def test_min_consecutive_successes_0_leaves_an_attempt_after_the_grace():
    """0 still needs one pass, but the budget was n = m + max_consecutive_failures + 0: with
    max_consecutive_failures 0 that is m, so the task failed at attempt m, each failure
    ignored by grace, without one attempt after it (Aurora checks once more). 0 is now 1."""
    for minsucc in (0, 1):
        policy, verdicts = run((15, 10, 0, minsucc), "FFF")
        assert policy.n == 3 and [v.state for v in verdicts[:2]] == [HealthState.STARTING] * 2
        assert [v.ignored for v in verdicts] == [True, True, False]
        assert verdicts[2].state is HealthState.FAILED
        assert verdicts[2].reason == (
            "1 consecutive health check failed (max_consecutive_failures=0): HTTP 503 at attempt 3")


def test_snoozed_attempt_reason_says_snoozed():
    _, verdicts = run((15, 10, 0, 2), "ZZ")
    assert verdicts[0].reason == (
        "health check snoozed (.healthchecksnooze present), counted as a pass "
        "(1 of 2 consecutive passes needed, attempt 1 of 4)"
    )
    assert verdicts[1].reason == (
        "2 consecutive health checks passed (min_consecutive_successes=2), "
        "the last one snoozed (.healthchecksnooze present)"
    )


def test_failed_is_terminal_and_keeps_the_first_reason():
    policy, verdicts = run(DEFAULTS, "FFF")
    first = verdicts[2]
    for attempt in attempts_of("PFPZ"):
        later = policy.record(attempt)
        assert later == Verdict(HealthState.FAILED, first.reason, changed=False, attempt=3)
    assert policy.state is HealthState.FAILED
    assert policy.reason == first.reason
    assert policy.attempts == 3


def test_counters_are_exposed():
    policy, _ = run((0, 10, 3, 1), "PFF")
    assert (policy.attempts, policy.consecutive_failures, policy.consecutive_successes) == (
        3,
        2,
        0,
    )
    assert policy.state is HealthState.RUNNING
    assert "no health check made yet" in HealthPolicy(*DEFAULTS).reason


def test_policy_module_is_pure():
    source = pathlib.Path(__file__).parents[2] / "healthcheck" / "policy.py"
    tree = ast.parse(source.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    forbidden = {"requests", "psutil", "subprocess", "socket", "threading", "os", "time",
                 "logging"}
    assert not imported & forbidden


# ---- Stoker against a model of Aurora's algorithm (docs/aurora.md §2) ----


def aurora_states(params: tuple, oks: list[bool]) -> list[HealthState]:
    """Aurora's checker, one entry per iteration; a deadline iteration consumes no check."""
    grace, interval, maxfail, minsucc = params
    m = grace_attempts(grace, interval)
    big_m = m + maxfail + minsucc
    attempts = cf = cs = 0
    running, healthy = False, True
    out: list[HealthState] = []
    checks = iter(oks)
    while True:
        if not running and attempts > big_m:
            healthy = False
        else:
            try:
                ok = next(checks)
            except StopIteration:
                return out
            if attempts <= big_m:
                attempts += 1
            if not ok:
                cs = 0
                if attempts > m:
                    remaining = big_m - attempts
                    if not running and remaining > 1 and minsucc - cs > remaining:
                        healthy = False
                    cf += 1
                    if cf > maxfail:
                        healthy = False
            else:
                cs += 1
                if not running and cs >= minsucc:
                    running = True
                cf = 0
        if not healthy:
            out.append(HealthState.FAILED)
            return out
        out.append(HealthState.RUNNING if running else HealthState.STARTING)


params_strategy = st.tuples(
    st.sampled_from([0.0, 0.5, 1.0, 15.0, 25.0]),
    st.sampled_from([1.0, 10.0]),
    st.integers(0, 3),
    st.integers(0, 4),
)


@settings(max_examples=400, deadline=None)
@given(params=params_strategy, oks=st.lists(st.booleans(), min_size=1, max_size=14))
def test_stoker_decides_by_n_and_never_later_than_aurora(params, oks):
    policy = HealthPolicy(*params)
    ours = [policy.record(Attempt.passed() if ok else Attempt.failed("x")).state for ok in oks]
    theirs = aurora_states(params, oks)
    # Decided (RUNNING or FAILED) by attempt n at the latest (attempt 1 when n is 0).
    budget = max(policy.n, 1)
    if len(ours) >= budget:
        assert ours[budget - 1] is not HealthState.STARTING
    # Aurora FAILED at iteration k => Stoker FAILED at attempt k or earlier.
    if theirs and theirs[-1] is HealthState.FAILED:
        k = len(theirs)
        assert HealthState.FAILED in ours[:k]
    # Aurora RUNNING at check k <= n => Stoker RUNNING at the same check.
    if HealthState.RUNNING in theirs:
        k = theirs.index(HealthState.RUNNING)
        if k + 1 <= policy.n:
            assert ours.index(HealthState.RUNNING) == k
    # FAILED sticks.
    if HealthState.FAILED in ours:
        first = ours.index(HealthState.FAILED)
        assert all(s is HealthState.FAILED for s in ours[first:])


def test_attempt_outcome_values_are_unchanged():
    assert [o.value for o in AttemptOutcome] == ["passed", "failed", "snoozed"]
    assert Attempt.snoozed().ok and not Attempt.failed("x").ok
