"""The simulator's HTTP side: the server on 127.0.0.1 (over TLS when given a server context,
as an agent with libprocess SSL on) and the one on a unix socket (the agent's
`--http_executor_domain_sockets`), their handler, and the chunked RecordIO event stream a
SUBSCRIBE response carries (record, packed or fuzz chunking)."""
from __future__ import annotations

import contextlib
import json
import queue
import random
import socket
import socketserver
import ssl
import sys
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.support.agent_sim.simulator import AgentSimulator


def recordio(event: dict) -> bytes:
    """One event as a RecordIO record: its length in decimal, a newline, the JSON."""
    data = json.dumps(event, separators=(",", ":")).encode("utf-8")
    return str(len(data)).encode("ascii") + b"\n" + data


class _Reject(Exception):
    def __init__(self, status: int, text: str = "", headers: Mapping[str, str] | None = None):
        super().__init__(text)
        self.status, self.text, self.headers = status, text, dict(headers or {})


class _Dead(Exception):
    """The call came in while its server was being stopped (a crash): no answer."""


class _Stream:
    """One open SUBSCRIBE response, written by its handler thread from a queue."""

    def __init__(self, handler: BaseHTTPRequestHandler, chunking: str, rng: random.Random):
        self.handler = handler
        self.chunking = chunking
        self.rng = rng
        self.queue: queue.Queue = queue.Queue()
        self.open = True

    def begin(self, content_type: str = "application/json") -> None:
        """The response's head: 200, JSON, chunked (the events follow as chunks)."""
        self.handler.send_response(200)
        self.handler.send_header("Content-Type", content_type)
        self.handler.send_header("Transfer-Encoding", "chunked")
        self.handler.end_headers()

    def send(self, records: list[bytes], raw: bool = False) -> None:
        self.queue.put(("raw" if raw else "records", records))

    def close(self, graceful: bool) -> None:
        self.queue.put(("close", graceful))
        if not graceful:
            self._kill_socket()

    def _kill_socket(self) -> None:
        with contextlib.suppress(OSError):
            self.handler.connection.shutdown(socket.SHUT_RDWR)

    def _write_chunk(self, data: bytes) -> None:
        self.handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def serve(self) -> None:
        try:
            while True:
                items = [self.queue.get()]
                while True:
                    try:
                        items.append(self.queue.get_nowait())
                    except queue.Empty:
                        break
                if self._write(items):
                    return
        except OSError:
            pass  # the executor went away; the agent only notices when writing, like here
        finally:
            self.open = False

    def _write(self, items: list[tuple[str, Any]]) -> bool:
        """Writes what was queued; True once the stream is closed."""
        pending: list[bytes] = []
        for kind, payload in items:
            if kind == "records":
                pending.extend(payload)
                continue
            self._flush(pending)
            pending = []
            if kind == "raw":
                for data in payload:
                    self._write_chunk(data)
            elif kind == "close":
                if payload:
                    self.handler.wfile.write(b"0\r\n\r\n")
                else:
                    self._kill_socket()
                return True
        self._flush(pending)
        return False

    def _flush(self, records: list[bytes]) -> None:
        if not records:
            return
        if self.chunking == "record":
            for record in records:
                self._write_chunk(record)
            return
        data = b"".join(records)
        if self.chunking == "packed":
            self._write_chunk(data)
            return
        offset = 0  # fuzz: records split across chunks and several packed in one
        while offset < len(data):
            size = self.rng.randint(1, 48)
            self._write_chunk(data[offset:offset + size])
            offset += size


class _Tracking:
    """What both servers share: the connections they hold, dropped at a crash, and the
    errors that are a peer going away, not a simulator bug worth a traceback."""

    daemon_threads = True
    block_on_close = False
    # The only paths served (the unix socket's: the agent's process id first); None: any.
    paths: tuple[str, ...] | None = None
    tls: ssl.SSLContext | None = None

    def _track(self, sim: AgentSimulator) -> None:
        self.sim = sim
        self.dead = False  # set under sim._cond when it stops listening: answers nothing more
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def process_request(self, request, client_address) -> None:
        with self.connections_lock:
            self.connections.add(request)
        with self.sim._cond:
            self.sim.connections_made += 1
            self.sim._cond.notify_all()
        super().process_request(request, client_address)  # type: ignore[misc]

    def shutdown_request(self, request) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)  # type: ignore[misc]

    def handle_error(self, request, client_address) -> None:
        # An executor that exits (or is destroyed) with an idle keep-alive connection open
        # resets it; a TLS handshake refused is recorded (`AgentSimulator.tls_failures`).
        error = sys.exc_info()[1]
        if isinstance(error, ssl.SSLError):
            with self.sim._cond:
                self.sim.tls_failures.append(f"{type(error).__name__}: {error.reason}")
                self.sim._cond.notify_all()
            return
        if isinstance(error, (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)  # type: ignore[misc]

    def drop_connections(self) -> None:
        with self.connections_lock:
            connections = list(self.connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Server(_Tracking, ThreadingHTTPServer):
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sim: AgentSimulator,
                 tls: ssl.SSLContext | None = None) -> None:
        self._track(sim)
        self.tls = tls
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        # As libprocess' accepted sockets (poll_socket.cpp): Nagle off. Without it a TLS
        # stream's event waited for the executor's delayed ACK: 40 ms a record.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is None:
            return sock, address
        # The handshake is the handler thread's (`_Handler.setup`): never the accepting one's.
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address


class _UnixServer(_Tracking, socketserver.ThreadingUnixStreamServer):
    """The agent's unix socket: only `/slave(1)/api/v1/executor` and `/slave(1)/api/v1`."""

    paths = ("/slave(1)/api/v1/executor", "/slave(1)/api/v1")

    def __init__(self, path: str, sim: AgentSimulator) -> None:
        self._track(sim)
        super().__init__(path, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server | _UnixServer

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(5.0)  # a client that never finishes its handshake
            self.request.do_handshake()
            self.request.settimeout(None)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read the records, not a request log."""

    def _any(self) -> None:
        self.server.sim._handle(self)

    do_POST = do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _any

