"""The task-status machine: first cause wins, terminal sticks, updates only when due."""
import pytest

from executor.events import TaskPhase, TaskStage, TaskState, TaskTransition
from executor.task.status import Outcome, TaskStatusMachine, Update
from healthcheck.policy import HealthState, Verdict

RUNNING_V = Verdict(HealthState.RUNNING, "1 consecutive health checks passed", changed=True)
FAILED_V = Verdict(HealthState.FAILED, "1 consecutive health checks failed: HTTP 503", changed=True)


def states(outcome):
    return [u.state for u in outcome.updates]


def test_no_check_runs_when_processes_start():
    m = TaskStatusMachine(health_checked=False)
    assert states(m.started()) == [TaskState.STARTING]
    out = m.processes_started()
    assert states(out) == [TaskState.RUNNING]
    assert out.updates[0].healthy is None
    assert m.processes_started().updates == ()


def test_health_running_sets_healthy_true():
    m = TaskStatusMachine(health_checked=True)
    m.started()
    assert m.processes_started().updates == ()
    out = m.health(RUNNING_V)
    assert states(out) == [TaskState.RUNNING] and out.updates[0].healthy is True


def test_unchanged_verdicts_report_nothing():
    m = TaskStatusMachine(health_checked=True)
    assert m.health(Verdict(HealthState.STARTING, "grace")).updates == ()


def test_health_failure_kills_then_fails_once_processes_are_gone():
    m = TaskStatusMachine(health_checked=True)
    m.health(RUNNING_V)
    out = m.health(FAILED_V)
    assert out.kill_reason and "HTTP 503" in out.kill_reason and out.updates == ()
    end = m.task_ended(TaskPhase.KILLED, "killed")
    assert states(end) == [TaskState.FAILED]
    assert end.updates[0].healthy is False and "HTTP 503" in end.updates[0].message


def test_kill_then_health_failure_still_ends_killed():
    m = TaskStatusMachine(health_checked=True)
    m.health(RUNNING_V)
    assert m.kill_requested("killed by the agent (KILL)").kill_reason
    assert m.health(FAILED_V).kill_reason is None
    assert states(m.task_ended(TaskPhase.KILLED, "")) == [TaskState.KILLED]


def test_planner_outcomes_map_to_states():
    for phase, state in [(TaskPhase.SUCCESS, TaskState.FINISHED), (TaskPhase.FAILED, TaskState.FAILED)]:
        m = TaskStatusMachine(health_checked=False)
        m.processes_started()
        out = m.task_ended(phase, "process 'web' failed: exit status 3")
        assert states(out) == [state]


def test_terminal_state_sticks():
    m = TaskStatusMachine(health_checked=False)
    m.task_ended(TaskPhase.SUCCESS, "done")
    assert m.kill_requested("late").kill_reason is None
    assert m.task_ended(TaskPhase.FAILED, "again").updates == ()
    assert m.state is TaskState.FINISHED


def test_transitions_name_the_stage_the_task_left_and_entered():
    m = TaskStatusMachine(health_checked=True)
    assert m.started().transitions == (
        TaskTransition(TaskStage.NEW, TaskStage.STARTING, "task launched; sandbox ready, starting processes"),)
    m.health(RUNNING_V)
    assert m.stage is TaskStage.RUNNING
    out = m.health(FAILED_V)
    assert [(t.from_, t.to) for t in out.transitions] == [(TaskStage.RUNNING, TaskStage.KILLING)]
    assert m.stage is TaskStage.KILLING
    end = m.task_ended(TaskPhase.KILLED, "")
    assert [(t.from_, t.to) for t in end.transitions] == [(TaskStage.KILLING, TaskStage.FAILED)]
    assert m.stage is TaskStage.FAILED


# ---- the messages a scheduler reads, and the rules `make mutation` found unstated ----

RUNNING_STAGE, KILLING = TaskStage.RUNNING, TaskStage.KILLING


def test_starting_and_running_without_a_check_say_so():
    m = TaskStatusMachine(health_checked=False)
    start = m.started()
    assert start.updates == (Update(TaskState.STARTING, "task launched; sandbox ready, starting processes"),)
    out = m.processes_started()
    assert out.updates == (Update(TaskState.RUNNING, "processes started; no health check configured"),)
    assert out.transitions == (TaskTransition(TaskStage.STARTING, RUNNING_STAGE,
                                              "processes started; no health check configured"),)


def test_running_by_health_quotes_the_verdict_and_a_second_running_verdict_reports_nothing():
    m = TaskStatusMachine(health_checked=True)
    out = m.health(RUNNING_V)
    assert out.updates == (Update(TaskState.RUNNING, "healthy: 1 consecutive health checks passed", True),)
    assert out.transitions == (TaskTransition(TaskStage.STARTING, RUNNING_STAGE,
                                              "healthy: 1 consecutive health checks passed"),)
    assert m.health(RUNNING_V) == Outcome()


def test_a_health_failure_while_starting_kills_the_task_and_it_ends_failed_and_unhealthy():
    m = TaskStatusMachine(health_checked=True)
    out = m.health(FAILED_V)
    reason = "health check failed: 1 consecutive health checks failed: HTTP 503"
    assert out == Outcome(transitions=(TaskTransition(TaskStage.STARTING, KILLING, reason,
                                                      ends_as=TaskState.FAILED),),
                          kill_reason=reason)
    assert m.state is TaskState.STARTING and m.killing
    end = m.task_ended(TaskPhase.KILLED, "killed")
    assert end.updates == (Update(TaskState.FAILED, reason, False),)
    assert end.transitions == (TaskTransition(KILLING, TaskStage.FAILED, reason),)


def test_a_kill_request_ends_killed_with_its_reason_and_says_nothing_of_health():
    m = TaskStatusMachine(health_checked=True)
    m.health(RUNNING_V)
    out = m.kill_requested("killed by the agent (KILL)")
    assert out == Outcome(transitions=(TaskTransition(RUNNING_STAGE, KILLING, "killed by the agent (KILL)",
                                                      ends_as=TaskState.KILLED),),
                          kill_reason="killed by the agent (KILL)")
    end = m.task_ended(TaskPhase.KILLED, "killed by the agent (KILL)")
    assert end.updates == (Update(TaskState.KILLED, "killed by the agent (KILL)", None),)


def test_a_task_ended_with_processes_sigkilled_and_not_yet_gone_names_them_in_its_update_and_transition():
    m = TaskStatusMachine(health_checked=False)
    m.processes_started()
    m.kill_requested("executor shutting down (SHUTDOWN)")
    left = "1 process SIGKILLed and not yet gone: pid 12 (stat /mnt, state D)"
    end = m.task_ended(TaskPhase.KILLED, "executor shutting down (SHUTDOWN)", left)
    said = f"executor shutting down (SHUTDOWN); {left}"
    assert end.updates == (Update(TaskState.KILLED, said, None),)
    assert [t.reason for t in end.transitions] == [said]
    assert m.task_ended(TaskPhase.KILLED, "again", left) == Outcome()


# Each row: the planner's terminal phase and reason -> the terminal update's state and message.
ENDINGS = {
    "success": (TaskPhase.SUCCESS, "all 2 regular processes finished successfully",
                TaskState.FINISHED, "all 2 regular processes finished successfully"),
    "success without a reason": (TaskPhase.SUCCESS, "", TaskState.FINISHED,
                                 "every process finished successfully"),
    "killed": (TaskPhase.KILLED, "stopped by SIGTERM", TaskState.KILLED, "stopped by SIGTERM"),
    "killed without a reason": (TaskPhase.KILLED, "", TaskState.KILLED, "task killed"),
    "failed": (TaskPhase.FAILED, "process 'web' failed: exit status 3 after 1 of max_failures=1 runs",
               TaskState.FAILED, "process 'web' failed: exit status 3 after 1 of max_failures=1 runs"),
    "failed without a reason": (TaskPhase.FAILED, "", TaskState.FAILED, "task failed"),
}


@pytest.mark.parametrize("phase, reason, state, message", ENDINGS.values(), ids=ENDINGS.keys())
def test_the_planners_end_is_the_terminal_update(phase, reason, state, message):
    m = TaskStatusMachine(health_checked=False)
    m.processes_started()
    out = m.task_ended(phase, reason)
    assert out.updates == (Update(state, message, None),)
    assert out.transitions == (TaskTransition(RUNNING_STAGE, TaskStage.of(state), message),)
    assert (m.state, m.stage, m.killing) == (state, TaskStage.of(state), False)


FAILED_FOR_GOOD = "process 'a' failed: exit status 3 after 1 of max_failures=1 runs"


@pytest.mark.parametrize("kill", ["killed by the agent (KILL)", "executor shutting down (SHUTDOWN)"])
@pytest.mark.parametrize("planner_end", [TaskPhase.FAILED, TaskPhase.KILLED])
def test_a_kill_before_a_failed_task_s_end_was_reported_ends_it_killed_with_the_kill_s_words(kill, planner_end):
    """A process failed for good and its task is stopping (the planner's CLEANING or
    FINALIZING: the status machine is still RUNNING); a KILL or SHUTDOWN comes before every
    process is gone. The kill decides the end, whatever the planner's phase says: its FAILED
    was never reported, as Aurora's kill manager wins over a runner that has not exited."""
    m = TaskStatusMachine(health_checked=False)
    m.processes_started()
    assert m.kill_requested(kill).kill_reason == kill
    end = m.task_ended(planner_end, FAILED_FOR_GOOD)
    assert end.updates == (Update(TaskState.KILLED, kill, None),)
    assert m.task_ended(TaskPhase.FAILED, FAILED_FOR_GOOD).updates == ()


@pytest.mark.parametrize("kill", ["killed by the agent (KILL)", "executor shutting down (SHUTDOWN)"])
def test_a_kill_after_a_failed_task_s_end_was_reported_changes_nothing(kill):
    m = TaskStatusMachine(health_checked=False)
    m.processes_started()
    assert states(m.task_ended(TaskPhase.FAILED, FAILED_FOR_GOOD)) == [TaskState.FAILED]
    assert m.kill_requested(kill) == Outcome()
    assert (m.state, m.killing) == (TaskState.FAILED, False)


@pytest.mark.parametrize("kill", ["killed by the agent (KILL)", "executor shutting down (SHUTDOWN)"])
@pytest.mark.parametrize("cause", ["health check", "disk limit"])
def test_a_kill_during_the_stop_a_failed_check_began_keeps_the_check_s_failed(kill, cause):
    """A failed health check (or the disk limit) began the stop: its FAILED is the end, the
    KILL that comes meanwhile changes nothing (Aurora's status manager acts on the first
    verdict and polls no more)."""
    m = TaskStatusMachine(health_checked=True)
    m.health(RUNNING_V)
    began = m.health(FAILED_V) if cause == "health check" else m.failed("Disk limit exceeded.")
    assert began.kill_reason
    assert m.kill_requested(kill) == Outcome()
    (end,) = m.task_ended(TaskPhase.KILLED, kill).updates
    assert end.state is TaskState.FAILED and end.message == began.kill_reason
