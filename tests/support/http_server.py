"""A scripted HTTP/1.1 server on 127.0.0.1 for tests (health checks, lifecycle endpoints).

Owns `ScriptedHTTPServer`: a threaded server on a free loopback port whose answers follow a
script, one step per request, the last step repeating. Steps: `Reply`, `Hang`, `Drip`,
`Huge`, `Redirect`, `Reset`, `Partial`. It never talks to anything but 127.0.0.1, and
`close()` never hangs: it wakes every step that waits and shuts every open connection down.

    with ScriptedHTTPServer([Reply(503, b"no"), Reply(200, b"ok")]) as server:
        requests.get(server.url + "/health")          # -> 503 "no"
        requests.get(server.url + "/health")          # -> 200 "ok" (and every later one)
        server.script = [Hang()]                      # replace the script at runtime
        assert server.requests == [("GET", "/health"), ("GET", "/health")]
"""
from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import attrs

# ---- script steps ----


@attrs.frozen
class Reply:
    """Answer with this status, body and headers, after waiting `delay_secs`."""

    status: int = 200
    body: bytes = b"ok"
    headers: Mapping[str, str] = attrs.field(factory=dict)
    delay_secs: float = 0.0


@attrs.frozen
class Hang:
    """Read the request, then never answer (until the server closes)."""


@attrs.frozen
class Drip:
    """Send the headers at once, then `bytes_per_step` bytes of body every `step_secs`."""

    body: bytes = b"ok"
    bytes_per_step: int = 1
    step_secs: float = 0.1
    status: int = 200


@attrs.frozen
class Huge:
    """Stream a body of `size_bytes` in chunks, never holding more than one chunk."""

    size_bytes: int = 100 * 1024 * 1024
    status: int = 200
    chunk_bytes: int = 64 * 1024


@attrs.frozen
class Redirect:
    location: str = "/elsewhere"
    status: int = 302


@attrs.frozen
class Reset:
    """Close the connection without answering, with an RST (SO_LINGER 0)."""


@attrs.frozen
class Partial:
    """Write these bytes verbatim (a status line, headers, some body: any prefix of an
    answer), then never write more and never close (until the server closes)."""

    data: bytes = b"HTTP/1.1 200 OK\r\n\r\nok"


@attrs.frozen
class Gated:
    """Send the headers at once, then each of `parts` when the test calls `release()`: a
    body whose timing the test decides, not a clock."""

    parts: tuple[bytes, ...] = (b"o", b"k")
    status: int = 200


Step = Reply | Hang | Drip | Huge | Redirect | Reset | Partial | Gated


@attrs.frozen
class Received:
    method: str
    path: str
    body: bytes
    headers: Mapping[str, str]
    client_port: int = 0  # the port of the client's end of the connection
    at: float = attrs.field(factory=time.monotonic)  # when it arrived (time.monotonic)


# ---- the server ----


class ScriptedHTTPServer:
    """A loopback HTTP/1.1 server answering by script; a context manager."""

    def __init__(self, script: Sequence[Step] = (Reply(),)) -> None:
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._closed = False
        self._script: list[Step] = []
        self._next = 0
        self._received: list[Received] = []
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._gate = threading.Semaphore(0)
        self._parts_sent = 0
        self.script = list(script)
        self._server = _Server(self)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"scripted-http-{self.port}",
            daemon=True,
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def script(self) -> list[Step]:
        with self._lock:
            return list(self._script)

    @script.setter
    def script(self, steps: Sequence[Step]) -> None:
        """Replace the script; the next request gets its first step."""
        steps = list(steps)
        if not steps:
            raise ValueError("a script needs at least one step")
        with self._lock:
            self._script = steps
            self._next = 0

    @property
    def requests(self) -> list[tuple[str, str]]:
        """Every (method, path) seen so far, in arrival order."""
        with self._lock:
            return [(r.method, r.path) for r in self._received]

    @property
    def received(self) -> list[Received]:
        """Every request seen so far, with its body and headers."""
        with self._lock:
            return list(self._received)

    def release(self) -> None:
        """Let a `Gated` answer send its next part."""
        self._gate.release()

    @property
    def parts_sent(self) -> int:
        """How many parts `Gated` answers have written so far."""
        with self._lock:
            return self._parts_sent

    def close(self) -> None:
        """Stop serving, wake every waiting step, shut every connection; never hangs."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            connections = dict(self._connections)
        shut_down(connections)
        for thread in connections.values():
            thread.join(timeout=2.0)
        self._thread.join(timeout=2.0)

    def __enter__(self) -> ScriptedHTTPServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- used by the handler threads ----

    def _take_step(self, received: Received) -> Step:
        with self._lock:
            self._received.append(received)
            step = self._script[min(self._next, len(self._script) - 1)]
            self._next += 1
            return step

    def _track(self, sock: socket.socket, thread: threading.Thread) -> None:
        with self._lock:
            self._connections[sock] = thread

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._connections.pop(sock, None)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # ScriptedHTTPServer.close() joins its own threads, with a timeout

    def __init__(self, owner: ScriptedHTTPServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request, client_address) -> None:  # type: ignore[override]
        thread = threading.Thread(
            target=self._serve_one, args=(request, client_address), daemon=True
        )
        self.owner._track(request, thread)
        thread.start()

    def _serve_one(self, request, client_address) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            self.owner._untrack(request)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass  # tests read `.requests`, not stderr

    def do_GET(self) -> None:
        self._answer()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_GET

    def _answer(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        step = owner._take_step(Received(self.command, self.path, body, dict(self.headers),
                                         client_port=self.client_address[1]))
        self.close_connection = True
        try:
            if isinstance(step, Reply):
                if step.delay_secs and owner._closing.wait(step.delay_secs):
                    return
                self._head(step.status, len(step.body), step.headers)
                if self.command != "HEAD":
                    self.wfile.write(step.body)
            elif isinstance(step, Hang):
                owner._closing.wait()
            elif isinstance(step, Drip):
                self._drip(step)
            elif isinstance(step, Gated):
                self._gated(step)
            elif isinstance(step, Huge):
                self._huge(step)
            elif isinstance(step, Redirect):
                self._head(step.status, 0, {"Location": step.location})
            elif isinstance(step, Partial):
                self.wfile.write(step.data)
                self.wfile.flush()
                owner._closing.wait()
            elif isinstance(step, Reset):
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()
            else:
                raise TypeError(f"unknown script step {step!r}")
        except OSError:
            pass  # the client went away (it read enough, or timed out): nothing to do

    def _head(self, status: int, length: int, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        self.send_header("Connection", "close")
        self.end_headers()

    def _drip(self, step: Drip) -> None:
        closing = self.server.owner._closing
        self._head(step.status, len(step.body), {})
        for i in range(0, len(step.body), step.bytes_per_step):
            if closing.wait(step.step_secs):
                return
            self.wfile.write(step.body[i : i + step.bytes_per_step])

    def _gated(self, step: Gated) -> None:
        owner = self.server.owner
        self._head(step.status, sum(map(len, step.parts)), {})
        for part in step.parts:
            while not owner._gate.acquire(timeout=0.02):
                if owner._closing.is_set():
                    return
            self.wfile.write(part)
            with owner._lock:
                owner._parts_sent += 1

    def _huge(self, step: Huge) -> None:
        closing = self.server.owner._closing
        self._head(step.status, step.size_bytes, {})
        chunk = b"x" * step.chunk_bytes
        left = step.size_bytes
        while left > 0 and not closing.is_set():
            piece = chunk if left >= len(chunk) else chunk[:left]
            self.wfile.write(piece)
            left -= len(piece)


class RawAnswers:
    """A loopback listener that answers its Nth connection with the Nth raw bytes given
    (given by calling it) and then closes it, keeping each request's bytes (`requests`): for answers no
    well-behaved server sends, and for the exact bytes a client sent."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen()
        self._answers: list[bytes] = []
        self.requests: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __call__(self, *raw: bytes) -> int:
        """Answer the next connections with `raw`, one each; the port."""
        self._answers.extend(raw)
        self._thread.start()
        return self._listener.getsockname()[1]

    def _serve(self) -> None:
        for answer in self._answers:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with conn:
                self.requests.append(request_head(conn))
                conn.sendall(answer)

    def close(self) -> None:
        self._listener.close()
        if self._thread.ident is not None:
            self._thread.join(timeout=2)


def shut_down(socks: Iterable[socket.socket]) -> None:
    """Shut each socket down both ways (waking whatever reads or accepts on it), however it is."""
    for sock in socks:
        with contextlib.suppress(OSError):  # already shut, or closed
            sock.shutdown(socket.SHUT_RDWR)


def request_head(conn: socket.socket) -> bytes:
    """A request's bytes up to the blank line that ends its headers (or the connection's end)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data
