"""`stoker tail -f`'s wake-ups: the kernel's word (inotify) that a followed log changed.

A follower with nothing new waits for its reader to go (`poll` of its stdout: a hang-up or
an error, never a write) for `FOLLOW_IDLE_SECS` at most, then looks again. With inotify it
also wakes as soon as anything happens in the run's directory (a write to the log, a
rotation's renames, a new file) or in the process's (a new run): a line is printed as it
is written, and a burst of rotations is followed file by file as it comes, where a look
every 0.2 s found files already rotated out of the backups kept (lost before any reader
saw them). The look after the wait is the same either way, so what inotify does not see
(a new attempt's `.logs`, a file system that sends no events) is found by the next look at
the latest. Where inotify cannot be had (its per-user limit of instances, 128 by default,
reached), the follower looks every `FOLLOW_IDLE_SECS` as before; it says nothing of it.

The watches are on directories only, each named by the descriptor the follower opened it by
(`/proc/self/fd/N`: never by a path the task could change under it), and read nothing: an
event is a reason to look, its contents are dropped.
"""
from __future__ import annotations

import ctypes
import os
import select

IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x2, 0x4, 0x8
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
IN_DELETE_SELF, IN_MOVE_SELF = 0x400, 0x800
IN_ONLYDIR = 0x01000000
IN_NONBLOCK, IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC

RUN_DIR_EVENTS = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE
                  | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF)  # a write, a rotation, a truncation
PROCESS_DIR_EVENTS = IN_CREATE | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF  # a new run; moved away


class Wakeups:
    """One inotify instance and the directories it watches, each under a kind ("run",
    "process", "awaited"): the kernel gives a directory watched twice one watch descriptor,
    which stays while a kind still names it; `fd` None: no instance could be had."""

    def __init__(self) -> None:
        self._libc: ctypes.CDLL | None = None
        self.fd: int | None = None
        self._watches: dict[str, int] = {}  # kind → watch descriptor
        try:
            self._libc = ctypes.CDLL(None, use_errno=True)
            fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        except (OSError, AttributeError):  # no libc to load, no inotify in it
            return
        self.fd = fd if fd >= 0 else None

    def watch(self, kind: str, dir_fd: int, events: int) -> None:
        """Watch the directory open as `dir_fd` for `events`, in place of the one `kind` named;
        nothing when the kernel refuses (its per-user limit of watches reached)."""
        if self.fd is None or self._libc is None:
            return
        path = f"/proc/self/fd/{dir_fd}".encode()  # the directory open, wherever it was moved
        wd = self._libc.inotify_add_watch(self.fd, path, events | IN_ONLYDIR)
        self.forget(kind, keep=wd)
        if wd >= 0:
            self._watches[kind] = wd

    def forget(self, kind: str, keep: int = -1) -> None:
        """No more wake-ups from the directory `kind` named (the run before), unless another
        kind names it too (an awaited run's, once it is followed) or it is `keep`."""
        old = self._watches.pop(kind, None)
        if old is not None and old != keep and old not in self._watches.values() and self._libc is not None:
            self._libc.inotify_rm_watch(self.fd, old)

    def wait(self, out_fd: int | None, secs: float) -> bool:
        """Wait `secs` at most, until something changed where it watches; True as soon as
        `out_fd` has no reader any more (the kernel says so without a write)."""
        poller = select.poll()
        if out_fd is not None:
            poller.register(out_fd, 0)  # no events asked: only an error or a hang-up wakes it
        if self.fd is not None:
            poller.register(self.fd, select.POLLIN)
        ready = poller.poll(secs * 1000)  # (with nothing registered: a sleep of `secs`)
        if any(fd == out_fd for fd, _ in ready):
            return True
        self._drain()
        return False

    def _drain(self) -> None:
        while self.fd is not None:
            try:
                if not os.read(self.fd, 65536):
                    return
            except BlockingIOError:
                return

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
