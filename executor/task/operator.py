"""The operator's requests a task owner is answering (`stoker kill`, `stoker restart`).

Owns, for one task: asking the planner for a restart (and its log line), who waits for
what, and the answers they get. A kill's operator hears
that it is under way, then the task's terminal state; a restart's operator hears the
planner's answer (taken, or why not), then the new run's number and pid, or why there will
be none (the process ended for good, the task ended). Answers go through each request's
`Replier`, which never blocks (it writes to a socket without waiting) and never raises
here. Called only from the owner's thread; it decides nothing about the task.
"""
from __future__ import annotations

import logging

import attrs

from executor.events import ControlReply, KillRequested, ProcessState, Replier, RestartRequested, TaskState
from executor.logs import log_event
from executor.task.planner import Planner
from executor.task.status import Update

logger = logging.getLogger(__name__)


@attrs.frozen(slots=True)
class _RestartWaiter:
    reply: Replier
    process: str
    after_run: int = -1  # the answer comes with the first run after this one (-1: none was asked of)


def _send(reply: Replier, answer: ControlReply) -> None:
    try:
        reply(answer)
    except Exception as exc:  # a replier must not raise; a broken one must not stop the owner
        log_event(logger, logging.ERROR, "control_reply_failed", error=f"{type(exc).__name__}: {exc}")


class OperatorRequests:
    def __init__(self, label: str) -> None:
        self._label = label
        self._kills: list[Replier] = []
        self._restarts: list[_RestartWaiter] = []

    def kill_taken(self, reply: Replier, reason: str, grace_secs: float, *, again: bool = False) -> None:
        """A kill is under way; its operator hears so now and the task's end later. `again`:
        the task was being killed already, its SIGTERM maybe sent, and this request's grace
        can only bring SIGKILL sooner (the planner's rule), not set it."""
        self._kills.append(reply)
        if again:
            message = (f"task {self._label} is already being killed; waiting for its end (a grace "
                       f"of {grace_secs:g} s can only bring its SIGKILL sooner)")
        else:
            message = f"killing task {self._label}: {reason}; SIGKILL {grace_secs:g} s after SIGTERM"
        _send(reply, ControlReply(ok=True, done=False, message=message))

    def restart(self, event: RestartRequested, planner: Planner, now: float, grace_secs: float) -> None:
        """An operator asked for a new run of a process: the planner decides, at `now`."""
        answer = planner.restart(event.process, now, grace_secs)
        log_event(logger, logging.INFO if answer.accepted else logging.WARNING, "restart_requested",
                  task=self._label, process=event.process, accepted=answer.accepted,
                  reason=answer.reason)
        if event.reply is None:
            return
        # The planner's answer now; the new run's pid once it started (`run_started`).
        if not answer.accepted:
            _send(event.reply, ControlReply(ok=False, done=True, message=answer.reason, process=event.process))
            return
        self._restarts.append(_RestartWaiter(event.reply, event.process, planner.process(event.process).run))
        _send(event.reply, ControlReply(ok=True, done=False, message=answer.reason, process=event.process))

    def run_started(self, process: str, run: int, pid: int) -> None:
        for waiter in [w for w in self._restarts if w.process == process and run > w.after_run]:
            self._restarts.remove(waiter)
            _send(waiter.reply, ControlReply(
                ok=True, done=True, process=process, run=run, pid=pid,
                message=f"process '{process}' run {run} started (pid {pid})"))

    def process_ended(self, process: str, state: ProcessState, reason: str) -> None:
        """`process` ended for good: no new run will come for its restart."""
        for waiter in [w for w in self._restarts if w.process == process]:
            self._restarts.remove(waiter)
            _send(waiter.reply, ControlReply(
                ok=False, done=True, process=process,
                message=f"process '{process}' ended for good ({state.value}: {reason}); "
                        f"no new run"))

    def task_ended(self, update: Update | None) -> None:
        """The task is over (or its owner stopped): every waiting operator gets the end."""
        state = update.state if update is not None else TaskState.FAILED
        message = update.message if update is not None else "the task's owner stopped"
        for reply in self._kills:
            _send(reply, ControlReply(ok=True, done=True, state=state.value,
                                      message=f"task {self._label} {state.value}: {message}"))
        for waiter in self._restarts:
            _send(waiter.reply, ControlReply(
                ok=False, done=True, process=waiter.process, state=state.value,
                message=f"the task ended ({state.value}: {message}) before process "
                        f"'{waiter.process}' started again"))
        self._kills, self._restarts = [], []

    def too_late(self, event: object, update: Update | None) -> None:
        """An operator's request the owner never handled (it came as the task ended)."""
        if isinstance(event, (KillRequested, RestartRequested)) and event.reply is not None:
            late = OperatorRequests(self._label)
            if isinstance(event, KillRequested):
                late._kills.append(event.reply)
            else:
                late._restarts.append(_RestartWaiter(event.reply, event.process))
            late.task_ended(update)
