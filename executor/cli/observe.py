"""`stoker observe [--host H] [--port 1338]`: the host's read-only web view of its tasks.

Serves `executor/observe/` until interrupted: the tasks of the host registry, each task's
processes, health and history, and their logs, as pages and as JSON under /api/. Binds
loopback (127.0.0.1) unless `--host` says otherwise; another address is logged as a
WARNING, since every task's logs become readable from there; a host name is served on
every address it resolves to (`localhost`: 127.0.0.1 and ::1 where /etc/hosts says so), on
one port. Prints the URL it serves on stdout once listening (`--port 0` picks a free
port). Exit 0 on Ctrl-C or SIGTERM, 1 when it cannot listen (the port is in use, the
name resolves to nothing) or cannot read the registry (another user's, one it does not
trust), 2 when this installation lacks waitress.

It logs to stderr (the address it listens on, a request it could not answer, waitress's
own lines) as `stoker executor` does: text, or JSON with `--log-format json`.

Only this command imports the observer (and waitress): `stoker run` and `stoker executor`
never load them.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
from typing import Any

from config.argdecl import add_arguments
from config.logsettings import LogSettings
from config.registry import RegistrySettings
from config.words import quoted
from executor.cli.targets import error, registry_arguments
from executor.logs import log_event

logger = logging.getLogger(__name__)

DEFAULT_PORT = 1338  # Thermos' observer's


def register(sub: Any, command: Any) -> None:
    observe = command(sub, "observe", "serve a read-only web view of this host's tasks, their "
                                      "processes, health and logs",
                      "examples:\n  stoker observe                  (http://127.0.0.1:1338/)\n"
                      "  ssh -L 1338:127.0.0.1:1338 agent-7   then open http://localhost:1338/\n"
                      "  stoker observe --host 0.0.0.0   (every address: logged as a warning)\n\n"
                      "JSON: /api/tasks, /api/tasks/ID, "
                      "/api/tasks/ID/processes/NAME/logs?run=N&stream=stdout&offset=&length=")
    observe.add_argument("--host", default="127.0.0.1", metavar="ADDRESS",
                         help="the address to listen on (default 127.0.0.1: this host only)")
    observe.add_argument("--port", type=_port, default=DEFAULT_PORT, metavar="PORT",
                         help=f"the port to listen on (default {DEFAULT_PORT}; 0: a free one)")
    registry_arguments(observe)
    add_arguments(observe, LogSettings)
    observe.set_defaults(handler=run)


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{quoted(text)} is not a port number (0 ... 65535)")
    return int(text)


def run(args: argparse.Namespace) -> int:
    from executor.cli import logsetup
    from executor.host.registry import Registry, RegistryUnreadable
    from executor.observe.reader import Reader
    from executor.observe.server import serve

    logs = LogSettings.from_args(args, os.environ)
    logsetup.configure(logs.log_format, logs.log_level)
    settings = RegistrySettings.from_args(args, os.environ)

    def ready(host: str, port: int) -> None:
        shown = f"[{host}]" if ":" in host else host
        print(f"stoker observe: http://{shown}:{port}/ (registry {settings.registry_root})",
              flush=True)

    try:  # a registry this user may not read would be served as a host without tasks
        Registry(settings).read()
    except RegistryUnreadable as exc:
        error(str(exc))
        return 1
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        serve(Reader(settings), args.host, args.port, ready=ready)
    except OSError as exc:
        error(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
        return 1
    except ModuleNotFoundError as exc:  # an installation without it: setup.py requires it
        if (exc.name or "").partition(".")[0] != "waitress":
            raise
        error("stoker observe needs the waitress package, which this installation of Stoker lacks "
              "(pip install 'waitress>=3.0'; stoker.pyz carries it)")
        return 2
    except KeyboardInterrupt:
        pass
    log_event(logger, logging.INFO, "observer_stopped")
    return 0


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt
