"""`stoker run`: one job on this machine, no cluster. Plays the scheduler's part (docs/contract.md
§7): loads the job with the `--bind` values and refuses it, as the Aurora client would, while
a reference other than the runtime ones is unbound; allocates loopback ports for the names
the job requests and resolves them through its Announcer's portmap; binds the templates,
makes the sandbox, runs the task with a TaskOwner, and restarts it by the service rules.

Ctrl-C, SIGTERM and SIGHUP (a closed terminal) stop it gracefully — lifecycle endpoints,
SIGTERM, SIGKILL after the grace, the final processes — and it exits 128 + the signal's
number (docs/contract.md §9); a second one kills every process at once. `--kill-grace`
bounds the whole stop, lifecycle waits included. A closed stdout never stops the task. An
operator's `stoker kill` stops it the same way (no restart either way); as no signal asked
for that stop, it exits as the service rules say (0, or 1 when the last task FAILED).

It holds the sandbox for its whole life (`executor/host/session.py`: the lock, so a second
supervisor there is refused at once; the registry entry; the control socket, which also
reaches it between attempts). Re-run in a sandbox an earlier run left, it starts a new
attempt there: the earlier logs are archived as `.logs.attempt-N`, as between attempts.

The task's processes keep the user's environment (this is a developer's machine: PATH,
virtualenvs, HOME and the rest), less the agent's token, plus `MESOS_SANDBOX` = the
sandbox; `.thermos_profile` is sourced as under the executor (docs/contract.md §4).
"""
from __future__ import annotations

import getpass
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, assert_never

import attrs

from config.bind import bind
from config.errors import ConfigError
from config.loader import check_bound, job_key, load_job
from config.portmap import ResolvedPorts, job_portmap, requested_ports, resolve_portmap
from config.registry import RegistrySettings
from config.settings import RunSettings, pop_secrets
from config.templates import port_names
from config.words import did_you_mean
from executor.events import TaskState
from executor.host.entry import FrontEnd
from executor.host.lock import SandboxBusy
from executor.host.session import HostSession
from executor.host.signals import SignalRelay
from executor.local.console import ConsoleReporter, Output
from executor.local.service import Restart, ServiceRules, Stop
from executor.task.owner import TaskOwner
from executor.task.status import Update
from executor.task.wiring import owner_for

if TYPE_CHECKING:
    from config.spec import JobSpec
    from executor.task.serverset import Announcement

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


def job_ports(job: Any, fixed: Mapping[str, int]) -> ResolvedPorts:
    """The job's ports as the scheduler and the executor would make them: a free loopback
    port (or the --port number) for each name it requests, resolved through its portmap.
    A --port may also name an alias, which it then overrides (as an assigned port does)."""
    portmap = job_portmap(job.get())
    referenced = port_names(job)
    names = requested_ports(referenced, portmap)
    _check_fixed_ports(fixed, sorted(set(names) | set(referenced) | set(portmap)), job_key(job))
    return resolve_portmap(portmap, allocate_ports(names, fixed))


def make_sandbox(requested: str | None, job_name: str) -> Path:
    """The sandbox RunSettings chose (docs/contract.md §4: $MESOS_SANDBOX, else $MESOS_DIRECTORY,
    else --sandbox), else a fresh directory under the current one."""
    if requested:
        path = Path(requested)
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = Path.cwd() / f"sandbox-{job_name}-{stamp}-{uuid.uuid4().hex[:6]}"
    if path.exists() and not path.is_dir():
        raise SandboxError(f"sandbox {path} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SandboxError(f"cannot create sandbox {path}: {exc.strerror or exc}") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise SandboxError(f"sandbox {path} is not writable")
    return path.resolve()


class SandboxError(Exception):
    pass


def _check_fixed_ports(fixed: Mapping[str, int], names: list[str], key: str) -> None:
    """Every `--port NAME=NUM` must name a port the job uses: a typo is an error, not a
    port silently left unused."""
    for name in sorted(set(fixed) - set(names)):
        close = did_you_mean(name, names) if names else ""
        close = f" ({close[2:]})" if close.startswith("; did you mean") else ""
        uses = f"; its ports: {', '.join(names)}" if names else "; it uses no ports"
        raise ConfigError(f"--port {name}={fixed[name]}: job {key} has no port named "
                          f"{name!r}{close}{uses}")


class LocalRun:
    """Runs attempts of one job until the service rules say stop; returns the exit code."""

    def __init__(self, settings: RunSettings, out: TextIO = sys.stdout, environ: Mapping[str, str] | None = None,
                 registry: RegistrySettings | None = None) -> None:
        self._settings = settings
        self._registry = registry
        self._out = Output(out)
        self._environ = dict(os.environ if environ is None else environ)
        self._stop = threading.Event()
        self._owner: TaskOwner | None = None
        self._console: ConsoleReporter | None = None
        self._signal: int | None = None  # the signal that asked for the stop

    def stop(self, reason: str) -> None:
        self._stop.set()
        owner = self._owner
        if owner is not None:
            owner.request_kill(reason)

    def _on_signal(self, signum: int) -> None:
        """The first signal stops gracefully; any later one kills at once. Runs on the
        signal relay's thread: only posts and sets flags."""
        name = signal.Signals(signum).name
        if self._signal is None:
            self._signal = signum
            console = self._console
            if console is not None:
                console.stop_hint = (f"{name}: stopping gracefully; press Ctrl-C again (or send "
                                     "another SIGTERM) to kill every process at once")
            self.stop(f"stopped by {name}")
            return
        owner = self._owner
        if owner is not None:
            owner.request_kill(f"second stop signal ({name})", immediate=True)

    def _relay_signals(self) -> SignalRelay | None:
        """SIGINT, SIGTERM and SIGHUP (unless nohup ignores it) call `_on_signal` on the
        relay's thread, whichever thread they land on (`executor.host.signals`); only a run
        on the main thread takes them over."""
        if threading.current_thread() is not threading.main_thread():
            return None
        signums = [signal.SIGINT, signal.SIGTERM]
        if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
            signums.append(signal.SIGHUP)
        return SignalRelay(signums, self._on_signal)

    def _exit_code(self, code: int) -> int:
        """A stop asked for by a signal exits 128 + its number, as a shell expects."""
        return code if self._signal is None else 128 + self._signal

    def run(self) -> int:
        prepared = self._prepare()
        relay = None
        try:
            relay = self._relay_signals()  # until the session is closed: a late signal waits
            return self._run(prepared)
        finally:
            prepared.session.close()
            if relay is not None:
                relay.close()

    def _run(self, prepared: Prepared) -> int:
        rules = ServiceRules(
            service=bool(prepared.job.service().get()),
            max_task_failures=int(prepared.job.max_task_failures().get()),
            backoff_base_secs=self._settings.restart_backoff_secs,
            backoff_max_secs=max(self._settings.restart_backoff_secs,
                                 self._settings.restart_backoff_max_secs),
        )
        attempt = 0
        while (ended := self._attempt(prepared, attempt)) is not None:
            attempt += 1
            final = ended.update
            decision = rules.ended(final.state, ended.uptime_secs, stop_requested=self._stop.is_set())
            match decision:
                case Stop():
                    code = self._exit_code(decision.exit_code)
                    ended.console.line("stoker", f"{final.state.value}: {final.message}; "
                                                 f"{decision.reason} (exit {code})")
                    return code
                case Restart():
                    ended.console.line("stoker", f"{final.state.value}: {final.message}; {decision.reason}")
                    if self._stop.wait(decision.delay_secs):
                        code = self._exit_code(0 if final.state is not TaskState.FAILED else 1)
                        ended.console.line("stoker", f"stopped during the restart delay (exit {code})")
                        return code
                case _:
                    assert_never(decision)
        return self._exit_code(0)

    def _prepare(self) -> Prepared:
        """Load the job, choose its ports, make the sandbox, and say so."""
        s = self._settings
        job = load_job(s.config, s.jobkey, s.bindings)
        check_bound(job, s.config)
        resolved = job_ports(job, s.ports)
        ports = resolved.ports
        if "health" in ports:  # an HTTP check or lifecycle: http.client now, without ssl,
            from healthcheck import plainhttp  # while this process has one thread

            plainhttp.load()
        name = job_key(job).rsplit("/", 1)[-1]
        sandbox = make_sandbox(s.sandbox, name)
        session = _hold(sandbox, self._registry)
        session.on_operator_kill(self._stop.set)  # `stoker kill`: no restart after this
        self._out.note = f"`stoker status {sandbox}` shows it; Ctrl-C or SIGTERM stops it"
        self._out.write(f"stoker run: sandbox {sandbox}\n")
        if ports:
            shown = ", ".join(f"{k}={v}" for k, v in sorted(ports.items()))
            self._out.write(f"stoker run: ports {shown}\n")
        for warning in resolved.warnings():
            self._out.write(f"stoker run: warning: {warning}\n")
        env = dict(self._environ)
        pop_secrets(env)  # a token from an outer executor never reaches the task
        env["MESOS_SANDBOX"] = str(sandbox)
        return Prepared(job=job, name=name, ports=ports, sandbox=sandbox, env=env, session=session)

    def _announcement(self, spec: JobSpec, host: str) -> Announcement | None:
        """--announce: in ZooKeeper once RUNNING, as this host (README "Service discovery");
        the ServerSet's modules are loaded only for a job that announces there."""
        s = self._settings
        if spec.announce is None or s.announce is None:
            return None
        from executor.task.serverset import AnnounceError, plan_announcement

        try:
            return plan_announcement(spec, spec.announce, s.announcer, host)
        except AnnounceError as exc:
            raise ConfigError(f"{s.config}: job {spec.key}: {exc}") from None

    def _attempt(self, prepared: Prepared, number: int) -> Ended | None:
        """Run attempt `number` (from 0) of the task to its end; None if stopped before."""
        s = self._settings
        host = socket.gethostname()
        spec = bind(prepared.job, instance=s.instance, ports=prepared.ports,
                    task_id=f"{prepared.name}-{s.instance}-{uuid.uuid4().hex[:8]}",
                    hostname=host, user=getpass.getuser())
        announcement = self._announcement(spec, host)
        _archive_logs(prepared.sandbox)
        if number == 0 and spec.warnings:
            self._out.write("".join(f"stoker run: warning: {w}\n" for w in spec.warnings))
        if number == 0 and announcement is not None:
            self._out.write(f"stoker run: announcing at {announcement.path} in ZooKeeper "
                            f"{announcement.ensemble} once RUNNING\n")
        elif number == 0 and s.announce is not None:
            self._out.write("stoker run: warning: --announce: the job has no `announce = "
                            "Announcer(...)`; nothing is announced\n")
        console = ConsoleReporter(self._out, spec.label, sandbox=prepared.sandbox,
                                  names=[p.name for p in spec.task.processes])
        owner = owner_for(spec, prepared.sandbox, prepared.env, console,
                          kill_grace_secs=s.kill_grace_secs, stop_within_secs=s.kill_grace_secs,
                          cgroups=s.cgroups, announcement=announcement)
        self._console = console
        self._owner = owner
        if self._stop.is_set():
            return None
        try:
            final = owner.run()
        finally:
            console.close()
        self._owner = None
        return Ended(update=final, uptime_secs=owner.uptime_secs, console=console)


@attrs.frozen(slots=True, kw_only=True)
class Prepared:
    """What every attempt of one `stoker run` shares."""

    job: Any  # the loaded pystachio Job, bound anew for each attempt
    name: str
    ports: dict[str, int]
    sandbox: Path
    env: dict[str, str]
    session: HostSession


@attrs.frozen(slots=True, kw_only=True)
class Ended:
    """How one attempt ended, and the console it printed to."""

    update: Update
    uptime_secs: float
    console: ConsoleReporter


def _hold(sandbox: Path, registry: RegistrySettings | None) -> HostSession:
    """The sandbox for this run (registered in `registry`, by default the one the
    environment names): refused when another live supervisor holds it."""
    try:
        return HostSession.open(sandbox, registry, FrontEnd.RUN)
    except SandboxBusy as exc:
        raise SandboxError(str(exc)) from None
    except OSError as exc:
        raise SandboxError(f"cannot use sandbox {sandbox}: its .stoker directory or lock: "
                           f"{exc.strerror or exc}") from None


def _archive_logs(sandbox: Path) -> None:
    """Keep the previous attempt's logs (of this run, or of an earlier run in the same
    sandbox): .logs → .logs.attempt-N, N the first number not taken (run numbers restart at
    0). A `.logs` that is not a directory (a symlink, say) is left alone."""
    logs = sandbox / ".logs"
    if not logs.is_dir() or logs.is_symlink():
        return
    number = 0
    while os.path.lexists(sandbox / f".logs.attempt-{number}"):
        number += 1
    try:
        logs.rename(sandbox / f".logs.attempt-{number}")
    except OSError as exc:
        logger.error("run could not archive %s: %s", logs, exc)
