"""The observer's WSGI application and its sockets (`executor/observe/server.py`), called in
this process as waitress calls it: each page's status line, headers and form; a refusal in
the form its address answers in (JSON, text or HTML), a HEAD; a bug answered 500 and logged;
`/metrics` gzipped for a client that accepts it; a task id two tasks share answered with
the choices; whom the list is shown to (its sockets and the server made:
`test_observe_sockets.py`). The tasks are registered with checkpoints written by the product's own writer (`tests/support/statuscli.py`)."""
from __future__ import annotations

import contextlib
import gzip
import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from config.registry import RegistrySettings
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.registry import Registry
from executor.host.session import HostSession
from executor.observe import server
from executor.observe.reader import Reader
from executor.observe.server import ObserverApp
from tests.support.logevents import records
from tests.support.statuscli import RUNNING, registered_task, supervisor_elsewhere

pytestmark = pytest.mark.timeout(30)

Answer = tuple[str, dict[str, str], bytes]


@pytest.fixture
def app(settings: RegistrySettings, tmp_path: Path) -> ObserverApp:
    """An observer of one LOST task, `web-0-1`, whose process `web` logged a line."""
    sandbox = tmp_path / "sandbox"
    registered_task(settings, sandbox, "web-0-1", RUNNING, alive=False)
    for run, text in ((1, "first\n"), (2, "hello\n")):
        (sandbox / f".logs/web/{run}").mkdir(parents=True)
        (sandbox / f".logs/web/{run}/stdout").write_text(text)
    return ObserverApp(Reader(settings), loopback=True)


def get(app: ObserverApp, path: str, query: str = "", method: str = "GET", **environ: str) -> Answer:
    return call(app, {"PATH_INFO": path, "QUERY_STRING": query, "HTTP_HOST": "localhost",
                      "REQUEST_METHOD": method, **environ})


def call(app: ObserverApp, environ: dict[str, object]) -> Answer:
    said: list[tuple[str, list[tuple[str, str]]]] = []
    body = b"".join(app(environ, lambda status, headers: said.append((status, headers))))
    [(status, headers)] = said
    return status, dict(headers), body


STRICT = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; "
                               "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


@pytest.mark.parametrize(("path", "content_type"), [
    ("/", "text/html; charset=utf-8"),
    ("/tasks/web-0-1", "text/html; charset=utf-8"),
    ("/tasks/web-0-1/processes/web/logs", "text/html; charset=utf-8"),
    ("/api/tasks", "application/json"),
    ("/api/tasks/web-0-1", "application/json"),
    ("/api/tasks/web-0-1/processes/web/logs", "application/json"),
    ("/metrics", "text/plain; version=0.0.4; charset=utf-8"),
    ("/static/observe.css", "text/css; charset=utf-8"),
    ("/static/follow.js", "text/javascript; charset=utf-8"),
])
def test_each_page_answers_200_in_its_form_with_the_strict_headers(app, path, content_type):
    status, headers, body = get(app, path)
    assert status == "200 OK", body[:300]
    assert headers["Content-Type"] == content_type and headers["Content-Length"] == str(len(body)) and body
    assert {name: headers[name] for name in STRICT} == STRICT
    head_status, head_headers, head_body = get(app, path, method="HEAD")
    assert (head_status, head_body) == (status, b"")
    if path.startswith("/static/"):  # (a page says how long ago, /metrics its own duration: a digit more or less)
        assert head_headers["Content-Length"] == str(len(body))
    else:
        assert int(head_headers["Content-Length"]) > 0


def test_the_pages_show_what_was_read(app):
    [row] = json.loads(get(app, "/api/tasks")[2])
    assert (row["task_id"], row["state"]) == ("web-0-1", "LOST")
    assert row["url"] == f"/api/tasks/web-0-1?supervisor={row['supervisor']}" and row["ports"] == {}
    doc = json.loads(get(app, "/api/tasks/web-0-1")[2])
    assert set(doc) == {"task", "status", "resources", "usage", "definition", "definition_problem"}
    assert doc["task"]["task_id"] == "web-0-1" and doc["status"]["state"] == "LOST"
    assert json.loads(get(app, "/api/tasks/web-0-1/processes/web/logs", "run=2")[2])["data"] == "hello\n"
    assert json.loads(get(app, "/api/tasks/web-0-1/processes/web/logs", "run=1")[2])["data"] == "first\n"
    assert b"first" in get(app, "/tasks/web-0-1/processes/web/logs", "run=1")[2]
    assert b"web-0-1" in get(app, "/")[2] and b"hello" in get(app, "/tasks/web-0-1/processes/web/logs", "run=2")[2]


@pytest.mark.parametrize(("path", "form"), [
    ("/api/tasks/nothing", "json"), ("/metrics/nothing", "html"), ("/tasks/nothing", "html"),
])
def test_a_task_that_is_not_there_is_404_in_the_form_its_address_answers_in(app, path, form):
    status, headers, body = get(app, path)
    assert status == "404 Not Found"
    if form == "json":
        assert headers["Content-Type"] == "application/json" and "no task" in json.loads(body)["error"]
    else:
        assert headers["Content-Type"] == "text/html; charset=utf-8" and b"<html" in body.lower()


def test_a_refusal_of_metrics_is_plain_text(app):
    status, headers, body = get(app, "/metrics", method="POST")
    assert status == "405 Method Not Allowed" and headers["Allow"] == "GET, HEAD"
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert body == b"POST is not allowed: the observer is read-only\n"
    assert "Vary" not in headers and "Content-Encoding" not in headers  # refused before it was /metrics


@pytest.mark.parametrize("path", ["/api/tasks", "/"])
def test_a_post_is_405_with_allow_in_json_or_html(app, path):
    status, headers, body = get(app, path, method="POST")
    assert (status, headers["Allow"]) == ("405 Method Not Allowed", "GET, HEAD")
    if path.startswith("/api/"):
        assert json.loads(body) == {"error": "POST is not allowed: the observer is read-only"}
    else:
        assert b"read-only" in body and headers["Content-Type"] == "text/html; charset=utf-8"


def test_other_refusals_carry_no_allow_header(app):
    status, headers, body = get(app, "/api/nowhere")
    assert status == "404 Not Found" and "Allow" not in headers
    assert json.loads(body) == {"error": "no such page"}
    status, headers, body = get(app, "/api/tasks", HTTP_HOST="observer.example.com")
    assert status == "403 Forbidden" and "loopback names" in json.loads(body)["error"]


def test_an_unknown_asset_is_404(app):
    status, headers, body = get(app, "/static/nothing.css")
    assert status == "404 Not Found" and b"no asset &#x27;nothing.css&#x27;" in body


def test_a_bug_is_answered_500_and_logged_with_its_traceback(app, monkeypatch, caplog):
    def broken(*args):  # type: ignore[no-untyped-def]
        raise KeyError("a bug")
    monkeypatch.setattr(app.reader, "tasks", broken)
    monkeypatch.setattr(app.reader, "task", broken)
    path = "/api/tasks/" + "x" * 300
    with caplog.at_level(logging.ERROR, logger="executor.observe.server"):
        status, headers, body = get(app, "/api/tasks")
        get(app, path)
    assert status == "500 Internal Server Error"
    assert json.loads(body) == {"error": "internal error: KeyError"}
    first, second = records(caplog, "observer_error")
    assert (first.stoker_fields["path"], first.stoker_fields["error"]) == ("/api/tasks", "KeyError: 'a bug'")
    assert first.exc_info is not None and len(second.stoker_fields["path"]) <= 200


@pytest.mark.parametrize(("accept", "zipped"), [
    ("gzip", True), ("br, GZIP;q=0.5", True), ("deflate,gzip", True), ("deflate, gzip ; q=1", True), ("gzip;q=0", False),
    ("gzip;q=0.0", False), ("gzip;q=x", False), ("", False), ("deflate", False), ("x-gzip", False),
])
def test_metrics_are_gzipped_for_a_client_that_accepts_it(app, accept, zipped):
    status, headers, body = get(app, "/metrics", HTTP_ACCEPT_ENCODING=accept)
    assert status == "200 OK" and headers["Vary"] == "Accept-Encoding"
    assert ("Content-Encoding" in headers) is zipped and server.accepts_gzip(accept) is zipped
    if zipped:
        text = gzip.decompress(body)
        assert headers["Content-Encoding"] == "gzip" and text.startswith(b"# HELP stoker_")
        assert headers["Content-Length"] == str(len(body))
        assert body == gzip.compress(text, compresslevel=1, mtime=0)  # level 1, no time in it
    else:
        assert body.startswith(b"# HELP stoker_")


def test_only_metrics_are_gzipped(app):
    status, headers, body = get(app, "/api/tasks", HTTP_ACCEPT_ENCODING="gzip")
    assert status == "200 OK" and "Content-Encoding" not in headers and "Vary" not in headers
    assert json.loads(body)


@pytest.fixture
def shared(settings: RegistrySettings, tmp_path: Path, monkeypatch) -> Iterator[ObserverApp]:
    """Two running tasks known by one id: this process's and a child's, two supervisors."""
    monkeypatch.setenv("STOKER_ROOT", settings.registry_root)
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    mine.mkdir()
    theirs.mkdir()
    session = HostSession.open(mine, settings)
    session.task_started(task_id="same", job_key="c/r/e/mine", label="mine.0", marker="m1", post=lambda e: None)
    try:
        with supervisor_elsewhere(theirs, "same"):
            yield ObserverApp(Reader(settings), loopback=True)
    finally:
        session.close()


@pytest.mark.parametrize(("path", "named"), [
    ("/tasks/same", "/tasks/same"), ("/api/tasks/same", "/api/tasks/same"),
    ("/tasks/same/processes/web/logs", "/tasks/same/processes/web/logs"),
    ("/api/tasks/same/processes/web/logs", "/api/tasks/same/processes/web/logs"),
])
def test_an_id_two_tasks_share_is_answered_with_each_one_s_address(shared, path, named):
    status, headers, body = get(shared, path, "run=2&x=")
    assert status == "300 Multiple Choices"
    if path.startswith("/api/"):
        doc = json.loads(body)
        assert "same" in doc["error"] and len(doc["choices"]) == 2
        urls = [choice["url"] for choice in doc["choices"]]
        supervisors = [choice["supervisor"] for choice in doc["choices"]]
        for url, supervisor in zip(urls, supervisors):
            parts = urlsplit(url)
            assert parts.path == named
            assert parse_qsl(parts.query, keep_blank_values=True) == [("run", "2"), ("x", ""),
                                                                      ("supervisor", supervisor)]
        assert len(set(supervisors)) == 2
    else:
        assert headers["Content-Type"] == "text/html; charset=utf-8" and body.count(named.encode()) >= 2
        assert b"is the id of 2 running tasks" in body


def test_each_choice_s_address_shows_its_own_task(shared, tmp_path, caplog):
    with caplog.at_level(logging.DEBUG, logger="executor.observe.server"):
        status, _, body = get(shared, "/api/tasks/same")
    assert status == "300 Multiple Choices"
    [line] = records(caplog, "observer_refused")
    assert line.stoker_fields["status"] == 300 and "is the id of 2 running tasks" in line.stoker_fields["reason"]
    shown = {}
    for choice in json.loads(body)["choices"]:
        parts = urlsplit(choice["url"])
        status, _, page = get(shared, parts.path, parts.query)
        assert status == "200 OK"
        shown[choice["supervisor_pid"]] = json.loads(page)["task"]["sandbox"]
        html_status, _, html = get(shared, "/tasks/same", parts.query)
        assert html_status == "200 OK" and json.loads(page)["task"]["sandbox"].encode() in html
        logs = get(shared, "/api/tasks/same/processes/web/logs", parts.query)
        assert logs[0] in ("200 OK", "404 Not Found") and logs[0] != "300 Multiple Choices"
    assert sorted(shown.values()) == [str(tmp_path / "mine"), str(tmp_path / "theirs")]


def test_an_address_is_named_after_the_task_s_own_id():
    assert server._naming("/tasks/x/processes/p/logs", "a b/c") == "/tasks/a%20b%2Fc/processes/p/logs"
    assert server._naming("/api/tasks/x", "é") == "/api/tasks/%C3%A9"
    assert server._naming("/task/x", "t") == "/task/t"


def test_shown_only_to_an_owner_a_list_whose_user_cannot_be_told_shows_no_task(app):
    app.show_to = server.SHOW_OWNER
    status, _, body = get(app, "/")
    assert status == "200 OK" and server._shown_to(None).encode() in body
    assert json.loads(get(app, "/api/tasks")[2]) == []
    app.show_to = server.SHOW_ALL
    assert [row["task_id"] for row in json.loads(get(app, "/api/tasks")[2])] == ["web-0-1"]


def test_whom_the_list_is_shown_to_is_said():
    assert server._shown_to(server.EVERYONE) == ""
    assert server._shown_to(1000) == ("This observer shows each local user only their own tasks "
                                      "(--show-tasks-to owner): those whose sandbox is uid 1000's, this "
                                      "connection's user.")
    assert server._shown_to(None).endswith("could not be told: no task is shown.")


def test_the_path_is_read_from_the_request_line_as_sent(app):
    """waitress' RAW_URI (or REQUEST_URI) before PATH_INFO, which is decoded; the path cut at
    the query's first `?`; with nothing else said, GET of `/` with no query; no Host, refused."""
    for key in ("RAW_URI", "REQUEST_URI"):
        status, _, body = call(app, {key: "/api/tasks/web-0-1/processes/web/logs?run=1&x=?", "PATH_INFO": "/nowhere",
                                     "QUERY_STRING": "run=1", "HTTP_HOST": "localhost", "REQUEST_METHOD": "GET"})
        assert status == "200 OK" and json.loads(body)["data"] == "first\n"
    status, headers, body = call(app, {"HTTP_HOST": "localhost"})
    assert status == "200 OK" and headers["Content-Type"] == "text/html; charset=utf-8" and b"web-0-1" in body
    status, _, body = call(app, {})  # no Host: not a loopback name's request
    assert status == "403 Forbidden" and b"(Host: &#x27;&#x27;)" in body
    status, _, body = call(app, {"PATH_INFO": "/api/tasks/web-0-1/processes/web/logs", "HTTP_HOST": "localhost"})
    assert status == "200 OK" and json.loads(body)["data"] == "hello\n"  # no query: the latest run


def test_a_refusal_is_logged_at_debug_with_its_status_and_reason(app, caplog):
    with caplog.at_level(logging.DEBUG, logger="executor.observe.server"):
        status, _, body = get(app, "/nowhere")
    [line] = records(caplog, "observer_refused")
    assert (line.levelno, line.stoker_fields) == (logging.DEBUG, {"status": 404, "reason": "no such page"})
    assert status == "404 Not Found" and b"404" in body and b"no such page" in body


def test_a_refusal_of_metrics_with_a_slash_is_plain_text_too(app):
    status, headers, body = get(app, "/metrics/", method="POST")
    assert status == "405 Method Not Allowed" and headers["Content-Type"] == "text/plain; charset=utf-8"


@contextlib.contextmanager
def _connection() -> Iterator[dict[str, object]]:
    """A TCP connection of this process's to a port of its own on 127.0.0.1: the environ
    waitress gives a request that came on it."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with socket.create_connection(listener.getsockname()) as client:
            accepted, _ = listener.accept()
            with accepted:
                yield {"REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": str(client.getsockname()[1]),
                       "SERVER_PORT": str(listener.getsockname()[1])}


@pytest.mark.parametrize("path", ["/api/tasks/web-0-1", "/tasks/web-0-1", "/tasks/web-0-1/processes/web/logs",
                                  "/api/tasks/web-0-1/processes/web/logs"])
def test_shown_only_to_an_owner_a_task_is_root_s_to_see_and_nobody_s_unknown(app, path):
    """`--show-tasks-to owner`: a request on a connection of root's (this process's) sees
    every task; one whose user cannot be told (no connection found) sees none of them."""
    app.show_to = server.SHOW_OWNER
    assert get(app, path, "run=1")[0] == "404 Not Found"
    with _connection() as peer:
        assert get(app, path, "run=1", **peer)[0] == "200 OK"
    assert [row["task_id"] for row in json.loads(get(app, "/api/tasks", **peer)[2])] == []  # closed: not told


def test_the_list_says_what_else_the_registry_holds(app, settings, tmp_path):
    """Below the tasks: the tasks of other hosts a shared registry holds (not listed), and the
    files it read as no task (to everyone only); above them, the registry's root."""
    Registry(settings).write(RegistryEntry(
        sandbox=str(tmp_path / "far"), supervisor_pid=4, supervisor_start=5, supervisor_boot="b",
        front_end=FrontEnd.RUN, registered_wall=time.time(), task_id="far-1", host_id="f" * 32,
        host_name="elsewhere"), prune=False)
    (Path(settings.registry_root) / "garbage.json").write_text("{not json")
    root = settings.registry_root
    status, _, body = get(app, "/")
    page = body.decode()
    assert status == "200 OK" and f"registry {root}</span>" in page and "web-0-1" in page
    assert (f"1 task of other hosts in the registry {root} is not listed (a root they share: a home on a "
            "network file system): elsewhere (1); each host lists its own.") in page
    assert f"the first is {root}/garbage.json." in page
    assert "--show-tasks-to owner" not in page  # shown to everyone: nothing said of whom
    app.show_to = server.SHOW_OWNER  # a viewer who is not everyone is not told of the files
    page = get(app, "/")[2].decode()
    assert "garbage.json" not in page and "elsewhere (1)" in page
