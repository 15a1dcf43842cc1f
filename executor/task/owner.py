"""TaskOwner: the one owner of a task's mutable state, in `stoker run` and `stoker executor`.

It runs on a single thread and blocks on its queue until the next event or the planner's
next deadline: the reaper posts `ProcessExited`, the health loop posts `HealthChecked`, the
CLI or the Mesos side posts `KillRequested`, the lifecycle thread `LifecycleDone`, the
announcer `AnnouncementChanged` (`announcing.py`), the disk check's sampling thread
`DiskSampled`, and the control socket an operator's `KillRequested` or `RestartRequested`
(answered through `operator.OperatorRequests`); its `Checks` (`checks.py`) run the health
and disk checks. For each event it asks the pure machines (planner, health policy, status
machine, and the kill sequence, carried out by its `Killing`, `killing.py`) what to do, has its ports
(`executor/task/ports.py`) do it, checkpoints and logs every transition (one line each,
through its `Journal`, `journal.py`), and hands transitions and task-level updates to its
reporter. No other code changes task state, so there are no locks. Health checks run only
while the planner is ACTIVE: once the regular processes have ended, the outcome is theirs
(a check's result queued behind a process's exit, and a kill behind it, wait for the planner).

It is given its collaborators (`OwnerPorts`): `executor/task/wiring.owner_for` plugs in the
real ones, and tests drive `start()` / `step()` / `close()` with fakes and a fake clock.
"""
from __future__ import annotations

import logging
import signal
import time
from _queue import Empty  # `queue`'s own (its module and `heapq`: Queue classes)
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, assert_never

from config.spec import JobSpec
from executor.events import (
    DaemonsExited,
    DiskSampled,
    HealthChecked,
    KillRequested,
    LifecycleDone,
    LifecycleProgress,
    PhaseTransition,
    ProcessExited,
    ProcessState,
    ProcessTransition,
    RestartRequested,
    SignalRun,
    StartRun,
    TaskPhase,
    TaskStage,
    TaskState,
    TaskTransition,
    TimerFired,
    WatchdogRestarted,
)
from executor.logs import log_event, no_room
from executor.task.announcing import AnnouncementChanged, Announcing, earliest
from executor.task.checks import Checks
from executor.task.journal import Journal, header_record
from executor.task.killing import Held, Killing, StopBounds
from executor.task.operator import OperatorRequests
from executor.task.planner import Decision, Planner
from executor.task.ports import OwnerPorts, SpawnError
from executor.task.runfacts import RunFacts
from executor.task.status import Outcome, TaskStatusMachine, Update

if TYPE_CHECKING:
    from executor.task.ports import DiskChecks

logger = logging.getLogger(__name__)

OwnerEvent = (ProcessExited | HealthChecked | KillRequested | RestartRequested | LifecycleProgress
              | LifecycleDone | AnnouncementChanged | TimerFired | DaemonsExited | DiskSampled
              | WatchdogRestarted)


class TaskOwner:
    """`run()` is `start()`, then `step()` after each event until it returns True, then
    `close()`; the three are public so that tests can drive the owner one event at a time.

    `stop`: the front-end's bounds on every stop (`StopBounds`); `run_cap`: failed or lost
    runs per process (None: no cap); `running_early`: the task's first runs run already (an
    early start's, which `procs` adopts as the planner starts them): the first step starts
    them before it looks at its queue, so that a stop that came meanwhile stops them as
    running processes (SIGTERM first, the final processes), not as runs never started;
    `disk`: the disk-limit check (None: none); `heartbeat`: called at each turn of the loop,
    returns when it wants the next (systemd's watchdog, `executor/local/unitstate.py`)."""

    def __init__(self, job: JobSpec, ports: OwnerPorts, *, sandbox: Path, stop: StopBounds = StopBounds(),
                 run_cap: int | None = 100, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time, running_early: bool = False,
                 disk: DiskChecks | None = None, heartbeat: Callable[[], float] | None = None) -> None:
        self.job = job
        self.sandbox = Path(sandbox)
        self._procs = ports.procs
        self._open_checkpoint = ports.open_checkpoint
        self._reporter = reporter = ports.reporter
        self._host = ports.host
        self._operators = OperatorRequests(job.label)
        self._queue = ports.events
        self._clock = clock
        self._planner = Planner(job.task, run_cap=run_cap)
        self._specs = {p.name: p for p in job.task.processes}  # by name: a run started costs no scan of them
        self._status = TaskStatusMachine(health_checked=ports.checker is not None)
        self._killing = Killing(job, planner=self._planner, reporter=reporter, start_lifecycle=ports.start_lifecycle,
                                post=self.post, clock=clock, bounds=stop)
        self._journal = Journal(job.label, wall_clock)
        self._checks = Checks(job, ports.checker, ports.start_health, disk, self._journal, reporter,
                              self.post, clock, stop_commands=ports.procs.stop_commands)
        self._announcing = Announcing(ports.announcer, self._journal, job.label, stop, clock=clock,
                                      say=lambda reason: self._killing.step("announcer", reason))
        self._runs = RunFacts()  # each run's pid and exit status, for its records
        self._processes_started = False
        self._starts_unreported = False  # runs started, RUNNING not yet told: the planner has more to start
        self._adopt_first = running_early
        self._held = Held()  # what waits for the planner's next decision (`_dispatch`)
        self._running_since: float | None = None
        self.next_deadline_at: float | None = None  # when step() wants to run again unasked
        self.final_update: Update | None = None
        self._failed: TaskTransition | None = None  # an internal error's end, checkpointed at close
        self._heartbeat = heartbeat

    # ---- called from any thread ----

    def post(self, event: object) -> None:
        self._queue.put(event)

    def request_kill(self, reason: str, grace_secs: float | None = None, use_lifecycle: bool = True,
                     immediate: bool = False, kill_all_at: float | None = None) -> None:
        """Kill the task (safe from any thread: it only posts). `immediate`: SIGKILL now, skipping every
        wait and the final processes (the announcer's too, which may hold this loop: told at once);
        `kill_all_at` (the owner's clock): SIGKILL what runs then, finals too."""
        if immediate:
            self._announcing.hurry()
        self.post(KillRequested(reason=reason, grace_secs=grace_secs, at=self._clock(),
                                use_lifecycle=use_lifecycle, immediate=immediate, kill_all_at=kill_all_at))

    # ---- the loop (call from one thread) ----

    @property
    def uptime_secs(self) -> float:
        """How long the task has been RUNNING (0 if it never was)."""
        if self._running_since is None:
            return 0.0
        return self._clock() - self._running_since

    def run(self) -> Update:
        """Run the task to its end; returns the terminal update."""
        try:
            self.start()
            while not self.step():
                self._handle(self._wait())
        except BaseException as exc:
            self._internal_error(exc)
            raise
        finally:
            try:
                self.close()
            except BaseException as exc:  # as a failing step: logged (the task's end is known)
                self._internal_error(exc)
                raise
        assert self.final_update is not None
        return self.final_update

    def start(self) -> None:
        """Start the process adapter, list the task on the host, open the checkpoint,
        report STARTING. The adapter starts first: its move into the task's cgroup goes on
        meanwhile, and so does the making of the log files of the runs the first step will
        start (`ready_ahead`: about 10 ms of a start of 100 that were a wait). The header is
        written once the move is over: it says how the processes are contained."""
        job = self.job
        self._procs.start()
        if self._queue.empty() and not self._adopt_first:  # (a kill queued: the first step starts nothing)
            self._ready_first_step()  # their log files made as the header waits
        if self._host is not None:
            self._host.task_started(task_id=job.task_id, job_key=job.key, label=job.label,
                                    marker=self._procs.marker, post=self.post)
        sink = self._open_checkpoint()
        self._journal.open(sink, header_record(job, self.sandbox, self._procs,
                                                  self._checks.checker))
        self._apply_outcome(self._status.started())

    def _ready_first_step(self) -> None:
        """Have the port make ready the runs the first step will start (`ready_ahead`). Not for
        an early start's runs: they are adopted, already running, and the port makes nothing
        for them."""
        first = self._planner.startable(self._clock())
        if first:
            self._procs.ready_ahead([(self._specs[name], run) for name, run in first])

    def step(self) -> bool:
        """Handle every event already queued, then let the planner act until it has nothing
        more to do now (a KILL queued before the first step starts nothing), or until events came
        amid a start of thousands (`_decide`: the next step takes them, then starts the rest);
        what came after a kill began is handled after the planner decided on it (`_dispatch`).
        True once the task has ended: the terminal update is out."""
        if self._adopt_first:  # the early runs are the task's before any event is
            self._adopt_first = False
            self._decide(pause=False)
        self._drain()
        if timed_out := self._announcing.overdue(self._clock()):
            self._apply_outcome(self._status.failed(timed_out))
        if late := self._killing.overdue(self._clock()):  # a bound on the stop ran out
            self._dispatch(late)  # as a posted kill: after the decision on one this step began
        decision = self._held.after_decision(self._decide(), self._dispatch, self._decide)
        if decision.more_to_start:  # events came amid a start of thousands (`_decide`): they first
            self.next_deadline_at = self._clock()
            return False
        if decision.phase.terminal:
            self._checks.wait_stopped()  # nothing of the task may run once its end is reported
            self._apply_outcome(self._status.task_ended(decision.phase, decision.reason, self._procs.left_running()))
            return True
        self.next_deadline_at = earliest(decision.next_deadline_at, self._announcing.deadline_at(),
                                         self._killing.deadline_at(), self._checks.tick())
        self._journal.flush()  # one sync per step, before waiting
        self._killing.load_ahead()
        again_in = self._procs.idle()
        if again_in is not None:
            self.next_deadline_at = earliest(self.next_deadline_at, self._clock() + again_in)
        if self._heartbeat is not None:  # at each turn: a loop that stops turning feeds it no more
            self.next_deadline_at = earliest(self.next_deadline_at, self._heartbeat())
        self._journal.keep_held(self.sandbox, self._procs.marker, self._procs.held(), self._procs.watchdog_pid)
        return False

    def close(self) -> None:
        """Stop every adapter; the task's processes are killed by the process port's close."""
        self._announcing.close()
        self._journal.flush()
        self._killing.close()
        self._checks.close()
        self._procs.close()
        if self._failed is not None:  # once its processes are gone, as any terminal record
            self._record_failed(self._failed)
        self._journal.close()
        if self._host is not None:
            self._host.task_ended(self._journal.recorded_end)
        self._operators.task_ended(self.final_update)
        for held in self._held.left():  # a step that failed before it handled them
            self._operators.too_late(held, self.final_update)
        while not self._queue.empty():  # requests that came as the task ended hear its end
            self._operators.too_late(self._queue.get_nowait(), self.final_update)

    def _record_failed(self, failed: TaskTransition) -> None:
        """An internal error ended the task: each run it had going was killed by the close,
        and the task ended FAILED (`stoker status` shows that, not LOST with runs RUNNING,
        nor a run whose fork had just failed RUNNING, nor a process WAITING to restart)."""
        for t in self._planner.failed_ends(failed.reason):
            self._journal.transition(t, self._runs.pid(t.process, -1 if t.run is None else t.run))
        self._journal.transition(failed)

    def _wait(self) -> object:
        timeout = None if self.next_deadline_at is None else max(0.0, self.next_deadline_at - self._clock())
        try:
            return self._queue.get(timeout=timeout)
        except Empty:
            return TimerFired(at=self._clock())

    def _drain(self) -> None:
        while True:
            try:
                event = self._queue.get_nowait()
            except Empty:
                return
            self._handle(event)

    def _decide(self, pause: bool = True) -> Decision:
        """Ask the planner until it has nothing more to start or signal right now; or, `pause`,
        until events wait between two batches of starts (`planner.START_BATCH`): a KILL or
        SHUTDOWN amid a start of thousands is taken within a batch, not after the last fork."""
        while True:
            self._planner.daemons(self._procs.daemons())
            decision = self._planner.decide(self._clock())
            self._announcing.phase(decision.phase)  # a stopping task leaves before any signal
            if decision.phase is not TaskPhase.ACTIVE:
                self._checks.stop_async()  # its outcome is fixed: no check may change it
            # Act first, then checkpoint and log: a restart costs a fork+exec, not an fsync,
            # and the records of the new runs carry their pids.
            self._signal(decision.signal)
            if decision.signal_daemons is not None:
                count = self._procs.signal_daemons(decision.signal_daemons)
                log_event(logger, logging.INFO, "daemons_signalled", task=self.job.label,
                          signal=signal.Signals(decision.signal_daemons).name, processes=count,
                          reason=decision.reason)
            started = self._spawn(decision.start)
            for transition in decision.transitions:
                self._record(transition)
            self._starts_unreported |= started > 0  # (one that could not start: no RUNNING for it)
            if self._starts_unreported and not decision.more_to_start:
                self._starts_unreported = False
                self._on_processes_started()
            if decision.more_to_start and pause and not self._held.kill_begun and not self._queue.empty():
                return decision
            if not decision.start and not decision.signal and decision.signal_daemons is None:
                if decision.phase is TaskPhase.FINALIZING or decision.phase.terminal:
                    self._killing.regular_processes_gone()
                self._held.kill_begun = False  # the planner's lines for it are out
                return decision

    def _signal(self, commands: tuple[SignalRun, ...]) -> None:
        for signum in sorted({c.signal for c in commands}, reverse=True):
            runs = [(c.process, c.run) for c in commands if c.signal == signum]
            count = self._procs.signal_runs(runs, signum)
            log_event(logger, logging.DEBUG, "signal", task=self.job.label, signal=signum,
                      runs=" ".join(f"{p}[{r}]" for p, r in runs), processes=count)

    def _spawn(self, commands: tuple[StartRun, ...]) -> int:
        """Start the runs; how many started (the others are failed runs: `spawn_failed`)."""
        if not commands:
            return 0
        started = 0
        now = self._clock()
        specs = [(self._specs[c.process], c.run) for c in commands]  # (a scan per name: 7 ms of a start of 1,000)
        for command, result in zip(commands, self._procs.spawn_many(specs)):
            if isinstance(result, SpawnError):
                self._planner.spawn_failed(command.process, command.run, str(result), now)
            else:
                self._runs.started(command.process, command.run, result)
                self._planner.started(command.process, command.run, result, now)
                self._operators.run_started(command.process, command.run, result)
                started += 1
        return started

    def _handle(self, event: object) -> None:
        if not isinstance(event, OwnerEvent):
            log_event(logger, logging.ERROR, "owner_event_ignored", task=self.job.label,
                      event_type=type(event).__name__, reason="not an event the owner knows")
            return
        self._dispatch(event)

    def _dispatch(self, event: OwnerEvent) -> None:
        """One event, unless it waits for the planner's next decision (`killing.Held`)."""
        if self._held.hold(event):
            return
        match event:
            case ProcessExited():
                self._runs.exited(event.process, event.run, event.status)
                self._planner.exited(event.process, event.run, event.status, event.at)
                self._held.exited = True
            case HealthChecked() | DiskSampled():  # (after an exit, held: the planner says first)
                self._on_check(event)
            case KillRequested():
                was_killing = self._status.killing
                self._apply_outcome(self._status.kill_requested(event.reason), event)
                if was_killing:  # already killing: a later request can only hasten the kill
                    self._kill(event.reason, event)
                if event.reply is not None:
                    self._operators.kill_taken(event.reply, event.reason,
                                               self._killing.grace(event.grace_secs), again=was_killing)
            case RestartRequested():
                self._operators.restart(event, self._planner, self._clock(), self._killing.grace(None))
            case LifecycleProgress():
                self._killing.lifecycle_progress(event.detail)
            case LifecycleDone():
                self._killing.lifecycle_done(event.summary)
            case AnnouncementChanged():
                self._announcing.changed(event.view)
            case TimerFired() | DaemonsExited() | WatchdogRestarted():
                pass  # the step after it looks again (and writes held.json)
            case _:
                assert_never(event)

    # ---- checks ----

    def _on_processes_started(self) -> None:
        if self._processes_started:
            return
        self._processes_started = True
        self._apply_outcome(self._status.processes_started())
        if not self._status.killing and self._planner.phase is TaskPhase.ACTIVE:
            self._checks.start()

    def _on_check(self, event: HealthChecked | DiskSampled) -> None:
        if isinstance(event, DiskSampled):
            if (reason := self._checks.disk(event)) is not None:
                self._apply_outcome(self._status.failed(reason))
        elif not self._status.state.terminal and self._planner.phase is TaskPhase.ACTIVE:
            if (verdict := self._checks.health(event)) is not None:  # else the processes decide
                self._apply_outcome(self._status.health(verdict))

    # ---- kills ----

    def _kill(self, reason: str, request: KillRequested | None = None) -> None:
        self._held.kill_begun = True  # its decision comes before what it brings (`_dispatch`)
        # first: clients stop routing to the task (within the grace, if the kill has an end)
        self._announcing.stopping(reason, request.kill_all_at if request is not None else None)
        self._checks.stop_async()
        self._killing.start(reason, request or KillRequested(reason), self._processes_started)

    # ---- outcomes, transitions, checkpoint ----

    def _apply_outcome(self, outcome: Outcome, request: KillRequested | None = None) -> None:
        if outcome.kill_reason is not None:  # before its lines: a full address space has room for them
            self._procs.stop_begun()
        for transition in outcome.transitions:
            self._record(transition)
        if outcome.updates:
            self._journal.flush()  # the checkpoint holds a change before the agent hears of it
        for update in outcome.updates:
            if update.state is TaskState.RUNNING and self._running_since is None:
                self._running_since = self._clock()
                self._announcing.running()
            if update.state.terminal:
                self.final_update = update
            self._reporter.on_update(update)
            if update.state.terminal:
                self._operators.task_ended(update)
        if outcome.kill_reason is not None:
            self._kill(outcome.kill_reason, request)

    def _record(self, t: ProcessTransition | PhaseTransition | TaskTransition) -> None:
        """Checkpoint, log and report one change."""
        if isinstance(t, ProcessTransition):
            run = t.run if t.run is not None else -1
            self._journal.transition(t, self._runs.pid(t.process, run), self._runs.status(t.process, run))
            if t.outcome is not None:
                self._runs.ended(t.process, run)
            if t.to in (ProcessState.SUCCESS, ProcessState.FAILED, ProcessState.KILLED):
                self._operators.process_ended(t.process, t.to, t.reason)
        else:
            self._journal.transition(t)
        self._reporter.on_transition(t)

    def _internal_error(self, exc: BaseException) -> None:
        reason = f"executor internal error: {type(exc).__name__}: {exc}"
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            reason = f"stopped: {type(exc).__name__}"
        elif no_room(exc) is not None:  # not a bug: one line, no traceback
            reason = f"the task could not go on: {no_room(exc)}"
            log_event(logger, logging.ERROR, "owner_failed", task=self.job.label, reason=reason)
        else:
            log_event(logger, logging.ERROR, "owner_failed", task=self.job.label, reason=reason,
                      exc_info=True)
        if self.final_update is None:
            self.final_update = Update(TaskState.FAILED, reason, None)
            self._failed = TaskTransition(self._status.stage, TaskStage.FAILED, reason)
            try:
                self._reporter.on_update(self.final_update)
            except Exception as exc:
                log_event(logger, logging.ERROR, "owner_report_failed", task=self.job.label,
                          error=f"{type(exc).__name__}: {exc}",
                          reason="the internal error could not be reported")
