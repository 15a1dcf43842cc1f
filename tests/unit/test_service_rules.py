"""`stoker run`'s restart rules (docs/contract.md §7) and back-off, as tables.

Each row is a job (service or not, max_task_failures) and the task's ends, one per run, as
(state, seconds it was up, whether the user asked it to stop); the expected column is the
decision after each end, with its reason, which `stoker run` prints as it is.
"""
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


def decisions(r, ends):
    return [r.ended(*end) for end in ends]


SERVICE_ENDS = "service task {}; services restart on any end; restarting in {:.1f} s (quick end {})"

TABLE = [
    # -- a service runs again after any end, FINISHED, FAILED or KILLED alike --
    ("service_restarts_on_every_end", dict(service=True), [(FIN, 1.0), (FAIL, 1.0), (KILL, 1.0)], [
        Restart(1.0, SERVICE_ENDS.format("FINISHED", 1.0, 1)),
        Restart(2.0, SERVICE_ENDS.format("FAILED", 2.0, 2)),
        Restart(4.0, SERVICE_ENDS.format("KILLED", 4.0, 3))]),
    ("service_ignores_max_task_failures", dict(service=True, max_task_failures=1),
     [(FAIL, 100.0), (FAIL, 100.0)], [
        Restart(0.0, "service task FAILED; services restart on any end; it ran 100.0 s, restarting now")] * 2),
    # -- any other job --
    ("finished_stops_with_exit_0", {}, [(FIN, 1.0)], [Stop(0, "task finished successfully")]),
    ("killed_stops_with_exit_1", {}, [(KILL, 1.0)], [Stop(1, "task was killed")]),
    ("killed_stops_even_with_failures_to_spare", dict(max_task_failures=5), [(KILL, 100.0)],
     [Stop(1, "task was killed")]),
    ("failed_restarts_up_to_max_task_failures", dict(max_task_failures=3), [(FAIL, 1.0)] * 3, [
        Restart(1.0, "task failed (1 of max_task_failures=3); restarting in 1.0 s (quick end 1)"),
        Restart(2.0, "task failed (2 of max_task_failures=3); restarting in 2.0 s (quick end 2)"),
        Stop(1, "task failed 3 time(s); max_task_failures=3 reached")]),
    ("max_task_failures_1_never_restarts", dict(max_task_failures=1), [(FAIL, 1.0)],
     [Stop(1, "task failed 1 time(s); max_task_failures=1 reached")]),
    ("max_task_failures_0_stops_at_the_first_failure", dict(max_task_failures=0), [(FAIL, 1.0)],
     [Stop(1, "task failed 1 time(s); max_task_failures=0 reached")]),
    ("only_failures_count_toward_the_limit", dict(max_task_failures=2), [(FAIL, 100.0), (FAIL, 100.0)], [
        Restart(0.0, "task failed (1 of max_task_failures=2); it ran 100.0 s, restarting now"),
        Stop(1, "task failed 2 time(s); max_task_failures=2 reached")]),
    ("minus_1_is_unlimited", dict(max_task_failures=-1), [(FAIL, 100.0)] * 3, [
        Restart(0.0, f"task failed ({n} of max_task_failures=unlimited); it ran 100.0 s, restarting now")
        for n in (1, 2, 3)]),
    # -- a stop the user asked for never restarts; the exit status says whether it failed --
    ("stop_requested_service_killed", dict(service=True), [(KILL, 5.0, True)],
     [Stop(0, "stopped on request; task KILLED")]),
    ("stop_requested_service_failed", dict(service=True), [(FAIL, 5.0, True)],
     [Stop(1, "stopped on request; task FAILED")]),
    ("stop_requested_finished", dict(max_task_failures=-1), [(FIN, 5.0, True)],
     [Stop(0, "stopped on request; task FINISHED")]),
    ("stop_requested_failure_is_counted", dict(max_task_failures=2), [(FAIL, 5.0, True)],
     [Stop(1, "stopped on request; task FAILED")]),
]


@pytest.mark.parametrize("kw, ends, expected", [t[1:] for t in TABLE], ids=[t[0] for t in TABLE])
def test_each_end_is_decided_by_the_table(kw, ends, expected):
    assert decisions(rules(**kw), ends) == expected


def test_a_failure_the_user_stopped_still_counts_toward_max_task_failures():
    r = rules(max_task_failures=2)
    r.ended(FAIL, 5.0, True)
    assert r.ended(FAIL, 5.0) == Stop(1, "task failed 2 time(s); max_task_failures=2 reached")


@pytest.mark.parametrize(
    "uptimes, delays",
    [
        ([1, 1, 1, 1, 1, 1], [1, 2, 4, 8, 8, 8]),  # doubles, capped at max
        ([1, 1, 100, 1], [1, 2, 0, 1]),  # a long run restarts at once and resets
        ([59.99, 60.0, 59.99], [1, 0, 1]),  # the reset boundary: 60 s up is long enough
    ],
)
def test_backoff_grows_and_resets(uptimes, delays):
    r = rules(service=True)
    got = [r.ended(FIN, u).delay_secs for u in uptimes]
    assert got == delays


def test_the_defaults_are_1_s_doubling_to_60_s_and_a_reset_after_60_s_up():
    r = ServiceRules(service=True, max_task_failures=1)
    got = [r.ended(FIN, 1.0).delay_secs for _ in range(8)]
    assert got == [1, 2, 4, 8, 16, 32, 60, 60]
    assert r.ended(FIN, 59.99) == Restart(60.0, SERVICE_ENDS.format("FINISHED", 60.0, 9))
    assert r.ended(FIN, 60.0) == Restart(
        0.0, "service task FINISHED; services restart on any end; it ran 60.0 s, restarting now")
    assert r.ended(FIN, 1.0).delay_secs == 1.0  # the back-off starts over


def test_the_delay_said_is_the_delay_waited():
    """A back-off of 0.05 s was said as `restarting in 0.1 s` (one decimal, rounded)."""
    r = rules(service=True, backoff_base_secs=0.05, backoff_max_secs=0.3)
    said = [r.ended(FIN, 1.0).reason.split("restarting in ")[1] for _ in range(4)]
    assert said == ["0.05 s (quick end 1)", "0.1 s (quick end 2)", "0.2 s (quick end 3)", "0.3 s (quick end 4)"]


@pytest.mark.parametrize("base, maximum", [(0.0, 0.0), (0.0, 5.0), (2.0, 2.0)])
def test_backoff_bounds_that_are_accepted(base, maximum):
    r = rules(service=True, backoff_base_secs=base, backoff_max_secs=maximum)
    assert r.ended(FIN, 1.0).delay_secs == base


@pytest.mark.parametrize("service, max_task_failures", [(True, 1), (False, -1)])
def test_a_zero_backoff_restarts_at_once_then_backs_off_up_to_the_max(service, max_task_failures):
    """`--restart-backoff 0`: 0 doubled stayed 0, so a task that ended at once was restarted
    tens of times a second for ever (a service, or a job with max_task_failures=-1) and
    `--restart-backoff-max` never applied. Now only the first quick end restarts at once."""
    r = rules(service=service, max_task_failures=max_task_failures, backoff_base_secs=0.0,
              backoff_max_secs=1.0)
    got = [r.ended(FAIL, 0.01) for _ in range(7)]
    assert [d.delay_secs for d in got] == [0.0, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert got[1].reason.endswith("restarting in 0.1 s (quick end 2)")
    assert r.ended(FAIL, 60.0).delay_secs == 0.0  # a long run resets the back-off,
    assert [r.ended(FAIL, 0.01).delay_secs for _ in range(2)] == [0.0, 0.1]  # and it starts over


def test_a_zero_backoff_with_a_zero_max_never_waits():
    """Both 0: the user asked for no back-off at all (as the tests that restart quickly do)."""
    r = rules(service=True, backoff_base_secs=0.0, backoff_max_secs=0.0)
    assert {r.ended(FIN, 0.01).delay_secs for _ in range(50)} == {0.0}


@pytest.mark.parametrize("base, maximum", [(-0.5, 1.0), (2.0, 1.0), (-2.0, -3.0)])
def test_backoff_bounds_that_are_refused(base, maximum):
    with pytest.raises(ValueError, match=r"^back-off needs 0 <= base <= max$"):
        rules(backoff_base_secs=base, backoff_max_secs=maximum)


@pytest.mark.parametrize("state", [s for s in TaskState if not s.terminal])
def test_non_terminal_state_is_rejected(state):
    with pytest.raises(ValueError, match=f"^{state.value} is not a terminal state$"):
        rules().ended(state, 1.0)



def test_a_service_that_ends_quickly_for_ever_keeps_the_max_delay():
    """The 1,025th quick end in a row raised OverflowError (2 ** 1024 is past a float) and
    ended `stoker run` with a traceback: 17 hours of a flapping service at the defaults."""
    r = ServiceRules(service=True, max_task_failures=1)
    delays = [r.ended(TaskState.FAILED, 1.0).delay_secs for _ in range(5000)]
    assert delays[:7] == [1, 2, 4, 8, 16, 32, 60] and set(delays[6:]) == {60.0}
    tiny = ServiceRules(service=True, max_task_failures=1, backoff_base_secs=1e-300, backoff_max_secs=5.0)
    assert [tiny.ended(FIN, 0.0).delay_secs for _ in range(2000)][-1] == 5.0
