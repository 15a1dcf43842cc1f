"""TaskOwner in-process with real processes: the loop that ties planner, supervisor,
health policy and status machine together."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from config.spec import CheckKind, HealthSpec, JobSpec, ProcessSpec, TaskSpec
from executor.events import TaskState
from executor.task.owner import TaskOwner

FAKE = Path(__file__).resolve().parents[1] / "support" / "fake_task.py"


class Recorder:
    def __init__(self):
        self.transitions, self.phases, self.updates, self.health_results = [], [], [], []

    def transition(self, t):
        self.transitions.append(t)

    def phase(self, t):
        self.phases.append(t)

    def update(self, u):
        self.updates.append(u)

    def health(self, attempt, state, attempts):
        self.health_results.append((attempt.outcome.value, state))


def job(*processes: ProcessSpec, health: HealthSpec = HealthSpec(), finalization_wait_secs=1.0) -> JobSpec:
    return JobSpec(role="me", environment="test", cluster="local", name="t", instance=0, task_id="t-0",
                   task=TaskSpec(name="t", processes=tuple(processes), finalization_wait_secs=finalization_wait_secs),
                   health=health)


def run_owner(tmp_path, spec, before=None):
    rec = Recorder()
    owner = TaskOwner(spec, sandbox=tmp_path, env={"PATH": "/usr/bin:/bin"}, reporter=rec)
    if before:
        before(owner)
    final = owner.run()
    return final, rec


@pytest.mark.timeout(20)
def test_a_kill_queued_before_the_start_starts_nothing(tmp_path):
    spec = job(ProcessSpec(name="a", cmdline="sleep 30"))
    final, rec = run_owner(tmp_path, spec, before=lambda o: o.request_kill("killed during launch", 0.5))
    assert final.state is TaskState.KILLED and final.message == "killed during launch"
    assert not [t for t in rec.transitions if t.process is not None and t.to_state == "RUNNING"]
    assert not (tmp_path / ".logs").exists()


@pytest.mark.timeout(20)
def test_processes_finishing_give_finished_after_running(tmp_path):
    final, rec = run_owner(tmp_path, job(ProcessSpec(name="a", cmdline="true"), ProcessSpec(name="b", cmdline="true")))
    assert final.state is TaskState.FINISHED
    assert [u.state for u in rec.updates] == [TaskState.STARTING, TaskState.RUNNING, TaskState.FINISHED]


@pytest.mark.timeout(20)
def test_shell_health_failure_kills_and_fails_with_the_reason(tmp_path):
    health = HealthSpec(kind=CheckKind.SHELL, initial_interval_secs=0.0, interval_secs=0.02, timeout_secs=1.0,
                        shell_command="echo not yet; exit 4")
    final, rec = run_owner(tmp_path, job(ProcessSpec(name="a", cmdline="sleep 30"), health=health))
    assert final.state is TaskState.FAILED and final.healthy is False
    assert "exited with status 4" in final.message and "not yet" in final.message
    assert rec.health_results == [("failed", "FAILED")]
    assert [t.to_state for t in rec.transitions if t.process == "a"] == ["RUNNING", "KILLED"]


@pytest.mark.timeout(20)
def test_shell_health_check_runs_in_the_sandbox_with_the_task_environment(tmp_path):
    (tmp_path / "ready").touch()
    health = HealthSpec(kind=CheckKind.SHELL, initial_interval_secs=0.0, interval_secs=0.02, timeout_secs=1.0,
                        shell_command='test -f ready && test -n "$STOKER_TASK_MARKER"')

    def kill_when_running(owner):
        original = owner._reporter.update

        def update(u):
            original(u)
            if u.state is TaskState.RUNNING:
                owner.request_kill("done", 0.2)
        owner._reporter.update = update

    final, rec = run_owner(tmp_path, job(ProcessSpec(name="a", cmdline="sleep 30"), health=health),
                           before=kill_when_running)
    assert [u.state for u in rec.updates] == [TaskState.STARTING, TaskState.RUNNING, TaskState.KILLED]
    assert rec.updates[1].healthy is True


@pytest.mark.timeout(20)
def test_sigterm_ignoring_process_is_sigkilled_after_the_grace(tmp_path):
    import threading
    import time

    from tests.support.waiting import wait_for

    pid_file = tmp_path / "a.pid"
    spec = job(ProcessSpec(name="a", cmdline=f"exec {sys.executable} {FAKE} --ignore-sigterm --pid-file {pid_file}"))
    asked = {}

    def kill_once_it_ignores_sigterm(owner):
        def later():
            wait_for(pid_file.exists, 10)  # written after the SIGTERM handler is in place
            asked["at"] = time.monotonic()
            owner.request_kill("stop", 0.3)
        threading.Thread(target=later, daemon=True).start()

    final, rec = run_owner(tmp_path, spec, before=kill_once_it_ignores_sigterm)
    took = time.monotonic() - asked["at"]
    assert final.state is TaskState.KILLED
    assert 0.3 <= took < 1.5
    assert [t.to_state for t in rec.transitions if t.process == "a"] == ["RUNNING", "KILLED"]
