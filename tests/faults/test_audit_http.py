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

import pytest

from healthcheck.http_check import HttpChecker
from healthcheck.policy import HealthPolicy, HealthState
from tests.support.http_server import Partial, ScriptedHTTPServer

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]

TIMEOUT_SECS = 0.3


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
