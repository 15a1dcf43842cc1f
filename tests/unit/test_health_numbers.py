"""One statement of a health check's numbers (config.spec.health_problems): the loader, the
policy and the loop refuse the same values with the same sentence."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from config.errors import ConfigError
from config.loader import validate_job
from config.spec import health_problems
from executor.logs import start_thread
from healthcheck.loop import HealthLoop
from healthcheck.policy import HealthPolicy, grace_attempts
from tests.support.configs import job

GOOD = dict(initial_interval_secs=15.0, interval_secs=10.0, max_consecutive_failures=0,
            min_consecutive_successes=1)


@pytest.mark.parametrize("numbers, problems", [
    ({}, []),
    (dict(interval_secs=0.05, timeout_secs=0.01, initial_interval_secs=0.0,
          max_consecutive_failures=0, min_consecutive_successes=0), []),
    (dict(interval_secs=0.0), ["interval_secs = 0.0 must be greater than 0 "
                               "(it is the pause between checks and divides initial_interval_secs)"]),
    (dict(timeout_secs=-1.0), ["timeout_secs = -1.0 must be greater than 0"]),
    (dict(initial_interval_secs=-0.5), ["initial_interval_secs = -0.5 must be at least 0"]),
    (dict(max_consecutive_failures=-1), ["max_consecutive_failures = -1 must be at least 0"]),
    (dict(min_consecutive_successes=-2), ["min_consecutive_successes = -2 must be at least 0"]),
    (dict(interval_secs=math.nan, initial_interval_secs=math.inf),
     ["interval_secs = nan must be a finite number", "initial_interval_secs = inf must be a finite number"]),
    (dict(interval_secs=1e300, timeout_secs=31536000.5, initial_interval_secs=10 ** 30),
     ["interval_secs = 1e+300 must be at most 31536000 (365 days)",
      "timeout_secs = 31536000.5 must be at most 31536000 (365 days)",
      "initial_interval_secs = 1000000000000000000000000000000 must be at most 31536000 (365 days)"]),
    (dict(interval_secs=31536000.0, timeout_secs=31536000, initial_interval_secs=31536000.0), []),
    (dict(interval_secs=1e-310, initial_interval_secs=1e7),
     ["initial_interval_secs = 10000000.0 over interval_secs = 1e-310 makes more grace attempts "
      "than can be counted: make interval_secs larger"]),
    (dict(min_consecutive_successes=-1, interval_secs=-1.0),
     ["interval_secs = -1.0 must be greater than 0 (it is the pause between checks and divides "
      "initial_interval_secs)", "min_consecutive_successes = -1 must be at least 0"]),
])
def test_each_bad_number_is_one_sentence(numbers, problems):
    assert health_problems(**numbers) == problems


@pytest.mark.parametrize("field, value", [
    ("interval_secs", 0.0), ("initial_interval_secs", -1.0), ("max_consecutive_failures", -1),
    ("min_consecutive_successes", -3),
])
def test_the_loader_and_the_policy_refuse_with_the_same_sentence(field, value):
    sentence = health_problems(**{field: value})[0]
    with pytest.raises(ConfigError) as loaded:
        validate_job(job(health_check_config={field: value}), "test")
    assert f"job.health_check_config.{sentence}" in str(loaded.value)
    with pytest.raises(ValueError) as policy:
        HealthPolicy(**{**GOOD, field: value})
    assert str(policy.value) == f"invalid health check: {sentence}"


def test_grace_attempts_and_the_loop_refuse_a_zero_interval_with_the_same_sentence(tmp_path: Path):
    sentence = health_problems(interval_secs=0.0)[0]
    with pytest.raises(ValueError) as grace:
        grace_attempts(1.0, 0.0)
    assert str(grace.value) == f"invalid health check: {sentence}"
    with pytest.raises(ValueError) as loop:
        HealthLoop(checker=None, interval_secs=0.0, snooze_path=tmp_path / "s",  # type: ignore[arg-type]
                   on_result=lambda attempt, latency: None, start_thread=start_thread)
    assert str(loop.value) == f"invalid health loop: {sentence}"


@pytest.mark.parametrize("field", ["max_consecutive_failures", "min_consecutive_successes"])
def test_a_count_of_more_digits_than_a_float_holds_is_a_count_not_a_traceback(field):
    """JSON's integers have any number of digits: math.isfinite() of one past 1.8e308 raised
    OverflowError, a traceback where the loader names each bad field. A count has no upper
    bound (as many checks as given), so it is accepted, and 400 digits of seconds are refused."""
    assert health_problems(**{field: 10 ** 400}) == []
    validate_job(job(health_check_config={field: 10 ** 400}), "test")
    assert health_problems(timeout_secs=10 ** 400)[0].endswith("must be at most 31536000 (365 days)")
