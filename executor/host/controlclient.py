"""The client side of the control socket `.stoker/control.sock` (`executor/host/control.py` is
the server a supervisor runs): how `stoker kill` and `stoker restart` reach a running
supervisor, and nothing a supervisor loads.

`connect` opens the entry without following a symlink (O_PATH), checks that it is a socket,
connects to that inode (`/proc/self/fd/N`: a symlink renamed over the name meanwhile leads
nowhere else), and checks with `SO_PEERCRED` that the peer is the supervisor the caller
expects. `ask` sends one request line and yields the reply lines until the last one.

It uses `socket`'s module (its `socket` class, with `makefile`, and its enums of every
address family, kind and flag, 0.1 MiB), which the server, on `_socket` alone, never loads:
so this module is its own, imported only by the commands that ask.
"""
from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from collections.abc import Callable, Iterator

from executor.events import ControlReply
from executor.host.control import peer
from executor.host.controlwire import ControlRequest, encode_request, parse_reply
from executor.host.sandbox import CONTROL_SOCKET


class ControlUnavailable(Exception):
    """The supervisor cannot be reached through its control socket; the message says why."""


def connect(stoker_dir: int, where: str, expected_pid: int | None) -> socket.socket:
    """A connection to the control socket in the `.stoker` directory `stoker_dir` of the
    sandbox `where`, whose peer is `expected_pid` (when given). Raises ControlUnavailable."""
    try:
        node = os.open(CONTROL_SOCKET, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stoker_dir)
    except FileNotFoundError:
        raise ControlUnavailable(f"{where} has no control socket (is its supervisor running?)") from None
    except OSError as exc:
        raise ControlUnavailable(f"{where}/.stoker/{CONTROL_SOCKET}: {exc.strerror or exc}") from None
    try:
        return _connect_node(node, where, expected_pid)
    finally:
        os.close(node)


def _connect_node(node: int, where: str, expected_pid: int | None) -> socket.socket:
    """Connect to the socket file `node` is (an O_PATH descriptor): through
    /proc/self/fd/NODE, the inode itself, never a name that a symlink swapped in since the
    check could lead to another user's socket (root's `stoker kill` of a user's sandbox was
    so led to another task's supervisor)."""
    if not stat.S_ISSOCK(os.fstat(node).st_mode):
        raise ControlUnavailable(f"{where}/.stoker/{CONTROL_SOCKET} is not a socket")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(5.0)
        sock.connect(f"/proc/self/fd/{node}")
        sock.settimeout(None)
        pid, _uid = peer(sock)
    except OSError as exc:
        sock.close()
        gone = exc.errno in (errno.ECONNREFUSED, errno.ENOENT)
        raise ControlUnavailable(f"the supervisor of {where} does not answer"
                                 f"{' (it is gone)' if gone else ''}: {exc.strerror or exc}") from None
    if expected_pid is not None and pid != expected_pid:
        sock.close()
        raise ControlUnavailable(f"the control socket in {where} belongs to pid {pid}, not to "
                                 f"the sandbox's supervisor (pid {expected_pid})")
    return sock


def ask(sock: socket.socket, request: ControlRequest,
        awaited: Callable[[socket.socket], None] | None = None) -> Iterator[ControlReply]:
    """Send `request`; yield the replies until the last one (or the end of the stream). A
    server that refused the connection before the request was sent has shut it (the send
    fails: EPIPE): its refusal, which says why, is read all the same. `awaited(sock)`, once
    the request is sent, waits for the first answer (and may raise ControlUnavailable)."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # what is left to read says why
        sock.sendall(encode_request(request))
    if awaited is not None:
        awaited(sock)
    with sock.makefile("rb") as stream:
        for line in stream:
            reply = parse_reply(line)
            if reply is not None:
                yield reply
                if reply.done:
                    return
