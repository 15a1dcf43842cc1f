"""s6's readiness notification (`--ready-fd FD`): a service directory's `notification-fd`
file names a descriptor s6-supervise opens (a pipe's write end) in the process it starts;
the service writes a newline to it once it is ready and closes it, and `s6-svc -wU`, `s6-svwait
-U` and dependent services wait for that moment. `stoker run` writes it at the moment it tells
systemd READY=1 (`executor/local/unitstate.py`: the task first RUNNING), through the same
`UnitState` (and tells systemd as well, READY=1, STATUS= and its watchdog, when it named a
socket too: s6 under a systemd unit, or an operator's `Type=notify` unit with the flag); the
descriptor is close-on-exec from the start, so that no process of the task
holds it (one that did would keep the pipe open after Stoker closed it). Loaded only with
`--ready-fd`.
"""
from __future__ import annotations

import fcntl
import logging
import os

from config.errors import SettingsError
from executor.host.sdnotify import Notifier
from executor.logs import log_event

logger = logging.getLogger(__name__)


class ReadyFd(Notifier):
    """One newline on `fd` when READY=1 is due, then `fd` closed; everything, READY=1 and the
    watchdog's feed included, told `systemd` too when it named a socket as well."""

    def __init__(self, fd: int, systemd: Notifier | None = None) -> None:
        super().__init__("", systemd.watchdog_secs if systemd is not None else None)
        self.fd: int | None = fd
        self.systemd = systemd

    def send(self, *fields: str) -> bool:  # the watchdog's feed (Heartbeat), systemd's alone
        return self.systemd.send(*fields) if self.systemd is not None else False

    def ready(self, status: str) -> None:
        with self._lock:
            if self.fd is not None:
                try:
                    os.write(self.fd, b"\n")
                except OSError as exc:  # the supervisor gone (EPIPE): nobody waits for it
                    log_event(logger, logging.WARNING, "ready_fd_failed", fd=self.fd,
                              error=exc.strerror, reason="the readiness newline was not written")
                self._close()
                self.ready_sent = True
        if self.systemd is not None:
            self.systemd.ready(status)

    def status(self, text: str) -> None:
        if self.systemd is not None:
            self.systemd.status(text)

    def stopping(self, status: str) -> None:
        if self.systemd is not None:
            self.systemd.stopping(status)

    def close(self) -> None:
        with self._lock:
            self._close()
        if self.systemd is not None:
            self.systemd.close()

    def _close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def ready_fd(fd: int, systemd: Notifier | None = None) -> ReadyFd:
    """The notifier writing to `fd`, made close-on-exec, and telling `systemd` as well;
    SettingsError when `fd` is not a descriptor open for writing."""
    try:
        mode = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
    except (OSError, OverflowError):  # OverflowError: past a C int, no descriptor either
        raise SettingsError(f"--ready-fd {fd}: descriptor {fd} is not open (the service directory's "
                            "notification-fd names the one s6-supervise opens)") from None
    if mode == os.O_RDONLY:
        raise SettingsError(f"--ready-fd {fd}: descriptor {fd} is open for reading only") from None
    os.set_inheritable(fd, False)
    return ReadyFd(fd, systemd)
