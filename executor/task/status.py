"""The task-status machine: planner outcomes, health verdicts and kills in; the task's
state and the updates to report out. Pure: no I/O, no clock, no logging.

    STARTING ──processes started, no check──▶ RUNNING
    STARTING ──health RUNNING──────────────▶ RUNNING (healthy)
    STARTING/RUNNING ──health FAILED──▶ killing(cause FAILED) ──processes gone──▶ FAILED
    STARTING/RUNNING ──kill requested──▶ killing(cause KILLED) ──processes gone──▶ KILLED
    STARTING/RUNNING ──failed (announcement, disk)──▶ killing(cause FAILED) ──processes gone──▶ FAILED
    STARTING/RUNNING ──planner SUCCESS──▶ FINISHED
    STARTING/RUNNING ──planner FAILED───▶ FAILED

The first cause wins: a kill that follows a health failure (or another failure that began a
kill) still ends FAILED, and a health failure during a kill still ends KILLED. A process
that failed for good is no such cause until every process is gone: the stop it began is the
planner's (its CLEANING, FINALIZING), the task is still STARTING/RUNNING here, and a kill
that comes meanwhile ends it KILLED with the kill's reason (as Aurora's kill manager wins
over a runner that has not exited); once the planner's FAILED is reported a kill changes
nothing. Terminal states stick; nothing is reported after one. The terminal update is only
produced once every process is gone (the planner reached a terminal phase), so a scheduler
never sees TASK_FAILED while the old processes still hold their ports.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from executor.events import HEALTH_CHECK_FAILED, TaskPhase, TaskStage, TaskState, TaskTransition

if TYPE_CHECKING:
    from healthcheck.policy import Verdict


@attrs.frozen(slots=True)
class Update:
    """A task-level status to report (a Mesos TaskStatus, or a line under `stoker run`)."""

    state: TaskState
    message: str
    healthy: bool | None = None


@attrs.frozen(slots=True)
class Outcome:
    """What the owner must do after feeding the machine one fact."""

    updates: tuple[Update, ...] = ()
    transitions: tuple[TaskTransition, ...] = ()
    kill_reason: str | None = None  # set: start a staged kill of the task now


NO_CHANGE = Outcome()


class TaskStatusMachine:
    def __init__(self, health_checked: bool) -> None:
        self._health_checked = health_checked
        self._state = TaskState.STARTING
        # Once a kill began: how the task ends, FAILED or KILLED, why, and its terminal
        # update's `healthy`: False only when a failed check ended the task (as Mesos'
        # built-in executors do); otherwise it says nothing about health.
        self._kill: tuple[TaskState, str, bool | None] | None = None

    @property
    def state(self) -> TaskState:
        return self._state

    @property
    def stage(self) -> TaskStage:
        """The state plus KILLING while a staged kill is under way."""
        return TaskStage.KILLING if self.killing else TaskStage.of(self._state)

    @property
    def killing(self) -> bool:
        return self._kill is not None and not self._state.terminal

    def started(self) -> Outcome:
        """The task was launched and its sandbox made: STARTING is reported."""
        reason = "task launched; sandbox ready, starting processes"
        return Outcome(
            updates=(Update(TaskState.STARTING, reason),),
            transitions=(TaskTransition(TaskStage.NEW, TaskStage.STARTING, reason),),
        )

    def processes_started(self) -> Outcome:
        if self._health_checked or self._state is not TaskState.STARTING or self.killing:
            return NO_CHANGE
        return self._move(TaskState.RUNNING, "processes started; no health check configured", None)

    def health(self, verdict: Verdict) -> Outcome:
        from healthcheck.policy import HealthState  # loaded with the task's health policy

        if self._state.terminal or self.killing or not verdict.changed:
            return NO_CHANGE
        if verdict.state is HealthState.RUNNING and self._state is TaskState.STARTING:
            return self._move(TaskState.RUNNING, f"healthy: {verdict.reason}", True)
        if verdict.state is HealthState.FAILED:
            return self._begin_kill(TaskState.FAILED, f"{HEALTH_CHECK_FAILED}: {verdict.reason}", False)
        return NO_CHANGE

    def kill_requested(self, reason: str) -> Outcome:
        """A KILL, SHUTDOWN, `stoker kill` or stop signal: KILLED at the end, unless a kill or
        a failure began one already or the task ended (a stop the processes' own end began,
        a failure's included, is no kill: this one decides the end)."""
        if self._state.terminal or self.killing:
            return NO_CHANGE
        return self._begin_kill(TaskState.KILLED, reason, None)

    def failed(self, reason: str) -> Outcome:
        """Something beside the processes and the health check failed the task (its first
        ServerSet announcement timed out, its sandbox outgrew its disk): killed, and FAILED
        with `reason` at the end."""
        if self._state.terminal or self.killing:
            return NO_CHANGE
        return self._begin_kill(TaskState.FAILED, reason, None)

    def task_ended(self, phase: TaskPhase, reason: str, left: str = "") -> Outcome:
        """The planner reached a terminal phase: every process of the task is gone, or
        SIGKILLed and given up on (`left`: what still lives, in words, added to the reason)."""
        if self._state.terminal:
            return NO_CHANGE
        if left:
            return self._moved_with(phase, reason, left)
        if self._kill is not None:
            return self._move(*self._kill)
        if phase is TaskPhase.SUCCESS:
            return self._move(TaskState.FINISHED, reason or "every process finished successfully", None)
        if phase is TaskPhase.KILLED:
            return self._move(TaskState.KILLED, reason or "task killed", None)
        return self._move(TaskState.FAILED, reason or "task failed", None)

    def _moved_with(self, phase: TaskPhase, reason: str, left: str) -> Outcome:
        outcome = self.task_ended(phase, reason)
        update, transition = outcome.updates[0], outcome.transitions[0]
        return attrs.evolve(outcome, updates=(attrs.evolve(update, message=f"{update.message}; {left}"),),
                            transitions=(attrs.evolve(transition, reason=f"{transition.reason}; {left}"),))

    def _begin_kill(self, cause: TaskState, reason: str, healthy: bool | None) -> Outcome:
        self._kill = (cause, reason, healthy)
        transition = TaskTransition(TaskStage.of(self._state), TaskStage.KILLING, reason, ends_as=cause)
        return Outcome(transitions=(transition,), kill_reason=reason)

    def _move(self, to: TaskState, reason: str, healthy: bool | None) -> Outcome:
        before = self.stage
        self._state = to
        transition = TaskTransition(before, TaskStage.of(to), reason)
        return Outcome(updates=(Update(to, reason, healthy),), transitions=(transition,))
