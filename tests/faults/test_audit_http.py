"""Issue 16, the HTTP findings of the adversarial audit: Stoker's own HTTP calls to the task.

- #5: a health endpoint that answers part of a response and then hangs (never closing) must
  fail with the timeout reason. The attempt's deadline shuts the socket down, which reads
  as an EOF, and the truncated answer used to be judged as complete: `HTTP/1.1 200 OK`,
  a blank line and `ok` passed, and so did a bare status line with `expected_response=''`.
- #7: the lifecycle POSTs (graceful shutdown, shutdown) go straight to the task on
  localhost whatever `http_proxy` says; they used to go to the proxy.
- #14: every endpoint (the HTTP check's, the graceful shutdown's, the shutdown's) is an
  absolute path; `@host:port/path` would have sent the request to another host, so the job
  is rejected at load with the field named.

Real servers on 127.0.0.1 (the scripted one, `fake_task.py`), the real executor under the
agent simulator.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from config.bind import bind
from config.document import encode
from config.errors import ConfigError
from config.loader import load_job
from healthcheck.http_check import HttpChecker
from healthcheck.policy import HealthPolicy, HealthState
from tests.support.agent_sim import AgentSimulator, make_task_info
from tests.support.http_server import Hang, Partial, Reply, ScriptedHTTPServer
from tests.support.ports import free_ports
from tests.support.shellwords import fake_sh, sh
from tests.support.stoker_proc import StokerProcess, kill_leftovers, task_pids

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]

TIMEOUT_SECS = 0.3
EXECUTOR = [sys.executable, "-m", "executor", "executor"]


# ---- #5: a hung answer is a timeout, whatever was read ----

HUNG_ANSWERS = {
    "status line, blank line and body, then a hang": (b"HTTP/1.1 200 OK\r\n\r\nok", "ok"),
    "status line only, then a hang (any body accepted)": (b"HTTP/1.1 200 OK\r\n", ""),
    "headers with a length, half the body, then a hang": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nok", "ok"),
    "chunked body, no last chunk": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n", "ok"),
}


@pytest.mark.parametrize("label", list(HUNG_ANSWERS))
def test_a_hung_health_answer_fails_with_the_timeout_reason(figures, label):
    data, expected = HUNG_ANSWERS[label]
    with ScriptedHTTPServer([Partial(data)]) as server:
        checker = HttpChecker(port=server.port, expected_response=expected,
                              timeout_secs=TIMEOUT_SECS)
        policy = HealthPolicy(0.0, 1.0, 0, 1)  # no grace: the first attempt decides
        attempts = [checker.check() for _ in range(3)]
        verdicts = [policy.record(a) for a in attempts]
    figures.add(label, attempts[0].reason)
    for attempt in attempts:
        assert not attempt.ok, f"a hung answer passed: {attempt.reason}"
        assert attempt.reason.endswith(f"timed out after {TIMEOUT_SECS} s"), attempt.reason
    assert all(v.state is not HealthState.RUNNING for v in verdicts), verdicts
    assert verdicts[-1].state is HealthState.FAILED


# ---- #7: the lifecycle POSTs ignore proxy settings ----

PROXY_VARS = ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY")


def _lifecycle_job(tmp_path: Path, log: Path) -> bytes:
    serve = (f"exec {fake_sh()} --serve-health {{{{thermos.ports[health]}}}} "
             f"--exit-on-quit --lifecycle-log {sh(log)}")
    path = tmp_path / "lifecycle.aurora"
    path.write_text(
        f"web = Process(name='web', cmdline={serve!r})\n"
        "jobs = [Service(cluster='local', role='me', environment='test', name='web',\n"
        "                task=Task(processes=[web], finalization_wait=1,\n"
        "                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)),\n"
        "                health_check_config=HealthCheckConfig(initial_interval_secs=2.0,\n"
        "                                                      interval_secs=0.05),\n"
        "                lifecycle=LifecycleConfig(http=HttpLifecycleConfig(\n"
        "                    graceful_shutdown_wait_secs=5, shutdown_wait_secs=5)))]\n")
    return encode(load_job(path))


def test_lifecycle_posts_go_to_the_task_not_to_the_proxy(tmp_path, figures):
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    log = tmp_path / "lifecycle.log"
    with ScriptedHTTPServer([Hang()]) as proxy, AgentSimulator(sandbox=sandbox) as sim:
        env: dict[str, str | None] = {name: proxy.url for name in PROXY_VARS}
        env.update({"no_proxy": None, "NO_PROXY": None})
        try:
            sim.launch_executor(EXECUTOR, cwd=sandbox, env_overrides=env)
            sim.wait_subscribed(timeout_secs=15)
            sim.launch(make_task_info("task-1", _lifecycle_job(tmp_path, log), ports=free_ports(1)))
            assert sim.wait_for_state("task-1", "TASK_RUNNING", 20).healthy is True
            started = time.monotonic()
            sim.kill("task-1", grace_secs=5.0)
            killed = sim.wait_for_state("task-1", "TASK_KILLED", 20)
            stop_secs = killed.at - started
            assert sim.wait_exit(15) == 0
        finally:
            kill_leftovers(task_pids(sandbox))
        figures.add("stop time with http_proxy set", f"{stop_secs * 1000:.0f} ms "
                    f"(requests to the proxy: {len(proxy.requests)})")
        assert proxy.requests == [], f"Stoker talked to the proxy: {proxy.requests}"
    assert log.read_text().split() == ["quitquitquit"]
    # The task exits on the graceful POST (the log holds no abortabortabort, the proxy saw no
    # request): no graceful_shutdown_wait_secs (5 s) is waited out. A guard; the figure above
    # is the stop's measured time.
    assert stop_secs < 5.0, f"stop took {stop_secs:.2f} s"


# ---- #14: every endpoint is an absolute path on the task's own port ----

ENDPOINT_FIELDS = {
    "job.health_check_config.health_checker.http.endpoint":
        "health_check_config=HealthCheckConfig(health_checker=HealthCheckerConfig("
        "http=HttpHealthChecker(endpoint={value!r}))),",
    "job.lifecycle.http.graceful_shutdown_endpoint":
        "lifecycle=LifecycleConfig(http=HttpLifecycleConfig(graceful_shutdown_endpoint={value!r})),",
    "job.lifecycle.http.shutdown_endpoint":
        "lifecycle=LifecycleConfig(http=HttpLifecycleConfig(shutdown_endpoint={value!r})),",
}
BAD_ENDPOINTS = ["@127.0.0.1:9/stolen", "//127.0.0.1:9/stolen", "health", "",
                 "/ok\r\nHost: elsewhere", "/with space"]


def _endpoint_job(tmp_path: Path, field: str, value: str, cmdline: str = "exec sleep 1000") -> Path:
    path = tmp_path / "endpoint.aurora"
    path.write_text(
        f"web = Process(name='web', cmdline={cmdline + ' # {{thermos.ports[health]}}'!r})\n"
        "jobs = [Service(cluster='local', role='me', environment='test', name='web',\n"
        "                task=Task(processes=[web], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)),\n"
        f"                {ENDPOINT_FIELDS[field].format(value=value)})]\n")
    return path


@pytest.mark.parametrize("field", list(ENDPOINT_FIELDS))
@pytest.mark.parametrize("value", BAD_ENDPOINTS)
def test_an_endpoint_that_is_not_an_absolute_path_is_rejected_at_load(tmp_path, field, value):
    with pytest.raises(ConfigError) as caught:
        load_job(_endpoint_job(tmp_path, field, value))
    message = str(caught.value)
    assert f"{field} = {value!r}" in message, message
    assert "absolute path" in message, message


def test_a_health_endpoint_naming_another_host_never_reaches_it(tmp_path, figures):
    field = "job.health_check_config.health_checker.http.endpoint"
    with ScriptedHTTPServer([Reply(200, b"ok")]) as decoy:
        config = _endpoint_job(tmp_path, field, f"@127.0.0.1:{decoy.port}/stolen")
        stoker = StokerProcess(["run", str(config), "--sandbox", str(tmp_path / "sandbox")], tmp_path)
        try:
            status = stoker.wait(timeout_secs=15)
        except subprocess.TimeoutExpired:
            status = None
        finally:
            stoker.close()
            kill_leftovers(task_pids(tmp_path / "sandbox"))
        figures.add("stoker run with endpoint='@127.0.0.1:PORT/stolen'",
                    f"exit {status}, requests the other server got: {len(decoy.requests)}")
        assert decoy.requests == [], f"the health check went to another server: {decoy.requests}"
    assert status == 2, f"stoker run did not refuse the job (exit {status}): {stoker.stderr()[-2000:]}"
    assert field in stoker.stderr(), stoker.stderr()


def test_a_task_document_with_a_lifecycle_endpoint_naming_another_host_fails_the_task(tmp_path):
    # Documents are validated like .aurora files; this one is written by hand, past `load_job`.
    field = "job.lifecycle.http.graceful_shutdown_endpoint"
    doc = json.loads(_lifecycle_job(tmp_path, tmp_path / "lifecycle.log"))
    doc["job"]["lifecycle"]["http"]["graceful_shutdown_endpoint"] = "@127.0.0.1:9/stolen"
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    with AgentSimulator(sandbox=sandbox) as sim:
        sim.launch_executor(EXECUTOR, cwd=sandbox)
        sim.wait_subscribed(timeout_secs=15)
        sim.launch(make_task_info("task-1", json.dumps(doc).encode(), ports=free_ports(1)))
        failed = sim.wait_for_state("task-1", "TASK_FAILED", 20)
        assert sim.wait_exit(15) == 0
    assert sim.states("task-1") == ["TASK_FAILED"]
    assert failed.reason == "REASON_TASK_INVALID"
    assert f"{field} = '@127.0.0.1:9/stolen'" in failed.message, failed.message
    assert not task_pids(sandbox)


def test_an_endpoint_made_by_a_template_is_checked_once_bound(tmp_path):
    field = "job.lifecycle.http.shutdown_endpoint"
    job = load_job(_endpoint_job(tmp_path, field, "{{thermos.task_id}}"))  # not known at load
    with pytest.raises(ConfigError) as caught:
        bind(job, instance=0, ports={"health": 31000}, task_id="@127.0.0.1:9/stolen",
             hostname="localhost", user="me")
    assert f"{field} = '@127.0.0.1:9/stolen' must be an absolute path" in str(caught.value)
    spec = bind(job, instance=0, ports={"health": 31000}, task_id="/fine", hostname="localhost",
                user="me")
    assert spec.lifecycle is not None and spec.lifecycle.shutdown_endpoint == "/fine"
