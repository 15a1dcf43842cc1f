"""TaskOwner in-process with real processes: the loop that ties planner, supervisor,
health policy and status machine together."""
from __future__ import annotations

import os
import time

import pytest

from config.spec import CheckKind, HealthSpec, JobSpec, ProcessSpec, TaskSpec
from executor.events import (
    HealthTransition,
    PhaseTransition,
    ProcessState,
    ProcessTransition,
    TaskState,
)
from executor.task.checkpoint import read_records
from executor.task.replay import replay
from executor.task.wiring import owner_for
from tests.support import pidnames
from tests.support.shellwords import fake_sh


class Recorder:
    """The owner's reporter: process and task transitions, phases, health results, updates."""

    def __init__(self):
        self.transitions, self.phases, self.updates, self.health_results = [], [], [], []

    def on_transition(self, t):
        if isinstance(t, PhaseTransition):
            self.phases.append(t)
        elif isinstance(t, HealthTransition):
            self.health_results.append((t.outcome.value, t.to.value))
        else:
            self.transitions.append(t)

    def on_update(self, u):
        self.updates.append(u)

    def process_states(self, name):
        return [t.to.value for t in self.transitions
                if isinstance(t, ProcessTransition) and t.process == name]


def job(*processes: ProcessSpec, health: HealthSpec = HealthSpec(), finalization_wait_secs=1.0) -> JobSpec:
    return JobSpec(role="me", environment="test", cluster="local", name="t", instance=0, task_id="t-0",
                   task=TaskSpec(name="t", processes=tuple(processes), finalization_wait_secs=finalization_wait_secs),
                   health=health)


def run_owner(tmp_path, spec, before=None):
    rec = Recorder()
    owner = owner_for(spec, tmp_path, {"PATH": "/usr/bin:/bin"}, rec)
    if before:
        before(owner)
    final = owner.run()
    return final, rec


@pytest.mark.timeout(20)
def test_a_kill_queued_before_the_start_starts_nothing(tmp_path):
    spec = job(ProcessSpec(name="a", cmdline="sleep 30"))
    final, rec = run_owner(tmp_path, spec, before=lambda o: o.request_kill("killed during launch", 0.5))
    assert final.state is TaskState.KILLED and final.message == "killed during launch"
    assert not [t for t in rec.transitions
                if isinstance(t, ProcessTransition) and t.to is ProcessState.RUNNING]
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
    assert rec.process_states("a") == ["RUNNING", "KILLED"]


@pytest.mark.timeout(20)
def test_shell_health_check_runs_in_the_sandbox_with_the_task_environment(tmp_path):
    (tmp_path / "ready").touch()
    health = HealthSpec(kind=CheckKind.SHELL, initial_interval_secs=0.0, interval_secs=0.02, timeout_secs=1.0,
                        shell_command='test -f ready && test -n "$STOKER_TASK_MARKER"')

    def kill_when_running(owner):
        original = owner._reporter.on_update

        def on_update(u):
            original(u)
            if u.state is TaskState.RUNNING:
                owner.request_kill("done", 0.2)
        owner._reporter.on_update = on_update

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
    spec = job(ProcessSpec(name="a", cmdline=f"exec {fake_sh('--ignore-sigterm', '--pid-file', pid_file)}"))
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
    # Not before the grace; the upper bound only guards against a SIGKILL never sent (the
    # process ignores SIGTERM for ever): a loaded machine may add a second or more.
    assert 0.3 <= took < 0.3 + 10.0
    assert rec.process_states("a") == ["RUNNING", "KILLED"]


@pytest.mark.timeout(20)
def test_a_run_killed_by_sigkill_is_a_loss_logged_as_a_warning(tmp_path, caplog):
    """The OOM killer's way: SIGKILL from outside the task. The run is restarted without
    counting as a failure, and the loss is a WARNING that names it, not an INFO restart."""
    import logging
    import os
    import signal
    import threading

    from tests.support.waiting import wait_for

    caplog.set_level(logging.INFO, logger="executor.task")
    spec = job(ProcessSpec(name="a", cmdline="echo $$ > run.pid; exec sleep 30",
                           max_failures=1, min_duration_secs=0.0))
    rec = Recorder()
    owner = owner_for(spec, tmp_path, {"PATH": "/usr/bin:/bin"}, rec)
    ended = {}
    thread = threading.Thread(target=lambda: ended.setdefault("final", owner.run()), daemon=True)
    thread.start()
    try:
        pid_file = tmp_path / "run.pid"
        pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 10))
        os.kill(pid, signal.SIGKILL)  # a process this test's owner started
        wait_for(lambda: rec.process_states("a").count("RUNNING") == 2, 10)
    finally:
        owner.request_kill("test done", 0.5)
        thread.join(10)
    assert ended["final"].state is TaskState.KILLED
    assert rec.process_states("a") == ["RUNNING", "WAITING", "RUNNING", "KILLED"]
    losses = [r for r in caplog.records if "process_state" in r.getMessage()
              and "outcome=LOST" in r.getMessage()]
    assert len(losses) == 1
    (loss,) = losses
    assert loss.levelno == logging.WARNING
    assert "killed by SIGKILL; restarting (loss 1, not counted toward max_failures=1)" in loss.getMessage()
    assert f"pid={pid}" in loss.getMessage() and "to=WAITING" in loss.getMessage()


@pytest.mark.timeout(20)
def test_a_check_that_fails_once_the_processes_ended_neither_fails_the_task_nor_stops_the_finals(tmp_path):
    """The regular processes ended (successfully): the task's outcome is theirs. A health
    check of the server that is gone must not turn it into FAILED and SIGTERM the final
    process still running (Aurora's executor would: it keeps checking during finalization)."""
    (tmp_path / "alive").touch()
    health = HealthSpec(kind=CheckKind.SHELL, initial_interval_secs=0.0, interval_secs=0.02, timeout_secs=1.0,
                        shell_command="test -f alive")
    # The final process makes the check fail: only once the regular ones have ended (`a`
    # removing the file itself let a check land between its rm and its exit, 1 run in 10).
    final, rec = run_owner(tmp_path, job(ProcessSpec(name="a", cmdline="sleep 0.1"),
                                         ProcessSpec(name="f", cmdline="rm alive; sleep 0.3", final=True),
                                         health=health))
    assert final.state is TaskState.FINISHED, final
    assert rec.process_states("f") == ["RUNNING", "SUCCESS"]
    assert ("failed", "FAILED") not in rec.health_results


@pytest.mark.timeout(20)
def test_a_child_draining_after_sigterm_keeps_the_grace_when_its_bash_exits_first(tmp_path):
    """`bash -c "server; ..."` does not exec the server: SIGTERM ends bash at once while the
    server drains. The server keeps the rest of the grace (it used to be SIGKILLed as
    soon as bash was gone), also when another run's exit sweeps the task for leftovers, and
    the run ends once it has exited."""
    import threading

    from tests.support.waiting import wait_for

    server = "trap 'sleep 0.2; echo drained > drained; exit 0' TERM; touch up; while :; do sleep 0.02; done"
    spec = job(ProcessSpec(name="a", cmdline=f"sh -c \"{server}\"; true"),
               ProcessSpec(name="b", cmdline="sleep 30"))

    def kill_when_up(owner):
        def later():
            wait_for((tmp_path / "up").exists, 10)
            owner.request_kill("stop", 5.0)
        threading.Thread(target=later, daemon=True).start()

    final, rec = run_owner(tmp_path, spec, before=kill_when_up)
    assert final.state is TaskState.KILLED
    assert (tmp_path / "drained").read_text() == "drained\n"
    assert rec.process_states("a") == ["RUNNING", "KILLED"]


@pytest.mark.timeout(20)
def test_a_child_left_by_its_exited_bash_that_ignores_sigterm_is_sigkilled_at_the_grace(tmp_path):
    import os
    import threading
    import time

    from tests.support.waiting import wait_for

    server = "trap '' TERM; echo \\$\\$ > server.pid; while :; do sleep 0.02; done"
    spec = job(ProcessSpec(name="a", cmdline=f"sh -c \"{server}\"; true"))
    asked = {}

    def kill_when_up(owner):
        def later():
            wait_for((tmp_path / "server.pid").exists, 10)
            asked["at"] = time.monotonic()
            owner.request_kill("stop", 0.3)
        threading.Thread(target=later, daemon=True).start()

    final, rec = run_owner(tmp_path, spec, before=kill_when_up)
    took = time.monotonic() - asked["at"]
    assert final.state is TaskState.KILLED and rec.process_states("a") == ["RUNNING", "KILLED"]
    assert 0.3 <= took < 0.3 + 10.0
    pid = int((tmp_path / "server.pid").read_text())
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 10, message="the server SIGKILLed and reaped")


@pytest.mark.timeout(20)
def test_a_daemon_restarted_again_and_again_keeps_two_runs_facts_and_records_each_run(tmp_path):
    """The owner's pid and exit status of each run, for its records, do not grow with the
    restarts (they did: about 375 bytes of supervisor memory per restart, for ever)."""
    from tests.support.stoker_proc import checkpoint_records

    runs = 60
    spec = job(ProcessSpec(name="a", cmdline="exit 7", daemon=True, max_failures=0, min_duration_secs=0.0))
    held = []

    def kill_after_runs(owner):
        original = owner._reporter.on_transition

        def on_transition(t):
            original(t)
            if isinstance(t, ProcessTransition) and t.to is ProcessState.RUNNING:
                held.append(len(owner._runs))
                if t.run == runs:
                    owner.request_kill("enough runs", 0.2)
        owner._reporter.on_transition = on_transition

    final, rec = run_owner(tmp_path, spec, before=kill_after_runs)
    assert final.state is TaskState.KILLED
    assert len(held) == runs + 1 and max(held) <= 2  # the last ended run, and the one starting
    # each run's end is recorded with its own pid and exit status: the last 20 runs' records
    # as the ended task's checkpoint keeps them (compacted at the close), the others counted
    ended = [r for r in checkpoint_records(tmp_path) if r.get("kind") == "process" and r.get("outcome")]
    assert len(ended) >= 19 and all(r["pid"] and r["exit_code"] == 7 for r in ended[:-1])
    assert len({r["pid"] for r in ended}) == len(ended)
    [process] = replay(read_records(tmp_path)).current.processes
    assert process.earlier_runs + len(process.runs) == runs + 1  # every run counted, none lost
    # its log directories: the first run's and the last 20 (run 40's goes at the next idle moment)
    kept = {int(name) for name in os.listdir(tmp_path / ".logs" / "a")}
    assert {0, *range(41, runs + 1)} <= kept <= {0, *range(40, runs + 1)}


@pytest.mark.timeout(20)
def test_a_restarted_watchdog_is_in_held_json_at_once_while_the_task_is_idle(tmp_path):
    """The watchdog is restarted on the reaper's thread; held.json, written by the owner at
    its steps, named the dead one until the task's next event (none for hours, for an idle
    task): `stoker status` then counted the new watchdog among the task's processes."""
    import signal
    import threading
    import time

    from executor.procs.handover import LOOKS_AFTER_SPAWN_SECS
    from executor.task.heldfile import read_watchdog
    from tests.support.waiting import wait_for

    owner = owner_for(job(ProcessSpec(name="a", cmdline="exec sleep 30")), tmp_path, {"PATH": "/usr/bin:/bin"},
                      Recorder())
    thread = threading.Thread(target=owner.run)
    thread.start()
    try:
        first = wait_for(lambda: read_watchdog(tmp_path, owner._procs.marker))
        time.sleep(max(LOOKS_AFTER_SPAWN_SECS) + 0.1)  # about time: the owner's last step after the start is over
        os.kill(first, signal.SIGKILL)
        second = wait_for(lambda: owner._procs.watchdog_pid not in (None, first) and owner._procs.watchdog_pid)
        wait_for(lambda: read_watchdog(tmp_path, owner._procs.marker) == second, 10,
                 message=f"held.json names the new watchdog {second}")
    finally:
        owner.request_kill("test over", 0.1)
        thread.join(10)
    assert not thread.is_alive()



class _SeenAtTheEnd(Recorder):
    """A Recorder that notes which of `pids` exist at all (zombies included) as the
    terminal update is sent."""

    def __init__(self, pids: set[int]) -> None:
        super().__init__()
        self.pids, self.present = pids, list[set[int]]()

    def on_update(self, u):
        if u.state.terminal:
            self.present.append({p for p in self.pids if os.path.exists(f"/proc/{p}")})
        super().on_update(u)


def _slowly(after_exit):
    """`after_exit` 0.1 s late: a reaper slowed down, as on a loaded host."""
    def slow(*args):
        time.sleep(0.1)
        after_exit(*args)
    return slow


@pytest.mark.timeout(20)
def test_a_shell_check_under_way_as_the_task_finishes_is_reaped_before_the_terminal_update(tmp_path, monkeypatch):
    """The check's command, SIGKILLed as the task stops, is waited for before the terminal
    update goes out, the daemon it left (`setsid env -i`, out of its group, no marker:
    killed only once its bash exits, on the reaper's thread) included. The reaper is slowed
    down (as on a loaded host): without the owner's wait the update went out with the bash
    unreaped and the daemon alive."""
    import threading

    from executor.procs.commands import CommandRunner
    from tests.support.waiting import wait_for

    monkeypatch.setattr(CommandRunner, "_kill_leftovers", _slowly(CommandRunner._kill_leftovers))
    pids_file = tmp_path / "check.pids"
    health = HealthSpec(kind=CheckKind.SHELL, initial_interval_secs=0.0, interval_secs=0.02, timeout_secs=30.0,
                        shell_command="echo $$ >> check.pids; ( ( exec setsid env -i sleep 30 & "
                                      "echo $! >> check.pids ) & ); sleep 30")
    pids: set[int] = set()
    rec = _SeenAtTheEnd(pids)
    owner = owner_for(job(ProcessSpec(name="a", cmdline="while [ ! -f go ]; do sleep 0.01; done"), health=health),
                      tmp_path, {"PATH": "/usr/bin:/bin"}, rec)
    thread = threading.Thread(target=owner.run)
    thread.start()
    try:
        wait_for(lambda: pids_file.exists() and len(pids_file.read_text().split()) == 2, 10)
        pids |= pidnames.pid_file(pids_file)
        time.sleep(0.05)  # the daemon is an orphan by now
        (tmp_path / "go").touch()
    finally:
        thread.join(10)
        for pid in pids:  # whatever failed, nothing is left behind (and no process that took a pid since)
            pidnames.kill(pid)
    assert rec.updates[-1].state is TaskState.FINISHED
    assert rec.present == [set()]


@pytest.mark.timeout(20)
def test_an_owner_that_opens_its_own_session_writes_its_entry_once_before_its_first_fork(tmp_path, monkeypatch):
    # no front end opened the sandbox's session (an owner driven in-process): its entry was
    # written as the session opened, then again at task_started, two temporary files and
    # renames (~1 ms) before the first fork; the first is task_started's, with the task id
    from executor.host.registry import Registry

    monkeypatch.setenv("STOKER_ROOT", str(tmp_path / "registry"))
    written, write = [], Registry.write

    def noted(registry, entry, **kw):  # the real write, noted
        written.append((entry.task_id, entry.ended_wall is not None, entry.ended_state))
        return write(registry, entry, **kw)

    monkeypatch.setattr(Registry, "write", noted)
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    final, _ = run_owner(sandbox, job(ProcessSpec(name="a", cmdline="true")))
    assert final.state is TaskState.FINISHED
    assert written == [("t-0", False, ""), ("t-0", True, "FINISHED")]  # its end recorded, then said


@pytest.mark.timeout(20)
def test_each_phase_change_is_one_task_phase_line_with_its_reason(tmp_path, caplog):
    """The supervisor's phases (ACTIVE, CLEANING, FINALIZING, ...) reach the log as one INFO
    `task_phase` line each, as the reporter sees them, with from, to and the reason: the event
    docs/contract.md §8 names among `stoker run`'s JSON log lines, which no test read."""
    import logging

    caplog.set_level(logging.INFO, logger="executor.task")
    final, rec = run_owner(tmp_path, job(ProcessSpec(name="a", cmdline="true"),
                                         ProcessSpec(name="z", cmdline="true", final=True)))
    assert final.state is TaskState.FINISHED
    logged = [r for r in caplog.records if getattr(r, "stoker_event", "") == "task_phase"]
    assert len(rec.phases) >= 2 and len(logged) == len(rec.phases)
    for line, phase in zip(logged, rec.phases):
        assert line.levelno == logging.INFO
        text = line.getMessage()
        assert f"from={phase.from_.value}" in text and f"to={phase.to.value}" in text, text
        assert phase.reason and phase.reason in text, text
