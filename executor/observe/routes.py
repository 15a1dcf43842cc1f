"""What a request asks the observer for. PURE.

`route(method, raw_path, query, host, loopback, name)` → one of the closed set of answers
below (`origin_form` first turns `GET http://HOST/PATH` into its path and host).
The path is split on `/` before each segment is percent-decoded, so a task id holding a
`/` (`%2F`) stays one segment; `..` or any other odd segment matches no route (404).

    /                                          the tasks (HTML)
    /tasks/ID                                  one task (HTML)
    /task/ID                                   the same page at Thermos' observer's address,
                                               the one Aurora's scheduler UI links to
    /tasks/ID/processes/NAME/logs?QUERY        one run's log (HTML; `follow=1`: follow it)
    /api/tasks                                 the tasks (JSON, as `stoker ps --all --json`)
    /api/tasks/ID                              one task (JSON)
    /api/tasks/ID/processes/NAME/logs?QUERY    a range of one run's log (JSON)
    /metrics                                   every task, as Prometheus metrics (text)
    /static/NAME                               the stylesheet and the follow script

A task id is unique only within its framework, so two running tasks (another tenant's)
may share one: `?supervisor=PID-START` (its supervisor's pid and start time in clock ticks
after boot, the name of its registry entry, which no later process has) names one entry of
the registry, and every link the observer writes carries it. Without it, an id two running
tasks share answers 300, naming both, each with its link.

QUERY: `run`, `stream`, `offset`, `length` (`executor/observe/logrange.py`). Read-only:
only GET and HEAD (405 otherwise). A server bound to loopback answers only requests whose
Host is a loopback name (`localhost`, `127.x.x.x`, `[::1]`) or the name it was told to
listen on (`--host NAME` where NAME is loopback, as Debian's /etc/hosts makes the host's
own name 127.0.1.1), so that a web page the operator visits cannot read it through DNS
rebinding (403 otherwise).
"""
from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote

import attrs

from config.words import quoted
from executor.observe.logrange import BadLogQuery, LogQuery, parse_query

MAX_QUERY_FIELDS = 16
MAX_SEGMENT = 1024
_LOOPBACK_HOST = re.compile(r"^(localhost|127(\.[0-9]{1,3}){3}|\[::1\])(:[0-9]{1,5})?$",
                            re.IGNORECASE)
_PORT = re.compile(r":[0-9]{1,5}$")
_SUPERVISOR = re.compile(r"^[1-9][0-9]{0,9}-[0-9]{1,20}$")
_ABSOLUTE = re.compile(r"^https?://([^/?#]*)(/.*)?$", re.IGNORECASE | re.DOTALL)


@attrs.frozen(slots=True)
class TasksPage:
    pass


@attrs.frozen(slots=True)
class TaskPage:
    task_id: str
    supervisor: str = ""  # its registry entry's PID-START ("": the task with that id)


@attrs.frozen(slots=True)
class LogPage:
    task_id: str
    process: str
    query: LogQuery
    follow: bool
    supervisor: str = ""


@attrs.frozen(slots=True)
class ApiTasks:
    pass


@attrs.frozen(slots=True)
class ApiTask:
    task_id: str
    supervisor: str = ""


@attrs.frozen(slots=True)
class ApiLog:
    task_id: str
    process: str
    query: LogQuery
    supervisor: str = ""


@attrs.frozen(slots=True)
class Metrics:
    """GET /metrics: the tasks as Prometheus metrics."""


@attrs.frozen(slots=True)
class Asset:
    name: str


@attrs.frozen(slots=True)
class Refused:
    status: int  # 400, 403, 404 or 405
    reason: str


Route = TasksPage | TaskPage | LogPage | ApiTasks | ApiTask | ApiLog | Metrics | Asset | Refused


def host_allowed(host: str, loopback: bool, name: str) -> bool:
    """Whether a request with this Host header may be answered (see the module docstring).
    `name`: the host name the observer was told to listen on, answered too."""
    host = host.strip()
    if not loopback or _LOOPBACK_HOST.match(host):
        return True
    return bool(name) and _PORT.sub("", host).lower() == name.lower()


def origin_form(raw_path: str, host: str) -> tuple[str, str]:
    """(path, host) of a request: an absolute-form target (`http://AUTHORITY/PATH`, which a
    server must accept, RFC 9112 §3.2.2) is its path, and its authority is the host asked
    for, not the Host header."""
    found = _ABSOLUTE.match(raw_path)
    if found is None:
        return raw_path, host
    return found.group(2) or "/", found.group(1)


def _segments(raw_path: str) -> list[str] | None:
    """The decoded segments of the path; None when one is not a plain name."""
    parts = raw_path.split("/")
    if parts[0] != "":
        return None
    out = []
    for part in parts[1:]:
        name = unquote(part, errors="strict") if "%" in part else part
        if len(name) > MAX_SEGMENT or name in (".", "..") or "\0" in name:
            return None
        out.append(name)
    if len(out) > 1 and out[-1] == "":
        out.pop()  # a trailing slash
    return out


def _params(query: str) -> dict[str, str]:
    return dict(parse_qsl(query, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS))


def route(method: str, raw_path: str, query: str, host: str, loopback: bool, name: str) -> Route:
    """The answer to a request (see the module docstring; `name`: `host_allowed`'s)."""
    if not host_allowed(host, loopback, name):
        return Refused(403, f"this observer answers only loopback names (Host: {quoted(host[:80])}): "
                            "reach it as 127.0.0.1 or localhost on its host (or through an SSH tunnel), "
                            "or start it with --host ADDRESS to serve other names")
    if method not in ("GET", "HEAD"):
        return Refused(405, f"{method[:20]} is not allowed: the observer is read-only")
    try:
        segments = _segments(raw_path)
        params = _params(query)
    except (UnicodeDecodeError, ValueError) as exc:
        return Refused(400, f"malformed request: {exc}")
    if segments is None:
        return Refused(404, "no such page")
    try:
        return _match(segments, params)
    except BadLogQuery as exc:
        return Refused(400, str(exc))


def _supervisor(params: dict[str, str]) -> str:
    """The `supervisor=PID-START` asked for ("" when none). Raises BadLogQuery."""
    value = params.get("supervisor", "")
    if value and not _SUPERVISOR.match(value):
        raise BadLogQuery(f"supervisor={quoted(value[:40])} is not PID-START (a supervisor's pid "
                          f"and start time, as the observer's links write it)")
    return value


def _match(s: list[str], params: dict[str, str]) -> Route:
    match s:
        case [""] | ["tasks"]:
            return TasksPage()
        case ["tasks" | "task", task_id] if task_id:
            return TaskPage(task_id, _supervisor(params))
        case ["tasks", task_id, "processes", name, "logs"] if task_id and name:
            return LogPage(task_id, name, parse_query(params), params.get("follow") == "1",
                           _supervisor(params))
        case ["api", "tasks"]:
            return ApiTasks()
        case ["api", "tasks", task_id] if task_id:
            return ApiTask(task_id, _supervisor(params))
        case ["api", "tasks", task_id, "processes", name, "logs"] if task_id and name:
            return ApiLog(task_id, name, parse_query(params), _supervisor(params))
        case ["metrics"]:
            return Metrics()
        case ["static", name]:
            return Asset(name)
    return Refused(404, "no such page")
