"""The control socket `.stoker/control.sock`: how `stoker kill` and `stoker restart` reach a
running supervisor, and nothing else does.

`ControlServer`: one thread, blocked in `select` until a client connects or writes (no
wakeups otherwise; but when an accept, or the selector as the thread starts, finds no
descriptor left, EMFILE, the client waits in the backlog and it is tried again
`ACCEPT_PAUSE_SECS` later, one WARNING line saying so; and a client that sent no request
`REQUEST_WAIT_SECS` after it was accepted is told so and dropped, so that clients that
connect and say nothing cannot hold every connection). It only reads one request line per connection, parses it
(`executor/host/controlwire.py`) and hands it, with a `Replier` for that connection, to
`on_request` (the `HostSession`, which posts it to the task owner's queue). It never
signals a process or changes task state. A replier writes without blocking
(`MSG_DONTWAIT`): a client that does not read loses its answers, the owner never waits; the
last answer (`done`) shuts the connection. A client that shut its writing side after its
request (socat, `nc -N`) still reads: it is answered, not taken for gone. Only this user (or root) may connect: the
directory is 0700, the socket 0600, and each peer's uid is checked (`SO_PEERCRED`).

The socket is bound and connected through `/proc/self/fd/N/control.sock`, where N is the
`.stoker` directory's fd: no symlink on the way is followed, and the path stays short
however deep the sandbox is (a Unix socket path has at most 107 bytes). It is made 0600
through an `O_PATH | O_NOFOLLOW` descriptor of its name, never by the name, which a chmod
would follow were it swapped for a symlink since the bind. A stale socket of
a dead supervisor is replaced (the sandbox lock says it is dead).

The client side, `connect` and `ask`, is `executor/host/controlclient.py`, which only the
commands that ask (`stoker kill`, `stoker restart`) load.

The server's sockets are `_socket`'s, the C module under `socket`, whose own module (its
`socket` class, with `makefile` and `accept`, and its enums of every address family, kind and
flag, 0.1 MiB of every supervisor) only the client loads. Its loop waits in an `epoll` of its
own (`_Poller`), not a `selectors.DefaultSelector`, which is the same `epoll` with its keys
and mappings: `selectors` (with its classes, 0.07 MiB of a supervisor) is loaded by none of a
supervisor's modules (`subprocess` imports it for `communicate()` alone:
`executor/deferred.py`).
"""
from __future__ import annotations

import _socket
import contextlib
import errno
import logging
import os
import select
import stat
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from executor.events import ControlReply, Replier
from executor.host.controlwire import (
    MAX_LINE,
    ControlError,
    ControlRequest,
    encode_reply,
    parse_request,
)
from executor.host.sandbox import CONTROL_SOCKET
from executor.logs import log_event, start_thread

logger = logging.getLogger(__name__)

MAX_CONNECTIONS = 32
ACCEPT_PAUSE_SECS = 0.5  # after an accept that found no descriptor left, the next try
REQUEST_WAIT_SECS = 10.0  # a client that sent no request by then is told so and dropped
_NO_ROOM = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_UCRED_SIZE = 12  # struct ucred: pid, uid, gid, three C ints (`struct` and its C module, for one read, not loaded)


def _fd_path(dir_fd: int) -> str:
    return f"/proc/self/fd/{dir_fd}/{CONTROL_SOCKET}"


def peer(sock: _socket.socket) -> tuple[int, int]:
    """The peer's (pid, uid): `pid_t` is signed, `uid_t` unsigned (a uid above 2**31, as
    nfsnobody's 4294967294, read signed was never `os.geteuid()`: its own user refused)."""
    ucred = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, _UCRED_SIZE)
    return int.from_bytes(ucred[0:4], sys.byteorder, signed=True), int.from_bytes(ucred[4:8], sys.byteorder)


def _owner_only(dir_fd: int) -> os.stat_result:
    """Make the socket just bound 0600 without following a symlink (a chmod by its name
    would follow one swapped in since the bind, and root's would change a file outside the
    sandbox); its stat. Raises OSError when the name is no socket now. With no descriptor
    to spare (EMFILE, ENFILE: the server serves once it has one), by its name: `.stoker` is
    this user's and 0700 (`open_stoker_dir`), so no other user planted a link there."""
    try:
        node = os.open(CONTROL_SOCKET, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as e:
        if e.errno not in (errno.EMFILE, errno.ENFILE):
            raise
        os.chmod(CONTROL_SOCKET, 0o600, dir_fd=dir_fd)
        return _a_socket(os.stat(CONTROL_SOCKET, dir_fd=dir_fd, follow_symlinks=False))
    try:
        st = _a_socket(os.fstat(node))
        os.chmod(f"/proc/self/fd/{node}", 0o600)  # the inode the O_PATH fd holds, never a link's target
    finally:
        os.close(node)
    return st


def _a_socket(st: os.stat_result) -> os.stat_result:
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(errno.ELOOP, f"{CONTROL_SOCKET} is no longer the socket just bound")
    return st


class _Connection:
    """One client. The server thread reads and closes it; repliers (any thread) write to it
    and shut it down after the last answer."""

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.asked = False
        self._lock = threading.Lock()
        self._shut = False
        self.ended_writing = False  # the client shut its side after its request: it still reads
        self.silent_until = time.monotonic() + REQUEST_WAIT_SECS  # its request is due by then

    @property
    def answering(self) -> bool:
        """Whether answers to its request are still to come."""
        with self._lock:
            return self.asked and not self._shut

    def reply(self, answer: ControlReply) -> None:
        with self._lock:
            if self._shut:
                return
            try:
                data = encode_reply(answer)
                if self.sock.send(data, _socket.MSG_DONTWAIT) != len(data):
                    answer = ControlReply(ok=False, done=True, message="reply cut short")
            except OSError:
                answer = ControlReply(ok=False, done=True, message="client gone")
            if answer.done:
                self._shutdown()

    def _shutdown(self) -> None:
        self._shut = True
        try:
            self.sock.shutdown(_socket.SHUT_RDWR)  # wakes the server thread, which closes it
        except OSError:
            pass

    def refuse(self, message: str) -> None:
        """Tell the client why not, and end. The server thread's: a request the client sent
        before (queued with the connection, before its accept) is then read and not acted on
        (a `stoker kill` told "too many control connections" killed the task all the same)."""
        self.asked = True
        self.reply(ControlReply(ok=False, done=True, message=message))

    def close(self) -> None:
        """The server thread's: after this, replies are dropped (no fd is ever reused)."""
        with self._lock:
            self._shut = True
            self.sock.close()


class ControlServer:
    def __init__(self, stoker_dir: int, on_request: Callable[[ControlRequest, Replier], None],
                 label: str = "") -> None:
        self._dir = os.dup(stoker_dir)
        self._on_request = on_request
        self._label = label
        self._listener: _socket.socket | None = None
        self._inode: tuple[int, int] | None = None
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._thread: threading.Thread | None = None
        self._conns: dict[int, _Connection] = {}
        self._paused_until: float | None = None  # accepting again then (no descriptor was left)
        self._accept_failing = False

    def start(self) -> None:
        """Bind the socket (replacing a stale one) and start serving. Raises OSError."""
        try:
            os.unlink(CONTROL_SOCKET, dir_fd=self._dir)  # never follows a symlink
        except FileNotFoundError:
            pass
        listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        try:
            listener.bind(_fd_path(self._dir))
            st = _owner_only(self._dir)
            listener.listen(8)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self._listener, self._inode = listener, (st.st_dev, st.st_ino)
        self._thread = threading.Thread(target=self._serve, name=f"control {self._label}".strip(),
                                        daemon=True)
        start_thread(self._thread)

    def close(self) -> None:
        """Stop serving; open connections see the end of the stream. Idempotent."""
        if self._thread is not None:
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass
            self._thread.join(5.0)
            self._thread = None
        if self._inode is not None:
            try:
                st = os.stat(CONTROL_SOCKET, dir_fd=self._dir, follow_symlinks=False)
                if (st.st_dev, st.st_ino) == self._inode and stat.S_ISSOCK(st.st_mode):
                    os.unlink(CONTROL_SOCKET, dir_fd=self._dir)
            except OSError:
                pass
            self._inode = None
        for fd in (self._wake_r, self._wake_w, self._dir):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_r = self._wake_w = self._dir = -1

    # ---- the thread ----

    def _serve(self) -> None:
        assert self._listener is not None
        try:
            sel = self._selector()
        except Exception as exc:  # the task goes on without its control socket
            log_event(logger, logging.ERROR, "control_failed", task=self._label,
                      error=f"{type(exc).__name__}: {exc}")
            sel = None
        if sel is None:  # closed, or failed, before it could serve
            self._listener.close()
            return
        try:
            sel.register(self._listener.fileno(), "accept")
            sel.register(self._wake_r, "wake")
            while True:
                for data in sel.select(self._wait_secs()):
                    if data == "wake":
                        return
                    if data == "accept":
                        self._accept(sel)
                    else:
                        self._read(sel, data)
                now = time.monotonic()
                if self._paused_until is not None and now >= self._paused_until:
                    self._paused_until = None
                    sel.register(self._listener.fileno(), "accept")
                self._refuse_silent(sel, now)
        except Exception as exc:  # the task goes on without its control socket
            log_event(logger, logging.ERROR, "control_failed", task=self._label,
                      error=f"{type(exc).__name__}: {exc}")
        finally:
            for conn in list(self._conns.values()):
                self._drop(sel, conn)
            sel.close()
            self._listener.close()

    def _wait_secs(self) -> float | None:
        """How long the loop may wait: until it accepts again (no descriptor was left) or a
        client's request is due, whichever comes first; None: until a descriptor is ready."""
        due = [conn.silent_until for conn in self._conns.values() if not conn.asked]
        if self._paused_until is not None:
            due.append(self._paused_until)
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _refuse_silent(self, sel: _Poller, now: float) -> None:
        """Refuse each client that sent no request by its time (MAX_CONNECTIONS that say nothing
        would else keep out every `stoker kill`), what it sent read first: a wait a stop (SIGSTOP,
        a debugger) outlasted ends in EINTR, `poll` returns nothing, and a request waits unread."""
        for conn in list(self._conns.values()):
            if not conn.asked and now >= conn.silent_until:
                self._read(sel, conn)
                if not conn.asked and conn.sock.fileno() >= 0:  # (a client gone meanwhile: closed)
                    conn.refuse(f"no request within {REQUEST_WAIT_SECS:g} s")

    def _selector(self) -> _Poller | None:
        """The loop's selector (epoll: a descriptor of its own). With no descriptor left
        (EMFILE), one WARNING line and another try every ACCEPT_PAUSE_SECS (clients wait in
        the backlog meanwhile); None when the server is closed first."""
        failing = False
        wake = select.poll()  # no descriptor of its own
        wake.register(self._wake_r, select.POLLIN)
        while True:
            try:
                return _Poller()
            except OSError as exc:
                if exc.errno not in _NO_ROOM:
                    raise
                if not failing:
                    log_event(logger, logging.WARNING, "control_selector_failed",
                              task=self._label,
                              error=f"{exc.strerror} ({errno.errorcode.get(exc.errno or 0)})",
                              reason="no room to serve the control socket; trying again "
                                     f"every {ACCEPT_PAUSE_SECS} s")
                failing = True
            if wake.poll(ACCEPT_PAUSE_SECS * 1000):
                return None

    def _accept(self, sel: _Poller) -> None:
        assert self._listener is not None
        try:
            sock = _accepted(self._listener)
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        except OSError as exc:  # no descriptor left (EMFILE): the client waits in the backlog
            if exc.errno not in _NO_ROOM:
                raise
            sel.unregister(self._listener.fileno())  # it stays readable: try again in a while
            self._paused_until, failing = time.monotonic() + ACCEPT_PAUSE_SECS, self._accept_failing
            self._accept_failing = True
            if not failing:  # one line until an accept works again
                log_event(logger, logging.WARNING, "control_accept_failed", task=self._label,
                          error=f"{exc.strerror} ({errno.errorcode.get(exc.errno or 0, exc.errno)})",
                          reason=f"no room for a control connection; trying again every {ACCEPT_PAUSE_SECS} s")
            return
        self._accept_failing = False
        conn = _Connection(sock)
        _pid, uid = peer(sock)
        if uid not in (os.geteuid(), 0):
            conn.refuse("only the supervisor's user may control it")
        elif len(self._conns) >= MAX_CONNECTIONS:
            conn.refuse(f"too many control connections (at most {MAX_CONNECTIONS})")
        sock.setblocking(False)
        self._conns[sock.fileno()] = conn
        sel.register(sock.fileno(), conn)

    def _read(self, sel: _Poller, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(MAX_LINE + 1)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._ended(sel, conn)
            return
        if conn.asked:
            return  # one request per connection; the rest is ignored
        conn.buffer += data
        line, newline, _ = conn.buffer.partition(b"\n")
        if not newline:
            if len(conn.buffer) > MAX_LINE:
                conn.refuse(f"a request is at most {MAX_LINE} bytes")
            return
        self._asked(conn, line)

    def _asked(self, conn: _Connection, line: bytes) -> None:
        conn.asked = True
        try:
            request = parse_request(line)
        except ControlError as exc:
            conn.refuse(str(exc))
            return
        self._on_request(request, conn.reply)

    def _ended(self, sel: _Poller, conn: _Connection) -> None:
        """The client's end of stream, which ends a request sent with no newline (a JSON object
        cut short does not parse: refused, saying so). A client that shut its writing side
        (socat, `nc -N`) reads on: kept until its last answer (our shutdown) or its close,
        either of which is EPOLLHUP."""
        if not conn.asked and conn.buffer:
            self._asked(conn, conn.buffer)
        if conn.answering and not conn.ended_writing:
            conn.ended_writing = True
            sel.quiet(conn.sock.fileno())
            return
        self._drop(sel, conn)

    def _drop(self, sel: _Poller, conn: _Connection) -> None:
        fd = conn.sock.fileno()
        if fd >= 0:
            self._conns.pop(fd, None)
            sel.unregister(fd)
        conn.close()


class _Poller:
    """The server loop's `epoll` (a descriptor of its own), and what each descriptor it
    watches for reading stands for: what `selectors.EpollSelector` is to the loop."""

    def __init__(self) -> None:
        self._epoll = select.epoll()  # close-on-exec; OSError: no descriptor left (EMFILE)
        self._data: dict[int, object] = {}

    def register(self, fd: int, data: object) -> None:
        self._epoll.register(fd, select.EPOLLIN)
        self._data[fd] = data

    def quiet(self, fd: int) -> None:
        """Watch `fd` for its hang-up alone (both ends shut: EPOLLHUP), not for reading."""
        self._epoll.modify(fd, 0)

    def unregister(self, fd: int) -> None:
        """Watch `fd` no more (one it does not watch: nothing; one closed meanwhile: the kernel's)."""
        if fd in self._data:
            del self._data[fd]
            with contextlib.suppress(OSError):
                self._epoll.unregister(fd)

    def select(self, timeout: float | None) -> list[Any]:
        """What the descriptors ready for reading stand for, once one is or `timeout` (seconds,
        None: no end) passed; none when a signal interrupted the wait."""
        try:
            ready = self._epoll.poll(-1 if timeout is None else timeout, max(len(self._data), 1))
        except InterruptedError:
            return []
        return [self._data[fd] for fd, _ in ready if fd in self._data]

    def close(self) -> None:
        self._epoll.close()
        self._data.clear()


def _accepted(listener: _socket.socket) -> _socket.socket:
    """The next connection, as `socket.socket.accept` takes it (accept4 with SOCK_CLOEXEC)."""
    fd, _ = listener._accept()  # type: ignore[attr-defined]  # (typeshed lists it not)
    try:
        return _socket.socket(listener.family, listener.type, listener.proto, fd)
    except BaseException:
        os.close(fd)
        raise
