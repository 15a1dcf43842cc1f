"""`stoker executor` end to end: the real executor process under the agent simulator,
which speaks the v1 executor API (RecordIO, 202s, acknowledgements) on 127.0.0.1."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.support.agent_sim import make_task_info
from tests.support.executor_e2e import EXECUTOR, HELLO, TOKEN, agent_for, document, launch, service
from tests.support.http_server import Reply, ScriptedHTTPServer
from tests.support.ports import free_ports
from tests.support.shellwords import fake_sh, sh
from tests.support.stoker_proc import (
    checkpoint_records,
    live,
    signal_a_worker_thread,
    task_pids,
)
from tests.support.waiting import wait_for


@pytest.fixture
def agent(tmp_path):
    yield from agent_for(tmp_path)

# The main process: fake_task.py serving /health on the `health` port.
SERVES_HEALTH = f"exec {fake_sh()} --serve-health {{{{thermos.ports[health]}}}}"


def checked(main: str, check: str) -> str:
    """A service running `main`, health-checked by HealthCheckConfig(`check`), with no
    lifecycle endpoints."""
    return service(main, f"health_check_config=HealthCheckConfig({check}),", "lifecycle=DisableLifecycle,")


def test_hello_world_starts_runs_and_is_killed_with_nothing_left(agent, tmp_path):
    launch(agent, document(tmp_path, HELLO))
    agent.wait_for_state("task-1", "TASK_RUNNING", 10)
    pids = wait_for(lambda: task_pids(agent.sandbox))
    assert live(pids)
    agent.kill("task-1", grace_secs=1.0)
    killed = agent.wait_for_state("task-1", "TASK_KILLED", 10)
    assert agent.states("task-1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"]
    assert "KILL" in killed.message
    assert not live(pids)
    assert agent.wait_exit(10) == 0
    calls = agent.calls("UPDATE")
    assert calls and all(c.header("Content-Type") == "application/json" for c in calls)
    assert all(c.header("Authorization") == f"Bearer {TOKEN}" for c in calls)


def test_http_checked_service_passing_after_grace_reports_healthy(agent, tmp_path):
    data = document(tmp_path, checked(f"{SERVES_HEALTH} --health-ok-after 2",
                                      "initial_interval_secs=1.0, interval_secs=0.05"))
    launch(agent, data)
    running = agent.wait_for_state("task-1", "TASK_RUNNING", 10)
    assert running.healthy is True
    assert agent.states("task-1") == ["TASK_STARTING", "TASK_RUNNING"]
    outcomes = [r["outcome"] for r in checkpoint_records(agent.sandbox) if r["kind"] == "health"]
    assert outcomes[-1] == "passed" and outcomes.count("failed") >= 2  # the 2 scripted failures


def test_never_healthy_fails_after_n_attempts_with_the_reason(agent, tmp_path):
    # m = ceil(1.0/0.2) = 5, n = 5 + 1 + 1 = 7: FAILED at attempt 7 at the latest. The health
    # port is a server the test starts and that answers 500 before the task is launched, so
    # every attempt meets its HTTP 500 however slowly the host starts processes (a service
    # the task starts could still be starting at the 7th: "connection refused").
    with ScriptedHTTPServer([Reply(500, b"failing")]) as server:
        data = document(tmp_path, checked(
            "echo health served on {{thermos.ports[health]}}; exec sleep 600",
            "initial_interval_secs=1.0, interval_secs=0.2, max_consecutive_failures=1"))
        agent.launch_executor(EXECUTOR, cwd=agent.sandbox)
        agent.wait_subscribed(timeout_secs=10)
        agent.launch(make_task_info("task-1", data, ports=[server.port]))
        failed = agent.wait_for_state("task-1", "TASK_FAILED", 10)
        asked = len(server.requests)
    assert agent.states("task-1") == ["TASK_STARTING", "TASK_FAILED"]
    assert failed.healthy is False
    assert "health check failed" in failed.message and "HTTP 500" in failed.message
    attempts = [r for r in checkpoint_records(agent.sandbox) if r["kind"] == "health"]
    assert len(attempts) == 7 and asked == 7
    assert not live(task_pids(agent.sandbox))


def test_healthy_then_failing_service_fails(agent, tmp_path):
    data = document(tmp_path, checked(f"{SERVES_HEALTH} --health-fail-after 8",
                                      "initial_interval_secs=1.0, interval_secs=0.1"))
    launch(agent, data)
    agent.wait_for_state("task-1", "TASK_RUNNING", 10)
    failed = agent.wait_for_state("task-1", "TASK_FAILED", 10)
    assert agent.states("task-1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_FAILED"]
    assert "1 consecutive health check failed (max_consecutive_failures=0)" in failed.message


def test_snooze_file_keeps_a_failing_task_running(agent, tmp_path):
    (agent.sandbox / ".healthchecksnooze").touch()
    data = document(tmp_path, checked(f"{SERVES_HEALTH} --health-fail-after 0",
                                      "initial_interval_secs=0.0, interval_secs=0.05"))
    launch(agent, data)
    agent.wait_for_state("task-1", "TASK_RUNNING", 10)
    wait_for(lambda: sum(r.get("outcome") == "snoozed" for r in checkpoint_records(agent.sandbox)) >= 8)
    assert agent.states("task-1") == ["TASK_STARTING", "TASK_RUNNING"]
    (agent.sandbox / ".healthchecksnooze").unlink()
    agent.wait_for_state("task-1", "TASK_FAILED", 10)


def test_process_listens_on_the_port_from_the_taskinfo_resources(agent, tmp_path):
    [port] = free_ports(1)
    data = document(tmp_path, service(
        f"exec {fake_sh()} --serve-health {{{{thermos.ports[http]}}}}"))
    agent.launch_executor(EXECUTOR, cwd=agent.sandbox)
    agent.wait_subscribed(timeout_secs=10)
    agent.launch(make_task_info("task-1", data, ports=[port]))
    agent.wait_for_state("task-1", "TASK_RUNNING", 10)
    import requests

    body = wait_for(lambda: _get(f"http://127.0.0.1:{port}/health"), 10)
    assert body == "ok"
    header = next(r for r in checkpoint_records(agent.sandbox) if r["kind"] == "header")
    assert header["ports"] == {"http": port}
    assert requests  # imported for the GET helper


def _get(url):
    import requests

    try:
        return requests.get(url, timeout=0.5).text
    except requests.RequestException:
        return None


def test_lifecycle_endpoints_are_called_in_order_before_sigterm(agent, tmp_path):
    log = tmp_path / "lifecycle.log"
    data = document(tmp_path, service(
        f"{SERVES_HEALTH} --ignore-sigterm --lifecycle-log {sh(log)}",
        "health_check_config=HealthCheckConfig(initial_interval_secs=1.0, interval_secs=0.05),",
        "lifecycle=LifecycleConfig(http=HttpLifecycleConfig(graceful_shutdown_wait_secs=0.2,"
        " shutdown_wait_secs=0.2)),"))
    launch(agent, data)
    agent.wait_for_state("task-1", "TASK_RUNNING", 10)
    started = time.monotonic()
    agent.kill("task-1", grace_secs=0.3)
    agent.wait_for_state("task-1", "TASK_KILLED", 10)
    took = time.monotonic() - started
    assert log.read_text().split() == ["quitquitquit", "abortabortabort"]
    # 0.2 + 0.2 lifecycle waits, then SIGTERM (ignored) and SIGKILL after 0.3 s: never sooner;
    # the upper bound only guards against a SIGKILL never sent (a loaded machine adds time).
    assert 0.6 < took < 0.7 + 10.0
    assert not live(task_pids(agent.sandbox))


@pytest.mark.parametrize("data, words", [
    (b"\xff\xfe not utf-8", "UTF-8"),
    (b"{not json", "JSON"),
    (b'{"instance": 0}', "job"),
    (b'{"job": {"name": 3}, "instance": 0}', "required"),
    # was "CoercionError: Cannot coerce '1e5' to Integer", naming no field
    (b'{"job": {"max_task_failures": "1e5"}}', "job.max_task_failures = '1e5' is not an integer"),
])
def test_bad_task_data_fails_the_task_with_a_message(agent, data, words):
    launch(agent, data)
    failed = agent.wait_for_state("task-1", "TASK_FAILED", 10)
    assert agent.states("task-1") == ["TASK_FAILED"]
    assert words.lower() in failed.message.lower() and failed.reason == "REASON_TASK_INVALID"
    assert agent.wait_exit(15) == 0


def test_a_task_of_20000_bad_processes_fails_with_a_message_of_20_problems(agent):
    """Each problem was listed: the TASK_FAILED of a 770 KB document carried 4.8 MB."""
    processes = [{"name": f"bad/{i}", "cmdline": "x"} for i in range(20_000)]
    data = json.dumps({"job": {"cluster": "c", "role": "r", "environment": "e", "name": "n", "task": {
        "name": "t", "processes": processes, "resources": {"cpu": 1, "ram": 1 << 20, "disk": 1 << 20}}}})
    launch(agent, data.encode())
    failed = agent.wait_for_state("task-1", "TASK_FAILED", 30)
    assert failed.reason == "REASON_TASK_INVALID" and "20000 problems: " in failed.message
    assert failed.message.endswith("; and 19980 more") and len(failed.message) < 8192
    assert agent.wait_exit(15) == 0


def test_unbound_template_fails_the_task_naming_it(agent, tmp_path):
    data = document(tmp_path, service("echo {{thermos.ports[http]}} {{nope.never}}"))
    launch(agent, data)
    failed = agent.wait_for_state("task-1", "TASK_FAILED", 10)
    assert "nope.never" in failed.message or "http" in failed.message


def test_second_launch_and_launch_group_are_refused(agent, tmp_path):
    launch(agent, document(tmp_path, HELLO))
    agent.wait_for_state("task-1", "TASK_RUNNING", 10)
    agent.launch(make_task_info("task-2", document(tmp_path, HELLO)))
    second = agent.wait_for_state("task-2", "TASK_FAILED", 10)
    assert "task-1" in second.message
    # task-3 twice and the running task-1: one TASK_FAILED for task-3 (was two), none for task-1
    agent.launch_group([make_task_info(tid, b"{}") for tid in ("task-3", "task-1", "task-3")])
    group = agent.wait_for_state("task-3", "TASK_FAILED", 10)
    assert "LAUNCH_GROUP" in group.message
    agent.kill("task-1", grace_secs=0.5)  # its updates come after the group's
    agent.wait_for_state("task-1", "TASK_KILLED", 10)
    assert agent.states("task-3") == ["TASK_FAILED"]
    assert agent.states("task-1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"]
    log = agent.executor_log()
    assert log.count("status_update task_id=task-3 state=TASK_FAILED") == 1, log
    assert "launch_group_rejected tasks=1 running=task-1" in log  # task-1's LAUNCH was not refused


def test_shutdown_kills_the_task_and_exits(agent, tmp_path):
    launch(agent, document(tmp_path, HELLO), shutdown_grace="3secs")
    agent.wait_for_state("task-1", "TASK_RUNNING", 10)
    pids = task_pids(agent.sandbox)
    agent.shutdown()
    agent.wait_for_state("task-1", "TASK_KILLED", 5)
    assert agent.wait_exit(5) == 0
    assert not agent.destroyed_after_grace
    assert not live(pids)
    # One line for the SHUTDOWN (the driver's mesos_shutdown_received said it again).
    assert [line.split(": ", 1)[1].split()[0] for line in agent.executor_log().splitlines()
            if "shutdown" in line.split(": ", 1)[1].split()[0]] == ["shutdown"]


def test_agent_restarts_five_times_with_acks_held_and_loses_nothing(agent, tmp_path):
    data = document(tmp_path, checked(SERVES_HEALTH, "initial_interval_secs=1.0, interval_secs=0.05"))
    agent.ack_mode = "hold"
    launch(agent, data, backoff_max="200ms", recovery_timeout="10secs")
    agent.wait_for_state("task-1", "TASK_RUNNING", 10)
    crashes = []
    for restart in range(5):
        crashes.append(time.monotonic())
        agent.crash()
        time.sleep(0.1)
        agent.restart(recovering_secs=0.1, reregistration_window_secs=1.0)
        agent.wait_subscribed(timeout_secs=5, count=restart + 2)
    body = agent.subscribes[-1]["subscribe"]
    carried = [u["status"]["state"] for u in body.get("unacknowledged_updates", [])]
    assert carried == ["TASK_STARTING", "TASK_RUNNING"]
    assert [t["task_id"]["value"] for t in body.get("unacknowledged_tasks", [])] == ["task-1"]
    assert not agent.reregistration_failed
    agent.ack_mode = "immediate"
    acked, seen = {c.json["update"]["status"]["uuid"] for c in agent.calls("UPDATE")}, len(agent.calls("UPDATE"))
    agent.release_acks()
    agent.close_stream(graceful=True)  # an EOF without a restart: the executor resubscribes
    agent.wait_subscribed(timeout_secs=5, count=7)
    agent.close_stream(graceful=True)
    after = agent.wait_subscribed(timeout_secs=5, count=8)
    assert after["subscribe"] == {}, "acknowledged updates were carried again"
    # Before its ACK an update may be POSTed again (docs/mesos.md §12: after a network error;
    # the agent deduplicates by uuid), but only across a crash: one can cut the 202 of an
    # update the agent stored, and the sender retries it (RUNNING's, 2 runs in 40 under load;
    # there the resubscription carried it first). After its ACK, never.
    posted: dict[str, list[float]] = {}
    for call in agent.calls("UPDATE"):
        if call.status == 202:
            posted.setdefault(call.json["update"]["status"]["uuid"], []).append(call.at)
    assert all(any(a < crash < b for crash in crashes) for times in posted.values()
               for a, b in zip(times, times[1:])), f"an update was POSTed twice with no crash between: {posted}"
    later = {c.json["update"]["status"]["uuid"] for c in agent.calls("UPDATE")[seen:]}
    assert not acked & later, "an acknowledged update was POSTed again"
    assert agent.states("task-1") == ["TASK_STARTING", "TASK_RUNNING"]
    agent.kill("task-1", grace_secs=0.5)
    agent.wait_for_state("task-1", "TASK_KILLED", 10)


def test_checkpoint_off_exits_at_the_first_disconnect(agent, tmp_path):
    launch(agent, document(tmp_path, HELLO), checkpoint=False)
    agent.wait_for_state("task-1", "TASK_RUNNING", 10)
    pids = task_pids(agent.sandbox)
    agent.crash()
    assert agent.wait_exit(10) == 4  # the agent is lost for good
    assert len(agent.subscribes) == 1
    assert not live(pids)
    # One WARNING for the disconnect, with its reason (the executor's own said it again).
    said = [line for line in agent.executor_log().splitlines() if "disconnected" in line]
    assert len(said) == 1 and " WARNING " in said[0] and "mesos_disconnected" in said[0], said
    assert "reason=" in said[0]
    # The kill says why: the agent was lost, not a SHUTDOWN it never sent.
    assert 'reason="executor shutting down (gave up on an agent it had been subscribed to)"' in agent.executor_log()


def test_agent_down_longer_than_the_recovery_timeout_kills_the_task_and_exits(agent, tmp_path):
    launch(agent, document(tmp_path, HELLO), recovery_timeout="1secs", backoff_max="200ms")
    agent.wait_for_state("task-1", "TASK_RUNNING", 10)
    pids = task_pids(agent.sandbox)
    started = time.monotonic()
    agent.crash()
    assert agent.wait_exit(15) == 4  # the agent is lost for good (not the 15-minute default)
    assert time.monotonic() - started >= 1.0  # never before the recovery timeout
    assert not live(pids)
    assert "executor_exit status=4" in agent.executor_log()


@pytest.mark.parametrize("checkpoint, gives_up_after_secs", [(False, 5.0), (True, 1.0)])
def test_an_agent_never_reached_is_exit_status_3(agent, checkpoint, gives_up_after_secs):
    agent.crash()  # nothing listens at MESOS_AGENT_ENDPOINT
    started = time.monotonic()
    agent.launch_executor(EXECUTOR, cwd=agent.sandbox, checkpoint=checkpoint,
                          recovery_timeout="1secs", backoff_max="200ms")
    assert agent.wait_exit(gives_up_after_secs + 10) == 3  # a guard: load adds start-up time
    assert gives_up_after_secs <= time.monotonic() - started  # never sooner
    log = agent.executor_log()
    assert "mesos_giving_up" in log and "executor_exit status=3" in log


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_is_treated_as_shutdown_and_exits_0(agent, tmp_path, signum):
    launch(agent, document(tmp_path, HELLO), shutdown_grace="3secs")
    agent.wait_for_state("task-1", "TASK_RUNNING", 10)
    pids = task_pids(agent.sandbox)
    agent._proc.send_signal(signum)
    killed = agent.wait_for_state("task-1", "TASK_KILLED", 5)
    assert agent.wait_exit(5) == 0
    assert killed.message == f"executor shutting down ({signal.Signals(signum).name}, treated as SHUTDOWN)"
    assert not live(pids)
    log = agent.executor_log()
    assert f"signal={signal.Signals(signum).name}" in log and "treated as SHUTDOWN" in log
    assert "executor_exit status=0" in log


def test_a_signal_taken_by_another_thread_is_still_treated_as_shutdown(agent, tmp_path):
    """A signal sent to the executor may land on any of its threads (here: not the main one,
    blocked until its task is done): it still acts at once."""
    launch(agent, document(tmp_path, HELLO), shutdown_grace="3secs")
    agent.wait_for_state("task-1", "TASK_RUNNING", 10)
    signal_a_worker_thread(agent._proc.pid, signal.SIGTERM)
    killed = agent.wait_for_state("task-1", "TASK_KILLED", 5)
    assert agent.wait_exit(5) == 0
    assert killed.message == "executor shutting down (SIGTERM, treated as SHUTDOWN)"
    assert "signal=SIGTERM" in agent.executor_log()


def test_missing_mesos_variables_is_a_clean_exit(tmp_path):

    env = {k: v for k, v in os.environ.items() if not k.startswith("MESOS_")}
    result = subprocess.run(EXECUTOR, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "MESOS_AGENT_ENDPOINT" in result.stderr and "Traceback" not in result.stderr


def test_a_malformed_agent_endpoint_is_a_clean_exit_2(tmp_path):

    env = {k: v for k, v in os.environ.items() if not k.startswith("MESOS_")}
    env.update(MESOS_AGENT_ENDPOINT="localhost", MESOS_FRAMEWORK_ID="fw", MESOS_EXECUTOR_ID="ex",
               MESOS_SANDBOX=str(tmp_path))
    result = subprocess.run(EXECUTOR, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "stoker: error: MESOS_AGENT_ENDPOINT: agent endpoint 'localhost' is not host:port" in result.stderr
    assert "Traceback" not in result.stderr


def test_json_log_format_gives_one_object_per_line(agent, tmp_path):
    agent.launch_executor(EXECUTOR, cwd=agent.sandbox, env_overrides={"STOKER_LOG_FORMAT": "json"})
    agent.wait_subscribed(timeout_secs=10)
    agent.launch(make_task_info("task-1", document(tmp_path, HELLO)))
    agent.wait_for_state("task-1", "TASK_RUNNING", 10)
    agent.kill("task-1", grace_secs=0.5)
    agent.wait_for_state("task-1", "TASK_KILLED", 10)
    agent.wait_exit(10)
    lines = [json.loads(line) for line in agent.executor_log().splitlines() if line.strip()]
    # Every line is an event with its fields as keys, the Mesos driver's too (its lines had
    # no event: `{"message": "mesos_subscribing executor=... url=..."}`).
    assert all(line.get("event") for line in lines), [line for line in lines if not line.get("event")]
    (subscribing,) = [line for line in lines if line["event"] == "mesos_subscribing"]
    assert (subscribing["executor_id"], subscribing["attempt"]) == (agent.executor_id, 1)
    # SUBSCRIBED is one line (the driver's mesos_subscribed said it again, at INFO).
    assert [line["agent"] for line in lines if "registered" in line["event"]] == [agent.agent_id]
    # Each status update: one line when sent (the executor's own, and with the task's label),
    # one when the agent acknowledged it.
    updates = [line for line in lines if line["event"] == "status_update"]
    assert [u["state"] for u in updates] == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"]
    assert all(u["task"] == "hello.0" and u["task_id"] == "task-1" for u in updates)
    acked = [line for line in lines if line["event"] == "status_update_acknowledged"]
    assert sorted(a["uuid"] for a in acked) == sorted(u["uuid"] for u in updates)
    assert "process_state" in [line["event"] for line in lines]
