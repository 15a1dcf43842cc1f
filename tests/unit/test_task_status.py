"""The task-status machine: first cause wins, terminal sticks, updates only when due."""
from executor.events import TaskPhase, TaskStage, TaskState, TaskTransition
from executor.task.status import TaskStatusMachine
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
