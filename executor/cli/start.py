"""`stoker`'s entry point, the console script's and `python -m executor`'s. For `stoker run`
it first tries the early start (`executor/cli/launch.py`: a kept plan's first processes
started before anything else of Stoker's is loaded). Then it installs the
attrs code cache for the command about to run (`executor.codecache`: `run`, `executor` and
`observe` have a file each, the short commands share one) before any of Stoker's modules
defines a class, then runs `executor.cli.main.run`, which saves the cache before the
process ends.

For `stoker executor` it also loads `http.client` first, without `ssl`
(`healthcheck/plainhttp.py`: Stoker speaks no TLS, and `ssl` with OpenSSL is 2.6 MiB of
every executor), while the process has no second thread.
"""
from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not `typing`'s: importing typing costs `stoker run` 18 ms before its first fork
if TYPE_CHECKING:
    from typing import NoReturn


def run() -> NoReturn:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    try:
        if command == "run":
            from executor.cli import launch

            launch.begin(sys.argv[1:], os.environ)
        from executor import codecache
    except KeyboardInterrupt:  # Ctrl-C meanwhile: an early start's watchdog ends its runs
        sys.exit(130)
    codecache.install(command if command in codecache.PROFILES else "cli")
    if command == "executor":
        from healthcheck import plainhttp

        plainhttp.load()
    try:
        from executor.cli.main import run as main
    except KeyboardInterrupt:  # Ctrl-C while loading: the shell's code, not a traceback
        sys.exit(130)
    main()

