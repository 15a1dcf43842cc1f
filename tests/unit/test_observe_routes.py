"""The observer's routing: what each request is answered with, and what is refused."""
from __future__ import annotations

import pytest

from executor.observe import routes
from executor.observe.logrange import LogQuery
from executor.observe.routes import (
    ApiLog,
    ApiTask,
    ApiTasks,
    Asset,
    LogPage,
    Metrics,
    Refused,
    TaskPage,
    TasksPage,
    route,
)


def get(path: str, query: str = "", host: str = "127.0.0.1:1338", method: str = "GET",
        loopback: bool = True) -> routes.Route:
    return route(method, path, query, host, loopback, name="")


@pytest.mark.parametrize("path, query, expected", [
    ("/", "", TasksPage()),
    ("/tasks", "", TasksPage()),
    ("/tasks/web-0-ab12", "", TaskPage("web-0-ab12")),
    ("/tasks/web-0-ab12/", "", TaskPage("web-0-ab12")),
    ("/tasks/a%2Fb", "", TaskPage("a/b")),  # a '/' in an id stays in its segment
    ("/task/web-0-ab12", "", TaskPage("web-0-ab12")),  # Thermos' address, Aurora's UI links it
    ("/tasks/t/processes/web/logs", "", LogPage("t", "web", LogQuery(), False)),
    ("/tasks/t/processes/web/logs", "run=2&stream=stderr&offset=10&length=5&follow=1",
     LogPage("t", "web", LogQuery(2, "stderr", 10, 5), True)),
    ("/api/tasks", "", ApiTasks()),
    ("/api/tasks/t", "", ApiTask("t")),
    ("/api/tasks/t/processes/web/logs", "stream=stdout.1&offset=", ApiLog("t", "web", LogQuery(None, "stdout.1"))),
    ("/static/observe.css", "", Asset("observe.css")),
    ("/metrics", "", Metrics()),  # Prometheus' scrape
    ("/metrics/", "", Metrics()),
    # the supervisor (PID-START) that names one of two running tasks sharing an id
    ("/tasks/t", "supervisor=4000-123", TaskPage("t", "4000-123")),
    ("/api/tasks/t", "supervisor=4000-123", ApiTask("t", "4000-123")),
    ("/tasks/t/processes/web/logs", "follow=1&supervisor=1-0", LogPage("t", "web", LogQuery(), True, "1-0")),
    ("/api/tasks/t/processes/web/logs", "run=1&supervisor=1-0", ApiLog("t", "web", LogQuery(1), "1-0")),
])
def test_each_page_and_endpoint_is_routed(path, query, expected):
    assert get(path, query) == expected


@pytest.mark.parametrize("path", [
    "/tasks/..", "/tasks/%2E%2E", "/tasks/t/processes/../logs", "/tasks/t/processes/%2e%2e/logs",
    "/etc/passwd", "/tasks/t/processes/web", "/api", "/api/tasks/t/processes/web/logs/x",
    "relative", "/tasks/a%00b", "/tasks/" + "x" * 2000, "/task", "/task/t/processes/web/logs",
    "/metrics/x", "/api/metrics",
])
def test_odd_paths_are_not_found(path):
    assert isinstance(got := get(path), Refused) and got.status == 404, got


@pytest.mark.parametrize("query, field", [
    ("run=-1", "run"), ("run=1e3", "run"), ("offset=abc", "offset"), ("length=%C2%B2", "length"),
    ("length=99999999999999999999", "length"), ("stream=../../etc/passwd", "stream"),
    ("stream=stdout.0", "stream"), ("stream=environ", "stream"),
    ("run=0&offset=0&file=1:x", "file"), ("run=0&offset=0&file=1:2&dir=../", "dir"),
    ("offset=0&file=1:2", "file="),  # follow mode names the run it holds
    ("supervisor=4000", "supervisor"), ("supervisor=0-1", "supervisor"), ("supervisor=1-2-3", "supervisor"),
    ("supervisor=%201-2", "supervisor"),
])
def test_a_bad_log_parameter_is_a_bad_request_naming_it(query, field):
    got = get("/api/tasks/t/processes/web/logs", query)
    assert isinstance(got, Refused) and got.status == 400 and field in got.reason, got


def test_too_many_parameters_or_bad_encoding_is_a_bad_request():
    assert get("/", "&".join(f"a{i}=1" for i in range(50))).status == 400  # type: ignore[union-attr]
    assert get("/tasks/%ff").status == 400  # type: ignore[union-attr]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_only_reading_is_allowed(method):
    got = get("/api/tasks", method=method)
    assert isinstance(got, Refused) and got.status == 405
    assert get("/api/tasks", method="HEAD") == ApiTasks()


@pytest.mark.parametrize("host, answered", [
    ("127.0.0.1:1338", True), ("localhost:8080", True), ("LOCALHOST", True), ("[::1]:1338", True),
    ("127.1.2.3", True), ("evil.example:1338", False), ("127.0.0.1.evil.example", False),
    ("", False), ("10.0.0.5:1338", False),
])
def test_a_loopback_observer_answers_loopback_names_only(host, answered):
    got = get("/api/tasks", host=host)
    assert (got == ApiTasks()) is answered
    if not answered:
        assert isinstance(got, Refused) and got.status == 403
    assert get("/api/tasks", host=host, loopback=False) == ApiTasks()  # bound elsewhere: any


@pytest.mark.parametrize("host, answered", [
    ("agent-7", True), ("AGENT-7:1338", True), ("agent-7.example:1338", False),
    ("evil.example", False), ("127.0.0.1:1338", True),
])
def test_a_loopback_observer_started_with_a_name_answers_that_name_too(host, answered):
    """`--host agent-7` where agent-7 is 127.0.1.1 (Debian's /etc/hosts): still loopback."""
    got = route("GET", "/api/tasks", "", host, True, name="agent-7")
    assert (got == ApiTasks()) is answered


@pytest.mark.parametrize("target, expected", [
    ("/api/tasks", ("/api/tasks", "localhost:1338")),
    ("http://127.0.0.1:1338/tasks/a%2Fb", ("/tasks/a%2Fb", "127.0.0.1:1338")),
    ("HTTPS://[::1]", ("/", "[::1]")),
    ("http://evil.example/", ("/", "evil.example")),
    ("ftp://x/y", ("ftp://x/y", "localhost:1338")),  # no route: 404
])
def test_an_absolute_form_target_is_its_path_and_its_authority_the_host(target, expected):
    assert routes.origin_form(target, "localhost:1338") == expected


def test_the_refusal_of_another_name_says_how_to_reach_it():
    """A Prometheus scraping `agent-7:1338` (the README's scrape config) got only "answers
    only loopback names": the refusal now names the way in and the flag that opens it; a
    long Host header is shown by its first 80 characters."""
    assert get("/metrics", host="agent-7:1338") == Refused(
        403, "this observer answers only loopback names (Host: 'agent-7:1338'): reach it as 127.0.0.1 or "
             "localhost on its host (or through an SSH tunnel), or start it with --host ADDRESS to serve other names")
    reason = get("/metrics", host="a" * 79 + "bc").reason  # type: ignore[union-attr]
    assert reason.startswith(f"this observer answers only loopback names (Host: '{'a' * 79}b'): reach it")
    got = route("GET", "/metrics", "", "agent-7", True, name="")
    assert isinstance(got, Refused) and got.status == 403  # no name given: loopback names only


@pytest.mark.parametrize("method, path, query, expected", [
    ("POST", "/", "", Refused(405, "POST is not allowed: the observer is read-only")),
    ("P" * 19 + "QR", "/", "", Refused(405, f"{'P' * 19}Q is not allowed: the observer is read-only")),
    ("GET", "/", "&".join(f"a{i}=1" for i in range(50)),
     Refused(400, "malformed request: Max number of fields exceeded")),
    ("GET", "/tasks/%ff", "", Refused(400, "malformed request: 'utf-8' codec can't decode byte 0xff in position 0: "
                                            "invalid start byte")),
    ("GET", "relative", "", Refused(404, "no such page")),  # not a path
    ("GET", "/etc/passwd", "", Refused(404, "no such page")),  # no route
])
def test_each_refusal_in_its_words(method, path, query, expected):
    assert get(path, query, method=method) == expected


@pytest.mark.parametrize("path", [
    "/tasks/.", "/tasks/..", "/api/tasks/%2E%2E",  # never a directory's own names, even encoded
    "/tasks/t/processes//logs", "/tasks//processes/web/logs",  # an empty task or process name
    "/api/tasks/t/processes//logs", "/api/tasks//processes/web/logs",
    "/tasks/" + "x" * (routes.MAX_SEGMENT + 1),
])
def test_a_segment_that_is_no_plain_name_is_no_page(path):
    assert get(path) == Refused(404, "no such page")


def test_a_segment_of_the_longest_length_is_a_name():
    name = "x" * routes.MAX_SEGMENT
    assert get("/tasks/" + name) == TaskPage(name)


def test_a_supervisor_not_pid_start_is_refused_with_its_first_40_characters():
    assert get("/tasks/t", "supervisor=" + "x" * 50) == Refused(
        400, f"supervisor='{'x' * 40}' is not PID-START (a supervisor's pid and start time, as the observer's "
             "links write it)")
