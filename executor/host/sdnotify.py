"""systemd's service notifications (sd_notify(3)), with the standard library only: what
`stoker run` and `stoker observe` tell the service manager when they run as a unit's main
process (`Type=notify`).

systemd names a datagram socket in `$NOTIFY_SOCKET` (a path, or `@name` in the abstract
namespace) and, with `WatchdogSec=`, the watchdog's period in `$WATCHDOG_USEC` (for the
process `$WATCHDOG_PID` names, when set). The entry point (`executor/cli/start.py`) takes
these variables out of Stoker's environment before anything forks, so that no process of
the task inherits them (a task's own sd_notify-aware program would otherwise speak to
systemd as the unit: `READY=1` before the task is, `STOPPING=1`), and hands them to
`notifier`; this module is loaded only when one of them was set.

Each message is one datagram of `KEY=value` lines, sent without blocking: a full socket
queue or a gone manager loses that message (the next one says the state again, and a lost
READY=1 goes with it), and only the first failure is logged. The watchdog is fed (`WATCHDOG=1`) at half its period by
`Heartbeat.beat`, called from the supervising loop's own timer, so a wedged loop starves it
and systemd restarts the unit.
"""
from __future__ import annotations

import _socket
import logging
import os
import threading
import time

from config.words import loggable
from executor.logs import log_event

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

logger = logging.getLogger(__name__)

STATUS_CHARS = 400  # a STATUS= line is shown by `systemctl status`: one short line
# How often the watchdog is fed, whatever WatchdogSec= says: at least hourly (a period of
# centuries, `WatchdogSec=1000y`, made the supervising loop's timeout one no wait accepts:
# OverflowError, the task FAILED), at most every 10 ms (`WatchdogSec=1us`: a loop spinning
# to feed it, 60% of a core; no loop meets a period that short anyway).
FEED_SECS = (0.01, 3600.0)


def one_line(text: str) -> str:
    """`text` fit for a STATUS= value: one line, at most STATUS_CHARS characters, its control
    characters escaped (`\\x00`): systemd ignores a whole message holding a NUL byte, and a
    health check's output in a task's reason may hold one; its format characters too
    (`loggable`, as `stoker run`'s state line of the same change)."""
    flat = loggable(" ".join(text.split()))
    return flat if len(flat) <= STATUS_CHARS else flat[:STATUS_CHARS - 1] + "…"


class Notifier:
    """Sends notifications to the socket systemd named. Safe from any thread."""

    def __init__(self, address: str | bytes, watchdog_secs: float | None) -> None:
        self.address = address
        self.watchdog_secs = watchdog_secs  # the manager's period: fed at half of it
        self._sock: _socket.socket | None = None  # `socket`'s own (its module: executor/host/control.py)
        self._failed = False
        self._lock = threading.Lock()
        self._ready_due = False  # READY=1 was not received yet: it goes with the next message
        self.ready_sent = False

    def send(self, *fields: str) -> bool:
        """One datagram of `fields` (`KEY=value` each), led by READY=1 while one is due; False
        when it was not sent."""
        with self._lock:
            ready = self._ready_due and not self.ready_sent
            data = "\n".join(("READY=1", *fields) if ready else fields).encode(errors="replace")
            try:
                if self._sock is None:
                    self._sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC
                                                | _socket.SOCK_NONBLOCK)
                self._sock.sendto(data, self.address)
            except OSError as exc:
                if not self._failed:
                    self._failed = True
                    log_event(logger, logging.WARNING, "systemd_notify_failed", socket=_shown(self.address),
                              error=exc.strerror, reason="later failures are not logged")
                return False
            self.ready_sent = self.ready_sent or ready
            return True

    def ready(self, status: str) -> None:
        """READY=1 (once; a later call only updates the status). One lost (systemd's queue
        full: EAGAIN) goes with the next message (a status, the watchdog's feed): a unit that
        never heard it stays `activating` until TimeoutStartSec= kills it."""
        self._ready_due = True
        self.status(status)

    def status(self, text: str) -> None:
        self.send(f"STATUS={one_line(text)}")

    def stopping(self, status: str) -> None:
        self._ready_due = False  # never heard: no READY=1 now
        self.send("STOPPING=1", f"STATUS={one_line(status)}")

    def heartbeat(self, clock: Callable[[], float] = time.monotonic) -> Heartbeat | None:
        """The watchdog's feeder, when systemd asked for one."""
        if self.watchdog_secs is None:
            return None
        return Heartbeat(self, min(max(self.watchdog_secs / 2, FEED_SECS[0]), FEED_SECS[1]), clock)

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


class Heartbeat:
    """WATCHDOG=1 every `every_secs`, when the loop that owns it calls `beat`."""

    def __init__(self, notifier: Notifier, every_secs: float, clock: Callable[[], float]) -> None:
        self._notifier = notifier
        self.every_secs = every_secs
        self.clock = clock
        self._due = clock()  # the first call feeds it

    def beat(self) -> float:
        """Feed the watchdog when due; the (monotonic) time of the next feed."""
        now = self.clock()
        if now >= self._due:
            self._notifier.send("WATCHDOG=1")
            self._due = now + self.every_secs
        return self._due


def notifier(variables: Mapping[str, str], pid: int | None = None) -> Notifier | None:
    """The notifier `variables` (what the entry point took out of the environment) ask for; None without a socket this
    process may use (none named, or one of a kind Stoker does not speak: `vsock:`)."""
    name = variables.get("NOTIFY_SOCKET", "")
    if name.startswith("@"):
        address: str | bytes = b"\0" + os.fsencode(name[1:])  # its bytes as they were, UTF-8 or not
    elif name.startswith("/"):
        address = name
    else:
        if name:
            log_event(logger, logging.WARNING, "systemd_notify_unsupported", socket=name,
                      reason="Stoker speaks to AF_UNIX sockets only: no notifications are sent")
        return None
    return Notifier(address, _watchdog_secs(variables, os.getpid() if pid is None else pid))


def _watchdog_secs(variables: Mapping[str, str], pid: int) -> float | None:
    """WATCHDOG_USEC in seconds, when it is for this process (WATCHDOG_PID unset or ours)."""
    try:
        usec = int(variables["WATCHDOG_USEC"])
        owner = int(variables.get("WATCHDOG_PID", str(pid)))
    except (KeyError, ValueError):
        return None
    return usec / 1e6 if usec > 0 and owner == pid else None


def _shown(address: str | bytes) -> str:
    return "@" + address[1:].decode(errors="replace") if isinstance(address, bytes) else address
