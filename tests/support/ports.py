"""Free loopback ports for tests: all bound at once, so no two are the same, then released.

A port is handed back free and bound later by what the test starts (an executor's task, a
ZooKeeper server that takes seconds to start). Taken from the kernel's ephemeral range (as
`bind(0)` takes them), it could meanwhile become the local port of any connection this host
opens, another test's HTTP client's or another process's, and the later bind fail. So the
ports come from below that range, where only an explicit bind takes one.
"""
from __future__ import annotations

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


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports nothing listens on, outside the ephemeral range when
    it leaves room below it (else from it, as the kernel picks them)."""
    high = _ephemeral_low() - 1
    socks: list[socket.socket] = []
    try:
        if high - LOWEST >= 1000:
            for port in _pick.sample(range(LOWEST, high + 1), min(200 + count, high + 1 - LOWEST)):
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
