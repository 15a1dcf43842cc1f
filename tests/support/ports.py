"""Free loopback ports for tests: all bound at once, so no two are the same, then released;
and `stalled_listener()`, a port whose connections time out (its accept queue full).

A port is handed back free and bound later by what the test starts (an executor's task, a
ZooKeeper server that takes seconds to start). Taken from the kernel's ephemeral range (as
`bind(0)` takes them), it could meanwhile become the local port of any connection this host
opens, another test's HTTP client's or another process's, and the later bind fail. So the
ports come from below that range, where only an explicit bind takes one.

Under pytest-xdist each worker draws from a slice of that range of its own (`_own_range`):
a port is free only until what the test started binds it (seconds, for ZooKeeper), and in
that window another worker's test, drawing from the same range, could take it too.
"""
from __future__ import annotations

import os
import random
import socket

LOWEST = 10000  # above the well-known and most registered services' ports
_pick = random.SystemRandom()  # not the global generator a test may have seeded


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _own_range(low: int, high: int) -> range:
    """The ports from `low` to `high` this process may draw from: all of them, or under
    pytest-xdist (PYTEST_XDIST_WORKER=gwN of PYTEST_XDIST_WORKER_COUNT) the N-th of as many
    equal slices, so no two workers ever hand out the same port."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    try:
        index, count = int(worker.removeprefix("gw")), int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    except (KeyError, ValueError):
        return range(low, high + 1)
    size = (high + 1 - low) // max(count, 1)
    return range(low + index * size, low + (index + 1) * size)


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports nothing listens on, outside the ephemeral range when
    it leaves room below it (else from it, as the kernel picks them)."""
    own = _own_range(LOWEST, _ephemeral_low() - 1)
    socks: list[socket.socket] = []
    try:
        if len(own) >= 1000:
            for port in _pick.sample(own, min(200 + count, len(own))):
                if len(socks) == count:
                    break
                s = socket.socket()
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    s.close()
                    continue
                socks.append(s)
        while len(socks) < count:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def stalled_listener(address: str = "127.0.0.1", port: int = 0) -> list[socket.socket]:
    """A listener on `address`:`port` (0: a port the kernel picks) whose accept queue is full:
    a connection to it times out (the kernel drops its SYN), never refused. The listener
    first, then the connections that fill it; the caller closes them all."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    held = [listener]
    try:
        listener.bind((address, port))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(3):  # a backlog of 0 holds one; the kernel drops the next SYNs (SYN_SENT)
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(client)
            client.setblocking(False)
            client.connect_ex((address, port))
    except BaseException:
        for sock in held:
            sock.close()
        raise
    return held
