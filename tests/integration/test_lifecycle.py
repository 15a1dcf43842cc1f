"""The lifecycle adapter against a real HTTP server: which answers are waited for, how long,
and what it reports (each answer with its wait, then the summary). Table-driven.

A wait that is waited is short (WAIT); one that must not be is LONG, so that "not waited"
reads as "well under LONG" whatever the machine's load (no tight upper bound on time)."""
from __future__ import annotations

import logging
import queue
import socket
import threading
import time

import pytest

from config.spec import LifecycleSpec
from executor.task import lifecycle
from executor.task.lifecycle import LifecycleShutdown, post_endpoint
from tests.support.http_server import Reply, ScriptedHTTPServer
from tests.support.waiting import wait_for

WAIT = 0.4  # a configured wait that is waited out
LONG = 30.0  # a configured wait that must not be (the test would time out first)


def run_lifecycle(replies, graceful=WAIT, shutdown=WAIT, within_secs=None):
    """Run the endpoints against `replies`; (progress lines, summary, seconds taken, requests)."""
    with ScriptedHTTPServer(replies) as server:
        spec = LifecycleSpec(port=server.port, graceful_shutdown_wait_secs=graceful,
                             shutdown_wait_secs=shutdown)
        progress: list[str] = []
        done: queue.SimpleQueue[str] = queue.SimpleQueue()
        started = time.monotonic()
        LifecycleShutdown(spec, "t.0", done.put, within_secs=within_secs, progress=progress.append).start()
        summary = done.get(timeout=LONG)
        return progress, summary, time.monotonic() - started, server.requests


# Each row: the answers, the two configured waits, the expected endings of the progress
# lines, and the least time the endpoints take (the waits waited out); they take less than
# LONG (no LONG wait waited out).
CASES = {
    "200 answers: both waits are waited": (
        [Reply(200)], WAIT, WAIT,
        ["answered HTTP 200; waiting up to 0.4 s for the processes to exit (graceful_shutdown_wait_secs=0.4)",
         "answered HTTP 200; waiting up to 0.4 s for the processes to exit (shutdown_wait_secs=0.4)"],
        2 * WAIT),
    "501 Not Implemented: neither wait": (
        [Reply(501)], LONG, LONG,
        ["answered HTTP 501; not waiting: HTTP 501 says the service does not implement it"] * 2, 0.0),
    "404 then 200: only the second wait": (
        [Reply(404), Reply(200)], LONG, WAIT,
        ["answered HTTP 404; not waiting: HTTP 404 says the service does not implement it",
         "answered HTTP 200; waiting up to 0.4 s for the processes to exit (shutdown_wait_secs=0.4)"],
        WAIT),
    "a 500 is still waited for, as in Aurora": (
        [Reply(500), Reply(405)], WAIT, LONG,
        ["answered HTTP 500; waiting up to 0.4 s for the processes to exit (graceful_shutdown_wait_secs=0.4)",
         "answered HTTP 405; not waiting: HTTP 405 says the service does not implement it"],
        WAIT),
}


@pytest.mark.timeout(2 * LONG)
@pytest.mark.parametrize("replies, graceful, shutdown, endings, least", CASES.values(), ids=CASES.keys())
def test_which_answers_are_waited_for(replies, graceful, shutdown, endings, least, caplog):
    with caplog.at_level(logging.INFO):
        progress, summary, took, requests = run_lifecycle(replies, graceful, shutdown)
    # Each answer is one line, the task's `kill_stage` (from `progress`): not a second one here.
    assert not [r.getMessage() for r in caplog.records if r.name == "executor.task.lifecycle"]
    assert [("POST", "/quitquitquit"), ("POST", "/abortabortabort")] == requests
    assert len(progress) == 2 and all(line.endswith(end) for line, end in zip(progress, endings)), progress
    assert progress[0].startswith("POST http://localhost:") and "/quitquitquit answered" in progress[0]
    assert summary == "lifecycle endpoints done; processes still running"
    assert least <= took < LONG, took


@pytest.mark.timeout(2 * LONG)
def test_a_bound_cuts_the_waits_to_fit():
    # 0.4 fits in the bound of 0.5; the second wait (30 s) is cut to what is left.
    progress, _, took, _ = run_lifecycle([Reply(200)], WAIT, LONG, within_secs=0.5)
    assert progress[1].endswith("(shutdown_wait_secs=30, cut to fit the stop's bound)"), progress
    assert 0.5 <= took < LONG, took


@pytest.mark.timeout(2 * LONG)
def test_an_endpoint_nobody_listens_on_is_not_waited_for():
    with ScriptedHTTPServer() as server:
        port = server.port  # closed again: nothing listens there now
    spec = LifecycleSpec(port=port, graceful_shutdown_wait_secs=LONG, shutdown_wait_secs=LONG)
    lines: list[str] = []
    done: queue.SimpleQueue[str] = queue.SimpleQueue()
    started = time.monotonic()
    LifecycleShutdown(spec, "t.0", done.put, progress=lines.append).start()
    assert done.get(timeout=LONG) == "lifecycle endpoints done; processes still running"
    assert time.monotonic() - started < LONG
    assert all(line.endswith("not waiting: the endpoint could not be reached") for line in lines) and len(lines) == 2


def _started(server, done, graceful=LONG, shutdown=LONG, progress=None) -> LifecycleShutdown:
    spec = LifecycleSpec(port=server.port, graceful_shutdown_wait_secs=graceful, shutdown_wait_secs=shutdown)
    return LifecycleShutdown(spec, "t.0", done.put, progress=progress or (lambda text: None)).start()


def _wait_for_requests(server, count: int) -> None:
    deadline = time.monotonic() + LONG
    while len(server.requests) < count and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.mark.timeout(2 * LONG)
@pytest.mark.parametrize("tell, summary", [
    (LifecycleShutdown.regular_processes_gone, "processes exited after /quitquitquit"),
    (LifecycleShutdown.cancel, "lifecycle cancelled after /quitquitquit"),
])
def test_a_wait_ends_early_when_told_and_the_summary_says_why(tell, summary):
    """The owner's message ends the graceful wait (30 s) at once; the shutdown endpoint is
    not called, and the first reason given is the one the summary keeps."""
    with ScriptedHTTPServer([Reply(200)]) as server:
        done: queue.SimpleQueue[str] = queue.SimpleQueue()
        shutdown = _started(server, done)
        _wait_for_requests(server, 1)
        started = time.monotonic()
        tell(shutdown)
        shutdown.cancel()  # a second message: the first one's reason stays
        assert done.get(timeout=LONG) == summary
        assert time.monotonic() - started < LONG
        assert server.requests == [("POST", "/quitquitquit")]


@pytest.mark.timeout(2 * LONG)
def test_told_before_its_thread_looked_it_calls_no_endpoint():
    with ScriptedHTTPServer([Reply(200)]) as server:
        spec = LifecycleSpec(port=server.port, graceful_shutdown_wait_secs=LONG, shutdown_wait_secs=LONG)
        done: queue.SimpleQueue[str] = queue.SimpleQueue()
        shutdown = LifecycleShutdown(spec, "t.0", done.put)
        shutdown.regular_processes_gone()
        shutdown.start()
        assert done.get(timeout=LONG) == "processes exited during the lifecycle"
        assert server.requests == []


@pytest.mark.timeout(2 * LONG)
def test_its_thread_is_named_for_the_task_and_never_holds_the_process_open():
    with ScriptedHTTPServer([Reply(200)]) as server:
        done: queue.SimpleQueue[str] = queue.SimpleQueue()
        shutdown = _started(server, done)
        _wait_for_requests(server, 1)
        threads = [t for t in threading.enumerate() if t.name == "lifecycle-t.0"]
        shutdown.cancel()
        done.get(timeout=LONG)
    assert len(threads) == 1 and threads[0].daemon


def test_a_thread_that_cannot_start_says_so_and_the_kill_goes_on(monkeypatch, caplog):
    def refused(thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(lifecycle, "start_thread", refused)
    spec = LifecycleSpec(port=1, graceful_shutdown_wait_secs=LONG, shutdown_wait_secs=LONG)
    said: list[str] = []
    with caplog.at_level(logging.ERROR, logger="executor.task.lifecycle"):
        LifecycleShutdown(spec, "t.0", said.append).start()
    why = "lifecycle endpoints not called: their thread could not start (can't start new thread)"
    assert said == [why]
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.ERROR, f'lifecycle_failed task=t.0 reason="{why}"')]


@pytest.mark.timeout(2 * LONG)
def test_callbacks_that_raise_are_logged_and_the_lifecycle_goes_on(caplog):
    """A `progress` that raises does not stop the endpoints, nor a `done` that raises the
    thread's end: each is one ERROR line naming the callback, with its traceback."""
    def progress(text: str) -> None:
        raise ValueError("no room for a line")

    finished: list[str] = []

    def done(summary: str) -> None:
        finished.append(summary)
        raise KeyError("owner gone")

    with caplog.at_level(logging.ERROR, logger="executor.task.lifecycle"), \
            ScriptedHTTPServer([Reply(501)]) as server:
        spec = LifecycleSpec(port=server.port, graceful_shutdown_wait_secs=LONG, shutdown_wait_secs=LONG)
        LifecycleShutdown(spec, "t.0", done, progress=progress).start()
        wait_for(lambda: len(caplog.records) == 3, LONG)
    assert finished == ["lifecycle endpoints done; processes still running"]
    assert [(r.getMessage(), r.exc_info is not None) for r in caplog.records] == [
        ('lifecycle_callback_failed task=t.0 callback=progress error="ValueError: no room for a line"', True),
        ('lifecycle_callback_failed task=t.0 callback=progress error="ValueError: no room for a line"', True),
        ("lifecycle_callback_failed task=t.0 callback=done error=\"KeyError: 'owner gone'\"", True),
    ]


def test_the_post_is_an_empty_body_to_localhost_closing_and_unencoded(raw_server):
    port = raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert post_endpoint(port, "/quitquitquit") == (200, f"POST http://localhost:{port}/quitquitquit answered HTTP 200")
    assert raw_server.requests == [
        f"POST /quitquitquit HTTP/1.1\r\nHost: localhost:{port}\r\nContent-Length: 0\r\nConnection: close\r\n"
        "Accept-Encoding: identity\r\n\r\n".encode()]


@pytest.mark.parametrize("answer, said", [
    (b"", "failed: connection refused or reset (RemoteDisconnected)"),
    (b"garbage\r\nmore: lines\r\n\r\n", "failed: BadStatusLine: garbage"),  # one line, whatever it answered
])
def test_an_answer_that_is_no_http_is_said_on_one_line(raw_server, answer, said):
    port = raw_server(answer)
    assert post_endpoint(port, "/quitquitquit") == (None, f"POST http://localhost:{port}/quitquitquit {said}")


def test_a_task_that_never_answers_is_given_a_second():
    listener = socket.socket()  # connections complete in its backlog; nothing ever answers
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        started = time.monotonic()
        assert post_endpoint(port, "/quitquitquit") == (None, f"POST http://localhost:{port}/quitquitquit "
                                                              "timed out after 1.0 s")
        assert 1.0 <= time.monotonic() - started < LONG
    finally:
        listener.close()


@pytest.mark.timeout(2 * LONG)
def test_each_answer_is_one_debug_line_with_its_wait(caplog):
    with caplog.at_level(logging.DEBUG, logger="executor.task.lifecycle"):
        run_lifecycle([Reply(200), Reply(501)], WAIT, LONG)
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(lines) == 2
    assert lines[0].startswith("lifecycle task=t.0 endpoint=/quitquitquit answer=200 wait_secs=0.4 detail=\"POST ")
    assert lines[1].startswith("lifecycle task=t.0 endpoint=/abortabortabort answer=501 wait_secs=0.0 detail=\"POST ")
