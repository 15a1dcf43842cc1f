"""`stoker executor` under an agent that misbehaves: the real executor process under the agent
simulator, given what a buggy, wedged or newer agent can send (docs/mesos.md §4, §5, §9, §12).

- A record whose framing is whole but whose content the executor only logs could not be read
  (a MESSAGE whose data is not base64, an ERROR whose message is no text, an event whose
  `type` is no text) broke the stream; with checkpointing off that is the executor's end:
  the running task was killed and the executor exited 4. Such an event is now one ERROR line
  and skipped, as an oversized MESSAGE is (§9).
- An UPDATE the agent took and never answered held the sender for the call's 10 s read
  timeout, as long as the executor waits for the last acknowledgement: a task's TASK_KILLED
  was never POSTed again, the executor exited 5 and the agent reported TASK_FAILED. A call
  now waits 2 s for its answer, and the update is POSTed again with the same uuid (§12).
  An answer whose body never ended held the sender for good, and a SUBSCRIBE past
  MESOS_RECOVERY_TIMEOUT: 2 s for it all now (§15). So did a 200 followed by blank lines
  and never an event: the stream's first event must now be whole within the outage's limit.
- An ERROR event over the 8 MiB a record may have broke the stream, where an oversized
  MESSAGE is skipped: with checkpointing off the task was killed. It is skipped too (§4).
- MESOS_SUBSCRIPTION_BACKOFF_MAX=0ns (the agent's --executor_reregistration_timeout) made
  every wait between SUBSCRIBE attempts 0: an agent down for 2 s got 17,354 attempts, each
  an INFO line (a 15-minute outage: millions of lines and a core busy). No retry now comes
  sooner than 50 ms after the last (§15).
- An error page that quoted the request's headers (a proxy's, a debugging agent's) put the
  agent's token in the log: in the retry line of a SUBSCRIBE answered 503 or of an UPDATE
  answered 500, in three ERROR lines of a SUBSCRIBE refused 401. The transport now writes
  `[token]` for it in every answer it quotes (§6).
"""
from __future__ import annotations

import re
import time

import pytest

from executor.mesos.reconnect import RETRY_FLOOR_SECS
from executor.mesos.recordio import MAX_RECORD_BYTES
from executor.mesos.transport import CALL_TIMEOUT_SECS
from tests.support.executor_e2e import EXECUTOR, HELLO, TOKEN, agent_for, document, launch
from tests.support.stoker_proc import live, task_pids
from tests.support.waiting import wait_for


@pytest.fixture
def agent(tmp_path):
    yield from agent_for(tmp_path)


UNREADABLE = [
    ({"type": "MESSAGE", "message": {"data": "!!not base64!!"}}, "MESSAGE"),
    ({"type": "ERROR", "error": {"message": 5}}, "ERROR"),
    ({"type": 7}, None),  # the line then has no type=
]


def test_an_unreadable_event_the_executor_only_logs_is_skipped_and_the_task_runs_on(agent, tmp_path):
    launch(agent, document(tmp_path, HELLO), checkpoint=False)
    agent.wait_for_state("task-1", "TASK_RUNNING", 10)
    pids = wait_for(lambda: task_pids(agent.sandbox))
    agent.send_events([event for event, _ in UNREADABLE])
    agent.message(b"after them")  # the stream goes on: the next event is read
    wait_for(lambda: "framework_message bytes=10" in agent.executor_log(), 5,
             message="the MESSAGE after the unreadable events")
    skipped = [line for line in agent.executor_log().splitlines() if "mesos_event_skipped" in line]
    assert [re.search(r" type=(\w+)", line)[1] if " type=" in line else None
            for line in skipped] == [kind for _, kind in UNREADABLE]
    assert "'type' is an int" in skipped[2]
    assert all(" ERROR " in line for line in skipped), skipped
    assert agent.states("task-1") == ["TASK_STARTING", "TASK_RUNNING"] and live(pids)
    assert len(agent.subscribes) == 1 and agent.exit_code is None
    agent.kill("task-1", grace_secs=0.5)
    agent.wait_for_state("task-1", "TASK_KILLED", 5)
    assert agent.wait_exit(10) == 0


def test_an_update_the_agent_takes_and_never_answers_is_posted_again_within_the_ack_wait(agent, tmp_path):
    launch(agent, document(tmp_path, HELLO))
    agent.wait_for_state("task-1", "TASK_RUNNING", 10)
    agent.unanswered_updates = 1  # the TASK_KILLED's first POST: taken, never answered
    killed_at = time.monotonic()
    agent.kill("task-1", grace_secs=0.5)
    killed = agent.wait_for_state("task-1", "TASK_KILLED", 8)
    assert killed.at - killed_at < CALL_TIMEOUT_SECS + 1.5
    posts = [c for c in agent.calls("UPDATE") if c.json["update"]["status"]["state"] == "TASK_KILLED"]
    assert [p.answer for p in posts] == ["never answered", ""] and posts[1].status == 202
    assert posts[0].json["update"]["status"]["uuid"] == posts[1].json["update"]["status"]["uuid"]
    assert agent.wait_exit(10) == 0


def test_a_back_off_max_of_zero_does_not_spin_through_an_outage(agent, tmp_path):
    launch(agent, document(tmp_path, HELLO), backoff_max="0ns", recovery_timeout="1secs")
    agent.wait_for_state("task-1", "TASK_RUNNING", 10)
    pids = task_pids(agent.sandbox)
    agent.crash()
    assert agent.wait_exit(10) == 4
    assert not live(pids)
    retries = agent.executor_log().count("mesos_retry ")
    assert 5 <= retries <= 1 / RETRY_FLOOR_SECS + 5, retries


def test_an_error_page_quoting_the_request_s_headers_never_puts_the_token_in_the_log(agent, tmp_path):
    agent.error_pages = {"SUBSCRIBE": 503}  # retried: its words are the retry line's reason
    launch(agent, document(tmp_path, HELLO))
    agent.wait_for_state("task-1", "TASK_RUNNING", 10)
    agent.error_pages = {"UPDATE": 500}  # the TASK_KILLED's first POST: retried
    agent.kill("task-1", grace_secs=0.5)
    agent.wait_for_state("task-1", "TASK_KILLED", 5)
    assert agent.wait_exit(10) == 0
    assert [c.status for c in agent.calls("SUBSCRIBE")] == [503, 200]
    assert TOKEN in agent.calls("SUBSCRIBE")[0].answer  # the page did quote it
    log = agent.executor_log()
    assert log.count("Authorization: Bearer [token]") == 2, log[-3000:]
    # (the fixture: the token is nowhere in the log)


def _errors(agent) -> list[str]:
    return [line for line in agent.executor_log().splitlines()
            if " ERROR " in line and "executor_exit" not in line]


def test_a_subscribe_refused_is_one_error_line(agent):
    agent.error_pages = {"SUBSCRIBE": 401}
    agent.launch_executor(EXECUTOR, cwd=agent.sandbox)
    assert agent.wait_exit(10) == 3
    errors = _errors(agent)
    assert len(errors) == 1 and "the agent rejected SUBSCRIBE: HTTP 401: " in errors[0], errors


def test_an_error_event_and_a_refused_update_are_one_error_line_each(agent, tmp_path):
    launch(agent, document(tmp_path, HELLO))
    agent.wait_for_state("task-1", "TASK_RUNNING", 10)
    agent.send_events([{"type": "ERROR", "error": {"message": "the agent is unwell"}}])
    wait_for(lambda: _errors(agent), 5, message="the ERROR event's line")
    agent.error_pages = {"UPDATE": 400}  # the TASK_KILLED: refused for good, dropped
    agent.kill("task-1", grace_secs=0.5)
    assert agent.wait_exit(10) == 5  # the agent never got the task's end: not a normal run
    assert re.search(r"executor_exit status=5 acknowledged=False .*dropped=1", agent.executor_log())
    errors = _errors(agent)
    assert len(errors) == 2, errors
    assert 'message="the agent is unwell"' in errors[0]
    assert "call=UPDATE" in errors[1] and "status=400" in errors[1] and "state=TASK_KILLED" in errors[1]


def test_an_update_answered_200_by_a_proxy_is_accepted_and_kept_until_its_ack(agent, tmp_path):
    launch(agent, document(tmp_path, HELLO))
    agent.wait_for_state("task-1", "TASK_RUNNING", 10)
    agent.accepted_status = 200  # with an HTML page
    agent.ack_mode = "hold"
    agent.kill("task-1", grace_secs=0.5)
    agent.wait_for_state("task-1", "TASK_KILLED", 5)
    agent.ack_mode = "immediate"
    agent.close_stream()  # before its ACK: the resubscription must still carry it
    carried = agent.wait_subscribed(count=2)["subscribe"]["unacknowledged_updates"]
    assert [u["status"]["state"] for u in carried] == ["TASK_KILLED"]
    assert agent.wait_exit(10) == 0
    assert not _errors(agent)


def test_an_answer_whose_body_never_ends_is_given_up_within_the_call_s_timeout(agent, tmp_path):
    launch(agent, document(tmp_path, HELLO))
    agent.wait_for_state("task-1", "TASK_RUNNING", 10)
    agent.endless_answers = {"UPDATE": 1}  # the TASK_KILLED's first POST: 503, a byte every 0.1 s
    killed_at = time.monotonic()
    agent.kill("task-1", grace_secs=0.5)
    killed = agent.wait_for_state("task-1", "TASK_KILLED", 8)
    assert killed.at - killed_at < CALL_TIMEOUT_SECS + 1.5
    assert agent.wait_exit(10) == 0


@pytest.mark.parametrize("answer", ["a refusal whose body never ends", "a 200 then blank lines, no event"])
def test_a_subscribe_answer_that_never_makes_an_event_still_ends_at_the_recovery_timeout(agent, answer):
    if answer.startswith("a refusal"):
        agent.endless_answers = {"SUBSCRIBE": 100}
    else:
        agent.subscribe_reply = "blank_lines"
    started = time.monotonic()
    agent.launch_executor(EXECUTOR, cwd=agent.sandbox, recovery_timeout="1secs", backoff_max="100ms")
    assert agent.wait_exit(10) == 3  # (was: held past it, till the launch timeout's 10 s)
    assert time.monotonic() - started < 1 + 2
    assert "past MESOS_RECOVERY_TIMEOUT of 1s" in agent.executor_log()


def test_a_200_with_another_servers_page_names_its_content_type(agent):
    agent.subscribe_reply = "html"  # MESOS_AGENT_ENDPOINT a proxy's login page, say
    agent.launch_executor(EXECUTOR, cwd=agent.sandbox, recovery_timeout="1secs", backoff_max="100ms")
    assert agent.wait_exit(10) == 3
    log = agent.executor_log()
    assert "RecordIO header b'<html><body>Please lo' is not a decimal size; " in log
    assert ("the answer's Content-Type is 'text/html; charset=utf-8', not the agent's application/json:"
            " is MESOS_AGENT_ENDPOINT a Mesos agent?") in log  # (was: the RecordIO header alone)


def test_an_oversized_error_event_is_skipped_like_an_oversized_message(agent, tmp_path):
    launch(agent, document(tmp_path, HELLO), checkpoint=False)
    agent.wait_for_state("task-1", "TASK_RUNNING", 10)
    agent.send_events([{"type": "ERROR", "error": {"message": "x" * (MAX_RECORD_BYTES + 1)}}])
    agent.message(b"after it")
    wait_for(lambda: "framework_message bytes=8" in agent.executor_log(), 10,
             message="the MESSAGE after the oversized ERROR")
    assert "mesos_event_skipped executor_id=stoker-executor-1 type=ERROR bytes=" in agent.executor_log()
    assert len(agent.subscribes) == 1 and agent.exit_code is None
    agent.kill("task-1", grace_secs=0.5)
    agent.wait_for_state("task-1", "TASK_KILLED", 5)
    assert agent.wait_exit(10) == 0
