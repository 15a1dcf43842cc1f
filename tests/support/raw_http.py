"""A raw HTTP/1.1 client's two questions on a socket kept alive, for the observer's tests of
its connections (slow clients, idle timeouts, wall-clock steps): the body of one 200 answer,
and whether the server closed the connection."""
from __future__ import annotations

import select
import socket


def one_answer(sock: socket.socket) -> bytes:
    """The body of one 200 answer on a kept-alive connection, read to its Content-Length."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        assert chunk, f"closed after {answer!r}"
        answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
    while len(body) < length:
        body += sock.recv(length - len(body))
    return body


def closed(sock: socket.socket) -> bool:
    """Whether the server closed `sock` (without waiting: nothing to read yet is open)."""
    if not select.select([sock], [], [], 0)[0]:
        return False
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True
