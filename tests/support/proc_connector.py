"""The kernel's process events (the netlink process connector), for benches and tests that
time a supervisor from outside it: when a process forked a child and when that child exec'd,
as the kernel stamped them (`timestamp_ns`, CLOCK_MONOTONIC: comparable with
`time.monotonic_ns()`).

Listening needs CAP_NET_ADMIN in the initial user and network namespaces (root on the host);
`unavailable()` says why not, for a "skipped: why". Every event of the host arrives, so a
reader keeps only those of the process it follows (`Follower`), on a thread of its own.
Layouts: <linux/netlink.h> (nlmsghdr), <linux/connector.h> (cn_msg), <linux/cn_proc.h>
(proc_event).
"""
from __future__ import annotations

import os
import socket
import struct
import threading

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
NLMSG_DONE = 3
PROC_CN_MCAST_LISTEN = 1
PROC_EVENT_FORK = 0x00000001
PROC_EVENT_EXEC = 0x00000002
PROC_EVENT_EXIT = 0x80000000
NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
CN_MSG = struct.Struct("=IIIIHH")  # idx, val, seq, ack, len, flags
EVENT_HEAD = struct.Struct("=IIQ")  # what, cpu, timestamp_ns
FORK = struct.Struct("=IIII")  # parent pid, parent tgid, child pid, child tgid
EXEC = struct.Struct("=II")  # pid, tgid
EXIT = struct.Struct("=IIII")  # pid, tgid, exit code (wait status), exit signal
SO_RCVBUFFORCE = 33
RECEIVE_BUFFER = 8 << 20  # the whole host's events arrive; a busy host must not overflow it


class ProcEvent:
    """One fork, exec or exit. `pid`/`tgid`: the process the event is about (for a fork,
    the child); `parent_tgid`: for a fork, the process that forked; `status`: for an exit,
    its wait status."""

    __slots__ = ("kind", "ns", "pid", "tgid", "parent_tgid", "status")

    def __init__(self, kind: str, ns: int, pid: int, tgid: int, parent_tgid: int = 0,
                 status: int = 0) -> None:
        self.kind, self.ns, self.pid, self.tgid = kind, ns, pid, tgid
        self.parent_tgid, self.status = parent_tgid, status

    def __repr__(self) -> str:
        return (f"ProcEvent({self.kind}, ns={self.ns}, pid={self.pid}, tgid={self.tgid}, "
                f"parent_tgid={self.parent_tgid}, status={self.status})")


def parse(datagram: bytes) -> list[ProcEvent]:
    """The fork, exec and exit events in one datagram from the connector (others left out)."""
    events = []
    offset = 0
    while offset + NLMSGHDR.size <= len(datagram):
        length = NLMSGHDR.unpack_from(datagram, offset)[0]
        if length < NLMSGHDR.size:
            break
        body = offset + NLMSGHDR.size + CN_MSG.size
        if body + EVENT_HEAD.size <= offset + length:
            event = _event(datagram, body)
            if event is not None:
                events.append(event)
        offset += (length + 3) & ~3  # NLMSG_ALIGN
    return events


def _event(data: bytes, at: int) -> ProcEvent | None:
    what, _cpu, ns = EVENT_HEAD.unpack_from(data, at)
    at += EVENT_HEAD.size
    if what == PROC_EVENT_FORK:
        _ppid, ptgid, pid, tgid = FORK.unpack_from(data, at)
        return ProcEvent("fork", ns, pid, tgid, parent_tgid=ptgid)
    if what == PROC_EVENT_EXEC:
        pid, tgid = EXEC.unpack_from(data, at)
        return ProcEvent("exec", ns, pid, tgid)
    if what == PROC_EVENT_EXIT:
        pid, tgid, status, _signal = EXIT.unpack_from(data, at)
        return ProcEvent("exit", ns, pid, tgid, status=status)
    return None


def listen() -> socket.socket:
    """A socket subscribed to the host's process events (OSError when not allowed)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_CONNECTOR)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)  # past rmem_max
        sock.bind((0, CN_IDX_PROC))
        op = struct.pack("=I", PROC_CN_MCAST_LISTEN)
        cn = CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(op), 0) + op
        sock.send(NLMSGHDR.pack(NLMSGHDR.size + len(cn), NLMSG_DONE, 0, 0, 0) + cn)
    except BaseException:
        sock.close()
        raise
    return sock


def unavailable() -> str | None:
    """Why the process connector cannot be read here, or None when it can."""
    if os.geteuid() != 0:
        return "the process connector needs root (CAP_NET_ADMIN)"
    try:
        listen().close()
    except OSError as err:
        return f"the process connector is not available: {err}"
    return None


class Follower:
    """Keeps the forks of one process (`tgid`: new processes, not threads) and the execs and
    exits of the processes it forked; `wait_for` blocks until one matching event arrived.
    A thread reads the socket until `close()`."""

    def __init__(self, tgid: int) -> None:
        self.tgid = tgid
        self.events: list[ProcEvent] = []
        self.overflows = 0  # times the kernel dropped events (a full receive buffer)
        self.error: OSError | None = None
        self._children: set[int] = set()
        self._cond = threading.Condition()
        self._sock = listen()
        self._stop_read, self._stop_write = os.pipe()
        self._thread = threading.Thread(target=self._read, name="proc-events", daemon=True)
        self._thread.start()

    def follow(self, tgid: int) -> None:
        """Keep events of `tgid` too (set before it forks or execs)."""
        with self._cond:
            self._children.add(tgid)

    def _read(self) -> None:
        import select
        while True:
            ready, _, _ = select.select([self._sock, self._stop_read], [], [])
            if self._stop_read in ready:
                return
            try:
                datagram = self._sock.recv(65536)
            except OSError as err:  # ENOBUFS: the buffer overflowed, those events are lost
                with self._cond:
                    self.overflows += 1
                    self.error = err
                continue
            kept = [e for e in parse(datagram) if self._mine(e)]
            if kept:
                with self._cond:
                    self.events += kept
                    self._cond.notify_all()

    def _mine(self, event: ProcEvent) -> bool:
        if event.kind == "fork":
            if event.parent_tgid == self.tgid and event.pid == event.tgid:
                with self._cond:
                    self._children.add(event.tgid)
                return True
            return False
        return event.tgid in self._children

    def wait_for(self, kind: str, after_ns: int, timeout: float, pid: int | None = None) -> ProcEvent:
        """The first `kind` event stamped after `after_ns` (of `pid` when given)."""
        def found() -> ProcEvent | None:
            return next((e for e in self.events if e.kind == kind and e.ns > after_ns
                         and (pid is None or e.tgid == pid)), None)
        with self._cond:
            if not self._cond.wait_for(lambda: found() is not None, timeout):
                raise TimeoutError(f"no {kind} event{f' of {pid}' if pid else ''} within {timeout} s "
                                   f"(the receive buffer overflowed {self.overflows} times)")
            event = found()
        assert event is not None
        return event

    def forget_before(self, ns: int) -> None:
        """Drop the events stamped before `ns` (a long run keeps its list short)."""
        with self._cond:
            self.events = [e for e in self.events if e.ns >= ns]

    def close(self) -> None:
        os.write(self._stop_write, b"x")
        self._thread.join(10)
        self._sock.close()
        os.close(self._stop_read)
        os.close(self._stop_write)
