"""An observer server (`executor/observe/server.py`, waitress) run in this test process on a
thread of its own, and stopped without racing its loop.

`serving(reader, limits, host=, show_to=)` yields the server (its port:
`server.socket.getsockname()[1]`) and stops it on the way out, even when the test failed.

Stopping: the loop selects on every socket of its map and on its trigger (a pipe every
worker pulls when a response is ready), so nothing of it may be closed from another thread
while it runs. The old way, `server.trigger.pull_trigger(server.close)`, queued the close
and then wrote to the pipe; a pull of a connection finishing its answer could wake the loop
between the two, which ran the close (the pipe too) before our write: EBADF, or a byte
written into whatever file had just been given that descriptor. And a single socket's
`close` closes only the listening socket and the trigger: a connection still open kept the
loop running, and its worker's next pull met the closed pipe. Here the loop is only told to
stop (its map emptied, in its own thread, while the trigger stays open), the workers are
joined, and only then is everything the loop held closed, from this thread.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from executor.observe.metrics import DEFAULT_ENDED_SECS
from executor.observe.reader import Reader
from executor.observe.server import Limits, make_server


@contextlib.contextmanager
def serving(reader: Reader, limits: Limits, host: str = "127.0.0.1", show_to: str = "all",
            metrics_ended_secs: float | None = DEFAULT_ENDED_SECS) -> Iterator[Any]:
    """The observer of `reader`, listening on a free port of `host`, served until the block ends."""
    server = make_server(reader, host, 0, limits, show_to=show_to, metrics_ended_secs=metrics_ended_secs)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop(server, thread)


def stop(server: Any, thread: threading.Thread) -> None:
    """Stop `server`, whose loop `thread` runs: the loop leaves, then its sockets close."""
    from waitress import wasyncore

    loop_map = _loop_map(server)
    held: dict[int, Any] = {}

    def leave() -> None:  # in the loop's thread, between two polls: it sees an empty map and returns
        held.update(loop_map)
        loop_map.clear()

    _trigger(server, loop_map).pull_trigger(leave)  # it stays open until the loop is gone: no EBADF
    thread.join(10)
    server.task_dispatcher.shutdown()  # workers done: no pull of theirs meets a closed pipe
    wasyncore.close_all(held)  # what the loop left (nothing if it never ran `leave`)
    assert not thread.is_alive(), "the observer's loop did not stop"


def _trigger(server: Any, loop_map: dict[int, Any]) -> Any:
    """The pipe that wakes the loop (a server of several addresses has one per address)."""
    from waitress.trigger import trigger

    found = getattr(server, "trigger", None)
    return found if found is not None else next(d for d in loop_map.values() if isinstance(d, trigger))


def _loop_map(server: Any) -> dict[int, Any]:
    """The map of every socket and pipe `server`'s loop polls (a server of several
    addresses keeps it as `map`, one of a single address as `_map`)."""
    found = getattr(server, "map", None)
    return found if isinstance(found, dict) else server._map
