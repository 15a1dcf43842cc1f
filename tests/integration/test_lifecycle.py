"""The lifecycle adapter against a real HTTP server: which answers are waited for, how long,
and what it reports (each answer with its wait, then the summary). Table-driven."""
from __future__ import annotations

import queue
import time

import pytest

from config.spec import LifecycleSpec
from executor.task.lifecycle import LifecycleShutdown
from tests.support.http_server import Reply, ScriptedHTTPServer

WAIT = 0.4  # each configured wait


def run_lifecycle(replies, within_secs=None):
    """Run the endpoints against `replies`; (progress lines, summary, seconds taken, requests)."""
    with ScriptedHTTPServer(replies) as server:
        spec = LifecycleSpec(port=server.port, graceful_shutdown_wait_secs=WAIT, shutdown_wait_secs=WAIT)
        progress: list[str] = []
        done: queue.SimpleQueue[str] = queue.SimpleQueue()
        started = time.monotonic()
        LifecycleShutdown(spec, "t.0", done.put, within_secs=within_secs, progress=progress.append).start()
        summary = done.get(timeout=10)
        return progress, summary, time.monotonic() - started, server.requests


# Each row: the answers, the bound, the expected endings of the progress lines, the least and
# most time the endpoints may take.
CASES = {
    "200 answers: both waits are waited": (
        [Reply(200)], None,
        ["answered HTTP 200; waiting up to 0.4 s for the processes to exit (graceful_shutdown_wait_secs=0.4)",
         "answered HTTP 200; waiting up to 0.4 s for the processes to exit (shutdown_wait_secs=0.4)"],
        2 * WAIT, 2 * WAIT + 1.0),
    "501 Not Implemented: neither wait": (
        [Reply(501)], None,
        ["answered HTTP 501; not waiting: HTTP 501 says the service does not implement it"] * 2, 0.0, WAIT),
    "404 then 200: only the second wait": (
        [Reply(404), Reply(200)], None,
        ["answered HTTP 404; not waiting: HTTP 404 says the service does not implement it",
         "answered HTTP 200; waiting up to 0.4 s for the processes to exit (shutdown_wait_secs=0.4)"],
        WAIT, WAIT + 0.9),
    "a 500 is still waited for, as in Aurora": (
        [Reply(500), Reply(405)], None,
        ["answered HTTP 500; waiting up to 0.4 s for the processes to exit (graceful_shutdown_wait_secs=0.4)",
         "answered HTTP 405; not waiting: HTTP 405 says the service does not implement it"],
        WAIT, WAIT + 0.9),
}


@pytest.mark.parametrize("replies, within, endings, least, most", CASES.values(), ids=CASES.keys())
def test_which_answers_are_waited_for(replies, within, endings, least, most):
    progress, summary, took, requests = run_lifecycle(replies, within)
    assert [("POST", "/quitquitquit"), ("POST", "/abortabortabort")] == requests
    assert len(progress) == 2 and all(line.endswith(end) for line, end in zip(progress, endings)), progress
    assert progress[0].startswith("POST http://localhost:") and "/quitquitquit answered" in progress[0]
    assert summary == "lifecycle endpoints done; processes still running"
    assert least <= took <= most, took


def test_a_bound_cuts_the_waits_to_fit():
    progress, _, took, _ = run_lifecycle([Reply(200)], within_secs=0.5)  # 0.4 + 0.4 do not fit
    assert progress[1].endswith("(shutdown_wait_secs=0.4, cut to fit the stop's bound)")
    assert 0.5 <= took < 0.5 + 0.5, took


def test_an_endpoint_nobody_listens_on_is_not_waited_for():
    with ScriptedHTTPServer() as server:
        port = server.port  # closed again: nothing listens there now
    spec = LifecycleSpec(port=port, graceful_shutdown_wait_secs=WAIT, shutdown_wait_secs=WAIT)
    lines: list[str] = []
    done: queue.SimpleQueue[str] = queue.SimpleQueue()
    started = time.monotonic()
    LifecycleShutdown(spec, "t.0", done.put, progress=lines.append).start()
    assert done.get(timeout=10) == "lifecycle endpoints done; processes still running"
    assert time.monotonic() - started < WAIT
    assert all(line.endswith("not waiting: the endpoint could not be reached") for line in lines) and len(lines) == 2
