"""Health checkers against a real loopback HTTP server, real sockets and real shell commands."""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import time

import pytest

from config.spec import CheckKind, HealthSpec
from healthcheck.checkers import (
    MAX_BODY_BYTES,
    QUOTE_CHARS,
    CommandResult,
    ShellChecker,
    TcpChecker,
    make_checker,
)
from healthcheck.http_check import HttpChecker
from healthcheck.policy import AttemptOutcome
from tests.support import pidnames
from tests.support.http_server import Drip, Hang, Huge, Redirect, Reply, Reset, ScriptedHTTPServer
from tests.support.ports import stalled_listener
from tests.support.shell_runner import subprocess_runner
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)

# Wall-clock bounds here only guard against a wait waited out (a hang lasts for ever, a drip
# 40 s, a shell sleep 30 s); the reasons say what happened. A loaded machine can delay any
# of these by a second or more, so no bound is tight.
GUARD_SECS = 10.0


@pytest.fixture
def closed_port() -> int:
    """A port that was bound on 127.0.0.1 and then closed: nothing listens there."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


@pytest.fixture
def runner(tmp_path):
    return subprocess_runner(tmp_path, {"PATH": os.environ.get("PATH", "/usr/bin:/bin")})


def timed(checker):
    started = time.monotonic()
    attempt = checker.check()
    return attempt, time.monotonic() - started


def url(srv: ScriptedHTTPServer, endpoint: str = "/health") -> str:
    return f"HTTP GET http://localhost:{srv.port}{endpoint}"


# ---- HTTP ----


def test_http_ok_passes_and_hits_the_endpoint(server):
    attempt = HttpChecker(server.port, endpoint="/healthz").check()
    assert attempt.outcome is AttemptOutcome.PASSED
    assert attempt.reason == f"{url(server, '/healthz')} answered HTTP 200"
    assert server.requests == [("GET", "/healthz")]


def test_http_endpoint_goes_on_the_request_line_percent_encoded_without_its_fragment(server):
    attempt = HttpChecker(server.port, endpoint="/h\u00e9alth/%7Ex/%2F?q=a%zz#top").check()
    assert attempt.outcome is AttemptOutcome.PASSED, attempt.reason
    assert server.requests == [("GET", "/h%C3%A9alth/~x/%2F?q=a%25zz")]


def test_http_body_is_stripped_and_compared_case_insensitively(server):
    server.script = [Reply(200, b" OK\n")]
    assert HttpChecker(server.port).check().ok
    server.script = [Reply(200, b"Healthy")]
    assert HttpChecker(server.port, expected_response="HEALTHY").check().ok


def test_http_body_is_compared_as_utf_8_text_not_as_bytes(server):
    """Unicode spaces are stripped and non-ASCII letters lower-cased, where Aurora's checker
    (Python 2) compared bytes, stripping ASCII whitespace and lower-casing ASCII letters only
    (docs/aurora.md §11)."""
    server.script = [Reply(200, "\u00a0\u00d6K\u2003\n".encode())]
    assert HttpChecker(server.port, expected_response="\u00f6k").check().ok


def test_http_wrong_body_fails_quoting_the_body(server):
    server.script = [Reply(200, b"nope")]
    attempt = HttpChecker(server.port).check()
    assert attempt.outcome is AttemptOutcome.FAILED
    assert attempt.reason == f'{url(server)} answered HTTP 200 with body "nope", expected "ok"'


def test_http_wrong_code_fails_when_a_code_is_expected(server):
    server.script = [Reply(503, b"ok")]
    attempt = HttpChecker(server.port, expected_response="", expected_response_code=200).check()
    assert not attempt.ok
    assert attempt.reason == f"{url(server)} answered HTTP 503, expected 200"
    server.script = [Reply(201, b"ok")]
    attempt = HttpChecker(server.port, expected_response_code=200).check()
    assert attempt.reason == f"{url(server)} answered HTTP 201, expected 200"


def test_http_non_2xx_counts_as_empty_body(server):
    server.script = [Reply(500, b"ok")]
    attempt = HttpChecker(server.port).check()
    assert not attempt.ok
    assert attempt.reason == (
        f'{url(server)} answered HTTP 500, which counts as an empty body, expected "ok"'
    )


def test_http_non_2xx_passes_with_empty_expected_response(server):
    # Aurora's rule: an empty expected_response and code 0 accept any HTTP answer.
    server.script = [Reply(404, b"")]
    assert HttpChecker(server.port, expected_response="").check().ok


def test_http_refused_connection_fails_fast(closed_port):
    attempt, took = timed(HttpChecker(closed_port, timeout_secs=GUARD_SECS))
    # where the host has no IPv6, ::1 says so instead of "nothing listens"
    assert attempt.reason.startswith(
        f"HTTP GET http://localhost:{closed_port}/health: connection refused "
        f"(nothing listens on 127.0.0.1:{closed_port}"), attempt.reason
    assert took < GUARD_SECS  # on the refusal, not at its timeout


def test_http_hanging_server_ends_within_the_timeout(server):
    server.script = [Hang()]
    attempt, took = timed(HttpChecker(server.port, timeout_secs=0.3))
    assert attempt.reason == f"{url(server)}: timed out after 0.3 s"
    assert 0.29 <= took < 0.3 + GUARD_SECS


def test_http_drip_server_cannot_stretch_the_check_past_the_timeout(server):
    # 2000 bytes at one byte every 20 ms would take 40 s; every recv returns in 20 ms, so
    # only an overall deadline ends the attempt in time.
    server.script = [Drip(b"o" * 2000, bytes_per_step=1, step_secs=0.02)]
    attempt, took = timed(HttpChecker(server.port, timeout_secs=0.3))
    assert attempt.reason == f"{url(server)}: timed out after 0.3 s"
    assert took < 0.3 + GUARD_SECS


def test_http_slow_but_complete_drip_passes(server):
    server.script = [Drip(b"ok", bytes_per_step=1, step_secs=0.02)]
    assert HttpChecker(server.port, timeout_secs=GUARD_SECS).check().ok


def test_http_huge_body_reads_at_most_64_kib_and_ends_quickly(server):
    server.script = [Huge(size_bytes=100 * 1024 * 1024)]
    attempt, took = timed(HttpChecker(server.port, timeout_secs=GUARD_SECS))
    assert not attempt.ok
    assert f"(only the first {MAX_BODY_BYTES} bytes read)" in attempt.reason
    assert took < GUARD_SECS  # it stopped reading: not at its timeout
    # The quoted body is capped at 1 KiB.
    quoted = attempt.reason.split('body "', 1)[1].split('"', 1)[0]
    assert quoted.startswith("x" * 1024) and len(quoted) < 1024 + 40


def test_http_redirect_is_not_followed(server):
    server.script = [Redirect("/x")]
    attempt = HttpChecker(server.port).check()
    assert not attempt.ok
    assert attempt.reason.startswith(
        f"{url(server)} answered HTTP 302 (redirect to /x, not followed)"
    )
    assert server.requests == [("GET", "/health")]


def test_http_reset_connection_fails(server):
    server.script = [Reset()]
    attempt = HttpChecker(server.port).check()
    assert not attempt.ok
    assert attempt.reason in (
        f"{url(server)}: connection reset by peer",
        f"{url(server)}: connection closed without an answer",
    )


def test_http_garbage_answer_is_a_protocol_error(raw_server):
    port = raw_server(b"NOT HTTP\r\n\r\n", b"", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok")
    prefix = f"HTTP GET http://localhost:{port}/health"
    assert HttpChecker(port).check().reason == (
        f"{prefix}: HTTP protocol error: BadStatusLine: NOT HTTP"
    )
    assert HttpChecker(port).check().reason == f"{prefix}: connection closed without an answer"
    assert HttpChecker(port).check().reason == (
        f"{prefix}: connection closed before the whole body was sent"
    )


def test_http_answer_cut_short_inside_its_headers_fails(raw_server):
    """http.client takes the end of the stream for the blank line that ends the headers: an
    answer cut off inside them (a server that died while writing them) was a whole one, with
    an empty body, and passed a check that expects any body (expected_response "")."""
    status = b"HTTP/1.1 200 OK\r\n"
    cut = status + b"Content-Type: text/pl"
    port = raw_server(cut, cut + b"ain\r\n", status, status + b"\r\n")
    said = (f"HTTP GET http://localhost:{port}/health: connection closed before the whole "
            "answer was sent (inside its headers)")
    for expected in ("", "ok", ""):
        assert HttpChecker(port, expected_response=expected).check().reason == said
    assert HttpChecker(port, expected_response="").check().outcome is AttemptOutcome.PASSED  # whole


# Found by the fuzz harness (tests/fuzz/fuzz_http_answer.py): http.client hands a chunk size
# below 0 on as a length to read, and its ValueError (OverflowError below any index) was
# reported as Stoker's own "internal health check error" (logged at ERROR, with a traceback).
BAD_CHUNK_SIZES = {"negative": b"-12", "below any index": b"-1" + b"0" * 40}


@pytest.mark.parametrize("label", list(BAD_CHUNK_SIZES))
def test_http_chunk_size_that_is_no_length_is_a_protocol_error(raw_server, label):
    port = raw_server(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      + BAD_CHUNK_SIZES[label] + b"\r\nok\r\n0\r\n\r\n")
    attempt = HttpChecker(port).check()
    assert attempt.outcome is AttemptOutcome.FAILED
    assert attempt.reason.startswith(f"HTTP GET http://localhost:{port}/health: HTTP protocol error: "
                                     "HTTPException: a malformed chunked body ("), attempt.reason


def test_http_redirect_location_is_quoted_on_one_line_and_capped(raw_server):
    # A 60 KB Location header with a folded line used to be copied whole into the reason:
    # every attempt's log line and checkpoint record, and the TASK_FAILED message.
    location = b"/" + b"a" * 60_000
    port = raw_server(b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\n folded\r\n"
                      b"Content-Length: 0\r\n\r\n")
    reason = HttpChecker(port).check().reason
    assert reason.startswith(f"HTTP GET http://localhost:{port}/health answered HTTP 302 "
                             "(redirect to /aaa"), reason
    assert len(reason) < 2 * QUOTE_CHARS, len(reason)
    assert "\r" not in reason and "\n" not in reason, reason


def test_http_script_sequence_is_followed(server):
    server.script = [Reply(503, b"no"), Reply(200, b"nope"), Reply(200, b"ok")]
    results = [HttpChecker(server.port).check().ok for _ in range(4)]
    assert results == [False, False, True, True]


# ---- TCP ----


def test_tcp_connect_passes_and_refused_fails(server, closed_port):
    assert TcpChecker(server.port).check().reason == (
        f"TCP connect to localhost:{server.port} succeeded"
    )
    attempt = TcpChecker(closed_port).check()
    assert not attempt.ok
    assert attempt.reason.startswith(
        f"TCP connect to localhost:{closed_port}: connection refused (nothing listens on "
        f"127.0.0.1:{closed_port}"), attempt.reason


def test_tcp_a_full_backlog_on_127_0_0_1_times_out_without_trying_ipv6():
    """A connect that times out on 127.0.0.1 ends the attempt (the task is there, and does
    not accept in time), within timeout_secs: ::1 is tried only after an error at once."""
    held = stalled_listener()
    port = held[0].getsockname()[1]
    try:
        with contextlib.suppress(OSError):  # no IPv6 here: the timeout says the same
            ipv6 = socket.socket(socket.AF_INET6)
            held.append(ipv6)
            ipv6.bind(("::1", port))
            ipv6.listen(8)  # would accept at once, if it were tried
        attempt, took = timed(TcpChecker(port, timeout_secs=0.2))
        assert attempt.reason == f"TCP connect to localhost:{port}: timed out after 0.2 s"
        assert took < GUARD_SECS
    finally:
        for sock in held:
            sock.close()


# ---- shell ----


def test_shell_exit_0_passes(runner):
    assert ShellChecker("exit 0", GUARD_SECS, runner).check().ok


def test_shell_nonzero_exit_fails_with_output(runner):
    attempt = ShellChecker("echo out; echo err >&2; exit 3", GUARD_SECS, runner).check()
    assert attempt.reason == "health command exited with status 3: out\\nerr"


def test_shell_output_in_reason_is_capped_at_1_kib(runner):
    attempt = ShellChecker("head -c 5000 /dev/zero | tr '\\0' a; echo END; exit 1", GUARD_SECS,
                           runner).check()
    tail = attempt.reason.split(": ", 1)[1]
    assert tail.endswith("aaaEND") and len(tail) <= 1024 + 3


def test_shell_runs_in_the_sandbox_with_the_given_environment(tmp_path):
    (tmp_path / "marker").write_text("here")
    run = subprocess_runner(tmp_path, {"PATH": "/usr/bin:/bin", "HEALTH_X": "42"})
    assert ShellChecker('test -f marker && test "$HEALTH_X" = 42', GUARD_SECS, run).check().ok
    assert not ShellChecker('test -n "$HOME"', GUARD_SECS, run).check().ok


def test_shell_killed_by_signal_says_so(runner):
    attempt = ShellChecker("kill -TERM $$", GUARD_SECS, runner).check()
    assert attempt.reason.startswith("health command was killed by SIGTERM")


def test_shell_timeout_kills_the_group_including_a_grandchild_holding_stdout(runner, tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    command = f"sleep 30 & echo $! > {pid_file}; sleep 30"
    grandchild = None
    try:
        attempt, took = timed(ShellChecker(command, 0.3, runner))
        assert attempt.reason == "health command timed out after 0.3 s (process group killed)"
        assert took < 0.3 + GUARD_SECS
        grandchild = pidnames.pid_in(pid_file)
        wait_for(lambda: _gone(grandchild), timeout_secs=GUARD_SECS, message="grandchild is dead")
    finally:
        if grandchild is not None:
            pidnames.kill(grandchild)


def test_shell_leftover_background_process_is_killed_after_exit(runner, tmp_path):
    pid_file = tmp_path / "bg.pid"
    attempt = ShellChecker(f"sleep 30 & echo $! > {pid_file}; exit 0", GUARD_SECS, runner).check()
    assert attempt.ok
    leftover = pidnames.pid_in(pid_file)
    try:
        wait_for(lambda: _gone(leftover), timeout_secs=GUARD_SECS, message="background sleep is dead")
    finally:
        pidnames.kill(leftover)


def test_shell_spawn_error_is_a_failed_attempt(tmp_path):
    run = subprocess_runner(tmp_path / "missing", {})
    attempt = ShellChecker("true", 1.0, run).check()
    assert attempt.reason.startswith("health command could not be started: cannot run /bin/bash")
    assert "No such file or directory" in attempt.reason


def test_shell_checker_uses_the_injected_runner():
    calls = []

    def fake_run(command: str, timeout_secs: float) -> CommandResult:
        calls.append((command, timeout_secs))
        return CommandResult(exit_code=None, signal=None, timed_out=True, output="partial\n")

    attempt = ShellChecker("probe", 2.5, fake_run).check()
    assert calls == [("probe", 2.5)]
    assert attempt.reason == (
        "health command timed out after 2.5 s (process group killed): partial"
    )


def test_checker_turns_an_unexpected_exception_into_a_failed_attempt():
    def broken(command: str, timeout_secs: float) -> CommandResult:
        raise RuntimeError("boom")

    attempt = ShellChecker("x", 1.0, broken).check()
    assert attempt.reason == "internal health check error: RuntimeError: boom"


# ---- make_checker ----


def test_make_checker_builds_each_kind(runner):
    assert make_checker(HealthSpec(kind=CheckKind.NONE), runner) is None
    http = make_checker(HealthSpec(kind=CheckKind.HTTP, port=31000, endpoint="/h"), runner)
    assert http.describe() == "HTTP GET http://localhost:31000/h"
    tcp = make_checker(HealthSpec(kind=CheckKind.TCP, port=31001), runner)
    assert tcp.describe() == "TCP connect to localhost:31001"
    shell = make_checker(HealthSpec(kind=CheckKind.SHELL, shell_command="exit 0"), runner)
    assert shell.describe() == "shell: exit 0"
    assert shell.check().ok
    with pytest.raises(ValueError):
        make_checker(HealthSpec(kind=CheckKind.HTTP, port=None), runner)


def _gone(pid: int) -> bool:
    return not pidnames.is_live(pid)


def test_a_check_that_cannot_start_a_thread_fails_with_one_line_saying_why(caplog):
    """Before: "internal health check error: RuntimeError: can't start new thread", logged
    at ERROR with a traceback on every attempt (the task's process limit reached)."""
    def no_thread(command: str, timeout_secs: float) -> CommandResult:
        raise RuntimeError("can't start new thread")

    with caplog.at_level(logging.INFO, logger="healthcheck"):
        attempt = ShellChecker("x", 1.0, no_thread).check()
    assert attempt.reason == ("internal health check error: no thread could be started for "
                              "the check (the task's process limit is reached)")
    assert [(r.levelname, r.exc_info) for r in caplog.records] == [("WARNING", None)]
