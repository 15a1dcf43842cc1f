"""The Mesos driver and transport against the agent simulator, through echo_executor.py.

Real processes and real loopback sockets; the simulator records every request, update and
acknowledgement. Intervals are tiny (back-off max 200-300 ms, recovery 1-3 s). The reconnect
decisions themselves are tables in tests/unit/test_mesos_reconnect.py; these tests check the
driver acts on them end to end.
"""
from __future__ import annotations

import base64
import json
import logging
import re
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

from config.executorsettings import ExecutorSettings
from executor.events import TaskState
from executor.mesos.driver import ExecutorDriver
from executor.mesos.reconnect import Ending
from executor.mesos.recordio import RecordIODecoder
from executor.mesos.transport import AgentTransport, BadToken, Outcome, agent_url
from executor.mesos.wire import Calls
from tests.support.agent_sim import AGENT_ID, AgentSimulator, make_task_info
from tests.support.waiting import wait_for

ECHO = str(Path(__file__).resolve().parents[1] / "support" / "echo_executor.py")
TOKEN = "s3cr3t-t0ken-value"
BACKOFF_MAX_SECS = 0.3
# The agent's re-registration window after a restart (Mesos' default): an executor retrying
# at most BACKOFF_MAX_SECS apart is back well inside it, even when the machine is loaded.
WINDOW_SECS = 2.0


@pytest.fixture
def sim(tmp_path):
    simulator = AgentSimulator(sandbox=tmp_path)
    yield simulator
    simulator.close()
    print("---- executor log ----\n" + simulator.executor_log())


def start(sim: AgentSimulator, **kwargs) -> None:
    kwargs.setdefault("backoff_max", f"{round(BACKOFF_MAX_SECS * 1000)}ms")
    kwargs.setdefault("recovery_timeout", "10secs")
    kwargs.setdefault("env_overrides", {"STOKER_LOG_LEVEL": "DEBUG"})
    sim.launch_executor([sys.executable, ECHO], **kwargs)


def run_task(sim: AgentSimulator, tid: str) -> None:
    sim.launch(make_task_info(tid, b'{"job": {}}', ports=[31000, 31001]))
    sim.wait_for_state(tid, "TASK_RUNNING")


def uuids_of(body: dict) -> list[bytes]:
    return [base64.b64decode(u["status"]["uuid"])
            for u in body["subscribe"].get("unacknowledged_updates", [])]


def update_calls(sim: AgentSimulator, raw: bytes) -> list:
    return [r for r in sim.calls("UPDATE")
            if base64.b64decode(r.json["update"]["status"]["uuid"]) == raw]


def retries_logged(sim: AgentSimulator) -> int:
    return sim.executor_log().count("mesos_retry ")


def wait_for_retries(sim: AgentSimulator, more_than: int, count: int = 2) -> None:
    """Until the executor has logged `count` more SUBSCRIBE retries (refused connections
    leave no trace at the simulator)."""
    # Polled: the simulator is not notified when the executor writes its log, so its own
    # wait_for would only look again at its timeout.
    wait_for(lambda: retries_logged(sim) >= more_than + count, 5,
             message=f"{count} more retries")


@pytest.mark.timeout(20)
def test_launch_kill_shutdown_sequence_and_exact_wire_format(tmp_path):
    with AgentSimulator(auth_token=TOKEN, sandbox=tmp_path) as sim:
        start(sim)
        body = sim.wait_subscribed()
        assert body == {"type": "SUBSCRIBE", "framework_id": {"value": sim.framework_id},
                        "executor_id": {"value": sim.executor_id}, "subscribe": {}}
        run_task(sim, "task-42")
        sim.message(b"ping \x00 pong")
        sim.wait_for(lambda: sim.messages, 5, "the echoed framework message")
        sim.kill("task-42", grace_secs=2.0)
        killed = sim.wait_for_state("task-42", "TASK_KILLED")
        sim.shutdown()
        assert sim.wait_exit(5) == 0

        assert sim.states("task-42") == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"]
        assert killed.message == "killed (grace 2.0)"
        assert sim.messages == [b"ping \x00 pong"]
        assert [r.call_type for r in sim.requests] == [
            "SUBSCRIBE", "UPDATE", "UPDATE", "MESSAGE", "UPDATE"]
        for r in sim.requests:
            assert (r.method, r.path) == ("POST", "/api/v1/executor")
            assert r.header("Content-Type") == "application/json"
            assert r.header("Accept") == "application/json"
            assert r.header("Authorization") == f"Bearer {TOKEN}"
            assert r.header("Mesos-Stream-Id") is None  # the executor API has none
            assert r.status == (200 if r.call_type == "SUBSCRIBE" else 202)
        for record in sim.updates("task-42"):
            parsed = uuid.UUID(bytes=record.uuid)
            assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
            assert record.source == "SOURCE_EXECUTOR"
            assert record.status["agent_id"] == {"value": AGENT_ID}
            assert record.status["executor_id"] == {"value": sim.executor_id}
            assert isinstance(record.status["timestamp"], float)
        assert sim.acks_sent == [("task-42", r.uuid) for r in sim.updates("task-42")]
        log = sim.executor_log()
        assert "mesos_subscribed" in log and "status_update_sent" in log  # DEBUG was on
        assert TOKEN not in log


@pytest.mark.timeout(20)
@pytest.mark.parametrize("chunking, ack_mode", [("fuzz", "duplicate"), ("packed", "unknown_uuid"),
                                                ("fuzz", "delay")])
def test_odd_chunking_and_odd_acks_lose_nothing(sim, chunking, ack_mode):
    sim.chunking, sim.ack_mode, sim.ack_delay_secs = chunking, ack_mode, 0.05
    start(sim)
    sim.wait_subscribed()
    tids = [f"task-{i}" for i in range(6)]
    sim.heartbeat()
    sim.launch_many([make_task_info(t, b"x" * 300, ports=[31000 + i]) for i, t in enumerate(tids)])
    for t in tids:
        sim.wait_for_state(t, "TASK_RUNNING")
    sim.shutdown()
    assert sim.wait_exit(5) == 0
    for t in tids:
        assert sim.states(t) == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"]
    assert "echo_exiting all_acknowledged=True unacknowledged=0" in sim.executor_log()
    assert len(sim.calls("SUBSCRIBE")) == 1


@pytest.mark.timeout(20)
def test_unknown_event_and_heartbeat_are_ignored(sim):
    start(sim)
    sim.wait_subscribed()
    sim.send_events([{"type": "SOMETHING_NEW", "something_new": {"x": 1}}, {"type": "HEARTBEAT"}])
    run_task(sim, "task-42")
    sim.shutdown()
    assert sim.wait_exit(5) == 0
    assert "mesos_event_ignored executor_id=stoker-executor-1 type=SOMETHING_NEW" in sim.executor_log()
    assert sim.states("task-42") == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"]


@pytest.mark.timeout(20)
def test_launch_group_is_passed_to_the_callback(sim):
    start(sim)
    sim.wait_subscribed()
    sim.launch_group([make_task_info("task-50", b"{}"), make_task_info("task-51", b"{}")])
    for tid in ("task-50", "task-51"):
        assert sim.wait_for_state(tid, "TASK_FAILED").message == \
            "task groups are not supported by this executor"
    sim.shutdown()
    assert sim.wait_exit(5) == 0


@pytest.mark.timeout(20)
def test_shutdown_as_the_first_event_exits_without_resubscribing(sim):
    sim.subscribe_reply = "shutdown"
    start(sim)
    assert sim.wait_exit(5) == 0
    assert len(sim.calls("SUBSCRIBE")) == 1
    assert "mesos_shutdown_received" in sim.executor_log()


@pytest.mark.timeout(20)
def test_terminal_updates_are_still_posted_when_the_agent_closes_the_stream_after_shutdown(sim):
    start(sim)
    sim.wait_subscribed()
    run_task(sim, "task-42")
    sim.shutdown()
    sim.close_stream(graceful=True)  # SHUTDOWN, then EOF at once
    assert sim.wait_exit(5) == 0
    killed = sim.wait_for_state("task-42", "TASK_KILLED", timeout_secs=1)
    assert killed.via == "UPDATE"
    assert len(sim.calls("SUBSCRIBE")) == 1  # no resubscription after SHUTDOWN


@pytest.mark.timeout(30)
def test_held_acks_survive_a_crash_and_restart_and_are_never_resent_once_acked(sim):
    # The SHUTDOWN at the end comes inside the re-registration window, whose 503s hold the
    # TASK_KILLED until it closes: a grace that outlasts the window (the echo executor
    # waits the grace less 1 s for its ACK).
    start(sim, shutdown_grace="5secs")
    sim.wait_subscribed()
    run_task(sim, "task-42")  # STARTING and RUNNING acknowledged
    sim.wait_for(lambda: len(sim.acks_sent) == 2, 5, "the first two ACKs")
    sim.ack_mode = "hold"
    sim.kill("task-42")
    killed = sim.wait_for_state("task-42", "TASK_KILLED")
    sim.launch(make_task_info("task-43", b'{"job": {}}', ports=[31005], kill_policy_secs=3))
    starting = sim.wait_for_state("task-43", "TASK_STARTING")
    running = sim.wait_for_state("task-43", "TASK_RUNNING")

    retried = retries_logged(sim)
    sim.crash()
    wait_for_retries(sim, retried, count=2)  # down for a while: the executor keeps trying
    assert sim._proc.poll() is None
    sim.ack_mode = "immediate"
    restarted_at = time.monotonic()
    sim.restart(recovering_secs=1.0, reregistration_window_secs=WINDOW_SECS)
    body = sim.wait_subscribed(count=2, timeout_secs=5)

    assert uuids_of(body) == [killed.uuid, starting.uuid, running.uuid]
    assert [u["status"] for u in body["subscribe"]["unacknowledged_updates"]] == [
        killed.status, starting.status, running.status]
    assert body["subscribe"]["unacknowledged_tasks"] == [sim._tasks["task-43"].info]
    attempts = [r for r in sim.calls("SUBSCRIBE") if r.at >= restarted_at]
    assert [r.status for r in attempts][-1] == 200 and len(attempts) >= 3  # 503s, then 200
    # Every retry waits at most the configured backoff cap: what the executor chose, as it
    # logged it (the gaps the agent sees add the machine's load to it).
    delays = [int(ms) for ms in re.findall(r"mesos_retry .* in_ms=(\d+) ", sim.executor_log())]
    assert delays and max(delays) <= BACKOFF_MAX_SECS * 1000, delays

    # the re-sent copies are re-ACKed; after that nothing is re-sent, by UPDATE or SUBSCRIBE
    sim.wait_for(lambda: len(sim.acks_sent) == 5, 5, "ACKs of the carried updates")
    wait_for(lambda: sim.executor_log().count("status_update_acknowledged") >= 5, 5,
             message="the executor booked the 5 ACKs")
    sim.close_stream(graceful=True)  # graceful EOF while listening: the executor resubscribes
    assert sim.wait_subscribed(count=3, timeout_secs=5)["subscribe"] == {}
    for record in (killed, starting, running):
        assert len(update_calls(sim, record.uuid)) == 1
    assert sim.states("task-42") == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"]
    assert sim.states("task-43") == ["TASK_STARTING", "TASK_RUNNING"]
    assert not sim.reregistration_failed
    sim.shutdown()
    assert sim.wait_exit(5) == 0
    assert sim.states("task-43")[-1] == "TASK_KILLED"


@pytest.mark.timeout(30)
def test_five_restarts_in_a_row_lose_no_update(sim):
    start(sim)
    sim.wait_subscribed()
    sim.ack_mode = "hold"
    held: list[bytes] = []
    for i in range(5):
        tid = f"task-{i}"
        sim.launch(make_task_info(tid, b"{}"))
        held += [sim.wait_for_state(tid, "TASK_STARTING").uuid,
                 sim.wait_for_state(tid, "TASK_RUNNING").uuid]
        sim.crash()
        sim.restart(recovering_secs=0.2, reregistration_window_secs=WINDOW_SECS)
        body = sim.wait_subscribed(count=i + 2, timeout_secs=5)
        assert uuids_of(body) == held, f"restart {i + 1}"
        assert [t["task_id"]["value"] for t in body["subscribe"]["unacknowledged_tasks"]] == [
            f"task-{j}" for j in range(i + 1)]
    sim.ack_mode = "immediate"
    sim.close_stream(graceful=True)
    sim.wait_subscribed(count=7, timeout_secs=5)
    sim.wait_for(lambda: {raw for _, raw in sim.acks_sent} >= set(held), 5, "every ACK")
    sim.close_stream(graceful=True)
    assert sim.wait_subscribed(count=8, timeout_secs=5)["subscribe"] == {}
    for i in range(5):
        assert sim.states(f"task-{i}") == ["TASK_STARTING", "TASK_RUNNING"]
    for raw in held:  # accepted once (after 503s in the window); later only carried
        assert [c.status for c in update_calls(sim, raw)][-1] == 202
        assert [c.status for c in update_calls(sim, raw)].count(202) == 1
    assert not any(r.state == "TASK_DROPPED" for t in range(5) for r in sim.updates(f"task-{t}"))
    sim.shutdown()
    assert sim.wait_exit(5) == 0


@pytest.mark.timeout(20)
def test_update_answered_503_in_the_reregistration_window_is_retried_with_the_same_uuid(sim):
    start(sim)
    sim.wait_subscribed()
    sim.crash()
    sim.restart(recovering_secs=0.0, reregistration_window_secs=WINDOW_SECS)
    sim.wait_subscribed(count=2, timeout_secs=5)
    run_task(sim, "task-42")
    starting = sim.updates("task-42")[0]
    calls = update_calls(sim, starting.uuid)
    assert [c.status for c in calls][0] == 503 and calls[-1].status == 202
    assert len(calls) >= 2
    assert {c.body for c in calls} == {calls[0].body}  # byte-identical retries
    assert sim.states("task-42") == ["TASK_STARTING", "TASK_RUNNING"]
    sim.shutdown()
    assert sim.wait_exit(5) == 0


@pytest.mark.timeout(20)
def test_checkpoint_off_exits_at_the_first_disconnect_without_reconnecting(sim):
    start(sim, checkpoint=False)
    sim.wait_subscribed()
    run_task(sim, "task-42")
    sim.close_stream(graceful=True)
    assert sim.wait_exit(5) == 0
    assert len(sim.calls("SUBSCRIBE")) == 1
    log = sim.executor_log()
    assert "mesos_disconnected" in log and "checkpointing is off" in log
    assert sim.states("task-42")[:2] == ["TASK_STARTING", "TASK_RUNNING"]


@pytest.mark.timeout(20)
def test_agent_down_longer_than_the_recovery_timeout_shuts_down_and_exits(sim):
    start(sim, recovery_timeout="1secs", backoff_max="200ms")
    sim.wait_subscribed()
    run_task(sim, "task-42")
    crashed_at = time.monotonic()
    sim.crash()
    assert sim.wait_exit(10) == 0  # not the default recovery timeout (15 minutes)
    assert time.monotonic() - crashed_at >= 1.0  # never before its own
    log = sim.executor_log()
    assert "mesos_giving_up" in log and "MESOS_RECOVERY_TIMEOUT of 1s" in log


@pytest.mark.timeout(20)
def test_subscribe_rejected_with_400_reports_error_then_shuts_down(sim):
    start(sim)
    sim.wait_subscribed()
    sim.forget_executor()
    sim.close_stream(graceful=True)
    assert sim.wait_exit(5) == 0
    assert [r.status for r in sim.calls("SUBSCRIBE")] == [200, 400]
    log = sim.executor_log()
    assert "mesos_subscribe_rejected executor_id=stoker-executor-1 status=400" in log
    assert "Framework cannot be found" in log and "echo_error" in log


@pytest.mark.timeout(20)
def test_agent_unreachable_at_start_is_retried_until_it_listens(tmp_path):
    with AgentSimulator(sandbox=tmp_path) as sim:
        port = sim.port
        sim.crash()
        start(sim)
        wait_for_retries(sim, 0, count=2)
        # A window far longer than the test: it is about retrying until the agent listens, so
        # no wall-clock race with the window (the window has tests of its own).
        sim.restart(recovering_secs=0.3, reregistration_window_secs=60.0)
        assert sim.port == port
        sim.wait_subscribed(timeout_secs=5)
        sim.shutdown()
        assert sim.wait_exit(5) == 0
        # One INFO line per attempt: each retry says when the next SUBSCRIBE goes (the
        # SUBSCRIBE's own line said it again, but for the first).
        info = [line.split(" executor.mesos.driver ", 1)[1].split()[0]
                for line in sim.executor_log().splitlines() if " INFO executor.mesos.driver " in line]
        assert info[0] == "mesos_subscribing" and info.count("mesos_subscribing") == 1, info
        assert info.count("mesos_retry") >= 2, info


# ---- the simulator's own fidelity (docs/mesos.md §5) ----


def _call(kind: str, **extra) -> dict:
    return {"type": kind, "framework_id": {"value": "7c1c2a4e-5b7d-4f0e-9a51-3e2f9d6c1b20-0000"},
            "executor_id": {"value": "stoker-executor-1"}, **extra}


def _status(**over) -> dict:
    status = {"task_id": {"value": "t"}, "state": "TASK_RUNNING", "source": "SOURCE_EXECUTOR",
              "uuid": base64.b64encode(uuid.uuid4().bytes).decode()}
    status.update(over)
    return {k: v for k, v in status.items() if v is not None}


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize("method, headers, body, status", [
    ("GET", JSON, _call("HEARTBEAT"), 405),
    ("POST", {}, _call("HEARTBEAT"), 400),
    ("POST", {"Content-Type": "application/json; charset=utf-8"}, _call("HEARTBEAT"), 415),
    ("POST", JSON, b"{nope", 400),
    ("POST", JSON, {"type": "HEARTBEAT"}, 400),
    ("POST", JSON, _call("BOGUS"), 400),
    ("POST", JSON, _call("SUBSCRIBE"), 400),
    ("POST", {**JSON, "Accept": "application/x-protobuf"}, _call("SUBSCRIBE", subscribe={}), 406),
    ("POST", JSON, _call("HEARTBEAT"), 202),
    ("POST", JSON, {**_call("MESSAGE", message={"data": "aGk="}),
                    "framework_id": {"value": "other"}}, 400),
    ("POST", JSON, _call("MESSAGE", message={"data": "aGk="}), 403),
    ("POST", JSON, _call("UPDATE", update={"status": _status(uuid=None)}), 400),
    ("POST", JSON, _call("UPDATE", update={"status": _status(uuid="aGk=")}), 400),
    ("POST", JSON, _call("UPDATE", update={"status": _status(source=None)}), 400),
    ("POST", JSON, _call("UPDATE", update={"status": _status(state="TASK_STAGING")}), 400),
    ("POST", JSON, _call("UPDATE", update={"status": _status(
        executor_id={"value": "someone-else"})}), 400),
])
def test_simulator_validates_like_the_agent(sim, method, headers, body, status):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    answer = requests.request(method, f"http://{sim.endpoint}/api/v1/executor", data=data,
                              headers=headers, timeout=5)
    assert answer.status_code == status, answer.text
    if status == 405:
        assert answer.headers["Allow"] == "POST"
    assert sim.requests[-1].status == status


def test_simulator_auth_and_recovery_answers(tmp_path):
    with AgentSimulator(auth_token=TOKEN, sandbox=tmp_path) as sim:
        url = f"http://{sim.endpoint}/api/v1/executor"
        data = json.dumps(_call("HEARTBEAT")).encode()
        missing = requests.post(url, data=data, headers=JSON, timeout=5)
        assert missing.status_code == 401
        assert missing.headers["WWW-Authenticate"] == 'Bearer realm="mesos-agent-executor"'
        wrong = requests.post(url, data=data, headers={**JSON, "Authorization": "Bearer x"},
                              timeout=5)
        assert wrong.status_code == 401 and "invalid_token" in wrong.headers["WWW-Authenticate"]
        good = {**JSON, "Authorization": f"Bearer {TOKEN}"}
        assert requests.post(url, data=data, headers=good, timeout=5).status_code == 202
        sim.crash()
        sim.restart(recovering_secs=30)
        assert requests.post(url, data=data, headers=good, timeout=5).status_code == 503


def test_simulator_replaces_a_stream_gracefully_and_tells_crash_from_close(sim):
    url = f"http://{sim.endpoint}/api/v1/executor"
    body = json.dumps(_call("SUBSCRIBE", subscribe={})).encode()
    first = requests.post(url, data=body, headers=JSON, stream=True, timeout=(5, 5))
    second = requests.post(url, data=body, headers=JSON, stream=True, timeout=(5, 5))
    try:
        assert first.status_code == second.status_code == 200
        assert second.headers["Content-Type"] == "application/json"
        assert second.headers["Transfer-Encoding"] == "chunked"
        decoder = RecordIODecoder()
        records = [r for chunk in first.iter_content(chunk_size=None)  # ends: clean EOF
                   for r in decoder.feed(chunk)]
        assert [json.loads(r)["type"] for r in records] == ["SUBSCRIBED"]
        sim.crash()
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            for _ in second.iter_content(chunk_size=None):
                pass
    finally:
        first.close()
        second.close()


def test_simulator_applies_the_agent_update_rules(sim):
    url = f"http://{sim.endpoint}/api/v1/executor"
    stream = requests.post(url, data=json.dumps(_call("SUBSCRIBE", subscribe={})).encode(),
                           headers=JSON, stream=True, timeout=(5, 5))
    try:
        sim.wait_subscribed()
        sim.launch(make_task_info("t", b"{}"))

        def post(**over) -> tuple[bytes, int]:
            status = _status(**over)
            answer = requests.post(url, data=json.dumps(_call("UPDATE", update={
                "status": status})).encode(), headers=JSON, timeout=5)
            return base64.b64decode(status["uuid"]), answer.status_code

        running, code = post()
        assert code == 202
        again = requests.post(url, data=sim.calls("UPDATE")[-1].body, headers=JSON, timeout=5)
        assert again.status_code == 202
        finished, _ = post(state="TASK_FINISHED")
        late, _ = post(state="TASK_FAILED")
        stranger, _ = post(task_id={"value": "never-launched"})
        wrong_agent, code = post(agent_id={"value": "another-agent"})
        assert code == 202
        assert sim.states("t") == ["TASK_RUNNING", "TASK_FINISHED"]
        assert [raw for _, raw in sim.acks_sent] == [running, running, finished, late]
        assert [r.uuid for r in sim.duplicates] == [running]
        assert [r.uuid for r in sim.dropped_updates] == [late]
        assert [r.uuid for r in sim.unknown_updates] == [stranger]
        assert [r.uuid for r in sim.ignored_updates] == [wrong_agent]
    finally:
        stream.close()


@pytest.mark.timeout(20)
def test_simulator_destroys_an_executor_past_the_shutdown_grace(sim):
    sim.launch_executor(["sleep", "30"], shutdown_grace="200ms")
    sim.shutdown()
    assert sim.wait_exit(5) == -9
    assert sim.destroyed_after_grace


@pytest.mark.timeout(20)
def test_simulator_destroys_an_executor_that_never_subscribes(sim):
    sim.launch_executor(["sleep", "30"], registration_timeout_secs=0.2)
    assert sim.wait_exit(5) == -9
    assert sim.registration_timed_out


@pytest.mark.parametrize("endpoint, url", [
    ("10.0.0.5:5051", "http://10.0.0.5:5051/api/v1/executor"),
    ("::1:5051", "http://[::1]:5051/api/v1/executor"),
    ("fe80::1:2:31000", "http://[fe80::1:2]:31000/api/v1/executor"),
])
def test_agent_url_splits_on_the_last_colon_and_brackets_ipv6(endpoint, url):
    assert agent_url(endpoint) == url


def test_agent_url_refuses_an_endpoint_without_a_port():
    with pytest.raises(ValueError, match="not host:port"):
        agent_url("localhost")


@pytest.mark.parametrize("endpoint", ["127.0.0.1:99999", "127.0.0.1:0", "127.0.0.1:\u0665\u0660"])
def test_agent_url_refuses_a_port_no_agent_can_listen_on(endpoint):
    """Not a settings error at start, the port out of range was tried for 5 s as if the agent
    were down ('Connection refused'), then exit 3: never subscribed (docs/contract.md §9)."""
    with pytest.raises(ValueError, match="not host:port"):
        agent_url(endpoint)


def test_the_answer_to_subscribe_has_a_timeout_and_the_settled_stream_none(sim):
    """The agent's heartbeats come every 30 minutes: an idle stream is healthy. Only the
    wait for SUBSCRIBE's answer and first event is bounded (docs/mesos.md §7, §15)."""
    transport = AgentTransport(sim.endpoint)
    result, stream = transport.subscribe(Calls(sim.framework_id, sim.executor_id).subscribe([], []),
                                         1.0, 0.5)
    assert result.outcome is Outcome.ACCEPTED and stream is not None
    try:
        assert stream._sock is not None and stream._sock.gettimeout() == 0.5
        stream.settle()  # the driver does this at the first event
        assert stream._sock.gettimeout() is None
    finally:
        stream.abort()
        stream.close()


@pytest.mark.parametrize("token, what", [
    ("t0k\r\nX-Forged: 1", "a control character at position 4 of 16"),
    ("t0k t0k", "a space at position 4 of 7"),
    ("t0k\u00e9", "a non-ASCII character at position 4 of 4"),
])
def test_a_token_no_header_can_carry_is_refused_without_showing_it(token, what):
    with pytest.raises(BadToken) as refused:
        AgentTransport("127.0.0.1:5051", token)
    assert what in str(refused.value) and "t0k" not in str(refused.value)


# ---- the driver in this process: callbacks, rejections, acknowledgement waits ----


class Recorder:
    """Callbacks that record what they got (the quiet ones only count); the first
    launchTask raises."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.quiet: list[str] = []
        self.launches = 0

    def registered(self, driver, executor_info, framework_info, agent_info):
        self.calls.append(("registered", agent_info["id"]["value"]))

    def reregistered(self, driver, agent_info):
        self.quiet.append("reregistered")

    def disconnected(self, driver):
        self.quiet.append("disconnected")

    def launchTaskGroup(self, driver, task_group):
        self.quiet.append("launchTaskGroup")

    def frameworkMessage(self, driver, data):
        self.quiet.append("frameworkMessage")

    def shutdown(self, driver):
        self.quiet.append("shutdown")

    def launchTask(self, driver, task_info):
        self.launches += 1
        if self.launches == 1:
            raise RuntimeError("boom in launchTask")
        self.calls.append(("launchTask", task_info["task_id"]["value"]))

    def killTask(self, driver, task_id, grace_secs):
        self.calls.append(("killTask", task_id, grace_secs))

    def error(self, driver, message):
        self.calls.append(("error", message))


@pytest.fixture
def driver_factory(sim):
    drivers = []

    def make(callbacks, recovery_timeout_secs: float = 5.0, **kwargs) -> ExecutorDriver:
        settings = ExecutorSettings(
            agent_endpoint=sim.endpoint, framework_id=sim.framework_id,
            executor_id=sim.executor_id, sandbox=str(sim.sandbox), checkpoint=True,
            recovery_timeout_secs=recovery_timeout_secs, subscription_backoff_max_secs=0.2)
        driver = ExecutorDriver(callbacks, settings, **kwargs)
        drivers.append(driver)
        driver.start()
        return driver

    yield make
    for driver in drivers:
        driver.stop()
    for driver in drivers:
        assert driver.join(5), "driver threads still alive"


@pytest.mark.timeout(20)
def test_a_raising_callback_is_logged_and_the_driver_keeps_going(sim, driver_factory, caplog):
    caplog.set_level(logging.INFO, logger="executor.mesos.driver")
    recorder = Recorder()
    driver = driver_factory(recorder)
    sim.wait_subscribed()
    wait_for(lambda: driver.connected, 5)
    sim.launch(make_task_info("task-1", b"{}"))
    sim.launch(make_task_info("task-2", b"{}"))
    sim.kill("task-2", grace_secs=1.5)
    wait_for(lambda: ("killTask", "task-2", 1.5) in recorder.calls, 5)
    assert recorder.calls == [("registered", AGENT_ID), ("launchTask", "task-2"),
                              ("killTask", "task-2", 1.5)]
    assert "mesos_callback_failed executor_id=stoker-executor-1 callback=launchTask " \
           'error="RuntimeError: boom in launchTask"' in caplog.text


@pytest.mark.timeout(20)
def test_an_update_the_agent_rejects_is_reported_and_dropped(sim, driver_factory, caplog):
    bad_uuid = bytes(16)  # version nibble 0: "Not a valid UUID"
    recorder = Recorder()
    driver = driver_factory(recorder, uuid_source=lambda: bad_uuid)
    sim.wait_subscribed()
    wait_for(lambda: driver.connected, 5)
    sim.launch(make_task_info("task-1", b"{}"))
    assert driver.send_status_update("task-1", TaskState.RUNNING) == bad_uuid
    wait_for(lambda: any(c[0] == "error" for c in recorder.calls), 5)
    error = next(c[1] for c in recorder.calls if c[0] == "error")
    assert "the agent rejected UPDATE" in error and "HTTP 400" in error
    assert "Not a valid UUID" in error
    wait_for(lambda: driver.unacknowledged_count == 0, 5)
    assert "mesos_call_rejected" in caplog.text and "status=400" in caplog.text
    assert [r.status for r in sim.calls("UPDATE")] == [400]


@pytest.mark.timeout(20)
def test_wait_for_acknowledgements_follows_the_agent_acks(sim, driver_factory):
    driver = driver_factory(Recorder())
    sim.wait_subscribed()
    wait_for(lambda: driver.connected, 5)
    sim.launch(make_task_info("task-1", b"{}"))
    sim.ack_mode = "hold"
    driver.send_status_update("task-1", TaskState.RUNNING, "up")
    driver.send_status_update("task-1", TaskState.FINISHED, "done")
    sim.wait_for_state("task-1", "TASK_FINISHED")
    assert driver.unacknowledged_count == 2
    assert driver.wait_for_acknowledgements(0.2) is False
    sim.release_acks()
    assert driver.wait_for_acknowledgements(5) is True
    assert driver.unacknowledged_count == 0


@pytest.mark.timeout(20)
def test_the_acknowledgement_wait_outlasts_an_agent_restart(sim, driver_factory):
    """A terminal update the agent has not acknowledged when it goes down can only be
    delivered by the resubscription: the bounded wait counts while subscribed, not while
    the driver reconnects (MESOS_RECOVERY_TIMEOUT bounds that). Exiting meanwhile turned a
    task that finished during an agent restart into the agent's TASK_FAILED/GONE."""
    driver = driver_factory(Recorder())
    sim.wait_subscribed()
    wait_for(lambda: driver.connected, 5)
    sim.launch(make_task_info("task-1", b"{}"))
    sim.ack_mode = "hold"
    finished = driver.send_status_update("task-1", TaskState.FINISHED, "done")
    sim.wait_for_state("task-1", "TASK_FINISHED")
    sim.crash()
    wait_for(lambda: not driver.connected, 5)
    sim.ack_mode = "immediate"
    restart = threading.Timer(0.4, sim.restart)
    restart.start()
    try:
        started = time.monotonic()
        assert driver.wait_for_acknowledgements(0.1) is True  # longer than 0.1 s: the outage
        assert time.monotonic() - started >= 0.3
    finally:
        restart.cancel()
        restart.join()
    assert uuids_of(sim.wait_subscribed(count=2)) == [finished]


@pytest.mark.timeout(20)
def test_a_malformed_stream_is_dropped_and_the_resubscription_carries_what_is_owed(sim):
    start(sim)
    sim.wait_subscribed()
    sim.ack_mode = "hold"
    run_task(sim, "task-42")
    held = [r.uuid for r in sim.updates("task-42")]
    sim.send_raw(b"12x\n")  # not a RecordIO header: the agent's fault
    body = sim.wait_subscribed(count=2, timeout_secs=5)
    assert uuids_of(body) == held
    assert 'mesos_protocol_error executor_id=stoker-executor-1 error="RemoteProtocolError: ' \
           "RecordIO header b'12x' is not a decimal size" in sim.executor_log()
    sim.ack_mode = "immediate"
    sim.shutdown()
    assert sim.wait_exit(5) == 0
    assert sim.states("task-42") == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"]


@pytest.mark.timeout(20)
def test_a_kill_in_the_chunk_of_a_malformed_record_still_reaches_the_callback(sim, driver_factory):
    recorder = Recorder()
    driver = driver_factory(recorder)
    sim.wait_subscribed()
    wait_for(lambda: driver.connected, 5)
    kill = json.dumps({"type": "KILL", "kill": {"task_id": {"value": "task-2"}}}).encode()
    sim.send_raw(b"%d\n%s" % (len(kill), kill) + b"12x\n")  # one chunk: the KILL, then garbage
    wait_for(lambda: ("killTask", "task-2", None) in recorder.calls, 5)
    sim.wait_subscribed(count=2)  # the broken stream was dropped and replaced


@pytest.mark.timeout(20)
def test_an_agent_silent_after_answering_subscribe_still_ends_at_the_recovery_timeout(
        sim, driver_factory):
    """Only the first event lifts the wait's bound; an agent that answered 200 and froze
    must not hold the driver past MESOS_RECOVERY_TIMEOUT (docs/mesos.md §15)."""
    sim.subscribe_reply = "silent"
    recorder = Recorder()
    started = time.monotonic()
    driver = driver_factory(recorder, recovery_timeout_secs=0.5)
    wait_for(lambda: driver.ending is Ending.NEVER_SUBSCRIBED, 5)
    assert 0.5 <= time.monotonic() - started < 5
    assert len(sim.subscribes) >= 1
    # `ending` is set first; the shutdown callback is posted after it, to the callbacks' thread
    wait_for(lambda: recorder.quiet == ["shutdown"], 5)


@pytest.mark.timeout(20)
def test_the_driver_says_why_it_ended(sim, driver_factory):
    stopped = driver_factory(Recorder())
    sim.wait_subscribed()
    wait_for(lambda: stopped.connected, 5)
    assert stopped.ending is None and stopped.ever_subscribed
    stopped.stop()
    wait_for(lambda: stopped.ending is Ending.STOPPED, 5)

    told_to = Recorder()
    driver = driver_factory(told_to)
    sim.wait_subscribed(count=2)
    wait_for(lambda: driver.connected, 5)
    sim.shutdown()
    sim.close_stream(graceful=True)
    wait_for(lambda: driver.ending is Ending.SHUTDOWN, 5)
    assert driver.shutdown_received
    wait_for(lambda: told_to.quiet.count("shutdown") == 1, 5)  # run on the callbacks' thread

    lost = Recorder()
    driver = driver_factory(lost, recovery_timeout_secs=0.5)
    sim.wait_subscribed(count=3)
    wait_for(lambda: driver.connected, 5)
    sim.crash()
    wait_for(lambda: driver.ending is Ending.AGENT_LOST, 5)
    wait_for(lambda: lost.quiet == ["disconnected", "shutdown"], 5)
    assert not driver.shutdown_received


@pytest.mark.timeout(20)
def test_a_driver_that_never_reaches_the_agent_ends_never_subscribed(sim, driver_factory):
    sim.crash()
    recorder = Recorder()
    driver = driver_factory(recorder, recovery_timeout_secs=0.5)
    wait_for(lambda: driver.ending is Ending.NEVER_SUBSCRIBED, 5)
    wait_for(lambda: recorder.quiet == ["shutdown"], 5)
    assert not driver.ever_subscribed and recorder.calls == []
