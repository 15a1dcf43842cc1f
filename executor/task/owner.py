"""TaskOwner: the one owner of a task's mutable state, in `stoker run` and `stoker executor`.

It runs on a single thread and blocks on its queue until the next event or the planner's
next deadline: the reaper posts `ProcessExited`, the health loop posts `HealthChecked`, the
CLI or the Mesos side posts `KillRequested`, the lifecycle thread posts `LifecycleDone`.
For each event it asks the pure machines (planner, health policy, status machine) what to
do, executes their commands through the supervisor, checkpoints and logs every transition
(one line each), and hands task-level updates to its reporter. No other code changes task
state, so there are no locks.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

import attrs

from config.spec import JobSpec
from executor.events import (
    ExitStatus,
    HealthChecked,
    KillRequested,
    ProcessExited,
    StartRun,
    TaskState,
    TimerFired,
    Transition,
)
from executor.logs import log_event
from executor.procs.supervisor import SpawnError, Supervisor
from executor.task.checkpoint import CheckpointWriter
from executor.task.lifecycle import LifecycleShutdown
from executor.task.planner import Decision, Planner, TaskPhase
from executor.task.status import Outcome, TaskStatusMachine, Update
from healthcheck.checkers import make_checker
from healthcheck.loop import HealthLoop
from healthcheck.policy import Attempt, AttemptOutcome, HealthPolicy, HealthState

logger = logging.getLogger(__name__)

SNOOZE_FILE = ".healthchecksnooze"


class Reporter(Protocol):
    def transition(self, transition: Transition) -> None: ...

    def phase(self, transition: Transition) -> None: ...

    def health(self, attempt: Attempt, state: str, attempts: int) -> None: ...

    def update(self, update: Update) -> None: ...


@attrs.frozen(slots=True)
class LifecycleDone:
    summary: str
    at: float


class TaskOwner:
    def __init__(
        self,
        job: JobSpec,
        *,
        sandbox: Path,
        env: Mapping[str, str],
        reporter: Reporter,
        kill_grace_secs: float | None = None,
        run_cap: int | None = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job = job
        self.sandbox = Path(sandbox)
        self._reporter = reporter
        self._clock = clock
        self._default_grace = kill_grace_secs
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._planner = Planner(job.task, run_cap=run_cap)
        self._supervisor = Supervisor(sandbox=self.sandbox, task_label=job.label, env=env, post=self._queue.put)
        self._checker = make_checker(job.health, self._supervisor.run_command)
        self._policy = HealthPolicy.from_spec(job.health) if self._checker else None
        self._status = TaskStatusMachine(health_checked=self._checker is not None)
        self._health_loop: HealthLoop | None = None
        self._checkpoint: CheckpointWriter | None = None
        self._pending_records: list[dict] = []
        self._pids: dict[tuple[str, int], int] = {}
        self._exits: dict[tuple[str, int], ExitStatus] = {}
        self._processes_started = False
        self._all_exited = threading.Event()
        self._kill_pending: tuple[str, float | None] | None = None  # waiting for the lifecycle
        self._skip_lifecycle = False
        self._started_at: float | None = None
        self._running_since: float | None = None
        self.final_update: Update | None = None

    # ---- called from any thread ----

    def post(self, event: object) -> None:
        self._queue.put(event)

    def request_kill(self, reason: str, grace_secs: float | None = None, use_lifecycle: bool = True) -> None:
        self.post(KillRequested(reason=reason, grace_secs=grace_secs, at=self._clock(), use_lifecycle=use_lifecycle))

    # ---- the loop (call from one thread) ----

    @property
    def uptime_secs(self) -> float:
        """How long the task has been RUNNING (0 if it never was)."""
        if self._running_since is None:
            return 0.0
        return self._clock() - self._running_since

    def run(self) -> Update:
        """Run the task to its end; returns the terminal update."""
        self._started_at = self._clock()
        try:
            self._checkpoint = CheckpointWriter(self.sandbox)
            self._write_header()
            self._flush_checkpoint()
            self._supervisor.start()
            self._apply_outcome(self._status.started())
            self._loop()
        except BaseException as exc:
            self._internal_error(exc)
            raise
        finally:
            self._shutdown()
        assert self.final_update is not None
        return self.final_update

    def _loop(self) -> None:
        while True:
            self._drain()  # e.g. a KILL that came before the first start: nothing starts then
            decision = self._step()
            if decision.phase.terminal:
                self._apply_outcome(self._status.task_ended(decision.phase, decision.reason))
                return
            self._flush_checkpoint()  # one sync per step, before waiting
            timeout = None
            if decision.next_deadline_at is not None:
                timeout = max(0.0, decision.next_deadline_at - self._clock())
            try:
                event = self._queue.get(timeout=timeout)
            except queue.Empty:
                event = TimerFired(at=self._clock())
            self._handle(event)

    def _drain(self) -> None:
        """Handle every event already queued, without blocking."""
        while True:
            try:
                event = self._queue.get_nowait()
            except queue.Empty:
                return
            self._handle(event)

    def _step(self) -> Decision:
        """Ask the planner until it has nothing more to start or signal right now."""
        while True:
            decision = self._planner.decide(self._clock())
            # Act first, then checkpoint and log: a restart costs a fork+exec, not an fsync,
            # and the records of the new runs carry their pids.
            for signum in sorted({c.signal for c in decision.signal}, reverse=True):
                runs = [(c.process, c.run) for c in decision.signal if c.signal == signum]
                count = self._supervisor.signal_runs(runs, signum)
                log_event(logger, logging.DEBUG, "signal", task=self.job.label, signal=signum,
                          runs=" ".join(f"{p}[{r}]" for p, r in runs), processes=count)
            self._spawn(decision.start)
            for transition in decision.transitions:
                self._record_transition(transition, phase=transition.process is None)
            if decision.start:
                self._on_processes_started()
            if not decision.start and not decision.signal:
                if decision.phase in (TaskPhase.FINALIZING,) or decision.phase.terminal:
                    self._all_exited.set()
                return decision

    def _spawn(self, commands: tuple[StartRun, ...]) -> None:
        if not commands:
            return
        now = self._clock()
        specs = [(self.job.task.process(c.process), c.run) for c in commands]
        for command, result in zip(commands, self._supervisor.spawn_many(specs)):
            if isinstance(result, SpawnError):
                self._planner.spawn_failed(command.process, command.run, str(result), now)
            else:
                self._pids[(command.process, command.run)] = result
                self._planner.started(command.process, command.run, result, now)

    def _handle(self, event: object) -> None:
        now = self._clock()
        if isinstance(event, ProcessExited):
            self._exits[(event.process, event.run)] = event.status
            self._planner.exited(event.process, event.run, event.status, event.at)
        elif isinstance(event, HealthChecked):
            self._on_health(event)
        elif isinstance(event, KillRequested):
            if not event.use_lifecycle:
                self._skip_lifecycle = True
            was_killing = self._status.killing
            self._apply_outcome(self._status.kill_requested(event.reason), grace=event.grace_secs)
            if was_killing and (self._kill_pending is None or not event.use_lifecycle):
                # Already killing: a later request can still cut the lifecycle or shorten the grace.
                self._kill_pending = None
                self._planner.kill(now, event.reason, self._grace(event.grace_secs))
        elif isinstance(event, LifecycleDone):
            if self._kill_pending is not None:
                reason, grace = self._kill_pending
                self._kill_pending = None
                log_event(logger, logging.INFO, "kill_stage", task=self.job.label, stage="signals",
                          reason=event.summary)
                self._planner.kill(now, reason, self._grace(grace))
        elif isinstance(event, TimerFired):
            pass
        else:
            logger.error("owner task=%s ignored an unknown event %r", self.job.label, event)

    # ---- health ----

    def _on_processes_started(self) -> None:
        if self._processes_started:
            return
        self._processes_started = True
        self._apply_outcome(self._status.processes_started())
        if self._checker is not None and not self._status.killing:
            self._health_loop = HealthLoop(
                self._checker,
                self.job.health.interval_secs,
                self.sandbox / SNOOZE_FILE,
                lambda attempt, latency: self.post(HealthChecked(attempt, latency, self._clock())),
                task=self.job.label,
            )
            self._health_loop.start()

    def _on_health(self, event: HealthChecked) -> None:
        if self._policy is None or self._status.state.terminal:
            return
        verdict = self._policy.record(event.attempt)
        attempt = event.attempt
        self._checkpoint_append({
            "kind": "health", "outcome": attempt.outcome.value, "reason": attempt.reason,
            "latency_secs": round(event.latency_secs, 6), "state": verdict.state.value,
            "attempts": self._policy.attempts, "consecutive_failures": self._policy.consecutive_failures,
            "consecutive_successes": self._policy.consecutive_successes,
        })
        level = logging.DEBUG
        if attempt.outcome is AttemptOutcome.FAILED:
            level = logging.INFO if verdict.ignored else logging.WARNING
        elif attempt.outcome is AttemptOutcome.SNOOZED:
            level = logging.INFO
        log_event(logger, level, "health_check", task=self.job.label, result=attempt.outcome.value,
                  attempt=self._policy.attempts, latency_ms=round(event.latency_secs * 1000, 1),
                  state=verdict.state.value, reason=verdict.reason or attempt.reason)
        self._reporter.health(attempt, verdict.state.value, self._policy.attempts)
        self._apply_outcome(self._status.health(verdict))
        if verdict.state is HealthState.FAILED and self._health_loop is not None:
            self._health_loop.stop_async()

    # ---- kills ----

    def _grace(self, grace_secs: float | None) -> float:
        if grace_secs is not None:
            return grace_secs
        if self._default_grace is not None:
            return self._default_grace
        return self.job.task.finalization_wait_secs

    def _start_kill(self, reason: str, grace_secs: float | None) -> None:
        now = self._clock()
        if self._health_loop is not None:
            self._health_loop.stop_async()
        lifecycle = self.job.lifecycle
        if lifecycle is None or not self._processes_started or self._skip_lifecycle:
            self._planner.kill(now, reason, self._grace(grace_secs))
            return
        # Hold every restart while the endpoints run; the signals come when they are done.
        self._planner.kill(now, reason, self._grace(grace_secs),
                           term_delay_secs=lifecycle.graceful_shutdown_wait_secs + lifecycle.shutdown_wait_secs)
        self._kill_pending = (reason, grace_secs)
        log_event(logger, logging.INFO, "kill_stage", task=self.job.label, stage="lifecycle",
                  port=lifecycle.port, reason=reason)
        LifecycleShutdown(
            lifecycle, self.job.label, self._all_exited,
            lambda summary: self.post(LifecycleDone(summary, self._clock())),
        ).start()

    # ---- outcomes, transitions, checkpoint ----

    def _apply_outcome(self, outcome: Outcome, grace: float | None = None) -> None:
        for transition in outcome.transitions:
            self._record_transition(transition)
        for update in outcome.updates:
            if update.state is TaskState.RUNNING and self._running_since is None:
                self._running_since = self._clock()
            if update.state.terminal:
                self.final_update = update
            self._reporter.update(update)
        if outcome.kill_reason is not None:
            self._start_kill(outcome.kill_reason, grace)

    def _record_transition(self, t: Transition, phase: bool = False) -> None:
        """Checkpoint, log and report one change. `phase`: the planner's supervision phase
        (ACTIVE, CLEANING, FINALIZING, ...), as opposed to the task state the world sees."""
        if phase:
            self._checkpoint_append({"kind": "phase", "from": t.from_state, "to": t.to_state, "reason": t.reason})
            log_event(logger, logging.INFO, "task_phase", task=self.job.label,
                      **{"from": t.from_state, "to": t.to_state}, reason=t.reason)
            self._reporter.phase(t)
            return
        if t.process is None:
            self._checkpoint_append({"kind": "task", "from": t.from_state, "to": t.to_state, "reason": t.reason})
            log_event(logger, logging.INFO, "task_state", task=self.job.label,
                      **{"from": t.from_state, "to": t.to_state}, reason=t.reason)
        else:
            key = (t.process, t.run if t.run is not None else -1)
            status = self._exits.get(key)
            pid = self._pids.get(key)
            self._checkpoint_append({
                "kind": "process", "process": t.process, "run": t.run, "from": t.from_state,
                "to": t.to_state, "reason": t.reason, "pid": pid,
                "exit_code": status.exit_code if status else None,
                "signal": status.signal if status else None,
            })
            level = logging.WARNING if t.to_state in ("FAILED", "LOST") else logging.INFO
            log_event(logger, level, "process_state", task=self.job.label, process=t.process, run=t.run,
                      pid=pid, **{"from": t.from_state, "to": t.to_state}, reason=t.reason)
        self._reporter.transition(t)

    def _write_header(self) -> None:
        health = "none"
        if self._checker is not None:
            health = self._checker.describe()
        self._checkpoint_append({
            "kind": "header", "task": self.job.label, "job_key": self.job.key, "task_id": self.job.task_id,
            "sandbox": str(self.sandbox), "ports": dict(self.job.ports),
            "supervisor_pid": os.getpid(), "processes": [p.name for p in self.job.task.processes],
            "health": health,
        })

    def _checkpoint_append(self, record: dict) -> None:
        """Queue a record; `_flush_checkpoint` writes the step's records with one sync."""
        record.setdefault("wall", time.time())
        self._pending_records.append(record)

    def _flush_checkpoint(self) -> None:
        records, self._pending_records = self._pending_records, []
        if self._checkpoint is None or not records:
            return
        try:
            self._checkpoint.append_many(records)
        except (OSError, ValueError) as exc:
            logger.error("checkpoint task=%s write failed: %s: %s", self.job.label, type(exc).__name__, exc)

    def _internal_error(self, exc: BaseException) -> None:
        reason = f"executor internal error: {type(exc).__name__}: {exc}"
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            reason = f"stopped: {type(exc).__name__}"
        else:
            logger.error("owner task=%s %s", self.job.label, reason, exc_info=True)
        if self.final_update is None:
            self.final_update = Update(TaskState.FAILED, reason, None)
            try:
                self._reporter.update(self.final_update)
            except Exception:
                logger.error("owner task=%s could not report the internal error", self.job.label)

    def _shutdown(self) -> None:
        self._flush_checkpoint()
        self._all_exited.set()
        if self._health_loop is not None:
            self._health_loop.stop()
        self._supervisor.close()
        if self._checkpoint is not None:
            self._checkpoint.close()

