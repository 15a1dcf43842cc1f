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
any activity, else every `Limits.loop_secs`), so a late request is closed within
`loop_secs` of its deadline.

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
"""
from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterable
from typing import Any

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


class RoomMakingServer(TcpWSGIServer):
    """Waitress' listener, which with every connection slot taken goes on accepting while
    some connection can make room: it closes that one (`longest_silent`), then accepts."""

    next_channel_cleanup: float = 0.0  # waitress': when `maintenance` is next due (`time.monotonic()`)
    in_connection_overflow: bool = False  # waitress': whether every slot is taken

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
        if not self.accepting:
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


def with_deadline(server: Any, request_secs: float) -> None:
    """Give each listening server in waitress' `server` (one, or a MultiSocketServer's in
    its map) channels with the deadline `request_secs`, and make it a `RoomMakingServer`."""
    channel = type("DeadlineChannel", (DeadlineChannel,), {"request_secs": request_secs})
    listeners = [server] if hasattr(server, "channel_class") else \
        [s for s in server.map.values() if hasattr(s, "channel_class")]
    for listener in listeners:
        if type(listener) is not TcpWSGIServer:
            raise TypeError(f"not a TCP listener of waitress: {type(listener).__name__}")
        listener.__class__ = RoomMakingServer
        listener.channel_class = channel
