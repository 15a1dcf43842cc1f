"""The observer's HTTP side: a WSGI application over `Reader`, served by waitress.

Why waitress: a maintained, pure-Python WSGI server (no C build, so it goes into the
zipapp as is) whose I/O thread reads whole requests before a worker sees them, so a slow
or silent client holds a connection slot, never a worker thread; the workers are a fixed
pool (`Limits.threads`), connections are capped (`Limits.connections`; with every slot
taken, a new connection closes the one silent longest on which nothing is being answered,
so connections that say nothing never keep a request out: `deadline.RoomMakingServer`), a
connection idle for `Limits.idle_secs` is closed, so is one whose request is not whole
`Limits.request_secs` after it began, however steadily it drips (`deadline`), request headers are capped, and a
response larger than 1 MiB is buffered in a temporary file rather than in memory while a slow client reads it.
Each response is bounded by the application itself (a log range is at most
`logrange.MAX_CHUNK_BYTES`).

The application is read-only (GET and HEAD; `routes`), answers `/metrics` in Prometheus'
text format (`scrape`, `metrics`, `exposition`: every task the connection may see whose
supervisor runs or that ended within `metrics_ended_secs`, read as the pages read them,
timed; its refusals as plain text), and answers with strict headers (a
Content-Security-Policy allowing only its own /static files, no sniffing, no referrer, no
framing), and logs one line at start (`observer_listening`, a WARNING when an address is
not loopback) and one per failed request at DEBUG. With `show_to` SHOW_OWNER each request
is answered for its peer's user (`peers.peer_uid`; root: every task), else for everyone.
It listens on every address the host resolves to (`listen_sockets`), all on one port; it
is loopback when every one of them is,
whatever name it was given (Debian's /etc/hosts makes the host's own name 127.0.1.1). Its
I/O loop wakes every `Limits.loop_secs` while a connection is open (waitress' select
timeout, to close idle connections), and not at all while none is (`deadline.QuietLoop`);
nothing else runs between requests.
"""
from __future__ import annotations

import gzip
import ipaddress
import json
import logging
import signal
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import attrs

from config.words import quoted
from executor.host.identity import one_reading
from executor.host.registrylookup import other_hosts_line
from executor.host.signals import kept_from_new_threads
from executor.logs import log_event
from executor.observe import metrics, routes, scrape
from executor.observe.assets import ASSETS
from executor.observe.exposition import CONTENT_TYPE
from executor.observe.html import error_page, task_url
from executor.observe.logpage import log_page
from executor.observe.pages import choices_page, task_page, tasks_page
from executor.observe.peers import peer_uid
from executor.observe.reader import EVERYONE, Ambiguous, NotFound, Reader, Unavailable

logger = logging.getLogger(__name__)

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
_REASONS = {200: "OK", 300: "Multiple Choices", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 500: "Internal Server Error", 503: "Service Unavailable"}
_HEADERS = [
    ("Content-Security-Policy", "default-src 'none'; style-src 'self'; script-src 'self'; "
                                "connect-src 'self'; img-src 'self'; base-uri 'none'; "
                                "form-action 'none'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cache-Control", "no-store"),
]


SHOW_ALL, SHOW_OWNER = "all", "owner"  # --show-tasks-to: every task to everyone, or to its user


@attrs.frozen(slots=True)
class Limits:
    threads: int = 4  # workers: at most this many requests are being answered at once
    connections: int = 64  # open connections; past it, each new one closes the one silent longest
    idle_secs: int = 30  # a connection silent this long is closed
    request_secs: int = 10  # a request not whole this long after its first byte is closed
    loop_secs: int = 10  # the I/O loop's wake-up while a connection is open (how soon idle ones are closed)
    header_bytes: int = 16384  # a request's headers, at most


def is_loopback(addresses: list[tuple[str, int]]) -> bool:
    """Whether every address listened on is a loopback one (this host only)."""
    return all(ipaddress.ip_address(host.split("%", 1)[0]).is_loopback for host, _ in addresses)


def _is_name(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return True
    return False


@attrs.frozen(slots=True)
class Response:
    status: int
    content_type: str
    body: bytes
    extra: tuple[tuple[str, str], ...] = ()


def _html(text: str, status: int = 200) -> Response:
    return Response(status, "text/html; charset=utf-8", text.encode())


def _json(doc: Any, status: int = 200) -> Response:
    return Response(status, "application/json", json.dumps(doc, default=str).encode())


class ObserverApp:
    """The WSGI application: `routes.route` decides, `Reader` reads, the pages render."""

    def __init__(self, reader: Reader, loopback: bool, clock: Callable[[], float] = time.time,
                 name: str = "", show_to: str = SHOW_ALL,
                 metrics_ended_secs: float | None = metrics.DEFAULT_ENDED_SECS) -> None:
        self.reader, self.loopback, self._clock, self.name = reader, loopback, clock, name
        self.show_to, self.metrics_ended_secs = show_to, metrics_ended_secs
        self.task_errors = scrape.TaskErrors()  # tasks left out of /metrics, each logged once

    def _viewer(self, environ: dict[str, Any]) -> int | None:
        """Who may see what this request asks for: EVERYONE (`--show-tasks-to all`, or a
        peer of uid 0), else the peer's uid (`peers.peer_uid`), None when not known."""
        if self.show_to == SHOW_ALL:
            return EVERYONE
        try:
            uid = peer_uid(str(environ.get("REMOTE_ADDR", "")), int(environ.get("REMOTE_PORT") or -1),
                           int(environ.get("SERVER_PORT") or -1), server_host=_served_at(environ))
        except ValueError:
            uid = None
        return EVERYONE if uid == 0 else uid

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        raw = str(environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/"))
        path, host = routes.origin_form(raw.split("?", 1)[0], str(environ.get("HTTP_HOST", "")))
        method = str(environ.get("REQUEST_METHOD", "GET"))
        query = str(environ.get("QUERY_STRING", ""))
        route = routes.route(method, path, query, host, self.loopback, self.name)
        form = "json" if path.startswith("/api/") else "text" if path in ("/metrics", "/metrics/") else "html"
        try:
            reads = not isinstance(route, (routes.Asset, routes.Refused))
            with one_reading():  # each supervisor looked at once an answer
                response = self._answer(route, form, self._viewer(environ) if reads else EVERYONE)
        except Ambiguous as exc:
            response = _choices(exc, path, query, form == "json")
        except NotFound as exc:
            response = self._refused(routes.Refused(404, str(exc)), form)
        except Unavailable as exc:
            response = self._refused(routes.Refused(503, str(exc)), form)
        except Exception as exc:  # a bug: answered, logged with its traceback
            log_event(logger, logging.ERROR, "observer_error", path=path[:200],
                      error=f"{type(exc).__name__}: {exc}", exc_info=True)
            response = self._refused(routes.Refused(500, f"internal error: {type(exc).__name__}"), form)
        if isinstance(route, routes.Metrics):
            response = _compressed(response, str(environ.get("HTTP_ACCEPT_ENCODING", "")))
        headers = [("Content-Type", response.content_type),
                   ("Content-Length", str(len(response.body))), *_HEADERS, *response.extra]
        start_response(f"{response.status} {_REASONS.get(response.status, '')}", headers)
        return [b""] if method == "HEAD" else [response.body]

    def _refused(self, refused: routes.Refused, form: str) -> Response:
        """The refusal in the form the address answers in: JSON (`/api/`), text
        (`/metrics`, whose scraper logs the body) or HTML."""
        log_event(logger, logging.DEBUG, "observer_refused", status=refused.status,
                  reason=refused.reason)
        extra = (("Allow", "GET, HEAD"),) if refused.status == 405 else ()
        if form == "json":
            return attrs.evolve(_json({"error": refused.reason}, refused.status), extra=extra)
        if form == "text":
            return Response(refused.status, "text/plain; charset=utf-8", f"{refused.reason}\n".encode(), extra)
        return attrs.evolve(_html(error_page(refused.status, refused.reason), refused.status),
                            extra=extra)

    def _answer(self, route: routes.Route, form: str, viewer: int | None) -> Response:
        now = self._clock()
        match route:
            case routes.TasksPage():
                tasks, unreadable = self.reader.tasks_and_unreadable(viewer)
                others = self.reader.other_hosts
                return _html(tasks_page(tasks, now, self.reader.root, unreadable, _shown_to(viewer),
                                        other_hosts_line(others, self.reader.root) if others else "",
                                        self.reader.not_read if viewer == EVERYONE else ()))
            case routes.TaskPage(task_id, supervisor):
                return _html(task_page(self.reader.task(task_id, supervisor, viewer), now))
            case routes.LogPage(task_id, process, query, follow, supervisor):
                return _html(log_page(self.reader.log(task_id, process, query, supervisor, viewer), follow))
            case routes.ApiTasks():
                return _json([dict(t.row, ports=dict(t.ports), supervisor=t.supervisor,
                                   url=task_url(str(t.row["task_id"]), True, t.supervisor))
                              for t in self.reader.tasks(viewer)])
            case routes.ApiTask(task_id, supervisor):
                d = self.reader.task(task_id, supervisor, viewer)
                return _json({"task": dict(d.row), "status": dict(d.status),
                              "resources": d.status.get("resources"),
                              "usage": {name: attrs.asdict(u) for name, u in d.usage.items()},
                              "definition": d.definition, "definition_problem": d.definition_problem})
            case routes.ApiLog(task_id, process, query, supervisor):
                return _json(self.reader.log(task_id, process, query, supervisor, viewer).to_json())
            case routes.Metrics():
                return Response(200, CONTENT_TYPE, self._metrics(viewer).encode())
            case routes.Asset(name):
                if name not in ASSETS:
                    raise NotFound(f"no asset {quoted(name)}")
                content_type, text = ASSETS[name]
                return Response(200, content_type, text.encode())
            case routes.Refused():
                return self._refused(route, form)
        raise AssertionError(route)

    def _metrics(self, viewer: int | None) -> str:
        """`/metrics`: the tasks `viewer` may see, as the pages read them (`scrape`)."""
        return scrape.metrics_text(self.reader, viewer, self.metrics_ended_secs, self.task_errors, self._clock)


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header accepts gzip (`gzip`, not `gzip;q=0`)."""
    for part in accept_encoding.split(","):
        name, _, params = part.partition(";")
        if name.strip().lower() == "gzip":
            q = params.strip().lower().removeprefix("q=")
            try:
                return not q or float(q) > 0
            except ValueError:
                return False
    return False


def _compressed(response: Response, accept_encoding: str) -> Response:
    """`/metrics` gzipped for a client that accepts it (Prometheus does: 500 KB of 100
    tasks are 24 KB, for 1 ms at level 1; the default, 9, took 8-12 ms for 20 KB)."""
    vary = (*response.extra, ("Vary", "Accept-Encoding"))
    if response.status != 200 or not accepts_gzip(accept_encoding):
        return attrs.evolve(response, extra=vary)
    return attrs.evolve(response, body=gzip.compress(response.body, compresslevel=1, mtime=0),
                        extra=(*vary, ("Content-Encoding", "gzip")))


def _served_at(environ: dict[str, Any]) -> str:
    """The observer's address on the request's connection ("" when it cannot be told):
    waitress names it nowhere in the environ, but its disconnect check is a method of the
    connection's channel, which holds the socket."""
    channel = getattr(environ.get("waitress.client_disconnected"), "__self__", None)
    try:
        return str(channel.socket.getsockname()[0]) if channel is not None else ""
    except (AttributeError, OSError, TypeError, IndexError):
        return ""


def _shown_to(viewer: int | None) -> str:
    """What the list says of whom it shows tasks to ("": everyone's tasks)."""
    if viewer == EVERYONE:
        return ""
    if viewer is None:
        return ("This observer shows each local user only their own tasks (--show-tasks-to owner), "
                "and the user of this connection could not be told: no task is shown.")
    return (f"This observer shows each local user only their own tasks (--show-tasks-to owner): "
            f"those whose sandbox is uid {viewer}'s, this connection's user.")


def _choices(ambiguous: Ambiguous, path: str, query: str, api: bool) -> Response:
    """300: the tasks that share the id asked for, each with the address asked for naming
    its supervisor (the same page, JSON or log range, of that task)."""
    params = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "supervisor"]
    choices = [attrs.evolve(c, url=f"{_naming(path, c.task_id)}?{urlencode([*params, ('supervisor', c.supervisor)])}")
               for c in ambiguous.choices]
    log_event(logger, logging.DEBUG, "observer_refused", status=300, reason=str(ambiguous))
    if api:
        return _json({"error": str(ambiguous), "choices": [attrs.asdict(c) for c in choices]}, 300)
    return _html(choices_page(str(ambiguous), choices), 300)


def _naming(path: str, task_id: str) -> str:
    """`path` (`/tasks/ID...`, `/task/ID`, `/api/tasks/ID...`, as `routes` matched it) with
    `task_id` for its ID: a task's own id, which its supervisor's entry is known as (the one
    asked for may be written otherwise: the same as Unicode text)."""
    parts = path.split("/")
    parts[3 if parts[1] == "api" else 2] = quote(task_id, safe="")
    return "/".join(parts)


def listen_sockets(host: str, port: int) -> list[socket.socket]:
    """A bound socket for each address `host` resolves to, all on one port: `port`, or the
    one the first bind picked when it is 0 (a name such as `localhost` may be both
    127.0.0.1 and ::1; an IPv6 address may be written in brackets). Raises OSError naming
    the host when it resolves to nothing."""
    name = host[1:-1] if host.startswith("[") and host.endswith("]") else host  # [::1]
    try:
        found = socket.getaddrinfo(name, port, socket.AF_UNSPEC, socket.SOCK_STREAM,
                                   socket.IPPROTO_TCP, socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise OSError(f"{quoted(host)} does not resolve to an address: "
                      f"{getattr(exc, 'strerror', None) or exc}") from None
    bound: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in found:
            if any(s.family == family and s.getsockname()[0] == address[0] for s in bound):
                continue  # getaddrinfo may give an address twice
            sock = socket.socket(family, kind, proto)
            bound.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address[0], port, *address[2:]))
            port = port or int(sock.getsockname()[1])
    except OSError:
        for sock in bound:
            sock.close()
        raise
    return bound


def make_server(reader: Reader, host: str, port: int, limits: Limits = Limits(),
                show_to: str = "all", metrics_ended_secs: float | None = metrics.DEFAULT_ENDED_SECS) -> Any:
    """A waitress server of the observer, listening on every address of `host`
    (`listening_on` says which); `run()` serves, `close()` stops."""
    from waitress.server import create_server

    from executor.observe.deadline import with_deadline

    sockets = listen_sockets(host, port)
    try:
        loopback = is_loopback([s.getsockname()[:2] for s in sockets])
        app = ObserverApp(reader, loopback, name=host if _is_name(host) else "", show_to=show_to,
                          metrics_ended_secs=metrics_ended_secs)
        server = create_server(
            app, sockets=sockets, threads=limits.threads,
            connection_limit=limits.connections, channel_timeout=limits.idle_secs,
            cleanup_interval=limits.loop_secs, asyncore_loop_timeout=limits.loop_secs,
            max_request_header_size=limits.header_bytes, max_request_body_size=0,
            ident="stoker-observe", clear_untrusted_proxy_headers=True, expose_tracebacks=False)
        with_deadline(server, limits.request_secs)
        return server
    except BaseException:
        for sock in sockets:
            sock.close()
        raise


def serve(reader: Reader, host: str, port: int, limits: Limits = Limits(),
          ready: Callable[[str, int], None] | None = None, show_to: str = "all",
          metrics_ended_secs: float | None = metrics.DEFAULT_ENDED_SECS) -> None:
    """Serve until interrupted. `ready(host, port)` is called once listening (the port
    actually bound: 0 picks a free one)."""
    from executor.observe.stopwake import stop_wakes_the_loop

    with stop_wakes_the_loop() as watch:  # a stop the handler's raise lost still ends the loop
        # The workers never take SIGTERM, SIGINT or SIGHUP: the main thread's handler stops the
        # loop at once, where a signal given to a worker waited for the loop's next tick.
        with kept_from_new_threads((signal.SIGTERM, signal.SIGINT, signal.SIGHUP)):
            server = make_server(reader, host, port, limits, show_to, metrics_ended_secs)
        watch(server.map if hasattr(server, "effective_listen") else server._map)  # (a MultiSocketServer's)
        listening = listening_on(server)
        loopback = is_loopback(listening)
        bound_host, bound_port = listening[0]
        log_event(logger, logging.INFO if loopback else logging.WARNING, "observer_listening",
                  host=bound_host, port=bound_port, root=reader.root,
                  also=" ".join(_address(h, p) for h, p in listening[1:]) or None, show_tasks_to=show_to,
                  reason="loopback only" if loopback else
                  "reachable from other hosts: every task's state and logs are readable there")
        try:
            if ready is not None:
                ready(str(bound_host), int(bound_port))
            server.run()
        finally:
            server.close()


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listening_on(server: Any) -> list[tuple[str, int]]:
    """The (address, port) of each socket `server` listens on."""
    listen = getattr(server, "effective_listen", None)
    if listen is None:
        return [(str(server.effective_host), int(server.effective_port))]
    return [(str(h), int(p)) for h, p in listen]
