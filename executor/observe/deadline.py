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
"""
from __future__ import annotations

import time
from typing import Any

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser


class _TimedParser(HTTPRequestParser):
    """Waitress' request parser, made at a request's first byte, noting when."""

    def __init__(self, adj: Any) -> None:
        super().__init__(adj)
        self.began = time.monotonic()


class DeadlineChannel(HTTPChannel):
    """Waitress' channel, closed once its request is late (`late`)."""

    parser_class = _TimedParser
    request_secs: float = 10.0  # set by `with_deadline`

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


def with_deadline(server: Any, request_secs: float) -> None:
    """Give each listening server in waitress' `server` (one, or a MultiSocketServer's in
    its map) channels with the deadline `request_secs`."""
    channel = type("DeadlineChannel", (DeadlineChannel,), {"request_secs": request_secs})
    listeners = [server] if hasattr(server, "channel_class") else \
        [s for s in server.map.values() if hasattr(s, "channel_class")]
    for listener in listeners:
        listener.channel_class = channel
