"""A deadline for each request the observer's server receives (`Limits.request_secs`).

Waitress closes a connection only after `channel_timeout` of silence, so a client that
drips a request a byte a second is never silent, never whole, and holds its connection
slot for as long as it likes: a few such clients take every slot (`Limits.connections`),
and every other client waits in the listen backlog behind them (64 dripping connections
held a real observer for as long as they dripped). Here a connection's channel notes when
its request began (its first byte; for a connection that has sent nothing yet, its
accepting), and one whose request is not whole `request_secs` later is closed, nothing
answered, however steadily it sends (no client of the observer takes seconds to send 16 KiB
of headers and no body). A kept-alive connection between two requests (nothing of the next
one received) is idle, not late: `channel_timeout` closes it, as before.

Checked where waitress' loop asks each channel whether it reads (every turn of the loop: on
any activity, else every `Limits.loop_secs` while a connection is open: `QuietLoop`), so a
late request is closed within `loop_secs` of its deadline.

The deadline alone leaves the slots to whoever opens connections fastest: waitress stops
accepting once `Limits.connections` are open, and connections that never send a byte are
closed only at their deadline, at the loop's next wake-up, a slot-full at a time (500 of
them held a request in the listen backlog for 78 s, and a client that keeps opening them
holds it for as long as it likes). So with every slot taken the listener goes on accepting
(`RoomMakingServer`): each new connection closes the one silent longest of those on which
nothing is being answered (`longest_silent`); only when every slot is answering a request
does a new connection wait in the backlog, as before. A client whose connection is closed
so had sent no byte for longer than every other one (none of a request still unread, which
is checked): nothing was owed to it.

A connection that finds no descriptor left (EMFILE: the observer's `ulimit -n` reached) is
taken on a descriptor kept for it (`RoomMakingServer.spare`) and answered 503 at once, one
WARNING line saying so until an accept works again (`_turn_away`). Was: the accept failed and
the connection stayed in the backlog, so the listener stayed readable and waitress' loop tried
again at once, forever: one WARNING line with a traceback a try (10,235 in the 2 s that 40
connections waited on a `prlimit --nofile=24` observer) and 40 % of a CPU.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import time
from collections.abc import Iterable
from typing import Any

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer

from executor.logs import log_event

logger = logging.getLogger(__name__)


class _TimedParser(HTTPRequestParser):
    """Waitress' request parser, made at a request's first byte, noting when."""

    def __init__(self, adj: Any) -> None:
        super().__init__(adj)
        self.began = time.monotonic()


class DeadlineChannel(HTTPChannel):
    """Waitress' channel, closed once its request is late (`late`)."""

    parser_class = _TimedParser
    request_secs: float = 10.0  # set by `with_deadline`

    # Waitress notes a connection's last byte received or sent as `time.time()`, which a step
    # of the wall clock moves: its moment is kept on the monotonic clock instead, whatever
    # waitress passes (`RoomMakingServer.readable` looks for idle ones on that clock too;
    # was: a step back of an hour kept every idle connection open that hour, a step forward
    # closed every kept-alive one at once).
    _last_activity: float = 0.0

    @property
    def last_activity(self) -> float:
        """When a byte was last received or sent (or the connection accepted): `time.monotonic()`."""
        return self._last_activity

    @last_activity.setter
    def last_activity(self, _wall: float) -> None:
        self._last_activity = time.monotonic()

    def __init__(self, server: Any, sock: Any, addr: Any, adj: Any, map: Any = None) -> None:
        self.accepted = time.monotonic()
        self.heard = False  # whether a byte came yet
        super().__init__(server, sock, addr, adj, map=map)

    def late(self, now: float) -> bool:
        """Whether the request being received began `request_secs` or more before `now`
        (a connection that has sent nothing yet: was accepted that long before)."""
        request = self.request
        if request is not None and not request.completed:
            return now - request.began >= self.request_secs
        return not self.heard and now - self.accepted >= self.request_secs

    def received(self, data: bytes) -> bool:
        if data:
            self.heard = True
        return bool(super().received(data))

    def readable(self) -> bool:
        if self.late(time.monotonic()):
            self.will_close = True  # then writable: the loop's next turn closes it
        return bool(super().readable())


def _answering_nothing(channel: HTTPChannel) -> bool:
    """Whether nothing is being answered on `channel` (no request queued or in a worker, no
    answer left to send) and it is not being closed already."""
    return not (channel.requests or channel.total_outbufs_len or channel.will_close
                or channel.close_when_flushed)


def _nothing_unread(channel: HTTPChannel) -> bool:
    """Whether no byte of `channel`'s (nor its end) waits to be read: what it sent
    so far has all been read."""
    try:
        channel.socket.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def longest_silent(dispatchers: Iterable[Any]) -> HTTPChannel | None:
    """Of the connections among `dispatchers` (a loop's map: also its listeners and
    wake-up pipes) on which nothing is being answered and nothing waits to be read, the
    one silent longest (its last byte received or sent, or its accepting, the longest
    ago); None when there is none."""
    idle = sorted((d for d in dispatchers if isinstance(d, HTTPChannel) and _answering_nothing(d)),
                  key=lambda channel: channel.last_activity)
    return next((channel for channel in idle if _nothing_unread(channel)), None)


_NO_ROOM = (errno.EMFILE, errno.ENFILE)
_TURNED_AWAY_BODY = b"the observer has no file descriptor left (ulimit -n); try again\n"
TURNED_AWAY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
               b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(_TURNED_AWAY_BODY)) + _TURNED_AWAY_BODY


class RoomMakingServer(TcpWSGIServer):
    """Waitress' listener, which with every connection slot taken goes on accepting while
    some connection can make room: it closes that one (`longest_silent`), then accepts."""

    next_channel_cleanup: float = 0.0  # waitress': when `maintenance` is next due (`time.monotonic()`)
    in_connection_overflow: bool = False  # waitress': whether every slot is taken
    spare: int = -1  # /dev/null, kept for a connection that finds no descriptor left (`_turn_away`)
    short: bool = False  # an accept found none: said once, until one works again
    resting_until: float = 0.0  # no spare either: not accepting before then (the loop's next wake-up)

    def _full(self) -> bool:
        return len(self._map) >= self.adj.connection_limit  # waitress' count: listeners and pipes too

    def readable(self) -> bool:
        """Whether to accept: a slot is free, or one can be freed. As waitress' own, it
        first closes the connections idle `channel_timeout` every `cleanup_interval`, both
        counted on the monotonic clock, as each channel's `last_activity` is."""
        now = time.monotonic()
        if now >= self.next_channel_cleanup:
            self.next_channel_cleanup = now + self.adj.cleanup_interval
            self.maintenance(now)
        if not self.accepting or now < self.resting_until:
            return False
        full = self._full()
        if full and not self.in_connection_overflow:
            log_event(logger, logging.WARNING, "observer_connections_full", limit=self.adj.connection_limit,
                      reason="each new connection closes the one silent longest")
        self.in_connection_overflow = full
        return not full or longest_silent(self._map.values()) is not None

    def handle_accept(self) -> None:
        """Accept a waiting connection, first closing the one silent longest when every
        slot is taken; none to close (a request came on it since `readable`): it waits."""
        if self._full():
            room = longest_silent(self._map.values())
            if room is None:
                return
            # Closed at once, so its descriptor may be the new connection's: safe since
            # nothing of it waited to be read, so it is not among this turn's readable ones.
            room.handle_close()
        super().handle_accept()

    def accept(self) -> Any:
        """wasyncore's; None when the connection found no descriptor left: turned away."""
        try:
            accepted = super().accept()
        except OSError as exc:
            if exc.errno not in _NO_ROOM:
                raise
            self._turn_away(exc)
            return None
        if accepted is not None:
            self.short = False  # said again at the next shortage
            if self.spare < 0:  # lost in a shortage (another thread took it): kept again for the next one
                self.spare = _spare()
        return accepted

    def _turn_away(self, exc: OSError) -> None:
        """Answer the waiting connection 503 on the spare descriptor, then keep another; with
        no spare (taken meanwhile), the listener rests until the loop's next wake-up."""
        if not self.short:
            log_event(logger, logging.WARNING, "observer_connection_refused",
                      error=f"{exc.strerror} ({errno.errorcode[exc.errno or 0]})",
                      reason="no descriptor is left for a new connection (ulimit -n): each is answered 503 "
                             "until one is")
        self.short = True
        if self.spare < 0:
            self.spare = _spare()
        if self.spare < 0:
            self.resting_until = time.monotonic() + self.adj.cleanup_interval
            return
        os.close(self.spare)
        with contextlib.suppress(OSError):  # (gone already, or the descriptor taken meanwhile)
            conn, _ = self.socket.accept()
            with conn:  # its request read first: one closed unread is reset, the answer lost with it
                conn.setblocking(False)
                _discard(conn)
                conn.send(TURNED_AWAY)
                conn.shutdown(socket.SHUT_WR)
                _discard(conn)
        self.spare = _spare()

    def close(self) -> None:
        if self.spare >= 0:
            os.close(self.spare)
            self.spare = -1
        super().close()


def _discard(conn: socket.socket) -> None:
    """Read what `conn` has sent so far (1 MiB at most), without waiting."""
    with contextlib.suppress(OSError):
        for _ in range(16):
            if not conn.recv(65536):
                return


def _spare() -> int:
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return -1


IDLE_WAIT_SECS = 3600.0  # the loop's wait with nothing due by a time (`QuietLoop`)


class QuietLoop:
    """waitress' `asyncore` as its server's `run` uses it (the attribute waitress keeps for
    a test's shim): the same loop, whose select waits at most the loop's `timeout` only while
    something is due by a time: a connection open (one idle `channel_timeout` closed, a late
    request at its deadline) or a listener resting (`RoomMakingServer.resting_until`). Else
    it waits for a connection or for its trigger (a worker's answer, a stop), an hour at most
    (finite: wasyncore sleeps its timeout when nothing at all is watched): waitress' woke
    every `Limits.loop_secs` for nothing, 2 a 20 s, each 2-6 ms of CPU on a VM whose idle
    CPUs were slow to wake (`bench/bench_observe.py`: 12-31 ms per 20 s)."""

    def loop(self, timeout: float = 30.0, use_poll: bool = False, map: dict[int, Any] | None = None,
             count: int | None = None) -> None:
        assert map is not None and count is None  # as waitress' servers call it
        poll = wasyncore.poll2 if use_poll else wasyncore.poll
        while map:
            poll(timeout if timed(map.values()) else IDLE_WAIT_SECS, map)


def timed(dispatchers: Iterable[Any]) -> bool:
    """Whether the loop must wake by a time: a connection is open or a listener rests."""
    now = time.monotonic()
    return any(isinstance(d, HTTPChannel) or (isinstance(d, RoomMakingServer) and now < d.resting_until)
               for d in dispatchers)


def with_deadline(server: Any, request_secs: float) -> None:
    """Give each listening server in waitress' `server` (one, or a MultiSocketServer's in
    its map) channels with the deadline `request_secs`, and make it a `RoomMakingServer`;
    its loop waits an hour at most (`IDLE_WAIT_SECS`), not `loop_secs`, while nothing is due
    by a time (`QuietLoop`)."""
    channel = type("DeadlineChannel", (DeadlineChannel,), {"request_secs": request_secs})
    listeners = [server] if hasattr(server, "channel_class") else \
        [s for s in server.map.values() if hasattr(s, "channel_class")]
    for listener in listeners:
        if type(listener) is not TcpWSGIServer:
            raise TypeError(f"not a TCP listener of waitress: {type(listener).__name__}")
        listener.__class__ = RoomMakingServer
        listener.channel_class = channel
        listener.spare = _spare()
    server.asyncore = QuietLoop()
