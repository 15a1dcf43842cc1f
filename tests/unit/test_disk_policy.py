"""The pure disk-limit check (executor/task/disklimit.py) with a fake clock: when samples are
due, that they never overlap, the verdict (more than the limit, not as much) and Aurora's
message to the space."""
from __future__ import annotations

import pytest

from executor.events import DiskSampled
from executor.task.disklimit import DiskCheck, DiskLimit, exceeded_reason
from tests.support.fake_clock import FakeClock

MB = 1024 * 1024


def sample(used: int | None) -> DiskSampled:
    return DiskSampled(used, files=3) if used is not None else DiskSampled(None, error="no thread")


def test_the_message_is_aurora_s_to_the_space():
    assert exceeded_reason(134217728, 134221824) == \
        "Disk limit exceeded.  Reserved 134217728 bytes vs used 134221824 bytes."


def test_nothing_is_due_before_the_processes_start():
    check = DiskLimit(MB, 60.0)
    assert check.deadline_at() is None
    assert not check.take(1e9)


def test_the_first_sample_is_at_once_then_an_interval_after_each_ended():
    clock = FakeClock()
    check = DiskLimit(MB, 60.0)
    check.start(clock.now)
    assert check.deadline_at() == clock.now
    assert check.take(clock.now)
    clock.advance(2.5)  # the walk took 2.5 s
    assert check.sampled(sample(10), clock.now) is None
    assert check.deadline_at() == clock.now + 60.0  # from the end, not from the start
    assert not check.take(clock.now + 59.9)
    assert check.take(clock.now + 60.0)


def test_a_sample_never_starts_while_one_runs():
    clock = FakeClock()
    check = DiskLimit(MB, 1.0)
    check.start(clock.now)
    assert check.take(clock.now)
    clock.advance(500.0)  # a walk of a huge sandbox, many intervals long
    assert check.deadline_at() is None  # no timer while it runs
    assert not check.take(clock.now)
    check.sampled(sample(0), clock.now)
    assert not check.take(clock.now)  # no burst of catch-up samples either
    assert check.take(clock.now + 1.0)


def test_a_walk_that_takes_long_pushes_the_next_one_back_to_spend_a_tenth_of_the_time():
    check = DiskLimit(MB, 60.0)
    check.start(0.0)
    check.take(0.0)
    check.sampled(DiskSampled(10, secs=20.0), 20.0)  # a sandbox of millions of files
    assert check.deadline_at() == pytest.approx(20.0 + 180.0)
    check.take(200.0)
    check.sampled(DiskSampled(10, secs=1.0), 201.0)
    assert check.deadline_at() == 261.0  # back to the interval


@pytest.mark.parametrize("used, fails", [(MB - 1, False), (MB, False), (MB + 1, True)])
def test_the_task_fails_only_above_its_limit(used, fails):
    check = DiskLimit(MB, 60.0)
    check.start(0.0)
    check.take(0.0)
    reason = check.sampled(sample(used), 1.0)
    assert reason == (exceeded_reason(MB, used) if fails else None)
    assert check.last == sample(used)
    assert (check.deadline_at() is None) is fails  # past its limit: no more samples


def test_the_reason_is_given_once():
    check = DiskLimit(MB, 60.0)
    check.start(0.0)
    check.take(0.0)
    assert check.sampled(sample(2 * MB), 1.0) is not None
    assert not check.take(1e6)
    assert check.sampled(sample(3 * MB), 2.0) is None


def test_a_sample_that_could_not_be_made_decides_nothing_and_keeps_the_schedule():
    check = DiskLimit(MB, 60.0)
    check.start(0.0)
    check.take(0.0)
    assert check.sampled(sample(None), 1.0) is None
    assert check.last is None
    assert check.deadline_at() == 61.0


def test_after_stop_nothing_is_due_and_a_late_result_decides_nothing():
    check = DiskLimit(MB, 60.0)
    check.start(0.0)
    check.take(0.0)
    check.stop()
    assert check.sampled(sample(2 * MB), 1.0) is None
    assert check.deadline_at() is None and not check.take(1e6)
    check.start(2.0)  # a stopped check does not start again
    assert not check.take(2.0)


def test_an_interval_of_zero_is_refused():
    with pytest.raises(ValueError) as refused:
        DiskLimit(MB, 0.0)
    assert str(refused.value) == "the disk check's interval must be more than 0 s, not 0.0"


def test_a_second_start_does_not_bring_the_next_sample_forward():
    check = DiskLimit(MB, 60.0)
    check.start(0.0)
    check.take(0.0)
    check.start(0.5)  # while the first sample runs
    check.sampled(sample(10), 1.0)
    check.start(5.0)  # between two samples
    assert check.deadline_at() == 61.0 and not check.take(5.0)


def test_the_front_end_s_entries_and_earlier_attempts_logs_are_not_counted():
    check = DiskCheck(60.0, frozenset({".stoker", "stdout"}), attempt_logs=True)
    assert not check.counts(".stoker") and not check.counts("stdout")
    assert not check.counts(".logs.attempt-3")
    assert check.counts(".logs") and check.counts("data") and check.counts(".stoker2")
    assert DiskCheck(60.0, frozenset({".stoker"})).counts(".logs.attempt-3")  # the executor's: the task's


def test_a_pause_during_a_walk_does_not_push_the_next_sample_hours_back():
    """The supervisor paused an hour (SIGSTOP, its cgroup frozen, a VM paused) between two
    directories of a walk of 0.4 s: the walk counts that step as STEP_SECS_COUNTED at most,
    so the next sample is due an interval after it ended (was: 9 hours later, 9 times the
    walk's hour, the disk limit unchecked meanwhile)."""
    from executor.task.diskwatch import STEP_SECS_COUNTED, WalkTime

    clock = FakeClock()
    stop = [False]
    took = WalkTime(lambda: stop[0], clock)
    for secs in (0.1, 0.1, 3600.0, 0.1, 0.1):  # the steps between directories; the third paused
        clock.advance(secs)
        assert took.stopped() is False
    stop[0] = True
    assert took.stopped() is True  # the walk's own question answered as asked
    assert took.secs == pytest.approx(0.4 + STEP_SECS_COUNTED)
    assert STEP_SECS_COUNTED * (1 / 0.1 - 1) < 60.0  # even a pause in every walk keeps the interval
    check = DiskLimit(MB, 60.0)
    check.start(clock.now)
    assert check.take(clock.now)
    check.sampled(DiskSampled(1, secs=took.secs), clock.now)
    assert check.deadline_at() == pytest.approx(clock.now + 60.0)
