"""Operators (`stoker kill`, `stoker restart`) through the owner's queue, one event at a
time with fake ports and a fake clock: each request's answers, and what the owner did.
No process, thread or socket.
"""
from __future__ import annotations

import pytest

from config.spec import JobSpec, ProcessSpec
from executor.events import (
    ControlReply,
    ExitStatus,
    KillRequested,
    ProcessExited,
    ProcessState,
    ProcessTransition,
    RestartRequested,
    RunOutcome,
    TaskState,
)
from executor.host.session import OPERATOR_KILL
from tests.support.fake_ports import Effects
from tests.support.owner_rig import KILL, LIFECYCLE, TERM, job
from tests.support.owner_steps import START, Deadline, Exit, Harness, Kill, Wait

pytestmark = pytest.mark.timeout(10)


class Replies:
    """A Replier that keeps every answer: (ok, done, message, state, run, pid)."""

    def __init__(self) -> None:
        self.got: list[tuple] = []

    def __call__(self, reply: ControlReply) -> None:
        self.got.append((reply.ok, reply.done, reply.message, reply.state, reply.run, reply.pid))


class FakeHost:
    """The owner's HostPort: what it was told, and the `post` it was given."""

    def __init__(self, effects: Effects) -> None:
        self._effects = effects
        self.post = None

    def task_started(self, *, task_id, job_key, label, marker, post) -> None:
        self._effects.note(f"host: {label} {task_id} {job_key} marker={marker}")
        self.post = post

    def task_ended(self, recorded_end: str = "") -> None:
        self._effects.note(f"host: ended, recorded {recorded_end or 'no end'}")


def with_host(spec: JobSpec) -> tuple[Harness, FakeHost]:
    h = Harness(spec)
    host = FakeHost(h.effects)
    h.owner._host = host
    return h, host


def test_the_owner_lists_its_task_on_the_host_and_takes_requests_through_it():
    h, host = with_host(job())
    h.owner.start()
    h.step()
    assert h.effects.lines[0] == "0 host: t.0 t-0 local/me/test/t marker=fake-marker"
    replies = Replies()
    host.post(KillRequested(OPERATOR_KILL, 1.0, h.clock.now, reply=replies))
    h.step()
    Exit(sig=TERM)(h)
    assert h.effects.lines[-3:] == ["0 update KILLED", "0 procs close", "0 host: ended, recorded KILLED"]
    assert replies.got == [
        (True, False, "killing task t.0: killed by the operator (stoker kill); SIGKILL 1 s after "
                      "SIGTERM", None, None, None),
        (True, True, "task t.0 KILLED: killed by the operator (stoker kill)", "KILLED", None, None)]
    header = h.checkpoint.records[0]
    assert header["marker"] == "fake-marker" and header["supervisor_start"] > 0


def test_an_operator_s_restart_is_answered_with_the_new_run_and_its_pid():
    h = Harness(job(ProcessSpec(name="a", cmdline="x", min_duration_secs=30.0)))
    h.owner.start()
    h.step()
    replies = Replies()
    h.post(RestartRequested("a", h.clock.now, reply=replies))
    assert h.effects.lines[-1] == "0 SIGTERM a[0]"
    Exit(sig=TERM)(h)
    assert h.effects.lines[-1] == "0 spawn a[1]"  # at once, not after min_duration
    assert replies.got == [
        (True, False, "restarting process 'a': SIGTERM to run 0 now, SIGKILL 30 s later; run 1 "
                      "starts as soon as it has ended", None, None, None),
        (True, True, "process 'a' run 1 started (pid 102)", None, 1, 102)]
    assert not h.done and [u.state for u in h.reporter.updates] == [TaskState.STARTING, TaskState.RUNNING]
    restarted = [t for t in h.reporter.transitions if isinstance(t, ProcessTransition)
                 and t.to is ProcessState.WAITING]
    assert [t.outcome for t in restarted] == [RunOutcome.RESTARTED]


def test_a_refused_restart_is_one_answer_and_changes_nothing():
    h = Harness(job())
    h.owner.start()
    h.step()
    replies = Replies()
    h.post(RestartRequested("nope", h.clock.now, reply=replies))
    assert replies.got == [(False, True, "task 't' has no process 'nope' (its processes: a)",
                            None, None, None)]
    assert h.effects.lines == START


def test_a_restart_cut_short_by_the_task_s_end_hears_the_end():
    h = Harness(job())
    h.owner.start()
    h.step()
    replies = Replies()
    h.post(RestartRequested("a", h.clock.now, reply=replies))
    Kill(grace=1.0)(h)
    Exit(sig=TERM)(h)
    assert replies.got[-1] == (
        False, True, "process 'a' ended for good (KILLED: killed by SIGTERM after the task's "
                     "SIGTERM); no new run", None, None, None)


def restart_then_kill(looked_between: bool) -> list[str]:
    """The lines of a task with endpoints whose run `a` is restarted, then the task killed
    with no grace of its own, the owner looking between the two (`looked_between`) or both
    coming in one wake-up; the run exits at its SIGKILL."""
    h = Harness(job(lifecycle=LIFECYCLE, finalization_wait_secs=2.0))
    h.owner.start()
    h.step()
    (h.post if looked_between else h.owner.post)(RestartRequested("a", h.clock.now))
    Kill(grace=None)(h)
    Deadline()(h)
    Exit(sig=KILL)(h)
    return h.effects.lines


def test_a_kill_with_endpoints_does_not_put_off_the_sigkill_a_restart_gave_a_run():
    """Found by tests/unit/test_owner_machine.py: a restart SIGTERMs a[0] at 0 and promises
    SIGKILL a grace (2 s) later; a KILL right after runs the endpoints (their waits: 5 s)
    and its own SIGKILL would come 2 s after those. The restart's SIGKILL used to wait for
    the kill's, at 7 s: a later stop may bring a SIGKILL sooner, never later."""
    assert restart_then_kill(looked_between=True) == START + [
        "0 SIGTERM a[0]", "0 lifecycle start", "2 SIGKILL a[0]", "2 lifecycle: regular processes gone",
        "2 update KILLED", "2 procs close"]


def test_a_restart_and_a_kill_that_come_together_sigterm_the_run_before_its_sigkill():
    """The restart and the KILL come in one wake-up, before the planner decides: the run
    was SIGKILLed at the restart's time (2 s) without any SIGTERM (the kill's endpoints put
    the SIGTERM off to 5 s). The restart's SIGTERM goes out at once, as when the owner looked
    between the two: SIGTERM at 0, SIGKILL at 2."""
    assert restart_then_kill(looked_between=False) == START + [
        "0 lifecycle start", "0 SIGTERM a[0]", "2 SIGKILL a[0]", "2 lifecycle: regular processes gone",
        "2 update KILLED", "2 procs close"]


def test_requests_that_come_as_the_task_ends_hear_its_end():
    h = Harness(job())
    h.owner.start()
    h.step()
    Kill(grace=1.0)(h)
    h.owner.post(ProcessExited("a", 0, pid=0, status=ExitStatus(signal=TERM), at=h.clock.now))
    assert h.owner.step()  # the task ended; the next requests find no one to handle them
    late_kill, late_restart = Replies(), Replies()
    h.owner.post(KillRequested(OPERATOR_KILL, None, h.clock.now, reply=late_kill))
    h.owner.post(RestartRequested("a", h.clock.now, reply=late_restart))
    h.owner.close()
    assert late_kill.got == [(True, True, "task t.0 KILLED: killed by the agent (KILL)", "KILLED",
                              None, None)]
    assert late_restart.got[0][:2] == (False, True)
    assert late_restart.got[0][2].startswith("the task ended (KILLED: killed by the agent (KILL))")


def test_a_second_kill_is_told_the_task_is_being_killed_already_not_a_new_grace():
    """Two `stoker kill`s: the second one's answer said "SIGKILL 30 s after SIGTERM" (its
    own default grace) while the stop under way sent SIGKILL 1 s after its SIGTERM: the
    operator was told a time that was not the task's. Now it hears the kill is under way."""
    h, host = with_host(job())
    h.owner.start()
    h.step()
    first, second = Replies(), Replies()
    host.post(KillRequested(OPERATOR_KILL, 1.0, h.clock.now, reply=first))
    h.step()
    host.post(KillRequested(OPERATOR_KILL, None, h.clock.now, reply=second))
    h.step()
    Wait(1.0)(h)
    assert h.effects.lines[-1] == "1 SIGKILL a[0]"  # the first kill's grace holds
    Exit(sig=KILL)(h)
    assert second.got == [
        (True, False, "task t.0 is already being killed; waiting for its end (a grace of 30 s can "
                      "only bring its SIGKILL sooner)", None, None, None),
        (True, True, "task t.0 KILLED: killed by the operator (stoker kill)", "KILLED", None, None)]
    assert first.got[0][2].endswith("SIGKILL 1 s after SIGTERM")
