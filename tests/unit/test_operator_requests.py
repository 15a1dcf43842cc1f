"""The operator's requests a task owner answers (executor/task/operator.py), each answer whole:
a kill taken (first, or again), a restart the planner takes or refuses (and its log line), the
new run's answer, a process ended for good, the task's end, a request that came too late, a
replier that raises. The planner here answers as the test says (its own rules:
tests/unit/test_restart.py)."""
from __future__ import annotations

import logging

import attrs
import pytest

from executor.events import ControlReply, KillRequested, ProcessState, RestartRequested, TaskState
from executor.task.operator import OperatorRequests
from executor.task.process_rules import RestartAnswer
from executor.task.status import Update
from tests.support.logevents import records


@attrs.define
class Planner:
    answer: RestartAnswer
    run: int = 4
    asked: list = attrs.Factory(list)

    def restart(self, process, now, grace_secs):
        self.asked.append((process, now, grace_secs))
        return self.answer

    def process(self, name):
        return attrs.make_class("Process", {"run": attrs.field(default=self.run)})()


def _restart(requests: OperatorRequests, answer: RestartAnswer, replies: list, run: int = 4) -> Planner:
    planner = Planner(answer, run)
    requests.restart(RestartRequested("web", 5.0, reply=replies.append), planner, now=7.0, grace_secs=2.0)
    return planner


def test_a_kill_taken_is_said_with_its_reason_and_grace_and_again_with_what_it_can_change():
    requests, replies = OperatorRequests("job-0"), []
    requests.kill_taken(replies.append, "stoker kill", 2.5)
    requests.kill_taken(replies.append, "stoker kill", 1.0, again=True)
    assert replies == [
        ControlReply(ok=True, done=False, message="killing task job-0: stoker kill; SIGKILL 2.5 s after SIGTERM"),
        ControlReply(ok=True, done=False, message="task job-0 is already being killed; waiting for its end "
                                                  "(a grace of 1 s can only bring its SIGKILL sooner)")]


@pytest.mark.parametrize("accepted, level", [(True, logging.INFO), (False, logging.WARNING)])
def test_a_restart_is_the_planner_s_answer_and_one_line(caplog, accepted, level):
    caplog.set_level(logging.INFO, "executor.task.operator")
    requests, replies = OperatorRequests("job-0"), []
    planner = _restart(requests, RestartAnswer(accepted, "why"), replies)
    assert planner.asked == [("web", 7.0, 2.0)]
    assert replies == [ControlReply(ok=accepted, done=not accepted, message="why", process="web")]
    [record] = records(caplog, "restart_requested")
    assert record.levelno == level
    for said in ("task=job-0", "process=web", f"accepted={accepted}", "reason=why"):
        assert said in record.getMessage()


def test_a_taken_restart_is_answered_by_the_first_run_after_the_current_one():
    requests, replies = OperatorRequests("job-0"), []
    _restart(requests, RestartAnswer(True, "taken"), replies, run=4)
    requests.run_started("other", 5, 100)
    requests.run_started("web", 4, 101)  # the current run: not the new one
    assert len(replies) == 1
    requests.run_started("web", 5, 102)
    requests.run_started("web", 6, 103)  # answered once
    assert replies[1:] == [ControlReply(ok=True, done=True, process="web", run=5, pid=102,
                                        message="process 'web' run 5 started (pid 102)")]


def test_a_process_ended_for_good_answers_its_restarts_only():
    requests, replies = OperatorRequests("job-0"), []
    _restart(requests, RestartAnswer(True, "taken"), replies)
    requests.process_ended("other", ProcessState.FAILED, "exit 1")
    requests.process_ended("web", ProcessState.FAILED, "exit 1")
    requests.process_ended("web", ProcessState.FAILED, "exit 1")
    assert replies[1:] == [ControlReply(ok=False, done=True, process="web",
                                        message="process 'web' ended for good (FAILED: exit 1); no new run")]


@pytest.mark.parametrize("update, said", [
    (Update(TaskState.KILLED, "killed by stoker kill"), ("KILLED", "killed by stoker kill")),
    (None, ("FAILED", "the task's owner stopped")),
])
def test_the_task_s_end_answers_every_kill_and_restart_once(update, said):
    requests, kills, restarts = OperatorRequests("job-0"), [], []
    requests.kill_taken(kills.append, "stoker kill", 2.0)
    _restart(requests, RestartAnswer(True, "taken"), restarts)
    requests.task_ended(update)
    requests.task_ended(update)
    state, message = said
    assert kills[1:] == [ControlReply(ok=True, done=True, state=state, message=f"task job-0 {state}: {message}")]
    assert restarts[1:] == [ControlReply(
        ok=False, done=True, process="web", state=state,
        message=f"the task ended ({state}: {message}) before process 'web' started again")]


def test_a_request_too_late_hears_the_task_s_end_and_nothing_else_is_answered():
    requests, kills, restarts = OperatorRequests("job-0"), [], []
    end = Update(TaskState.FINISHED, "done")
    requests.too_late(KillRequested("stoker kill", reply=kills.append), end)
    requests.too_late(RestartRequested("web", 1.0, reply=restarts.append), end)
    requests.too_late(KillRequested("no one waits"), end)
    requests.too_late(object(), end)  # another event: no reply to give
    assert kills == [ControlReply(ok=True, done=True, state="FINISHED", message="task job-0 FINISHED: done")]
    assert restarts == [ControlReply(ok=False, done=True, process="web", state="FINISHED",
                                     message="the task ended (FINISHED: done) before process 'web' started again")]


def test_a_replier_that_raises_is_one_error_line_and_the_others_are_still_answered(caplog):
    requests, replies = OperatorRequests("job-0"), []

    def broken(reply):
        raise BrokenPipeError("the operator left")

    requests.kill_taken(broken, "stoker kill", 2.0)
    requests.kill_taken(replies.append, "stoker kill", 2.0, again=True)
    requests.task_ended(Update(TaskState.KILLED, "killed"))
    assert len(replies) == 2
    lines = records(caplog, "control_reply_failed")
    assert len(lines) == 2 and all(r.levelno == logging.ERROR for r in lines)
    assert "BrokenPipeError: the operator left" in lines[0].getMessage()
