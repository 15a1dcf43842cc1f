"""TaskOwner's checkpoint, driven one event at a time with fake ports and a fake clock: every
record it writes replays to its story, each status update is checkpointed before it is
reported and the process port hears of its idleness after the step's sync, a task's end
says what of it still lives, an internal error's end is checkpointed at the close with the
runs it killed, and a held list that cannot be written is said. The owner's stories by
table: test_owner_table.py.
"""
from __future__ import annotations

import pytest

from config.spec import ProcessSpec
from executor.events import TaskState
from executor.task.replay import replay
from tests.support.owner_rig import KILL, TERM, job
from tests.support.owner_steps import Exit, Harness, Kill

pytestmark = pytest.mark.timeout(10)


def test_every_record_the_owner_writes_replays_to_its_story():
    h = Harness(job(ProcessSpec(name="a", cmdline="x", max_failures=0, min_duration_secs=0.0)))
    h.owner.start()
    h.step()
    Exit(sig=KILL)(h)  # a loss
    Exit(code=2)(h)  # a failure
    Kill(grace=1.0)(h)
    Exit(sig=TERM)(h)
    kinds = [r["kind"] for r in h.checkpoint.records]
    assert kinds[0] == "header" and {"task", "phase", "process"} <= set(kinds)
    view = replay(h.checkpoint.records)
    assert (view.state, view.reason) == ("KILLED", "killed by the agent (KILL)")
    assert view.phase.to_state == "KILLED"
    (a,) = view.processes
    assert [(r.run, r.state, r.pid, r.exit_code, r.signal) for r in a.runs] == [
        (0, "LOST", 101, None, KILL), (1, "FAILED", 102, 2, None), (2, "KILLED", 103, None, TERM)]
    # the header, at most one write per step, and one before each of the 3 status updates
    # (STARTING, RUNNING, KILLED): the checkpoint holds a change before the agent hears of it
    assert h.checkpoint.writes <= 1 + 5 + 3


def test_each_status_update_is_checkpointed_before_it_is_reported():
    h = Harness(job(ProcessSpec(name="a", cmdline="x", max_failures=0, min_duration_secs=0.0)))
    seen: list[tuple[str, list[str]]] = []
    h.reporter.on_update = lambda u: seen.append(  # type: ignore[method-assign]
        (u.state.name, [r["to"] for r in h.checkpoint.records if r["kind"] == "task"]))
    h.owner.start()
    h.step()
    Kill(grace=1.0)(h)
    Exit(sig=TERM)(h)
    assert [state for state, _ in seen] == ["STARTING", "RUNNING", "KILLED"]
    for state, written in seen:
        assert written and written[-1] == state, f"{state} reported before it was checkpointed"


def test_the_process_port_hears_the_owner_is_idle_after_each_step_that_waits_and_its_sync():
    h = Harness(job(ProcessSpec(name="a", cmdline="x", max_failures=0, min_duration_secs=0.0)))
    at_idle: list[tuple[int, int]] = []  # (checkpoint writes, records) when told it is idle
    h.procs.idle = lambda: at_idle.append(  # type: ignore[method-assign]
        (h.checkpoint.writes, len(h.checkpoint.records)))
    h.owner.start()
    h.step()
    assert at_idle == [(h.checkpoint.writes, len(h.checkpoint.records))]  # after its one write
    Exit(code=1)(h)  # a failed run, restarted at once: one more step that then waits
    assert len(at_idle) == 2 and at_idle[1] == (h.checkpoint.writes, len(h.checkpoint.records))
    assert at_idle[1][0] > at_idle[0][0]


def test_what_of_the_task_still_lives_at_its_end_is_said_in_the_terminal_update_and_its_record():
    """`left_running`: what the task SIGKILLed that cannot die yet (a D state), added to the
    end's reason, in the update the agent reads and in the checkpointed transition."""
    h = Harness(job())
    h.procs._fail = ("a",)
    h.procs.left = "1 process SIGKILLed has not died (pid 4242, D state)"
    h.owner.start()
    h.step()
    assert h.done and h.owner.final_update.state is TaskState.FAILED
    assert h.owner.final_update.message.endswith("; 1 process SIGKILLed has not died (pid 4242, D state)")
    assert h.reporter.transitions[-1].reason.endswith("; 1 process SIGKILLed has not died (pid 4242, D state)")


def test_an_internal_error_s_end_is_checkpointed_at_close_with_the_runs_it_killed():
    """`stoker status` shows the task FAILED with the error and its running run KILLED by
    it, not LOST with the run RUNNING."""
    h = Harness(job())
    h.owner.start()
    h.step()
    try:  # as `TaskOwner.run` does
        raise RuntimeError("boom")
    except RuntimeError as exc:
        h.owner._internal_error(exc)
    finally:
        h.owner.close()
    view = replay(h.checkpoint.records)
    assert (view.state, view.reason) == ("FAILED", "executor internal error: RuntimeError: boom")
    (a,) = view.processes
    assert [(r.run, r.state, r.pid, r.reason) for r in a.runs] == [
        (0, "KILLED", 101, "killed: executor internal error: RuntimeError: boom")]


def test_an_internal_error_as_runs_start_leaves_no_run_recorded_running_that_never_started():
    """A full pids cgroup: of the runs a step started, `b`'s fork failed (EAGAIN), then the
    health check's thread could not start. The step had recorded `b` WAITING -> RUNNING
    before the planner heard of its failure; the close ended `a`'s run KILLED and left `b`'s
    RUNNING in a FAILED task, no pid (was: `stoker status` showed `b RUNNING up 7.2s`), and
    `c`, whose restart waited for its `min_duration`, WAITING."""
    h = Harness(job(ProcessSpec(name="a", cmdline="x", min_duration_secs=0.0),
                    ProcessSpec(name="b", cmdline="y", min_duration_secs=0.0),
                    ProcessSpec(name="c", cmdline="z", max_failures=0, min_duration_secs=5.0), health=True))
    h.procs._fail = ("b", "c")

    def no_thread() -> None:
        raise RuntimeError("can't start new thread")

    h.owner._checks.start = no_thread  # type: ignore[method-assign]
    h.owner.start()
    try:  # as `TaskOwner.run` does
        h.step()
    except RuntimeError as exc:
        h.owner._internal_error(exc)
    finally:
        h.owner.close()
    view = replay(h.checkpoint.records)
    assert view.state == "FAILED"
    runs = {p.name: [(r.run, r.state, r.pid, r.reason) for r in p.runs] for p in view.processes}
    assert runs["a"] == [(0, "KILLED", 101, "killed: the task could not go on: no thread could be "
                          "started: the process limit is reached (a pids cgroup's pids.max, or ulimit -u)")]
    ((run, state, pid, reason),) = runs["b"]
    assert (run, state, pid) == (0, "FAILED", None), runs["b"]
    assert reason.startswith("could not start: cannot start /bin/bash: Resource temporarily unavailable"), reason
    # `c`, restarted without limit, waited for its next run: not left WAITING either
    assert [(p.name, p.state) for p in view.processes if p.name == "c"] == [("c", "KILLED")]
    assert runs["c"][-1][1] == "KILLED" and runs["c"][-1][3].startswith("not restarted: the task could not go on"), runs["c"]


def test_a_held_list_that_cannot_be_written_is_said_with_the_sandbox_s_path(caplog):
    """The owner keeps the watchdog's held list beside the checkpoint at each step; a write
    refused names the file by the task's sandbox."""
    h = Harness(job())
    h.procs.watchdog_pid = 4242

    def refused(name: str, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    h.checkpoint.replace_beside = refused  # type: ignore[method-assign]
    h.owner.start()
    h.step()
    assert "cannot write /sandbox/.stoker/held.json: " in caplog.text
