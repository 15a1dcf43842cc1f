"""The process planner: Thermos' scheduling rules for one task, as a pure state machine.

It owns which run of which process starts when (order constraints, `max_concurrency`,
`min_duration`), each process's state across its runs (by the rules of `process_rules.py`),
and the task's phases, including the staged SIGTERM → SIGKILL of whatever still runs. It
never does I/O, never reads a clock, never starts threads and never logs: time comes in as
`now` (the caller's monotonic clock), and `StartRun` / `SignalRun` commands and
`ProcessTransition` / `PhaseTransition`s go out in a `Decision` for the task owner to
execute, checkpoint and log.

Task phases (`PHASE_EDGES`, in executor/events.py, is this drawing as data; a unit test checks
that they agree):

    ACTIVE ──regular plan complete, unhealthy or deadlocked, or kill()──▶ CLEANING
    CLEANING ──every regular run ended; finals exist, budget left (or killed)──▶ FINALIZING
    CLEANING ──no final processes, or the finalization budget is spent──▶ SUCCESS | FAILED | KILLED
    FINALIZING ──final plan complete or deadlocked, nothing running──▶ SUCCESS | FAILED | KILLED

CLEANING SIGTERMs every running regular run and SIGKILLs what is left at its deadline;
FINALIZING runs the final plan and SIGKILLs what is left at its deadline. In ACTIVE, an
operator's `restart` SIGTERMs one run at once and SIGKILLs it after the grace; its end is
RESTARTED and the next run starts without waiting for min_duration. Each process's
own machine, and what one ended run means, are `executor/task/process_rules.py`.

Where Stoker improves on Thermos: processes are picked in task order under
`max_concurrency`; successful daemon runs do not count toward the run cap; a kill still runs
the final processes, with their own `finalization_wait` budget.
"""
from __future__ import annotations

import math

import attrs

from config.spec import TaskSpec
from config.words import number, plural
from executor.events import (
    PHASE_EDGES,
    ExitStatus,
    PhaseTransition,
    ProcessState,
    ProcessTransition,
    RunOutcome,
    SignalRun,
    StartRun,
    TaskPhase,
)
from executor.task.plans import GIVE_UP_AFTER_SIGKILL_SECS, Plan, dependencies
from executor.task.process_rules import (
    PROCESS_EDGES,
    ProcessTrack,
    ProcessView,
    RestartAnswer,
    regular_outcome,
    request_restart,
    run_outcome,
)

# POSIX fixes these two numbers; the `signal` module is an OS interface a pure module avoids.
SIGTERM = 15
SIGKILL = 9
START_BATCH = 128  # runs one decision starts at most: a KILL amid a start of thousands is taken between two


@attrs.frozen(slots=True)
class Decision:
    start: tuple[StartRun, ...]  # runs to fork now
    signal: tuple[SignalRun, ...]  # signals to send now (each issued once)
    signal_daemons: int | None  # a signal to send now to the daemons the runs left
    # every state change since the last call, in order
    transitions: tuple[ProcessTransition | PhaseTransition, ...]
    next_deadline_at: float | None  # when to call decide() again if nothing happens
    phase: TaskPhase
    reason: str  # why the task is in this phase (terminal: the outcome)
    more_to_start: bool = False  # runs that may start now were left to the next decision (START_BATCH)


class Planner:
    """One task's processes: call decide(now) after every event and execute what it says."""

    def __init__(self, task: TaskSpec, *, run_cap: int | None = 100) -> None:
        deps = dependencies(task)
        self._task = task
        self._run_cap = run_cap
        self._procs = {p.name: ProcessTrack(p, deps[p.name]) for p in task.processes}
        self._regular = Plan([q for q in self._procs.values() if not q.spec.final])
        self._final = Plan([q for q in self._procs.values() if q.spec.final])
        self._phase = TaskPhase.ACTIVE
        self._reason = "the task is running its processes"
        self._outcome: tuple[TaskPhase, str] | None = None  # fixed when ACTIVE ends
        self._killed = False
        self._skip_finals: str | None = None  # why the final processes do not run (a kill skipped them)
        # When the final processes must be done: on a natural end, finalization_wait after
        # ACTIVE ended (cleaning spends the same budget); after a kill, set when they start.
        self._final_deadline_at = math.inf
        self._pending: list[ProcessTransition | PhaseTransition] = []
        # The daemons the runs left (the owner's fact), stopped with the regular processes.
        self._daemons = False
        self._daemons_termed = False
        self._daemons_killed_at: float | None = None
        self._daemon_signal: int | None = None  # for the next Decision
        self._more_to_start = False  # for the next Decision
        self._order = {name: i for i, name in enumerate(self._procs)}
        self._restarts: dict[str, ProcessTrack] = {}  # running runs an operator restarts

    # ---- queries ----

    @property
    def phase(self) -> TaskPhase:
        return self._phase

    @property
    def reason(self) -> str:
        return self._reason

    @property
    def killed(self) -> bool:
        return self._killed

    def processes(self) -> tuple[ProcessView, ...]:
        return tuple(p.view() for p in self._procs.values())

    def process(self, name: str) -> ProcessView:
        return self._proc(name).view()

    # ---- facts from the owner ----

    def started(self, process: str, run: int, pid: int, now: float) -> None:
        """The run was forked with `pid` (no state change: it is RUNNING since StartRun)."""
        p = self._proc(process)
        if p.state is ProcessState.RUNNING and p.run == run:
            p.pid = pid

    def exited(self, process: str, run: int, status: ExitStatus, now: float) -> None:
        """The run ended; a stale report (unknown run, or one given up on) is ignored."""
        p = self._proc(process)
        if p.state is not ProcessState.RUNNING or p.run != run:
            return
        outcome = run_outcome(status, signalled_by_task=p.termed or p.killed_at is not None)
        self._end_run(p, outcome, status.describe(), now)

    def spawn_failed(self, process: str, run: int, reason: str, now: float) -> None:
        """The run could not be started: a failed run that counts toward max_failures."""
        p = self._proc(process)
        if p.state is ProcessState.RUNNING and p.run == run:
            self._end_run(p, RunOutcome.FAILED, f"could not start: {reason}", now)

    def daemons(self, alive: bool) -> None:
        """Whether daemons the task's runs left (outside their process groups) still live:
        CLEANING stops them with the regular processes and waits for them."""
        self._daemons = alive

    def kill(self, now: float, reason: str, grace_secs: float | None = None,
             term_delay_secs: float = 0.0, *, skip_finals: bool = False) -> None:
        """Stop the task: no new regular runs; SIGTERM at now + term_delay_secs (the lifecycle
        endpoints' time), SIGKILL `grace_secs` later (None: finalization_wait); then the final
        processes, within their own budget; then KILLED. A stop that comes while they run
        leaves them that budget, as Thermos does. With `skip_finals` they do not run, and
        those running are stopped with the rest. A later kill may bring both times earlier,
        never later."""
        if self._phase.terminal:
            return
        grace = self._task.finalization_wait_secs if grace_secs is None else max(0.0, grace_secs)
        term_at = now + max(0.0, term_delay_secs)
        if skip_finals and self._skip_finals is None:
            self._skip_finals = reason
        if not self._killed:
            self._killed = True
            self._outcome = (TaskPhase.KILLED, reason)
        if self._phase is TaskPhase.ACTIVE:
            delay = f"SIGTERM in {number(term_at - now)} s" if term_at > now else "SIGTERM now"
            tail = (f"stopping {self._what_runs()}: {delay}, SIGKILL {number(grace)} s later"
                    if self._regular.running() or self._daemons else "nothing running to stop")
            self._begin_cleaning(term_at, term_at + grace, f"{reason}; {tail}")
        elif self._phase is TaskPhase.CLEANING:
            self._regular.stop(term_at, term_at + grace)
        elif self._skip_finals is not None:  # FINALIZING: a stop skips the finals only when told
            deadline = self._final_deadline_at
            self._final.stop(min(term_at, deadline), min(term_at + grace, deadline))
            self._cancel_waiting(self._final, f"final processes skipped: {self._skip_finals}")

    def restart(self, process: str, now: float, grace_secs: float) -> RestartAnswer:
        """An operator asked for a new run of `process` (`process_rules.request_restart`)."""
        p = self._procs.get(process)
        if p is None:
            return RestartAnswer(False, f"task '{self._task.name}' has no process '{process}' "
                                        f"(its processes: {', '.join(self._procs)})")
        answer = request_restart(p, self._phase, self._regular.waiting_for(p), now, grace_secs,
                                 self._task.max_concurrency, self._regular.running())
        if p.restart_kill_at is not None:
            self._restarts[p.name] = p
        return answer

    def _restarting(self) -> list[ProcessTrack]:
        """The running runs an operator's restart stops (regular ones: a final process is
        never restarted), in task order; forgets the others."""
        for name, p in list(self._restarts.items()):
            if p.state is not ProcessState.RUNNING or p.restart_kill_at is None:
                del self._restarts[name]
        return sorted(self._restarts.values(), key=lambda p: self._order[p.name])

    # ---- the decision ----

    def startable(self, now: float) -> list[tuple[str, int]]:
        """The runs (process, run) `decide(now)` would start while the task is active, in its
        order, without deciding anything: the owner has their log files made while it waits
        for the task's containment, before its first step."""
        plan = self._regular
        if self._phase is not TaskPhase.ACTIVE or plan.settled() or 0 < self._task.max_failures <= plan.count(
                ProcessState.FAILED):
            return []
        return [(p.name, p.run + 1) for p in self._runnable(plan, now)]

    def failed_ends(self, why: str) -> tuple[ProcessTransition, ...]:
        """The task's owner could not go on (`why`): the process transitions noted since the
        last decision, which its failed step had not recorded (a run that could not start,
        then no thread), then each run KILLED by its close and each waiting process ended."""
        for p in self._procs.values():
            if p.state is ProcessState.RUNNING:
                self._note(p, ProcessState.KILLED, f"killed: {why}", RunOutcome.KILLED)
        for plan in (self._regular, self._final):
            self._cancel_waiting(plan, why)
        taken, self._pending = self._pending, []
        return tuple(t for t in taken if isinstance(t, ProcessTransition))

    def decide(self, now: float) -> Decision:
        starts: list[StartRun] = []
        signals: list[SignalRun] = []
        while True:
            phase = self._phase
            if phase is TaskPhase.ACTIVE:
                self._restart_signals(now, signals)
                self._step_active(now, starts)
            elif phase is TaskPhase.CLEANING:
                self._step_cleaning(now, signals)
            elif phase is TaskPhase.FINALIZING:
                self._step_finalizing(now, starts, signals)
            if self._phase is phase:
                break
        transitions, self._pending = tuple(self._pending), []
        daemon_signal, self._daemon_signal = self._daemon_signal, None
        more, self._more_to_start = self._more_to_start, False
        return Decision(tuple(starts), tuple(signals), daemon_signal, transitions,
                        self._next_deadline(now), self._phase, self._reason, more)

    def _step_active(self, now: float, starts: list[StartRun]) -> None:
        plan, max_failures = self._regular, self._task.max_failures
        settled = plan.settled()
        unhealthy = 0 < max_failures <= plan.count(ProcessState.FAILED)
        outcome = (regular_outcome(plan.procs, max_failures, settled=settled)
                   if settled or unhealthy else None)
        if outcome is None:
            self._start_runnable(self._regular, now, starts)
            return
        wait = self._task.finalization_wait_secs
        self._outcome = outcome
        self._final_deadline_at = now + wait
        tail = (f"stopping {self._what_runs()} (SIGKILL after {number(wait)} s)"
                if self._regular.running() or self._daemons else "nothing left running")
        self._begin_cleaning(now, now + wait, f"{outcome[1]}; {tail}")

    def _restart_signals(self, now: float, signals: list[SignalRun]) -> None:
        """SIGTERM a run an operator restarts at once, SIGKILL it at its deadline."""
        for p in self._restarting():
            if not p.termed:
                signals.append(SignalRun(p.name, p.run, SIGTERM))
                p.termed = True
            elif p.killed_at is None and p.restart_kill_at is not None and now >= p.restart_kill_at:
                signals.append(SignalRun(p.name, p.run, SIGKILL))
                p.killed_at = now

    def _begin_cleaning(self, term_at: float, kill_at: float, reason: str) -> None:
        self._regular.stop(term_at, kill_at)
        self._set_phase(TaskPhase.CLEANING, reason)
        self._cancel_waiting(self._regular, "the task is stopping")

    def _what_runs(self) -> str:
        running = plural(self._regular.running(), "running process")
        return f"{running} and the daemons the runs left" if self._daemons else running

    def _step_cleaning(self, now: float, signals: list[SignalRun]) -> None:
        if self._stop_step(self._regular, now, signals) | self._stop_daemons(now):
            return
        fw = self._task.finalization_wait_secs
        if not self._final.procs:
            self._finish()
        elif self._skip_finals is not None:
            self._cancel_waiting(self._final, f"final processes skipped: {self._skip_finals}")
            self._finish()
        elif self._killed or now < self._final_deadline_at:
            if self._killed:  # a kill gives the final processes their own budget from here
                self._final_deadline_at = now + fw
            self._set_phase(TaskPhase.FINALIZING, (
                f"every regular process has stopped; running "
                f"{plural(len(self._final.procs), 'final process')} within "
                f"{number(self._final_deadline_at - now)} s"))
        else:
            self._cancel_waiting(self._final, (
                f"finalization skipped, its finalization_wait={number(fw)} s budget was spent "
                f"stopping the regular processes"))
            self._finish()

    def _step_finalizing(self, now: float, starts: list[StartRun],
                         signals: list[SignalRun]) -> None:
        plan = self._final
        deadline = self._final_deadline_at
        if not plan.stopping:
            if now >= deadline:
                plan.stop(now, now)
                self._cancel_waiting(plan, (
                    f"finalization ran out of time "
                    f"(finalization_wait={number(self._task.finalization_wait_secs)} s)"))
            elif plan.settled():
                plan.stop(now, deadline)
                self._cancel_waiting(plan, "the final processes are done")
            else:
                self._start_runnable(plan, now, starts)
                return
        if not self._stop_step(plan, now, signals):
            self._finish()

    def _finish(self) -> None:
        assert self._outcome is not None
        self._set_phase(*self._outcome)

    # ---- plans ----

    def _start_runnable(self, plan: Plan, now: float, starts: list[StartRun]) -> None:
        runnable = self._runnable(plan, now)
        for p in runnable[:START_BATCH]:
            self._note(p, ProcessState.RUNNING, p.begin_run())
            starts.append(StartRun(p.name, p.run))
        self._more_to_start = len(runnable) > START_BATCH

    def _runnable(self, plan: Plan, now: float) -> list[ProcessTrack]:
        """The processes of `plan` whose next run starts now. Task order, deterministic under
        max_concurrency; but a process an operator restarted first: the slot its stopped run
        held is its next run's, not a waiting process's."""
        limit, running = self._task.max_concurrency, plan.running()
        picked: list[ProcessTrack] = []
        for p in sorted(plan.ready(), key=lambda q: not q.start_now):
            if limit > 0 and running + len(picked) >= limit:
                break
            if p.gate_at is None or now >= p.gate_at:
                picked.append(p)
        return picked

    # ---- runs ----

    def _end_run(self, p: ProcessTrack, outcome: RunOutcome, desc: str, now: float) -> None:
        stopping = (self._final if p.spec.final else self._regular).stopping
        if p.restart_kill_at is not None and not stopping:
            p.start_now = True  # the operator was told the next run starts once this one ended
            if outcome is RunOutcome.KILLED:  # one that ended on its own counts as what it was
                outcome = RunOutcome.RESTARTED
        end = p.end_run(outcome, desc, now, self._run_cap, stopping=stopping,
                        task_killed=self._killed)
        self._note(p, end.state, end.reason, outcome)

    def _stop_step(self, plan: Plan, now: float, signals: list[SignalRun]) -> bool:
        """Signal the plan's running runs as their times come; True while any still runs."""
        for p in plan.running_procs():
            if p.killed_at is not None:
                if now >= p.killed_at + GIVE_UP_AFTER_SIGKILL_SECS:
                    p.ended_at, p.last_outcome = now, RunOutcome.KILLED
                    self._note(p, ProcessState.KILLED, (
                        f"run {p.run} did not exit {number(GIVE_UP_AFTER_SIGKILL_SECS)} s after "
                        f"SIGKILL; given up on"), RunOutcome.KILLED)
                    continue
            elif now >= plan.kill_time(p):
                signals.append(SignalRun(p.name, p.run, SIGKILL))
                p.killed_at = now
            elif not p.termed and (now >= plan.term_at or p.restart_kill_at is not None):
                signals.append(SignalRun(p.name, p.run, SIGTERM))  # a restart's: at once
                p.termed = True
        return plan.running() > 0

    def _stop_daemons(self, now: float) -> bool:
        """Signal the runs' daemons as the regular plan's times come; True while they live."""
        plan = self._regular
        if not self._daemons:
            return False
        if self._daemons_killed_at is not None:
            if now >= self._daemons_killed_at + GIVE_UP_AFTER_SIGKILL_SECS:
                self._daemons = False  # given up on: the owner's close kills what is left
        elif now >= plan.kill_at:
            self._daemon_signal, self._daemons_killed_at = SIGKILL, now
        elif now >= plan.term_at and not self._daemons_termed:
            self._daemon_signal, self._daemons_termed = SIGTERM, True
        return self._daemons

    def _cancel_waiting(self, plan: Plan, why: str) -> None:
        """The plan stops: its WAITING processes will not (re)start, because `why`."""
        for p in plan.procs:
            if p.state is not ProcessState.WAITING:
                continue
            blocker = plan.failed_dep(p)
            if blocker is not None:
                reason = f"never started: it waits for '{blocker}', which failed"
            else:
                reason = f"{'not restarted' if p.run >= 0 else 'not started'}: {why}"
            self._note(p, ProcessState.KILLED, reason)

    def _next_deadline(self, now: float) -> float | None:
        times: list[float] = []
        phase = self._phase
        if phase is TaskPhase.ACTIVE or (phase is TaskPhase.FINALIZING
                                          and not self._final.stopping):
            plan = self._regular if phase is TaskPhase.ACTIVE else self._final
            times = [g for p in plan.ready() if (g := p.gate_at) is not None and g > now] + [
                k for p in (self._restarting() if phase is TaskPhase.ACTIVE else ())  # an operator's restart: its SIGKILL
                if p.killed_at is None and (k := p.restart_kill_at) is not None]
            if phase is TaskPhase.FINALIZING:
                times.append(self._final_deadline_at)
        elif phase in (TaskPhase.CLEANING, TaskPhase.FINALIZING):
            plan = self._regular if phase is TaskPhase.CLEANING else self._final
            if phase is TaskPhase.CLEANING and self._daemons:
                times = plan.stop_times(self._daemons_killed_at, self._daemons_termed, plan.kill_at)
            for p in plan.running_procs():
                times += plan.stop_times(p.killed_at, p.termed, plan.kill_time(p))
        return min(times) if times else None

    # ---- bookkeeping ----

    def _proc(self, name: str) -> ProcessTrack:
        try:
            return self._procs[name]
        except KeyError:
            raise KeyError(f"task '{self._task.name}' has no process '{name}'") from None

    def _note(self, p: ProcessTrack, to: ProcessState, reason: str,
              outcome: RunOutcome | None = None) -> None:
        assert to in PROCESS_EDGES[p.state], f"{p.name}: no edge {p.state.name} → {to.name}"
        run = p.run if p.run >= 0 else None
        self._pending.append(ProcessTransition(p.name, run, p.state, to, reason, outcome))
        old, p.state = p.state, to
        (self._final if p.spec.final else self._regular).moved(p, old)
        p.last_reason = reason

    def _set_phase(self, to: TaskPhase, reason: str) -> None:
        assert to in PHASE_EDGES[self._phase], f"no phase edge {self._phase.name} → {to.name}"
        self._pending.append(PhaseTransition(self._phase, to, reason))
        self._phase = to
        self._reason = reason

