"""`stoker observe [--host H] [--port 1338]`: the host's read-only web view of its tasks.

Serves `executor/observe/` until interrupted: the tasks of the host registry, each task's
processes, health and history, and their logs, as pages and as JSON under /api/, and as
Prometheus metrics at /metrics. Binds
loopback (127.0.0.1) unless `--host` says otherwise; another address is logged as a
WARNING, since every task's logs become readable from there; a host name is served on
every address it resolves to (`localhost`: 127.0.0.1 and ::1 where /etc/hosts says so), on
one port. Prints the URL it serves on stdout once listening (`--port 0` picks a free
port). Exit 0 on Ctrl-C, SIGTERM or SIGHUP (its terminal closed; unless started ignoring
it, nohup's), 1 when it cannot listen (the port is in use, the
name resolves to nothing) or cannot read the registry (another user's, one it does not
trust), 2 when this installation lacks waitress.

It logs to stderr (the address it listens on, a request it could not answer, waitress's
own lines) as `stoker executor` does: text, or JSON with `--log-format json`.

As a systemd unit's main process (`Type=notify`, `$NOTIFY_SOCKET`), it tells systemd
READY=1 once it listens, with the URL as its STATUS=, and STOPPING=1 once it stopped serving
(`executor/host/sdnotify.py`); it feeds no watchdog, and warns when its unit asks for one.

Only this command imports the observer (and waitress): `stoker run` and `stoker executor`
never load them.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
from typing import TYPE_CHECKING, Any

import executor
from config.argdecl import add_arguments
from config.logsettings import LogSettings
from config.registry import RegistrySettings
from config.words import printable, quoted
from executor.cli.targets import error, registry_arguments
from executor.logs import log_event

if TYPE_CHECKING:
    from collections.abc import Callable

    from executor.host.sdnotify import Notifier

logger = logging.getLogger(__name__)

DEFAULT_PORT = 1338  # Thermos' observer's
DEFAULT_ENDED_SECS = 600.0  # executor/observe/metrics.DEFAULT_ENDED_SECS (not imported: the observer loads on `run`)


def register(sub: Any, command: Any) -> None:
    observe = command(sub, "observe", "serve a read-only web view of this host's tasks, their "
                                      "processes, health and logs",
                      "examples:\n  stoker observe                  (http://127.0.0.1:1338/)\n"
                      "  ssh -L 1338:127.0.0.1:1338 agent-7   then open http://localhost:1338/\n"
                      "  stoker observe --host 0.0.0.0   (every address: logged as a warning)\n\n"
                      "JSON: /api/tasks, /api/tasks/ID, "
                      "/api/tasks/ID/processes/NAME/logs?run=N&stream=stdout&offset=&length=\n"
                      "Prometheus: /metrics (the running tasks, those that ended within --metrics-ended-secs "
                      "and the LOST ones whose processes live on, in the text format 0.0.4)")
    observe.add_argument("--host", default="127.0.0.1", metavar="ADDRESS",
                         help="the address to listen on (default 127.0.0.1: this host only)")
    observe.add_argument("--port", type=_port, default=DEFAULT_PORT, metavar="PORT",
                         help=f"the port to listen on (default {DEFAULT_PORT}; 0: a free one)")
    observe.add_argument("--show-tasks-to", choices=("all", "owner"), default="all",
                         help="all (the default): every task to every connection; owner: a "
                              "local connection sees only the tasks whose sandbox is its user's "
                              "(root sees all; one whose user cannot be told sees none)")
    observe.add_argument("--metrics-ended-secs", type=_ended_secs, default=DEFAULT_ENDED_SECS, metavar="SECS",
                         help="how long /metrics exports a task after it ended (default 600: 10 minutes, "
                              "a few scrapes of its end; 0: only tasks whose supervisor runs; a number of "
                              "seconds or a duration such as 10mins); a LOST task whose processes live on "
                              "is exported until they are gone. The pages and /api show every task "
                              "the registry keeps (--registry-retention)")
    registry_arguments(observe)
    add_arguments(observe, LogSettings)
    observe.set_defaults(handler=run)


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{quoted(text)} is not a port number (0 ... 65535)")
    return int(text)


def _ended_secs(text: str) -> float:
    from config.settings import parse_duration

    try:
        return parse_duration(float(text) if text.replace(".", "", 1).isdigit() else text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    from executor.cli import logsetup
    from executor.host.registry import Registry, RegistryUnreadable
    from executor.observe.reader import Reader
    from executor.observe.server import serve

    logs = LogSettings.from_args(args, os.environ)
    logsetup.configure(logs.log_format, logs.log_level)
    settings = RegistrySettings.from_args(args, os.environ)
    told = _notifier()
    ready = _when_listening(settings.registry_root, told)
    try:  # a registry this user may not read would be served as a host without tasks
        Registry(settings).read()
    except RegistryUnreadable as exc:
        error(str(exc))
        return 1
    signal.signal(signal.SIGTERM, _interrupt)
    if signal.getsignal(signal.SIGHUP) != signal.SIG_IGN:  # (nohup's is kept)
        signal.signal(signal.SIGHUP, _interrupt)  # its terminal closed: a stop as SIGTERM's
    try:
        _stop_if_dropped()
        serve(Reader(settings), args.host, args.port, ready=ready, show_to=args.show_tasks_to,
              metrics_ended_secs=args.metrics_ended_secs)
    except Unwritten as exc:
        return exc.said()
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
    if told is not None:  # the server stopped (waitress takes the interrupt itself)
        told.stopping("stopping")
    log_event(logger, logging.INFO, "observer_stopped")
    return 0


class Unwritten(Exception):
    """The address line could not be written to stdout (`error`): not a failure to listen."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error

    def said(self) -> int:
        """As every command's output (`executor/cli/main.py`): a reader gone ends it quietly,
        status 0; else one `cannot write to stdout` line, status 1."""
        if isinstance(self.error, BrokenPipeError):
            raise self.error from None
        from executor.cli.main import stdout_unwritable

        return stdout_unwritable(self.error)


def _when_listening(registry_root: str, told: Notifier | None) -> Callable[[str, int], None]:
    """What the server calls once it listens: the address on stdout, READY=1 to systemd."""
    def ready(host: str, port: int) -> None:
        shown = f"[{host}]" if ":" in host else host
        try:
            print(f"stoker observe: http://{shown}:{port}/ (registry {printable(registry_root)})", flush=True)
        except OSError as exc:  # a full disk, a reader gone: said as such, not as `cannot listen`
            raise Unwritten(exc) from None
        if told is not None:
            told.ready(f"serving http://{shown}:{port}/")
    return ready


def _notifier() -> Notifier | None:
    """systemd's notification socket, when it named one (`executor/cli/start.py` took it)."""
    from executor.cli.start import from_systemd

    if not from_systemd:
        return None
    from executor.host.sdnotify import notifier

    told = notifier(from_systemd)
    if told is not None and told.watchdog_secs is not None:
        log_event(logger, logging.WARNING, "systemd_watchdog_unfed", watchdog_secs=told.watchdog_secs,
                  reason="stoker observe does not feed systemd's watchdog: WatchdogSec= in its unit "
                         "has it killed and restarted every period")
    return told


def _interrupt(_signum: int, _frame: Any) -> None:
    """The stop, raised where the main thread is (waitress' loop takes it as its end); one
    Python drops, raised in a finalizer, still ends the loop (`executor/observe/stopwake.py`)."""
    raise KeyboardInterrupt


def _stop_if_dropped() -> None:
    """The SIGTERM, SIGHUP or SIGINT a finalizer or a weakref callback dropped as the observer
    loaded (`executor.cli.start.note_dropped`), raised again now that `_interrupt` takes the
    first two: the observer has no signal relay to send it again, and served on, its stop gone."""
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        if signum in executor.DROPPED_STOPS:
            executor.DROPPED_STOPS.remove(signum)
            signal.raise_signal(signum)
