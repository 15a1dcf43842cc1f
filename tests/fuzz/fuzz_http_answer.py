"""The HTTP health check's reading of an answer (healthcheck/http_check.py): the status
line, the headers, a body by Content-Length, chunked or to the end, as `http.client` reads
them from the check's socket, then `HttpChecker.answer` (at most 64 KiB of body, judged as
Aurora does) and, for an answer that breaks HTTP, the reason `check` gives.

No socket: the bytes are what the endpoint sent, read from memory. Contract: an Attempt,
or an HTTPException or OSError that `_describe_http_error` turns into a one-line reason;
never another exception (`check` would report it as an internal error).
"""
from __future__ import annotations

import io

from tests.fuzz.harness import Finding, main

INSTRUMENT = ("healthcheck", "http.client", "email")  # http.client reads the headers with email


class _Answer:
    """What HTTPResponse needs of a socket: `makefile`, over the answer's bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(io.BytesIO(self.data))


def load() -> None:
    global http, http_check, checkers
    import http.client

    from healthcheck import http_check
    checkers = [http_check.HttpChecker(port=31000), http_check.HttpChecker(port=31000, expected_response="",
                                                                           expected_response_code=204)]


def seeds() -> list[bytes]:
    return [b"\x00HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            b"\x01HTTP/1.1 204 No Content\r\n\r\n",
            b"\x00HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            b"\x00HTTP/1.0 302 Found\r\nLocation: /elsewhere\r\n\r\n",
            b"\x00HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok",
            b"\x00HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\nnot yet"]


def target(data: bytes) -> None:
    if not data:
        return
    checker = checkers[data[0] % 2]
    response = http.client.HTTPResponse(_Answer(data[1:]), method="GET")
    try:
        response.begin()
        attempt = checker.answer(response)
    except (http.client.HTTPException, OSError) as exc:
        reason = http_check._describe_http_error(exc)
        if not reason or "\n" in reason:
            raise Finding(f"the reason for {exc!r} is {reason!r}") from exc
        return
    finally:
        response.close()
    if not attempt.reason or "\n" in attempt.reason:
        raise Finding(f"an attempt whose reason is {attempt.reason!r}")


main(__name__)
