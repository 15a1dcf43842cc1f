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

import sys
import time
from pathlib import Path

import pytest

from config.document import encode
from config.loader import load_job
from healthcheck.http_check import HttpChecker
from healthcheck.policy import HealthPolicy, HealthState
from tests.support.agent_sim import AgentSimulator, make_task_info
from tests.support.http_server import Hang, Partial, ScriptedHTTPServer
from tests.support.ports import free_ports
from tests.support.stoker_proc import REPO, kill_leftovers, task_pids

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]

TIMEOUT_SECS = 0.3
FAKE = REPO / "tests/support/fake_task.py"
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
    serve = (f"exec {sys.executable} {FAKE} --serve-health {{{{thermos.ports[health]}}}} "
             f"--exit-on-quit --lifecycle-log {log}")
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
    # The task exits on the graceful POST: no POST timeout (1 s) and no wait is spent.
    assert stop_secs < 1.0, f"stop took {stop_secs:.2f} s"
