"""`http.client` without its HTTPS half, for a process that speaks plain HTTP only.

Stoker's HTTP health checks, lifecycle endpoints and connection to the Mesos agent are all
plain HTTP to a known address, but for an agent with libprocess SSL on, reached over TLS by
wrapping the socket itself (`executor/mesos/agenttls.py`). `http.client` imports `ssl` when it
loads, and with it OpenSSL: 2.6 MiB of the process's memory and 10–15 ms of its start, for
nothing Stoker uses. `load()` imports `http.client` while `import ssl` fails (a None entry
in `sys.modules`, Python's own rule), then lets `ssl` be imported again: whatever needs it
later (the ZooKeeper client of a task that announces itself) loads it as ever.

Only while the process has one thread: the moment in which `import ssl` fails must not meet
another thread's import. Otherwise, or when either module is loaded already, `load()` does
nothing, and `http.client` loads with `ssl` wherever it is first imported.
"""
from __future__ import annotations

import sys
import threading


def load() -> bool:
    """True when `http.client` is now loaded without `ssl`."""
    if "http.client" in sys.modules or "ssl" in sys.modules or threading.active_count() > 1:
        return False
    sys.modules["ssl"] = None  # type: ignore[assignment]
    try:
        import http.client  # noqa: F401 - loaded now, without HTTPSConnection
    finally:
        del sys.modules["ssl"]
    return True
