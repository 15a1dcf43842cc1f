"""The simulator's HTTP side: the server on 127.0.0.1 and its handler, and the chunked
RecordIO event stream a SUBSCRIBE response carries (record, packed or fuzz chunking)."""
from __future__ import annotations

import contextlib
import json
import queue
import random
import socket
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


class _Stream:
    """One open SUBSCRIBE response, written by its handler thread from a queue."""

    def __init__(self, handler: BaseHTTPRequestHandler, chunking: str, rng: random.Random):
        self.handler = handler
        self.chunking = chunking
        self.rng = rng
        self.queue: queue.Queue = queue.Queue()
        self.open = True

    def begin(self) -> None:
        """The response's head: 200, JSON, chunked (the events follow as chunks)."""
        self.handler.send_response(200)
        self.handler.send_header("Content-Type", "application/json")
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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sim: AgentSimulator) -> None:
        self.sim = sim
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request, client_address) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address) -> None:
        # An executor that exits (or is destroyed) with an idle keep-alive connection open
        # resets it: that is a peer going away, not a simulator bug worth a traceback.
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)

    def drop_connections(self) -> None:
        with self.connections_lock:
            connections = list(self.connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read the records, not a request log."""

    def _any(self) -> None:
        self.server.sim._handle(self)

    do_POST = do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _any

