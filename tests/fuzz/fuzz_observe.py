"""The observer's request line (executor/observe/routes.py: the path, its percent escapes,
the Host header, the query) and the log ranges it asks for (executor/observe/logrange.py:
`run=`, `offset=`, `length=`, `file=DEV:INO`, and where a range of bytes starts and ends).

Contract: `route` returns a Route for any method, path, query and host (a refusal is 400,
403, 404 or 405 with a reason), never raises; a log query's window lies inside the file,
and `trim` keeps a range [skip, keep) of the bytes read, with 0 <= skip <= keep <= len.
"""
from __future__ import annotations

from tests.fuzz.harness import Finding, main

INSTRUMENT = ("executor.observe",)


def load() -> None:
    global routes, logrange
    from executor.observe import logrange, routes


def seeds() -> list[bytes]:
    # method (GET, HEAD, POST by the first byte) and loopback, path, query, Host, then the
    # log's size (5 bytes) and the bytes read from it
    return [b"\x03\x01\0/tasks/t-1/processes/web/logs\0run=2&stream=stderr&offset=10&length=100\0localhost:1338"
            b"\0\x00\x00\x01\x00\x00\xe4\xbd\x9c line\nnext \xe4\xbd",
            b"\x03\x01\0/api/tasks/t-1/processes/web/logs\0run=0&offset=5&file=2049:131&dir=2049:7\0127.0.0.1"
            b"\0\x00\x00\x00\x10\x00\x9c\x9cabc",
            b"\x03\x01\0http://[::1]:1338/static/app.js\0\0[::1]:1338",
            b"\x01\x02\0/tasks/%C3%A9t%2F\0follow=1\0box.example.org:1338"]


def target(data: bytes) -> None:
    # WSGI hands the path, query and Host over as latin-1 text: one character per byte.
    head, path, query, host, *rest = (data.split(b"\0") + [b""] * 4)[:5]
    method = ("GET", "HEAD", "POST")[head[0] % 3] if head else "GET"
    loopback = bool(head[1] % 2) if len(head) > 1 else True
    path_text, host_text = routes.origin_form(path.decode("latin-1"), host.decode("latin-1"))
    answer = routes.route(method, path_text, query.decode("latin-1"), host_text, loopback,
                          name="box.example.org")
    if isinstance(answer, routes.Refused) and (answer.status not in (400, 403, 404, 405) or not answer.reason):
        raise Finding(f"refused with {answer!r}")
    if isinstance(answer, (routes.LogPage, routes.ApiLog)):
        tail = rest[0] if rest else b""
        size = int.from_bytes(tail[:5], "big")
        win = logrange.window(size, answer.query)
        if not 0 <= win.start <= win.end <= size:
            raise Finding(f"{win!r} for a file of {size} bytes")
        read = tail[5:]
        for whole in (False, True):
            skip, keep = logrange.trim(read, win, whole)
            if not 0 <= skip <= keep <= len(read):
                raise Finding(f"trim({read!r}) = {(skip, keep)}")


main(__name__)
