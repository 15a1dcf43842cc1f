"""The HTTP health check's request and its verdict on each kind of answer, byte for byte:
a raw loopback listener (`raw_server`) sends answers no well-behaved server would and keeps
the exact bytes of each request. Aurora's rules (docs/contract.md §5): only a 2xx answer's
body counts, a redirect is not followed, the body is compared stripped and case-blind as
UTF-8 text, and at most MAX_BODY_BYTES of it is read."""
from __future__ import annotations

import http.client

import pytest

from healthcheck.base import MAX_BODY_BYTES
from healthcheck.http_check import HttpChecker, _describe_http_error, request_path
from healthcheck.policy import AttemptOutcome

pytestmark = pytest.mark.timeout(60)


def answer(status: int, body: bytes = b"", *headers: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in (f"HTTP/1.1 {status} X", *headers, f"Content-Length: {len(body)}"))
    return head.encode() + b"\r\n" + body


def test_the_request_asks_for_the_endpoint_by_name_with_no_encoding_and_closes(raw_server):
    """One GET with three headers: Host names localhost and the port (the name is never
    resolved, yet a virtual host sees `localhost`); the body as is (`identity`: no gzip
    to undo); `Connection: close`, so the answer's end is the connection's."""
    port = raw_server(answer(200, b"ok"))
    assert HttpChecker(port, endpoint="/a b").check().ok
    assert raw_server.requests == [
        f"GET /a%20b HTTP/1.1\r\nHost: localhost:{port}\r\nAccept-Encoding: identity\r\n"
        "Connection: close\r\n\r\n".encode()]


# (status, body, expected_response, passed, the reason after "HTTP GET http://localhost:PORT/health")
ANSWERS = [
    (199, b"ok", "ok", False, ' answered HTTP 199, which counts as an empty body, expected "ok"'),
    (200, b"ok", "ok", True, " answered HTTP 200"),
    (299, b"ok", "ok", True, " answered HTTP 299"),
    (300, b"ok", "ok", False, ' answered HTTP 300 (redirect to nowhere, not followed), which counts as an empty '
                              'body, expected "ok"'),
    (300, b"ok", "", True, " answered HTTP 300 (redirect to nowhere, not followed)"),
    (399, b"ok", "", True, " answered HTTP 399 (redirect to nowhere, not followed)"),
    (400, b"ok", "", True, " answered HTTP 400"),
    (400, b"ok", "ok", False, ' answered HTTP 400, which counts as an empty body, expected "ok"'),
    # a non-2xx answer's body is not read, so not even its own text matches:
    (500, b"XXXX", "XXXX", False, ' answered HTTP 500, which counts as an empty body, expected "XXXX"'),
]


@pytest.mark.parametrize(("status", "body", "expected", "passed", "reason"), ANSWERS,
                         ids=[f"{a[0]}-{a[2] or 'any'}" for a in ANSWERS])
def test_only_a_2xx_answer_s_body_counts_and_a_3xx_is_a_redirect(raw_server, status, body, expected, passed, reason):
    port = raw_server(answer(status, body))
    attempt = HttpChecker(port, expected_response=expected).check()
    assert (attempt.ok, attempt.reason) == (passed, f"HTTP GET http://localhost:{port}/health" + reason)


def test_a_redirect_names_its_location_and_only_an_empty_one_is_nowhere(raw_server):
    port = raw_server(answer(301, b"", "location: /there"), answer(399, b"", "Location:  "))
    reasons = [HttpChecker(port, expected_response="").check().reason for _ in range(2)]
    assert reasons == [f"HTTP GET http://localhost:{port}/health answered HTTP 301 (redirect to /there, not followed)",
                       f"HTTP GET http://localhost:{port}/health answered HTTP 399 (redirect to nowhere, not followed)"]


def test_a_body_that_is_not_utf_8_is_compared_with_its_bad_bytes_replaced(raw_server):
    port = raw_server(answer(200, b"\xffok"), answer(200, b"ok\xc3"))
    first, second = (HttpChecker(port).check() for _ in range(2))
    assert first.reason == f'HTTP GET http://localhost:{port}/health answered HTTP 200 with body "\ufffdok", expected "ok"'
    assert second.outcome is AttemptOutcome.FAILED and second.reason.endswith('body "ok\ufffd", expected "ok"')


def test_the_body_is_read_whole_up_to_the_cap_and_no_further(raw_server):
    """A body of exactly MAX_BODY_BYTES is read whole (its last bytes count); one longer is
    judged on its first MAX_BODY_BYTES, in reads of 16 KiB joined as they came."""
    pad = b" " * (MAX_BODY_BYTES - 2)
    port = raw_server(answer(200, pad + b"ok"), answer(200, pad + b"ok" + b"not read"),
                      answer(200, b"ok" + pad + b"  x"), answer(200, b"ok" + b" " * 20_000))
    attempts = [HttpChecker(port).check() for _ in range(4)]
    assert [a.ok for a in attempts] == [True, True, True, True], [a.reason for a in attempts]


def test_a_body_cut_short_of_its_length_is_said_so(raw_server):
    port = raw_server(answer(200, b"ok")[:-1])
    assert HttpChecker(port).check().reason == (
        f"HTTP GET http://localhost:{port}/health: connection closed before the whole body was sent")


def test_the_request_path_keeps_what_comes_before_the_first_hash_and_mends_bad_escapes():
    assert request_path("/a#b#c") == "/a"
    assert request_path("/%7e%7E%41%2f%2F") == "/~~A%2f%2F"  # unreserved decoded, either case
    assert request_path("/%XX/%4/%") == "/%25XX/%254/%25"


# What an error raised in the exchange is called in the attempt's reason.
ERRORS = [
    (ConnectionRefusedError(111, "Connection refused"), "connection refused"),
    (http.client.RemoteDisconnected("gone"), "connection closed without an answer"),
    (ConnectionResetError(104, "Connection reset by peer"), "connection reset by peer"),
    (TimeoutError("timed out"), "timed out"),
    (http.client.IncompleteRead(b"o", 1), "connection closed before the whole body was sent"),
    (OSError(5, "Input/output error"), "connection error: OSError: [Errno 5] Input/output error"),
    (http.client.BadStatusLine("NOPE"), "HTTP protocol error: BadStatusLine: NOPE"),
]


@pytest.mark.parametrize(("error", "said"), ERRORS, ids=[type(e).__name__ for e, _ in ERRORS])
def test_each_error_is_named_in_words(error, said):
    assert _describe_http_error(error) == said


def test_an_error_found_among_the_causes_is_named_even_past_one_seen_twice():
    """The causes are walked depth first, and one met a second time (an argument that is
    also the cause) is skipped, not the end of the walk."""
    seen_twice = ValueError("twice")
    outer = http.client.HTTPException(ConnectionRefusedError(111, "Connection refused"), seen_twice)
    outer.__cause__ = seen_twice
    assert _describe_http_error(outer) == "connection refused"
    wrapped = http.client.HTTPException("wrapped")
    wrapped.__context__ = TimeoutError("timed out")
    assert _describe_http_error(wrapped) == "timed out"
