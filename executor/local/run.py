"""`stoker run`: one job on this machine, no cluster. Plays the scheduler's part (docs/contract.md
§7): allocates loopback ports, binds the templates, makes the sandbox, runs the task with a
TaskOwner, and restarts it by the service rules. Ctrl-C / SIGTERM stop it gracefully.
"""
from __future__ import annotations

import getpass
import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from config.bind import bind
from config.loader import job_key, load_job
from config.settings import RunSettings
from config.templates import port_names
from executor.events import TaskState, Transition
from executor.local.service import Restart, ServiceRules
from executor.task.owner import TaskOwner
from executor.task.status import Update

logger = logging.getLogger(__name__)


def allocate_ports(names: list[str], fixed: Mapping[str, int]) -> dict[str, int]:
    """Free loopback ports for every name not given with --port; all held open until every
    one is chosen, so no two names get the same number."""
    ports = {name: fixed[name] for name in names if name in fixed}
    held: list[socket.socket] = []
    try:
        for name in names:
            if name in ports:
                continue
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            held.append(sock)
            ports[name] = sock.getsockname()[1]
    finally:
        for sock in held:
            sock.close()
    for name, number in fixed.items():
        ports.setdefault(name, number)
    return ports


def make_sandbox(requested: str | None, job_name: str) -> Path:
    """The sandbox RunSettings chose (docs/contract.md §4: $MESOS_SANDBOX, else $MESOS_DIRECTORY,
    else --sandbox), else a fresh directory under the current one."""
    if requested:
        path = Path(requested)
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = Path.cwd() / f"sandbox-{job_name}-{stamp}-{uuid.uuid4().hex[:6]}"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SandboxError(f"cannot create sandbox {path}: {exc.strerror or exc}") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise SandboxError(f"sandbox {path} is not writable")
    return path.resolve()


class SandboxError(Exception):
    pass


class ConsoleReporter:
    """Prints each state change as one readable line: time, subject, old → new, reason.

    On a terminal it also keeps a one-line live view under the log (task state, each
    process's state and run, the last health check), redrawn on every change — never on a
    timer, so an idle task costs no wakeups.
    """

    def __init__(self, out: TextIO, label: str, live: bool | None = None) -> None:
        self._out = out
        self._label = label
        self._live = _isatty(out) if live is None else live
        self._task_state = "NEW"
        self._processes: dict[str, str] = {}
        self._health = ""

    def line(self, subject: str, text: str) -> None:
        now = time.time()
        stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
        clear = "\r\x1b[2K" if self._live else ""
        self._out.write(f"{clear}{stamp}  {self._label:<12} {subject:<16} {text}\n")
        self._redraw()

    def _redraw(self) -> None:
        if self._live:
            procs = " ".join(f"{name}:{state}" for name, state in self._processes.items())
            view = f"[{self._label} {self._task_state}] {procs}"
            if self._health:
                view += f" | health {self._health}"
            width = shutil.get_terminal_size((120, 20)).columns - 1
            self._out.write("\x1b[7m" + view[:width] + "\x1b[0m")
        self._out.flush()

    def transition(self, t: Transition) -> None:
        if t.process is None:
            self._task_state = t.to_state
            subject = "task"
        else:
            self._processes[t.process] = f"{t.to_state}[{t.run}]"
            subject = f"{t.process}[{t.run}]"
        self.line(subject, f"{t.from_state} → {t.to_state}  {t.reason}")

    def phase(self, t: Transition) -> None:
        self.line("supervisor", f"{t.from_state} → {t.to_state}  {t.reason}")

    def health(self, attempt, state: str, attempts: int) -> None:
        self._health = f"{state} #{attempts} {attempt.outcome.value}"
        if self._live:
            self._out.write("\r\x1b[2K")
            self._redraw()

    def update(self, update: Update) -> None:
        pass  # task transitions already carry every update's state and reason

    def close(self) -> None:
        if self._live:
            self._out.write("\r\x1b[2K")
            self._out.flush()


def _isatty(out: TextIO) -> bool:
    try:
        return out.isatty() and os.environ.get("TERM", "dumb") != "dumb"
    except (AttributeError, ValueError):
        return False


class LocalRun:
    """Runs attempts of one job until the service rules say stop; returns the exit code."""

    def __init__(self, settings: RunSettings, out: TextIO = sys.stdout, environ: Mapping[str, str] | None = None) -> None:
        self._settings = settings
        self._out = out
        self._environ = dict(os.environ if environ is None else environ)
        self._stop = threading.Event()
        self._owner: TaskOwner | None = None

    def stop(self, reason: str) -> None:
        self._stop.set()
        owner = self._owner
        if owner is not None:
            owner.request_kill(reason)

    def _install_signals(self) -> None:
        def handler(signum, _frame):
            self.stop(f"stopped by {signal.Signals(signum).name}")

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)

    def run(self) -> int:
        s = self._settings
        job = load_job(s.config, s.jobkey)
        names = port_names(job)
        ports = allocate_ports(names, s.ports)
        name = job_key(job).rsplit("/", 1)[-1]
        sandbox = make_sandbox(s.sandbox, name)
        self._out.write(f"stoker run: sandbox {sandbox}\n")
        if ports:
            shown = ", ".join(f"{k}={v}" for k, v in sorted(ports.items()))
            self._out.write(f"stoker run: ports {shown}\n")
        self._out.flush()
        rules = ServiceRules(
            service=bool(job.service().get()),
            max_task_failures=int(job.max_task_failures().get()),
            backoff_base_secs=s.restart_backoff_secs,
            backoff_max_secs=max(s.restart_backoff_secs, s.restart_backoff_max_secs),
        )
        if threading.current_thread() is threading.main_thread():
            self._install_signals()
        env = {k: v for k, v in self._environ.items() if k != "MESOS_EXECUTOR_AUTHENTICATION_TOKEN"}
        attempt = 0
        while True:
            spec = bind(
                job,
                instance=s.instance,
                ports=ports,
                task_id=f"{name}-{s.instance}-{uuid.uuid4().hex[:8]}",
                hostname=socket.gethostname(),
                user=getpass.getuser(),
            )
            if attempt > 0:
                _archive_logs(sandbox, attempt)
            reporter = ConsoleReporter(self._out, spec.label)
            owner = TaskOwner(spec, sandbox=sandbox, env=env, reporter=reporter, kill_grace_secs=s.kill_grace_secs)
            self._owner = owner
            if self._stop.is_set():
                return 0
            try:
                final = owner.run()
            finally:
                reporter.close()
            self._owner = None
            attempt += 1
            decision = rules.ended(final.state, owner.uptime_secs, stop_requested=self._stop.is_set())
            if not isinstance(decision, Restart):
                reporter.line("stoker", f"{final.state.value}: {final.message}; {decision.reason} (exit {decision.exit_code})")
                return decision.exit_code
            reporter.line("stoker", f"{final.state.value}: {final.message}; {decision.reason}")
            if self._stop.wait(decision.delay_secs):
                return 0 if final.state is not TaskState.FAILED else 1


def _archive_logs(sandbox: Path, attempt: int) -> None:
    """Keep the previous attempt's logs: .logs → .logs.attempt-N (run numbers restart at 0)."""
    logs = sandbox / ".logs"
    if logs.is_dir():
        try:
            logs.rename(sandbox / f".logs.attempt-{attempt - 1}")
        except OSError as exc:
            logger.error("run could not archive %s: %s", logs, exc)
