"""`stoker run`'s restart rules (docs/contract.md §7) and back-off, as a table."""
import pytest

from executor.events import TaskState
from executor.local.service import Restart, ServiceRules, Stop

FIN, FAIL, KILL = TaskState.FINISHED, TaskState.FAILED, TaskState.KILLED


def rules(**kw):
    kw.setdefault("service", False)
    kw.setdefault("max_task_failures", 1)
    kw.setdefault("backoff_base_secs", 1.0)
    kw.setdefault("backoff_max_secs", 8.0)
    kw.setdefault("reset_after_secs", 60.0)
    return ServiceRules(**kw)


def test_service_restarts_after_success_and_failure():
    r = rules(service=True)
    assert isinstance(r.ended(FIN, 1.0), Restart)
    assert isinstance(r.ended(FAIL, 1.0), Restart)
    assert isinstance(r.ended(KILL, 1.0), Restart)


def test_batch_job_finished_stops_with_exit_0():
    decision = rules().ended(FIN, 1.0)
    assert decision == Stop(0, "task finished successfully")


def test_batch_job_failure_restarts_up_to_max_task_failures():
    r = rules(max_task_failures=3)
    assert isinstance(r.ended(FAIL, 1.0), Restart)
    assert isinstance(r.ended(FAIL, 1.0), Restart)
    last = r.ended(FAIL, 1.0)
    assert isinstance(last, Stop) and last.exit_code == 1
    assert "max_task_failures=3" in last.reason


def test_max_task_failures_1_never_restarts():
    decision = rules(max_task_failures=1).ended(FAIL, 1.0)
    assert isinstance(decision, Stop) and decision.exit_code == 1


def test_max_task_failures_minus_1_is_unlimited():
    r = rules(max_task_failures=-1)
    for _ in range(50):
        decision = r.ended(FAIL, 100.0)
        assert isinstance(decision, Restart)
    assert "unlimited" in decision.reason


def test_stop_requested_never_restarts():
    decision = rules(service=True).ended(KILL, 5.0, stop_requested=True)
    assert isinstance(decision, Stop) and decision.exit_code == 0
    assert rules(service=True).ended(FAIL, 5.0, stop_requested=True).exit_code == 1


@pytest.mark.parametrize(
    "uptimes, delays",
    [
        ([1, 1, 1, 1, 1, 1], [1, 2, 4, 8, 8, 8]),  # doubles, capped at max
        ([1, 1, 100, 1], [1, 2, 0, 1]),  # a long run restarts at once and resets
    ],
)
def test_backoff_grows_and_resets(uptimes, delays):
    r = rules(service=True)
    got = [r.ended(FIN, u).delay_secs for u in uptimes]
    assert got == delays


def test_non_terminal_state_is_rejected():
    with pytest.raises(ValueError):
        rules().ended(TaskState.RUNNING, 1.0)
