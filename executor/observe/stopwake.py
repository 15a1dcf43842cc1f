"""The observer's stop, kept however its signal lands: a dispatcher in the server's loop that
a stop signal wakes.

`stoker observe` stops when its main thread's SIGTERM, SIGHUP or SIGINT handler raises
KeyboardInterrupt, and waitress' loop takes that as its stop. But Python runs the handler
at whatever bytecode the main thread is at, and one raised inside a finalizer or a weakref
callback (an object the garbage collector frees as the loop turns: a logging handler
replaced at start, a thread's lock) is reported as unraisable and dropped: the loop then
waited for its next event, an hour at most while nothing is due (`deadline.QuietLoop`),
its stop gone (a CI run saw an observer sent SIGTERM as it began to serve still running 30
s later; a KeyboardInterrupt dropped so is one way to lose the stop, the one this closes).
So `stop_wakes_the_loop` gives CPython's C handler a wakeup fd (the write end of a socket
pair, `signal.set_wakeup_fd`), to which it writes every signal's number as it arrives,
from any thread, and puts the read end in the loop's map: a stop signal's byte
raises KeyboardInterrupt there, in the loop itself, whatever became of the handler's. The
handler's own still stops the loop at once where it is raised; the byte is then never read.

Install it from the main thread (Python's rule for the wakeup fd). Idle it costs nothing:
the read end is one more descriptor the loop's select already waits on.
"""
from __future__ import annotations

import contextlib
import signal
import socket
from collections.abc import Iterator
from typing import Any

from waitress import wasyncore

STOPS = frozenset((signal.SIGTERM, signal.SIGINT, signal.SIGHUP))


class StopWaker(wasyncore.dispatcher):
    """The read end of the wakeup socket pair, in the loop's map."""

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def handle_read(self) -> None:
        try:
            numbers = self.socket.recv(512)
        except BlockingIOError:
            return
        if any(n in STOPS for n in numbers):
            raise KeyboardInterrupt  # wasyncore raises it on, and waitress' `run` stops


@contextlib.contextmanager
def stop_wakes_the_loop() -> Iterator[Any]:
    """While inside, every signal's number goes to a socket pair; yields `watch(loop_map)`,
    which puts its read end in the loop's map (a byte written before that waits there).
    On leaving, the wakeup fd found is put back and both ends are closed."""
    read_end, write_end = socket.socketpair()
    read_end.setblocking(False)
    write_end.setblocking(False)  # set_wakeup_fd requires it; a full buffer drops a byte, not a stop
    previous = signal.set_wakeup_fd(write_end.fileno(), warn_on_full_buffer=False)
    watched: list[StopWaker] = []

    def watch(loop_map: dict[int, Any]) -> None:
        watched.append(StopWaker(read_end, map=loop_map))

    try:
        yield watch
    finally:
        signal.set_wakeup_fd(previous)
        for waker in watched:
            waker.close()  # (out of the map; closes the read end)
        read_end.close()
        write_end.close()
