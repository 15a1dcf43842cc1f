"""The observer's HTTP side: a WSGI application over `Reader`, served by waitress.

Why waitress: a maintained, pure-Python WSGI server (no C build, so it goes into the
zipapp as is) whose I/O thread reads whole requests before a worker sees them, so a slow
or silent client holds a connection slot, never a worker thread; the workers are a fixed
pool (`Limits.threads`), connections are capped (`Limits.connections`), a connection idle
for `Limits.idle_secs` is closed, request headers are capped, and a response larger than
1 MiB is buffered in a temporary file rather than in memory while a slow client reads it.
Each response is bounded by the application itself (a log range is at most
`logrange.MAX_CHUNK_BYTES`).

The application is read-only (GET and HEAD; `routes`), answers with strict headers (a
Content-Security-Policy allowing only its own /static files, no sniffing, no referrer, no
framing), and logs one line at start (`observer_listening`, a WARNING when an address is
not loopback) and one per failed request at DEBUG. It listens on every address the host
resolves to (`listen_sockets`), all on one port; it is loopback when every one of them is,
whatever name it was given (Debian's /etc/hosts makes the host's own name 127.0.1.1). Its
I/O loop wakes every `Limits.loop_secs` when idle (waitress' select timeout, to close idle
connections); nothing else runs between requests.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import signal
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from config.words import quoted
from executor.host.signals import kept_from_new_threads
from executor.logs import log_event
from executor.observe import routes
from executor.observe.assets import ASSETS
from executor.observe.html import error_page, task_url
from executor.observe.logpage import log_page
from executor.observe.pages import task_page, tasks_page
from executor.observe.reader import NotFound, Reader, Unavailable

logger = logging.getLogger(__name__)

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
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


@attrs.frozen(slots=True)
class Limits:
    threads: int = 4  # workers: at most this many requests are being answered at once
    connections: int = 64  # open connections; past it, new ones wait in the listen backlog
    idle_secs: int = 30  # a connection silent this long is closed
    loop_secs: int = 10  # the I/O loop's wake-up when idle (how soon idle ones are closed)
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
                 name: str = "") -> None:
        self.reader, self.loopback, self._clock, self.name = reader, loopback, clock, name

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        raw = str(environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/"))
        path, host = routes.origin_form(raw.split("?", 1)[0], str(environ.get("HTTP_HOST", "")))
        method = str(environ.get("REQUEST_METHOD", "GET"))
        route = routes.route(method, path, str(environ.get("QUERY_STRING", "")), host,
                             self.loopback, self.name)
        api = path.startswith("/api/")
        try:
            response = self._answer(route, api)
        except NotFound as exc:
            response = self._refused(routes.Refused(404, str(exc)), api)
        except Unavailable as exc:
            response = self._refused(routes.Refused(503, str(exc)), api)
        except Exception as exc:  # a bug: answered, logged with its traceback
            log_event(logger, logging.ERROR, "observer_error", path=path[:200],
                      error=f"{type(exc).__name__}: {exc}", exc_info=True)
            response = self._refused(routes.Refused(500, f"internal error: {type(exc).__name__}"), api)
        headers = [("Content-Type", response.content_type),
                   ("Content-Length", str(len(response.body))), *_HEADERS, *response.extra]
        start_response(f"{response.status} {_REASONS.get(response.status, '')}", headers)
        return [b""] if method == "HEAD" else [response.body]

    def _refused(self, refused: routes.Refused, api: bool) -> Response:
        log_event(logger, logging.DEBUG, "observer_refused", status=refused.status,
                  reason=refused.reason)
        extra = (("Allow", "GET, HEAD"),) if refused.status == 405 else ()
        if api:
            return attrs.evolve(_json({"error": refused.reason}, refused.status), extra=extra)
        return attrs.evolve(_html(error_page(refused.status, refused.reason), refused.status),
                            extra=extra)

    def _answer(self, route: routes.Route, api: bool) -> Response:
        now = self._clock()
        match route:
            case routes.TasksPage():
                tasks, unreadable = self.reader.tasks_and_unreadable()
                return _html(tasks_page(tasks, now, self.reader.root, unreadable))
            case routes.TaskPage(task_id):
                return _html(task_page(self.reader.task(task_id), now))
            case routes.LogPage(task_id, process, query, follow):
                return _html(log_page(self.reader.log(task_id, process, query), follow))
            case routes.ApiTasks():
                return _json([dict(t.row, ports=dict(t.ports), url=task_url(str(t.row["task_id"]), api=True))
                              for t in self.reader.tasks()])
            case routes.ApiTask(task_id):
                d = self.reader.task(task_id)
                return _json({"task": dict(d.row), "status": dict(d.status),
                              "resources": d.status.get("resources"),
                              "usage": {name: attrs.asdict(u) for name, u in d.usage.items()},
                              "definition": d.definition, "definition_problem": d.definition_problem})
            case routes.ApiLog(task_id, process, query):
                return _json(self.reader.log(task_id, process, query).to_json())
            case routes.Asset(name):
                if name not in ASSETS:
                    raise NotFound(f"no asset {quoted(name)}")
                content_type, text = ASSETS[name]
                return Response(200, content_type, text.encode())
            case routes.Refused():
                return self._refused(route, api)
        raise AssertionError(route)


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


def make_server(reader: Reader, host: str, port: int, limits: Limits = Limits()) -> Any:
    """A waitress server of the observer, listening on every address of `host`
    (`listening_on` says which); `run()` serves, `close()` stops."""
    from waitress.server import create_server

    sockets = listen_sockets(host, port)
    try:
        loopback = is_loopback([s.getsockname()[:2] for s in sockets])
        app = ObserverApp(reader, loopback, name=host if _is_name(host) else "")
        return create_server(
            app, sockets=sockets, threads=limits.threads,
            connection_limit=limits.connections, channel_timeout=limits.idle_secs,
            cleanup_interval=limits.loop_secs, asyncore_loop_timeout=limits.loop_secs,
            max_request_header_size=limits.header_bytes, max_request_body_size=0,
            ident="stoker-observe", clear_untrusted_proxy_headers=True, expose_tracebacks=False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise


def serve(reader: Reader, host: str, port: int, limits: Limits = Limits(),
          ready: Callable[[str, int], None] | None = None) -> None:
    """Serve until interrupted. `ready(host, port)` is called once listening (the port
    actually bound: 0 picks a free one)."""
    # The workers never take SIGTERM or SIGINT: the main thread's handler stops the loop at
    # once, where a signal given to a worker waited for the loop's next tick.
    with kept_from_new_threads((signal.SIGTERM, signal.SIGINT)):
        server = make_server(reader, host, port, limits)
    listening = listening_on(server)
    loopback = is_loopback(listening)
    bound_host, bound_port = listening[0]
    log_event(logger, logging.INFO if loopback else logging.WARNING, "observer_listening",
              host=bound_host, port=bound_port, root=reader.root,
              also=" ".join(_address(h, p) for h, p in listening[1:]) or None,
              reason="loopback only" if loopback else
              "reachable from other hosts: every task's state and logs are readable there")
    if ready is not None:
        ready(str(bound_host), int(bound_port))
    try:
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
