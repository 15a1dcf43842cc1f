"""`stoker`'s entry point, the console script's and `python -m executor`'s: installs the
attrs code cache for the command about to run (`executor.codecache`: `run`, `executor` and
`observe` have a file each, the short commands share one) before any of Stoker's modules
defines a class, then runs `executor.cli.main.run`, which saves the cache before the
process ends.

For `stoker executor` it also loads `http.client` first, without its HTTPS half: Stoker
speaks plain HTTP only (to the agent, to health and lifecycle endpoints: docs/mesos.md §1),
and `http.client` would otherwise load `ssl` and OpenSSL, 2.6 MiB of every executor's memory
and 10–15 ms of its start, for nothing. `ssl` stays importable: a module that needs it (the
ZooKeeper client of a task that announces itself) loads it as ever. This is done here,
before the process has a second thread, because the window in which `ssl` cannot be
imported must not meet another thread's import.
"""
from __future__ import annotations

import sys
from typing import NoReturn

from executor import codecache


def run() -> NoReturn:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    codecache.install(command if command in codecache.PROFILES else "cli")
    if command == "executor":
        _http_client_without_tls()
    try:
        from executor.cli.main import run as main
    except KeyboardInterrupt:  # Ctrl-C while loading: the shell's code, not a traceback
        sys.exit(130)
    main()


def _http_client_without_tls() -> None:
    """Imports `http.client` while `import ssl` fails (Python's own rule for a None entry
    in `sys.modules`), unless something loaded either already."""
    if "http.client" in sys.modules or "ssl" in sys.modules:
        return
    sys.modules["ssl"] = None  # type: ignore[assignment]
    try:
        import http.client  # noqa: F401 - loaded now, without HTTPSConnection
    finally:
        del sys.modules["ssl"]
