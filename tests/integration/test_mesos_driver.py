"""The Mesos driver and transport against the agent simulator, through echo_executor.py.

Real processes and real loopback sockets; the simulator records every request, update and
acknowledgement. Intervals are tiny (back-off max 200-300 ms, recovery 1-3 s). The reconnect
decisions themselves are tables in tests/unit/test_mesos_reconnect.py; these tests check the
driver acts on them end to end. The simulator's own fidelity is in test_agent_simulator.py,
the driver's callbacks in this process in test_mesos_driver_callbacks.py, the transport's
checks in test_mesos_transport.py; the `sim` fixture is in conftest.py."""
from __future__ import annotations

import re
import time
import uuid

import pytest

from tests.support.agent_sim import AGENT_ID, AgentSimulator, make_task_info
from tests.support.mesos_driving import (
    BACKOFF_MAX_SECS,
    TOKEN,
    WINDOW_SECS,
    retries_logged,
    run_task,
    start,
    update_calls,
    uuids_of,
    wait_for_retries,
)
from tests.support.waiting import wait_for


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
def test_the_call_connection_is_made_at_each_subscription_and_carries_the_first_updates(sim):
    """Made as SUBSCRIBED comes, not by the LAUNCH's TASK_STARTING (over TLS its handshake
    took as long as the rest of that update's way); made again after the agent's restart."""
    start(sim)
    sim.wait_subscribed()
    sim.wait_for(lambda: sim.connections_made == 2, 5, "the call connection, made before any call")
    assert [r.call_type for r in sim.requests] == ["SUBSCRIBE"]
    run_task(sim, "task-42")
    assert sim.connections_made == 2 and [r.call_type for r in sim.requests] == ["SUBSCRIBE", "UPDATE", "UPDATE"]
    sim.crash()
    sim.restart(recovering_secs=0.0, reregistration_window_secs=WINDOW_SECS)
    sim.wait_subscribed(count=2, timeout_secs=5)
    sim.wait_for(lambda: sim.connections_made == 4, 5, "a call connection to the restarted agent")
    sim.kill("task-42", grace_secs=0.1)
    sim.wait_for_state("task-42", "TASK_KILLED")
    assert sim.connections_made == 4


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
    assert "mesos_giving_up executor_id=stoker-executor-1 reason=\"the agent rejected SUBSCRIBE: HTTP 400" in log
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
