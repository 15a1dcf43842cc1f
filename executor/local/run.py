"""`stoker run`: one job on this machine, no cluster. Plays the scheduler's part (docs/contract.md
§7): plans the job (`config.plan`: loads it with the `--bind` values and refuses it, as the
Aurora client would, while a reference other than the runtime ones is unbound; allocates
loopback ports for the names the job requests and resolves them through its Announcer's
portmap; binds the templates), or takes the plan an earlier run of the same, unchanged
config kept (`executor/local/runstart.py`: no pystachio loaded then); makes the sandbox,
runs the task with a TaskOwner, each attempt with a task id of its own, and restarts it by
the service rules, each restart written to the checkpoint as it is scheduled (`stoker
status` shows RESTARTING through the back-off).

Ctrl-C, SIGTERM and SIGHUP (a closed terminal) stop it gracefully — lifecycle endpoints,
SIGTERM, SIGKILL after the grace, the final processes — and it exits 128 + the signal's
number (docs/contract.md §9); a second one kills every process at once. Ctrl-Z (SIGTSTP)
does not stop the supervisor: its processes, in sessions of their own, would run on
unsupervised, and a health check in flight would time out on `fg`; it says so and goes on. `--kill-grace`
bounds the whole stop, lifecycle waits included. A closed stdout never stops the task. An
operator's `stoker kill` stops it the same way (no restart either way); as no signal asked
for that stop, it exits as the service rules say (0, or 1 when the last task FAILED).

It holds the sandbox for its whole life (`executor/host/session.py`: the lock, so a second
supervisor there is refused at once; the registry entry; the control socket, which also
reaches it between attempts). Re-run in a sandbox an earlier run left, it starts a new
attempt there: the earlier logs are archived as `.logs.attempt-N`, as between attempts, and
whatever an attempt whose supervisor died left running is killed first, with a warning line
(`executor/task/leftovers.py`).

The task's processes keep the user's environment (this is a developer's machine: PATH,
virtualenvs, HOME and the rest), less the agent's token, plus `MESOS_SANDBOX` = the
sandbox; `.thermos_profile` is sourced as under the executor (docs/contract.md §4).
"""
from __future__ import annotations

import _socket
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, assert_never

from config.plan import JobPlan, task_id
from config.registry import RegistrySettings
from config.settings import RunSettings, pop_secrets
from config.words import loggable, shell_path
from executor.events import TaskState
from executor.host.early import EarlyStart, deferred_signals, replaced_stop_handlers
from executor.host.identity import boot_secs
from executor.host.session import OPERATOR_KILL, HostSession, stopped_on
from executor.host.signals import STRAY_SIGNALS, SignalRelay, Strays, strays
from executor.local import planfiles
from executor.local.attempts import archive_logs, ports_taken, ports_taken_warning
from executor.local.console import ConsoleReporter, Output
from executor.local.ended import EXIT_INTERNAL_ERROR as EXIT_INTERNAL_ERROR  # tests read it here
from executor.local.ended import Ended, crashed, said
from executor.local.planahead import PlanAhead
from executor.local.runstart import (
    Prepared,
    RunStart,
    announcement_for,
    forget_listings,
    hold_sandbox,
    make_sandbox,
)
from executor.local.service import Restart, ServiceRules, Stop
from executor.logs import log_event, no_room
from executor.spool import spool
from executor.task.killing import load_kill_machine
from executor.task.owner import TaskOwner
from executor.task.records import RestartRecord
from executor.task.status import Update
from executor.task.wiring import owner_for, reaping_as_init

if TYPE_CHECKING:
    from config.spec import JobSpec
    from executor.local.unitstate import UnitState
    from executor.task.serverset import Announcement

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGTSTP)  # `_on_signal`'s


class LocalRun:
    """Runs attempts of one job until the service rules say stop; returns the exit code."""

    def __init__(self, settings: RunSettings, out: TextIO = sys.stdout, environ: Mapping[str, str] | None = None,
                 registry: RegistrySettings | None = None, early: EarlyStart | None = None,
                 ahead: PlanAhead | None = None, spooled: bool = False, exits_after: bool = False,
                 unit: UnitState | None = None) -> None:
        """`early`: what the early start began (`executor/cli/launch.py`), this run's to adopt
        or give up; `ahead`: the child the entry point forked to plan a first run; `spooled`:
        printed through the process's spool (`executor.spool.spool`: never blocked by a
        terminal that stopped reading); `exits_after`: the process ends after this run (the
        command), so the strays and stop signals stay ignored once its relay closes; `unit`:
        what systemd hears of the run (`executor/local/unitstate.py`), when it asked."""
        self._settings = settings
        self._registry = registry
        self._out = Output(out, spool() if spooled else None)
        self._environ = dict(os.environ if environ is None else environ)
        self._stop = threading.Event()
        self._stop_reason = OPERATOR_KILL  # why it stops, once `_stop` is set
        self._stop_grace: float | None = None  # `stoker kill --grace` that no owner took yet
        self._hurry: str | None = None  # a second stop signal: why every process is killed at once
        self._owner: TaskOwner | None = None
        self._console: ConsoleReporter | None = None
        self._signal: int | None = None  # the signal that asked for the stop
        self._sigint_ignored = False  # SIGINT was ignored when Stoker started (`_relay_signals`)
        self._strays = Strays("stoker run")
        self._suspends = 0  # Ctrl-Z's declined: the first explained in full, later ones briefly
        self._exits_after = exits_after
        self._start = RunStart(settings, self._environ, early, ahead, registry)
        self._unit = unit

    def stop(self, reason: str) -> None:
        self._stop_reason = reason
        self._stop.set()
        if self._unit is not None:
            self._unit.stopping(reason)
        owner = self._owner
        if owner is not None:
            owner.request_kill(reason)

    def _operator_kill(self, reached: bool, grace_secs: float | None) -> str:
        """`stoker kill` (on the control thread): no restart after this. When no owner got
        the request (`reached` False: between attempts, or one made and not yet listening),
        the attempt's owner, if there is one, gets the kill on its queue: it stops at its
        first step, before it starts anything. Returns the operator's answer then."""
        self._stop_reason = OPERATOR_KILL
        self._stop_grace = grace_secs  # for an early start's runs, whose owner is not made yet
        self._stop.set()
        if self._unit is not None:
            self._unit.stopping(OPERATOR_KILL)
        owner = self._owner
        if owner is not None and owner.final_update is not None:
            owner = None  # its task has ended: between attempts
        if not reached and owner is not None:
            owner.request_kill(OPERATOR_KILL, grace_secs)
        if owner is not None or self._console is None:  # an attempt starting, or none yet
            return "the task was starting; it stops"
        return "no task was running (the supervisor was between attempts); it stops"

    def _on_signal(self, signum: int) -> None:
        """The first signal stops gracefully; any later one kills at once; Ctrl-Z is
        declined; SIGWINCH and SIGCONT (`fg`) redraw the live view. Runs on the signal relay's thread: only
        posts, sets flags, logs and writes to the console (through its spool)."""
        if signum in (signal.SIGWINCH, signal.SIGCONT):
            if (console := self._console) is not None:
                console.resized()
            return
        if signum in STRAY_SIGNALS:
            self._strays.ignored(signum)
            return
        name = signal.Signals(signum).name
        if signum == signal.SIGINT and self._sigint_ignored:
            log_event(logger, logging.DEBUG, "signal_ignored", signal=name,
                      reason="SIGINT was ignored when stoker run started (a script's background job)")
            return
        if signum == signal.SIGTSTP:
            self._suspends += 1
            log_event(logger, logging.WARNING, "suspend_declined", signal=name, reason=(
                "Ctrl-Z (SIGTSTP): stoker run does not suspend: its processes run in sessions of their own and "
                "would run on unsupervised (no restarts, no health checks), and a health check cut by the pause "
                "would fail the task; it supervises on. Ctrl-C stops the task; to keep the shell, start it in the "
                "background (`&`, nohup, tmux)") if self._suspends == 1 else
                "Ctrl-Z (SIGTSTP) declined again, as before; Ctrl-C stops the task")
            return
        if self._signal is None:
            self._signal = signum
            console = self._console
            if console is not None and self._owner is not None:  # not between two attempts
                console.stop_hint = (f"{name}: stopping gracefully; press Ctrl-C again (or send "
                                     "another SIGTERM) to kill every process at once")
            self.stop(f"stopped by {name}")
            return
        self._hurry = f"second stop signal ({name})"  # an early start's runs: `_attempt` hears it
        owner = self._owner
        if owner is not None:
            owner.request_kill(self._hurry, immediate=True)

    def _relay_signals(self) -> SignalRelay | None:
        """SIGINT (dropped when ignored at start), SIGTERM, SIGHUP and SIGQUIT (unless ignored
        at start: nohup's, a script's background job's), SIGTSTP (Ctrl-Z) and the stray
        signals (`STRAY_SIGNALS`, ignored), and on a terminal SIGWINCH, call `_on_signal` on
        the relay's thread, whichever thread they land on (`executor.host.signals`); only a
        run on the main thread takes them over. The runs an early start forks before they are
        handled get the first three at their defaults too (`earlyfork.STOP_SIGNALS`), as the
        runs forked once they are."""
        if threading.current_thread() is not threading.main_thread():
            return None
        signums = [signal.SIGINT, signal.SIGTERM, signal.SIGTSTP, *strays()]
        if self._out.isatty():  # the live view's terminal: its new width, or `fg` (`_on_signal`)
            signums += [signal.SIGWINCH, signal.SIGCONT]
        for other in (signal.SIGHUP, signal.SIGQUIT):  # Ctrl-\ stops it too
            if signal.getsignal(other) is not signal.SIG_IGN:
                signums.append(other)
        # A SIGINT ignored at start (`stoker run job.aurora &` in a script: its Ctrl-C is the
        # script's) stays ignored by Stoker, as nohup's SIGHUP; it is still relayed, and dropped
        # (`_on_signal`), so that the runs get it at its default as ever (a handler is reset by exec).
        self._sigint_ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        redraws = [signal.SIGWINCH, signal.SIGCONT]  # a storm: one redraw a read
        replaced = replaced_stop_handlers()
        # the ones recorded while the early runs ran go first, then any the relay reads
        relay = SignalRelay(signums, self._on_signal, latest_only=redraws, recorded=deferred_signals)
        relay.put_back(replaced)
        return relay

    def _exit_code(self, code: int) -> int:
        """A stop asked for by a signal exits 128 + its number, as a shell expects."""
        return code if self._signal is None else 128 + self._signal

    def run(self) -> int:
        relay = None
        try:
            prepared = self._prepare()
            try:
                relay = self._relay_signals()  # until what the run held is let go: a late signal waits
                return self._run(prepared)
            finally:  # what it stopped on kept in its entry: `stoker status` says it (no record)
                prepared.session.close(stopped_on(sys.exc_info()[1]))
                self._terminal_put_back()
        finally:
            self._let_go(relay)

    def _terminal_put_back(self) -> None:
        """The terminal's modes as the entry point found them (`executor/host/terminalmodes.py`,
        loaded only for a run on a terminal), with a warning line when a process of the task
        had changed them."""
        modes = sys.modules.get("executor.host.terminalmodes")
        if modes is not None and modes.put_back():
            self._warn("a process of the task changed the terminal's modes (stty raw, -echo, ...) and "
                       "left them so: they are put back as stoker run found them")

    def _let_go(self, relay: SignalRelay | None) -> None:
        """With the relay up (a stop has nothing left to stop) the early start and plan lease,
        then the relay (its command keeps stops ignored: tests/e2e/test_run_late_stop.py), then systemd's socket.
        Then a Ctrl-C is one again (the handler found, unless SIGINT was ignored at start): one
        as the command writes its last lines to a terminal, or saves its code cache, ends it
        at once, exit 130 (`executor.cli.main.run`, `start.leave_interrupted`); was: ignored
        to the end, so a terminal that stopped reading (Ctrl-S) held `stoker run` up to its
        spool's bound whatever the operator pressed."""
        try:
            self._start.close()
        finally:
            try:
                if relay is not None:
                    relay.close(ignoring=(*STRAY_SIGNALS, *STOP_SIGNALS) if self._exits_after else ())
            finally:
                if self._unit is not None:
                    self._unit.close()
                if relay is not None and self._exits_after:
                    signal.signal(signal.SIGINT, relay.found(signal.SIGINT))

    def _run(self, prepared: Prepared) -> int:
        rules = ServiceRules(
            service=prepared.plan.spec.service,
            max_task_failures=prepared.plan.spec.max_task_failures,
            backoff_base_secs=self._settings.restart_backoff_secs,
            backoff_max_secs=max(self._settings.restart_backoff_secs,
                                 self._settings.restart_backoff_max_secs),
        )
        attempt = 0
        last: Ended | None = None  # the attempt that ended last
        while (ended := self._attempt(prepared, attempt)) is not None:
            attempt, last = attempt + 1, ended
            final = ended.update
            if ended.error is not None:
                return crashed(ended)
            decision = rules.ended(final.state, ended.uptime_secs, stop_requested=self._stop.is_set())
            match decision:
                case Stop():
                    code = self._exit_code(decision.exit_code)
                    said(ended, "run_ended", f"{final.message}; {decision.reason}", exit=code,
                         line=f"{final.state.value}: {final.message}; {decision.reason} (exit {code})")
                    return code
                case Restart():
                    restart = RestartRecord(delay_secs=decision.delay_secs, reason=decision.reason, boot=boot_secs())
                    record_between(prepared, restart)  # RESTARTING
                    load_kill_machine(prepared.plan.spec)  # for attempts that end at once; before the line
                    said(ended, "task_restarting", f"{final.message}; {decision.reason}",
                         delay_secs=decision.delay_secs, next_attempt=attempt + 1)
                    with reaping_as_init():  # a container's orphans are reaped meanwhile
                        if self._wait(decision, ended):
                            return self._stopped_between(ended)
                    if taken := ports_taken_warning(prepared.plan.ports):
                        said(ended, "ports_taken", taken, line=f"warning: {taken}", level=logging.WARNING)
                case _:
                    assert_never(decision)
        return self._stopped_before() if last is None else self._stopped_between(last)  # as the next one began

    def _wait(self, restart: Restart, ended: Ended) -> bool:
        """The restart delay; True when a stop cut it."""
        if self._unit is None:
            return self._stop.wait(restart.delay_secs)
        self._unit.status(f"{ended.console.label} RESTARTING in {restart.delay_secs:g} s: {restart.reason}")
        return self._unit.wait(self._stop.wait, restart.delay_secs)

    def _stopped_before(self) -> int:
        """A stop before the first attempt's task started (`stoker kill` as `stoker run`
        prepared it): a line saying so, not a silent exit."""
        code = self._exit_code(0)
        text = f"stopped by {self._stopped_by()} before its task started"
        log_event(logger, logging.INFO, "run_ended", reason=text, exit=code)
        self._out.write(f"stoker run: {text} (exit {code})\n")
        return code

    def _stopped_between(self, ended: Ended) -> int:
        """A stop between two attempts (in the delay, or as the next one began): its line, and
        the exit status of the one that ended."""
        code = self._exit_code(0 if ended.update.state is not TaskState.FAILED else 1)
        text = f"stopped by {self._stopped_by()} during the restart delay"
        said(ended, "run_ended", text, exit=code, line=f"{text} (exit {code})")
        return code

    def _stopped_by(self) -> str:
        return "`stoker kill`" if self._signal is None else signal.Signals(self._signal).name

    def _prepare(self) -> Prepared:
        """Plan the job (or take the plan kept for it), make the sandbox, and say so."""
        s = self._settings
        host = _socket.gethostname()  # `socket`'s own (its module: see executor/host/control.py)
        plan = self._start.plan(host)
        ports = plan.ports
        early = self._start.early_sandbox(plan.name)
        if "health" in ports:  # an HTTP check or lifecycle: http.client now, without ssl,
            from healthcheck import plainhttp  # while this process has one thread

            if early is not None:
                early.one_thread()
            plainhttp.load()
        sandbox = Path(early.sandbox) if early is not None else make_sandbox(s.sandbox, plan.name)
        session = hold_sandbox(sandbox, self._registry, early.take_lock() if early is not None else None,
                        self._operator_kill)
        try:
            return self._held(plan, host, sandbox, session, relaunch=early is None)
        except BaseException:  # Ctrl-C before the signal relay is up, say: let the sandbox go
            session.close()
            raise

    def _held(self, plan: JobPlan, host: str, sandbox: Path, session: HostSession, *,
              relaunch: bool) -> Prepared:
        """The sandbox is held: say so, end what a lost attempt left (`relaunch`: unless the
        early start made the sandbox), warn about ports."""
        s, ports = self._settings, plan.ports
        self._out.note = f"`stoker status {shell_path(str(sandbox))}` shows it; Ctrl-C or SIGTERM stops it"
        self._out.write(f"stoker run: sandbox {loggable(str(sandbox))}\n")  # one line, read in its order, whatever its name
        if relaunch and (sandbox / ".stoker" / "checkpoint.jsonl").exists():  # a re-run
            from executor.task import leftovers  # (a first run does not load it)

            longest = leftovers.header_bytes((p.name for p in plan.spec.task.processes), ports)  # this job's header
            for lost in leftovers.end_lost_attempts(sandbox, session.pinned, longest):  # what a SIGKILLed one left
                self._warn(lost.describe())
        shown = ", ".join(f"{k}={v}" for k, v in sorted(ports.items()))
        log_event(logger, logging.INFO, "run_prepared", task=plan.spec.label, sandbox=sandbox,
                  ports=shown or None)  # a text log leaves it to the lines below
        if ports:
            self._out.write(f"stoker run: ports {shown}\n")
        for taken in ports_taken({n: p for n, p in ports.items() if n in s.ports}):
            self._warn(f"--port {taken} is in use by another program")
        for warning in (*plan.port_warnings, *plan.warnings):  # the container's among them
            self._warn(warning)
        for note in plan.notes:
            self._out.write(f"stoker run: {loggable(note)}\n")
        if as_root := planfiles.role_not_taken(plan.spec.role, os.geteuid()):
            self._warn(as_root)
        env = dict(self._environ)
        pop_secrets(env)  # a token from an outer executor never reaches the task
        env["MESOS_SANDBOX"] = str(sandbox)
        return Prepared(plan=plan, host=host, sandbox=sandbox, env=env, session=session)

    def _warn(self, text: str) -> None:
        """A `stoker run: warning: ...` line (to systemd's journal as a warning: `<4>`), and its
        `run_warning` event (a text log leaves it to the line)."""
        log_event(logger, logging.WARNING, "run_warning", reason=text)
        self._out.write(f"{'<4>' if self._out.journal else ''}stoker run: warning: {loggable(text)}\n")

    def _attempt(self, prepared: Prepared, number: int) -> Ended | None:
        """Run attempt `number` (from 0) of the task to its end; None if stopped before."""
        s = self._settings
        early = self._start.early  # stopped already: its runs still get the graceful stop
        if early is None and self._stop.is_set():
            return None
        spec = prepared.plan.spec_for(early.task_id if early is not None else task_id(prepared.plan.name, s.instance))
        spec = spec.with_logger_defaults(s.logger_defaults)  # --runner-logger-*: never with an early start
        announcement = announcement_for(spec, s, prepared.host)
        if early is None:
            archive_logs(prepared.sandbox, s.keep_attempts)  # (an early start's runs write in `.logs` already)
        if number == 0:
            self._first_notes(spec, announcement)
        console = ConsoleReporter(self._out, spec.label, sandbox=prepared.sandbox,
                                  names=[p.name for p in spec.task.processes])
        if early is not None:
            self._start.handed_over()  # the first attempt's supervisor adopts its runs
        unit = self._unit
        owner = owner_for(spec, prepared.sandbox, prepared.env,
                          console if unit is None else unit.reporter(console, spec.label),
                          kill_grace_secs=s.kill_grace_secs, stop_within_secs=s.kill_grace_secs,
                          cgroups=s.cgroups, announcement=announcement, early=early,
                          disk_check_secs=s.disk_check_interval_secs if s.disk_limit else None,
                          heartbeat=unit.beat if unit is not None else None)
        self._console = console
        self._owner = owner
        if self._stop.is_set() and early is None:
            return None
        if self._stop.is_set():  # the early runs run: adopted at the owner's first step, then stopped
            owner.request_kill(self._stop_reason, self._stop_grace)
            if self._hurry is not None:
                owner.request_kill(self._hurry, immediate=True)
        forget_listings()  # the start's imports done, its runs' objects not made yet
        return self._ran(owner, console)

    def _first_notes(self, spec: JobSpec, announcement: Announcement | None) -> None:
        """Before the first attempt: the job's warnings, and where it announces itself."""
        for warning in spec.warnings:
            self._warn(warning)
        if announcement is not None:
            self._out.write(f"stoker run: announcing at {loggable(announcement.path)} in ZooKeeper "
                            f"{announcement.ensemble} once RUNNING\n")
        elif self._settings.announce is not None:
            self._warn("--announce: the job has no `announce = Announcer(...)`; nothing is announced")

    def _ran(self, owner: TaskOwner, console: ConsoleReporter) -> Ended:
        """The attempt `owner` supervises, run to its end."""
        try:
            final, error = owner.run(), None
        except Exception as exc:  # Stoker's own: the owner logged it and stopped the processes
            if no_room(exc) is not None:  # not a bug: `stoker: error: cannot go on: ...`
                raise
            final, error = owner.final_update or Update(TaskState.FAILED, str(exc)), exc
        finally:
            console.close()
        self._owner = None
        return Ended(update=final, uptime_secs=owner.uptime_secs, console=console, error=error)


def record_between(prepared: Prepared, restart: RestartRecord) -> None:
    """The restart's record (RESTARTING), written between two attempts by
    `checkpointbetween.py`, loaded at the first restart, maybe weeks after the start: after an
    upgrade in place the new version's file, which may not load (it raised out of the run, the
    service never restarted). The restart goes on without its record, as when the checkpoint
    refuses one: a WARNING line."""
    try:
        from executor.task.checkpointbetween import append_between  # restarts only
    except (ImportError, SyntaxError) as exc:  # an upgrade's file (no memory: the host's, raised)
        log_event(logger, logging.WARNING, "checkpoint_between_not_loaded", task=prepared.plan.name,
                  reason=f"{type(exc).__name__}: {exc}", records_lost=1)
        return
    append_between(prepared.sandbox, restart.to_json(), prepared.plan.name, prepared.session.stoker_dir)
