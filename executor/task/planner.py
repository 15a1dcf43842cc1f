"""The process planner: Thermos' scheduling rules for one task, as a pure state machine.

It owns which run of which process starts when (order constraints, `max_concurrency`,
`min_duration`), what each run's end means (success, failure, loss or kill; `max_failures`,
`daemon`, `ephemeral`, the run cap), and the task's phases, including the staged
SIGTERM → SIGKILL of whatever still runs. It never does I/O, never reads a clock, never
starts threads and never logs: time comes in as `now` (the caller's monotonic clock), and
`StartRun` / `SignalRun` commands and `Transition`s go out in a `Decision` for the task owner
to execute, checkpoint and log.

Task phases:

    ACTIVE ──regular plan complete / unhealthy / deadlocked, or kill()──▶ CLEANING
    CLEANING: SIGTERM every running regular run, SIGKILL what is left at the deadline
      ──every regular run ended, final processes exist, budget left (or killed)──▶ FINALIZING
      ──no final processes, or the finalization budget is spent──▶ SUCCESS | FAILED | KILLED
    FINALIZING: run the final plan; at its deadline SIGKILL what is left
      ──final plan complete or deadlocked, nothing running──▶ SUCCESS | FAILED | KILLED

Process states (runs count from 0 per process):

    WAITING ──StartRun──▶ RUNNING ──run ended──▶ WAITING   (daemon success, failure under
       │                     │                             max_failures, loss: restart)
       │                     └──────────────────▶ SUCCESS | FAILED | KILLED   (for good)
       └──the task stops before it (re)starts──▶ KILLED

Where Stoker improves on Thermos: processes are picked in task order under
`max_concurrency`; successful daemon runs do not count toward the run cap; a kill still runs
the final processes, with their own `finalization_wait` budget.
"""
from __future__ import annotations

import enum

import attrs

from config.order import describe, order_graph
from config.spec import ProcessSpec, TaskSpec
from executor.events import ExitStatus, SignalRun, StartRun, Transition

# POSIX fixes these two numbers; the `signal` module is an OS interface a pure module avoids.
SIGTERM = 15
SIGKILL = 9
# SIGKILL cannot be ignored, so the owner will report the exit; this only guards against hanging.
GIVE_UP_AFTER_SIGKILL_SECS = 1.0


class ProcessState(enum.Enum):
    WAITING = "WAITING"  # not started yet / waiting for order, concurrency or min_duration
    RUNNING = "RUNNING"  # a run was started (StartRun issued) and has not exited
    SUCCESS = "SUCCESS"  # finished successfully for good
    FAILED = "FAILED"  # failed for good (max_failures reached, run cap, spawn errors)
    KILLED = "KILLED"  # stopped by the task's kill / cleaning


class RunOutcome(enum.Enum):
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    LOST = "LOST"  # killed by a signal nobody in the task sent: restarted, not a failure
    KILLED = "KILLED"  # ended after the task signalled it


class TaskPhase(enum.Enum):
    ACTIVE = "ACTIVE"
    CLEANING = "CLEANING"
    FINALIZING = "FINALIZING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    KILLED = "KILLED"

    @property
    def terminal(self) -> bool:
        return self in (TaskPhase.SUCCESS, TaskPhase.FAILED, TaskPhase.KILLED)


@attrs.frozen(slots=True)
class ProcessView:
    """A snapshot of one process for logs and status; `last_reason` is its latest change's."""

    name: str
    state: ProcessState
    run: int  # current or last run number, -1 if never started
    failures: int
    losses: int
    successes: int
    pid: int | None  # of the current or last run
    last_outcome: RunOutcome | None
    last_reason: str
    next_start_at: float | None  # WAITING behind min_duration: when the gate opens


@attrs.frozen(slots=True)
class Decision:
    start: tuple[StartRun, ...]  # runs to fork now
    signal: tuple[SignalRun, ...]  # signals to send now (each issued once)
    transitions: tuple[Transition, ...]  # every state change since the last call, in order
    next_deadline_at: float | None  # when to call decide() again if nothing happens
    phase: TaskPhase
    reason: str  # why the task is in this phase (terminal: the outcome)


def _num(x: float) -> str:
    r = round(x, 3)
    return str(int(r)) if r == int(r) else repr(r)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}es" if word.endswith("s") else f"{n} {word}s"


@attrs.define
class _Proc:
    spec: ProcessSpec
    deps: tuple[str, ...]
    state: ProcessState = ProcessState.WAITING
    run: int = -1
    failures: int = 0
    losses: int = 0
    successes: int = 0
    pid: int | None = None
    last_outcome: RunOutcome | None = None
    last_reason: str = ""
    last_end: str = ""  # how the last run ended: "exit status 3"
    failed_because: str = ""  # set when FAILED for good: "exit status 3 after 1 of ..."
    ended_at: float | None = None
    termed: bool = False  # SIGTERM issued to the current run
    killed_at: float | None = None  # SIGKILL issued to the current run at

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def gate_at(self) -> float | None:
        return None if self.ended_at is None else self.ended_at + self.spec.min_duration_secs


@attrs.define
class _Plan:
    """The regular or the final processes, and when their runs get signalled once stopping."""

    procs: list[_Proc]
    term_at: float | None = None  # None: not stopping
    kill_at: float | None = None

    @property
    def stopping(self) -> bool:
        return self.term_at is not None

    def stop(self, term_at: float, kill_at: float) -> None:
        """Stop (or stop sooner): deadlines only ever move earlier."""
        self.term_at = term_at if self.term_at is None else min(self.term_at, term_at)
        self.kill_at = kill_at if self.kill_at is None else min(self.kill_at, kill_at)


def _dependencies(task: TaskSpec) -> dict[str, tuple[str, ...]]:
    """Each process's direct predecessors (`config.order`, the loader's rules too). A loaded
    job never breaks them; this guard stops a TaskSpec built around the loader."""
    graph = order_graph(((p.name, p.final) for p in task.processes), task.constraints)
    if graph.problems:
        raise ValueError("invalid schedule: " + "; ".join(describe(p, "task") for p in graph.problems))
    return graph.deps


class Planner:
    """One task's processes: call decide(now) after every event and execute what it says."""

    def __init__(self, task: TaskSpec, *, run_cap: int | None = 100) -> None:
        deps = _dependencies(task)
        self._task = task
        self._run_cap = run_cap
        self._procs = {p.name: _Proc(p, deps[p.name]) for p in task.processes}
        self._regular = _Plan([q for q in self._procs.values() if not q.spec.final])
        self._final = _Plan([q for q in self._procs.values() if q.spec.final])
        self._phase = TaskPhase.ACTIVE
        self._reason = "the task is running its processes"
        self._outcome: tuple[TaskPhase, str] | None = None  # fixed when ACTIVE ends
        self._killed = False
        self._budget_at: float | None = None  # natural end: finalization budget's end
        self._final_deadline_at: float | None = None
        self._pending: list[Transition] = []

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
        return tuple(self._view(p) for p in self._procs.values())

    def process(self, name: str) -> ProcessView:
        return self._view(self._proc(name))

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
        if p.termed or p.killed_at is not None:
            outcome = RunOutcome.KILLED
        elif status.signal is not None:
            outcome = RunOutcome.LOST
        else:
            outcome = RunOutcome.SUCCESS if status.success else RunOutcome.FAILED
        self._end_run(p, outcome, status.describe(), now)

    def spawn_failed(self, process: str, run: int, reason: str, now: float) -> None:
        """The run could not be started: a failed run that counts toward max_failures."""
        p = self._proc(process)
        if p.state is ProcessState.RUNNING and p.run == run:
            self._end_run(p, RunOutcome.FAILED, f"could not start: {reason}", now)

    def kill(self, now: float, reason: str, grace_secs: float | None = None,
             term_delay_secs: float = 0.0) -> None:
        """Stop the task: no new regular runs; SIGTERM at now + term_delay_secs (the lifecycle
        endpoints' time), SIGKILL `grace_secs` later (None: finalization_wait); then the final
        processes; then KILLED. A later kill may bring both times earlier, never later."""
        if self._phase.terminal:
            return
        grace = self._task.finalization_wait_secs if grace_secs is None else max(0.0, grace_secs)
        term_at = now + max(0.0, term_delay_secs)
        if not self._killed:
            self._killed = True
            self._outcome = (TaskPhase.KILLED, reason)
        if self._phase is TaskPhase.ACTIVE:
            running = sum(p.state is ProcessState.RUNNING for p in self._regular.procs)
            delay = f"SIGTERM in {_num(term_at - now)} s" if term_at > now else "SIGTERM now"
            self._begin_cleaning(
                term_at, term_at + grace,
                f"{reason}; stopping {_plural(running, 'running process')}: "
                f"{delay}, SIGKILL {_num(grace)} s later")
        elif self._phase is TaskPhase.CLEANING:
            self._regular.stop(term_at, term_at + grace)
        else:
            plan = self._final
            assert self._final_deadline_at is not None
            plan.stop(min(term_at, self._final_deadline_at),
                      min(term_at + grace, self._final_deadline_at))
            self._cancel_waiting(plan, f"the task is being killed ({reason})")

    # ---- the decision ----

    def decide(self, now: float) -> Decision:
        starts: list[StartRun] = []
        signals: list[SignalRun] = []
        while True:
            phase = self._phase
            if phase is TaskPhase.ACTIVE:
                self._step_active(now, starts)
            elif phase is TaskPhase.CLEANING:
                self._step_cleaning(now, signals)
            elif phase is TaskPhase.FINALIZING:
                self._step_finalizing(now, starts, signals)
            if self._phase is phase:
                break
        transitions, self._pending = tuple(self._pending), []
        return Decision(tuple(starts), tuple(signals), transitions, self._next_deadline(now),
                        self._phase, self._reason)

    def _step_active(self, now: float, starts: list[StartRun]) -> None:
        outcome = self._regular_outcome()
        if outcome is None:
            self._start_runnable(self._regular, now, starts)
            return
        fw = self._task.finalization_wait_secs
        self._outcome = outcome
        self._budget_at = now + fw
        running = sum(p.state is ProcessState.RUNNING for p in self._regular.procs)
        tail = (f"stopping {_plural(running, 'running process')} (SIGKILL after {_num(fw)} s)"
                if running else "nothing left running")
        self._begin_cleaning(now, now + fw, f"{outcome[1]}; {tail}")

    def _begin_cleaning(self, term_at: float, kill_at: float, reason: str) -> None:
        self._regular.stop(term_at, kill_at)
        self._set_phase(TaskPhase.CLEANING, reason)
        self._cancel_waiting(self._regular, "the task is stopping")

    def _step_cleaning(self, now: float, signals: list[SignalRun]) -> None:
        if self._stop_step(self._regular, now, signals):
            return
        fw = self._task.finalization_wait_secs
        if not self._final.procs:
            self._finish()
        elif self._killed or (self._budget_at is not None and now < self._budget_at):
            self._final_deadline_at = now + fw if self._killed else self._budget_at
            assert self._final_deadline_at is not None
            self._set_phase(TaskPhase.FINALIZING, (
                f"every regular process has stopped; running "
                f"{_plural(len(self._final.procs), 'final process')} within "
                f"{_num(self._final_deadline_at - now)} s"))
        else:
            self._cancel_waiting(self._final, (
                f"finalization skipped, its finalization_wait={_num(fw)} s budget was spent "
                f"stopping the regular processes"))
            self._finish()

    def _step_finalizing(self, now: float, starts: list[StartRun],
                         signals: list[SignalRun]) -> None:
        plan = self._final
        deadline = self._final_deadline_at
        assert deadline is not None
        if not plan.stopping:
            if now >= deadline:
                plan.stop(now, now)
                self._cancel_waiting(plan, (
                    f"finalization ran out of time "
                    f"(finalization_wait={_num(self._task.finalization_wait_secs)} s)"))
            elif self._plan_settled(plan):
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

    def _deps_done(self, p: _Proc) -> bool:
        return all(self._procs[d].state is ProcessState.SUCCESS for d in p.deps)

    def _start_runnable(self, plan: _Plan, now: float, starts: list[StartRun]) -> None:
        limit = self._task.max_concurrency
        running = sum(p.state is ProcessState.RUNNING for p in plan.procs)
        for p in plan.procs:  # task order: deterministic under max_concurrency
            if limit > 0 and running >= limit:
                return
            if p.state is not ProcessState.WAITING or not self._deps_done(p):
                continue
            gate = p.gate_at
            if gate is not None and now < gate:
                continue
            p.run += 1
            p.termed, p.killed_at, p.pid = False, None, None
            reason = (f"starting run {p.run}" if p.run == 0 else
                      f"starting run {p.run} (run {p.run - 1}: {p.last_end})")
            self._note(p, ProcessState.RUNNING, reason)
            starts.append(StartRun(p.name, p.run))
            running += 1

    def _plan_settled(self, plan: _Plan) -> bool:
        """Complete (every non-ephemeral process ended for good) or deadlocked."""
        done = (ProcessState.SUCCESS, ProcessState.FAILED, ProcessState.KILLED)
        if all(p.state in done for p in plan.procs if not p.spec.ephemeral):
            return True
        return not any(p.state is ProcessState.RUNNING
                       or (p.state is ProcessState.WAITING and self._deps_done(p))
                       for p in plan.procs)

    def _regular_outcome(self) -> tuple[TaskPhase, str] | None:
        """The task's outcome once the regular plan is unhealthy or settled, else None."""
        procs = self._regular.procs
        failed = [p for p in procs if p.state is ProcessState.FAILED]
        limit = self._task.max_failures
        if limit > 0 and len(failed) >= limit:
            why = "; ".join(f"process '{p.name}' failed: {p.failed_because}" for p in failed)
            if limit > 1:
                why = (f"{_plural(len(failed), 'process')} failed, reaching the task's "
                       f"max_failures={limit}: {why}")
            return TaskPhase.FAILED, why
        if not self._plan_settled(self._regular):
            return None
        waited = [p for p in procs if not p.spec.ephemeral]
        if any(p.state is not ProcessState.SUCCESS and p.state is not ProcessState.FAILED
               for p in waited):
            return TaskPhase.FAILED, self._deadlock_reason()
        if not waited:
            return TaskPhase.SUCCESS, "the task has no regular processes to wait for"
        ok = sum(p.state is ProcessState.SUCCESS for p in waited)
        if ok == len(waited):
            every = "the only regular process" if ok == 1 else f"all {ok} regular processes"
            return TaskPhase.SUCCESS, f"{every} finished successfully"
        return TaskPhase.SUCCESS, (
            f"{ok} of {_plural(len(waited), 'regular process')} finished successfully; "
            f"{len(waited) - ok} failed, under the task's max_failures={limit}")

    def _deadlock_reason(self) -> str:
        for p in self._regular.procs:
            if p.state is ProcessState.WAITING:
                for d in p.deps:
                    if self._procs[d].state is ProcessState.FAILED:
                        return (f"process '{p.name}' can never start: it waits for '{d}', "
                                f"which failed (deadlock)")
        return "no regular process is running or can start, yet they are not done (deadlock)"

    # ---- runs ----

    def _end_run(self, p: _Proc, outcome: RunOutcome, desc: str, now: float) -> None:
        p.ended_at = now
        p.last_outcome = outcome
        p.last_end = desc
        plan = self._final if p.spec.final else self._regular
        if outcome is RunOutcome.KILLED:
            sig = "SIGKILL" if p.killed_at is not None else "SIGTERM"
            self._note(p, ProcessState.KILLED, f"{desc} after the task's {sig}")
            return
        if outcome is RunOutcome.SUCCESS:
            p.successes += 1
        elif outcome is RunOutcome.FAILED:
            p.failures += 1
        else:
            p.losses += 1
        to, reason = self._after_run(p, outcome, desc)
        if plan.stopping and self._killed:  # it ended on its own, but the task is being killed
            to, reason = ProcessState.KILLED, f"{desc} while the task was being killed"
        elif plan.stopping and to is ProcessState.WAITING:
            to, reason = ProcessState.KILLED, f"{desc}; not restarted: the task is stopping"
        self._note(p, to, reason)

    def _after_run(self, p: _Proc, outcome: RunOutcome, desc: str) -> tuple[ProcessState, str]:
        """Thermos' rules for one ended run: restart, or the process's state for good."""
        spec = p.spec
        mf = spec.max_failures
        if outcome is RunOutcome.SUCCESS:
            if not spec.daemon:
                return ProcessState.SUCCESS, desc
            to, reason = ProcessState.WAITING, f"{desc}; restarting (daemon)"
        elif outcome is RunOutcome.FAILED:
            if mf != 0 and p.failures >= mf:
                if spec.ephemeral:
                    return ProcessState.SUCCESS, (
                        f"{desc}; ephemeral process done after failure {p.failures} "
                        f"of max_failures={mf}")
                p.failed_because = f"{desc} after {p.failures} of max_failures={mf} runs"
                return ProcessState.FAILED, (
                    f"{desc}; failed for good (failure {p.failures} of max_failures={mf})")
            limit = "unlimited with max_failures=0" if mf == 0 else f"of max_failures={mf}"
            to, reason = ProcessState.WAITING, f"{desc}; restarting (failure {p.failures} {limit})"
        else:
            to, reason = ProcessState.WAITING, (
                f"{desc}; restarting (loss {p.losses}, not counted toward max_failures={mf})")
        cap = self._run_cap
        if cap is not None and p.failures + p.losses >= cap:  # only failures and losses count
            p.failed_because = (f"{desc}; {p.failures + p.losses} runs failed or were lost "
                                f"({p.failures} failures, {p.losses} losses), reaching the run "
                                f"cap of {cap}")
            return ProcessState.FAILED, p.failed_because
        if spec.min_duration_secs > 0:
            reason += (f"; waiting {_num(spec.min_duration_secs)} s for "
                       f"min_duration={_num(spec.min_duration_secs)}")
        return to, reason

    def _stop_step(self, plan: _Plan, now: float, signals: list[SignalRun]) -> bool:
        """Signal the plan's running runs as their times come; True while any still runs."""
        assert plan.term_at is not None and plan.kill_at is not None
        running = False
        for p in plan.procs:
            if p.state is not ProcessState.RUNNING:
                continue
            if p.killed_at is not None:
                if now >= p.killed_at + GIVE_UP_AFTER_SIGKILL_SECS:
                    p.ended_at = now
                    p.last_outcome = RunOutcome.KILLED
                    self._note(p, ProcessState.KILLED, (
                        f"run {p.run} did not exit {_num(GIVE_UP_AFTER_SIGKILL_SECS)} s after "
                        f"SIGKILL; given up on"))
                    continue
            elif now >= plan.kill_at:
                signals.append(SignalRun(p.name, p.run, SIGKILL))
                p.killed_at = now
            elif now >= plan.term_at and not p.termed:
                signals.append(SignalRun(p.name, p.run, SIGTERM))
                p.termed = True
            running = True
        return running

    def _cancel_waiting(self, plan: _Plan, why: str) -> None:
        """The plan stops: its WAITING processes will not (re)start, because `why`."""
        for p in plan.procs:
            if p.state is not ProcessState.WAITING:
                continue
            blocker = next((d for d in p.deps if self._procs[d].state is ProcessState.FAILED), None)
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
            times += [g for p in plan.procs
                      if p.state is ProcessState.WAITING and self._deps_done(p)
                      and (g := p.gate_at) is not None and g > now]
            if phase is TaskPhase.FINALIZING and self._final_deadline_at is not None:
                times.append(self._final_deadline_at)
        elif phase in (TaskPhase.CLEANING, TaskPhase.FINALIZING):
            plan = self._regular if phase is TaskPhase.CLEANING else self._final
            assert plan.term_at is not None and plan.kill_at is not None
            for p in plan.procs:
                if p.state is not ProcessState.RUNNING:
                    continue
                if p.killed_at is not None:
                    times.append(p.killed_at + GIVE_UP_AFTER_SIGKILL_SECS)
                else:
                    times.append(plan.kill_at)
                    if not p.termed and plan.term_at < plan.kill_at:
                        times.append(plan.term_at)
        return min(times) if times else None

    # ---- bookkeeping ----

    def _proc(self, name: str) -> _Proc:
        try:
            return self._procs[name]
        except KeyError:
            raise KeyError(f"task '{self._task.name}' has no process '{name}'") from None

    def _note(self, p: _Proc, to: ProcessState, reason: str) -> None:
        run = p.run if p.run >= 0 else None
        self._pending.append(Transition(p.name, run, p.state.value, to.value, reason))
        p.state = to
        p.last_reason = reason

    def _set_phase(self, to: TaskPhase, reason: str) -> None:
        self._pending.append(Transition(None, None, self._phase.value, to.value, reason))
        self._phase = to
        self._reason = reason

    def _view(self, p: _Proc) -> ProcessView:
        gate = p.gate_at if p.state is ProcessState.WAITING else None
        return ProcessView(p.name, p.state, p.run, p.failures, p.losses, p.successes, p.pid,
                           p.last_outcome, p.last_reason, gate)
