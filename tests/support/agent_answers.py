"""A loopback listener (TCP on 127.0.0.1, or a unix socket) that answers each request with
the next raw bytes of its script and then keeps the connection, closes it, or holds it
without a word: for the transport's tests of kept-alive connections, which
`tests/support/http_server.py` (every answer `Connection: close`) cannot make.

    with AgentAnswers([Say(ANSWER_202), Say(ANSWER_202, then=CLOSE)]) as agent:
        transport = AgentTransport(f"127.0.0.1:{agent.port}")
        ...
        assert agent.connections == 1 and agent.heard[0].line == b"POST /api/v1/executor HTTP/1.1"

Past the script's end every request gets `ANSWER_202`, kept. `close()` wakes every held
connection and closes every socket it made; it never hangs.
"""
from __future__ import annotations

import socket
import threading
from collections.abc import Sequence
from pathlib import Path

import attrs

from tests.support.http_server import shut_down

KEEP, CLOSE, HOLD = "keep", "close", "hold"  # after an answer: go on reading, close, say nothing more
ANSWER_202 = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"


def answer(status: str, body: bytes = b"", *headers: str) -> bytes:
    """`answer("500 Internal Server Error", b"boom")`: a whole answer with its Content-Length."""
    head = "".join(f"{h}\r\n" for h in (f"HTTP/1.1 {status}", *headers, f"Content-Length: {len(body)}"))
    return head.encode() + b"\r\n" + body


@attrs.frozen
class Say:
    raw: bytes  # written as given (any prefix of an answer too)
    then: str = KEEP
    pause_secs: float = 0.0  # after `raw`, before `rest`
    rest: bytes = b""


@attrs.frozen
class Heard:
    connection: int  # the listener's 1st, 2nd, ... connection
    line: bytes  # the request line
    head: bytes  # the headers, as sent
    body: bytes


class AgentAnswers:
    def __init__(self, script: Sequence[Say] = (), unix_path: Path | None = None) -> None:
        family = socket.AF_UNIX if unix_path is not None else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.bind(str(unix_path) if unix_path is not None else ("127.0.0.1", 0))
        self._listener.listen()
        self.port: int = 0 if unix_path is not None else self._listener.getsockname()[1]
        self._script = list(script)
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.heard: list[Heard] = []
        self.connections = 0
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                thread = threading.Thread(target=self._serve, args=(conn, self.connections), daemon=True)
                self._socks.append(conn)
                self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        buffered = b""
        try:
            while True:
                heard, buffered = _request(conn, buffered, number)
                if heard is None:
                    return
                with self._lock:
                    self.heard.append(heard)
                    say = self._script.pop(0) if self._script else Say(ANSWER_202)
                conn.sendall(say.raw)
                if say.pause_secs and self._closing.wait(say.pause_secs):
                    return
                conn.sendall(say.rest)
                if say.then == HOLD:
                    self._closing.wait()
                if say.then != KEEP:
                    return
        except OSError:
            return  # the client went away, or close() shut the connection
        finally:
            conn.close()

    def drop_connections(self) -> None:
        """Close every connection made so far from this side (the agent's idle close)."""
        with self._lock:
            socks = list(self._socks)
        shut_down(socks)

    def close(self) -> None:
        self._closing.set()
        self.drop_connections()
        shut_down([self._listener])  # wakes the accept (a close alone does not)
        self._listener.close()
        with self._lock:
            threads = list(self._threads)
        for thread in (*threads, self._accepting):
            thread.join(timeout=2.0)

    def __enter__(self) -> AgentAnswers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _request(conn: socket.socket, buffered: bytes, number: int) -> tuple[Heard | None, bytes]:
    """The next request on `conn` (None at its end) and the bytes read past it."""
    while b"\r\n\r\n" not in buffered:
        chunk = conn.recv(65536)
        if not chunk:
            return None, b""
        buffered += chunk
    head, _, rest = buffered.partition(b"\r\n\r\n")
    line, _, headers = head.partition(b"\r\n")
    length = 0
    for header in headers.split(b"\r\n"):
        name, _, value = header.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None, b""
        rest += chunk
    return Heard(number, line, headers, rest[:length]), rest[length:]
