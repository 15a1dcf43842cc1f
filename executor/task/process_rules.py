"""Thermos' rules for one process's runs: how a run's end counts and what comes next. PURE.

Owns the process machine (drawn below; `PROCESS_EDGES` is the same drawing as data, and a
unit test checks that the two agree), one process's record across its runs (`ProcessTrack`),
how an exit becomes a `RunOutcome`, what one ended run means for its process (restart, or
SUCCESS / FAILED / KILLED for good, with the reason in words: `max_failures`, `daemon`,
`ephemeral`, `min_duration`, the run cap), a `Plan` (the regular or the final processes:
their order dependencies, whether they are settled, their stop deadlines: `plans.py`), and what the
regular processes' states mean for the task (`regular_outcome`: the task's `max_failures`,
deadlock, success). The planner decides when runs start and stop (concurrency, phases,
signals) and notes every change. No I/O, no clock, no logging: times come in as arguments.

Process states (runs count from 0 per process):

    WAITING ──StartRun──▶ RUNNING
    RUNNING ──run ended: restart (daemon success, failure under max_failures, loss)──▶ WAITING
    RUNNING ──run ended for good──▶ SUCCESS | FAILED | KILLED
    WAITING ──the task stops before it (re)starts──▶ KILLED

A run killed by a signal nobody in the task sent is a loss: it is restarted without counting
toward `max_failures`; failures and losses together are capped by the run cap. A run stopped
for an operator's restart (`restart_refusal` says when one may be asked for) ends RESTARTED:
neither a failure nor a loss, and the next run starts at once, without `min_duration`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from config.spec import ProcessSpec
from config.words import number, plural, quoted
from executor.events import ExitStatus, ProcessState, RunOutcome, TaskPhase

_S = ProcessState
PROCESS_EDGES: Mapping[ProcessState, frozenset[ProcessState]] = {
    _S.WAITING: frozenset({_S.RUNNING, _S.KILLED}),
    _S.RUNNING: frozenset({_S.WAITING, _S.SUCCESS, _S.FAILED, _S.KILLED}),
    _S.SUCCESS: frozenset(),
    _S.FAILED: frozenset(),
    _S.KILLED: frozenset(),
}


@attrs.frozen(slots=True)
class RunCounts:
    """How a process's ended runs counted so far (a run the task killed counts as none)."""

    successes: int = 0
    failures: int = 0
    losses: int = 0

    def count(self, outcome: RunOutcome) -> RunCounts:
        if outcome is RunOutcome.SUCCESS:
            return attrs.evolve(self, successes=self.successes + 1)
        if outcome is RunOutcome.FAILED:
            return attrs.evolve(self, failures=self.failures + 1)
        if outcome is RunOutcome.LOST:
            return attrs.evolve(self, losses=self.losses + 1)
        return self


@attrs.frozen(slots=True)
class RunEnd:
    """What an ended run means: the process's next state and why. `failed_because` is set
    when the process failed for good (the task's failure reason quotes it)."""

    state: ProcessState
    reason: str
    failed_because: str = ""


@attrs.frozen(slots=True)
class RestartAnswer:
    """Whether an operator's restart was taken, and what will happen (or why not)."""

    accepted: bool
    reason: str


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


@attrs.define
class ProcessTrack:
    """One process's record across its runs; the planner owns it and changes `state`."""

    spec: ProcessSpec
    deps: tuple[str, ...]  # the processes that must succeed before it starts
    state: ProcessState = ProcessState.WAITING
    run: int = -1
    counts: RunCounts = RunCounts()
    pid: int | None = None
    last_outcome: RunOutcome | None = None
    last_reason: str = ""
    last_end: str = ""  # how the last run ended: "exit status 3"
    failed_because: str = ""  # set when FAILED for good: "exit status 3 after 1 of ..."
    ended_at: float | None = None
    termed: bool = False  # SIGTERM issued to the current run
    killed_at: float | None = None  # SIGKILL issued to the current run at
    restart_kill_at: float | None = None  # an operator's restart: SIGKILL the run then
    start_now: bool = False  # the next run skips min_duration (an operator asked for it)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def gate_at(self) -> float | None:
        """When min_duration lets the next run start (None: no run has ended yet, or an
        operator's restart opened the gate)."""
        if self.ended_at is None or self.start_now:
            return None
        return self.ended_at + self.spec.min_duration_secs

    def begin_run(self) -> str:
        """The next run starts now; returns why, for the RUNNING transition."""
        self.run += 1
        self.termed, self.killed_at, self.pid = False, None, None
        self.restart_kill_at, self.start_now = None, False
        return start_reason(self.run, self.last_end)

    def end_run(self, outcome: RunOutcome, desc: str, now: float, run_cap: int | None, *,
                stopping: bool, task_killed: bool) -> RunEnd:
        """The current run ended as `desc`: count it; returns the process's next state."""
        self.ended_at = now
        self.last_outcome = outcome
        self.last_end = desc
        self.counts = self.counts.count(outcome)
        end = end_of_run(self.spec, outcome, desc, self.counts, run_cap,
                         last_signal="SIGKILL" if self.killed_at is not None else "SIGTERM",
                         stopping=stopping, task_killed=task_killed)
        if end.failed_because:
            self.failed_because = end.failed_because
        return end

    def view(self) -> ProcessView:
        gate = self.gate_at if self.state is ProcessState.WAITING else None
        c = self.counts
        return ProcessView(self.name, self.state, self.run, c.failures, c.losses, c.successes,
                           self.pid, self.last_outcome, self.last_reason, gate)


def run_outcome(status: ExitStatus, signalled_by_task: bool) -> RunOutcome:
    """A run the task signalled ended KILLED however it exited; otherwise a signal is a loss."""
    if signalled_by_task:
        return RunOutcome.KILLED
    if status.signal is not None:
        return RunOutcome.LOST
    return RunOutcome.SUCCESS if status.success else RunOutcome.FAILED


_FIRST_START = "starting run 0"  # one string, kept by every process until its first run ends


def start_reason(run: int, last_end: str) -> str:
    """Why run `run` starts: "starting run 2 (run 1: exit status 3)"."""
    return _FIRST_START if run == 0 else f"starting run {run} (run {run - 1}: {last_end})"


def end_of_run(spec: ProcessSpec, outcome: RunOutcome, desc: str, counts: RunCounts,
               run_cap: int | None, *, last_signal: str, stopping: bool,
               task_killed: bool) -> RunEnd:
    """The process's next state after a run ended as `desc` ("exit status 3").

    `counts` already include this run; `last_signal` names the task's last signal to the run
    ("SIGTERM"), for a run it KILLED; `stopping`: its plan no longer (re)starts runs;
    `task_killed`: the task is being killed, so whatever ends is KILLED.
    """
    if outcome is RunOutcome.RESTARTED and not stopping:
        return RunEnd(ProcessState.WAITING, (
            f"{desc} after the operator's restart; the next run starts now (not counted "
            f"toward max_failures={spec.max_failures})"))
    if outcome in (RunOutcome.KILLED, RunOutcome.RESTARTED):
        return RunEnd(ProcessState.KILLED, f"{desc} after the task's {last_signal}")
    end = after_run(spec, outcome, desc, counts, run_cap)
    if stopping and task_killed:  # it ended on its own, but the task is being killed
        return RunEnd(ProcessState.KILLED, f"{desc} while the task was being killed")
    if stopping and end.state is ProcessState.WAITING:
        return RunEnd(ProcessState.KILLED, f"{desc}; not restarted: the task is stopping")
    return end


def after_run(spec: ProcessSpec, outcome: RunOutcome, desc: str, counts: RunCounts,
              run_cap: int | None) -> RunEnd:
    """Thermos' rules for a run that ended on its own: restart, or the state for good."""
    mf = spec.max_failures
    if outcome is RunOutcome.SUCCESS:
        if not spec.daemon:
            return RunEnd(ProcessState.SUCCESS, desc)
        reason = f"{desc}; restarting (daemon)"
    elif outcome is RunOutcome.FAILED:
        if mf != 0 and counts.failures >= mf:
            return _failed_for_good(spec, desc, counts.failures)
        reason = f"{desc}; restarting (failure {counts.failures}{_failure_limit(mf, run_cap)})"
    else:
        reason = f"{desc}; restarting (loss {counts.losses}, not counted toward max_failures={mf})"
    lost_or_failed = counts.failures + counts.losses
    if run_cap is not None and lost_or_failed >= run_cap:  # successes never count
        why = (f"{desc}; {lost_or_failed} runs failed or were lost ({counts.failures} failures, "
               f"{counts.losses} losses), reaching the run cap of {run_cap}")
        return RunEnd(ProcessState.FAILED, why, failed_because=why)
    if spec.min_duration_secs > 0:
        wait = number(spec.min_duration_secs)
        reason += f"; waiting {wait} s for min_duration={wait}"
    return RunEnd(ProcessState.WAITING, reason)


def _failure_limit(max_failures: int, run_cap: int | None) -> str:
    """What bounds a restarted process's failures, after its count."""
    if max_failures:
        return f" of max_failures={max_failures}"
    if run_cap is None:
        return "; max_failures=0: no limit"
    return f"; max_failures=0: no limit but the run cap of {run_cap} failed or lost runs"


def _failed_for_good(spec: ProcessSpec, desc: str, failures: int) -> RunEnd:
    mf = spec.max_failures
    if spec.ephemeral:
        return RunEnd(ProcessState.SUCCESS, (
            f"{desc}; ephemeral process done after failure {failures} of max_failures={mf}"))
    return RunEnd(ProcessState.FAILED,
                  f"{desc}; failed for good (failure {failures} of max_failures={mf})",
                  failed_because=f"{desc} after {failures} of max_failures={mf} runs")


def restart_refusal(p: ProcessTrack, phase: TaskPhase, waiting_for: Sequence[str], now: float,
                    max_concurrency: int, running: int) -> str | None:
    """Why an operator may not restart `p` now, or None: a running process of an ACTIVE
    task may be restarted (its run is stopped, the next starts at once), and so may one
    waiting for its min_duration (it starts at once), or one whose run has just ended and
    that the next decision starts (the request came with the exit); `running`: how many of
    its plan's runs hold a slot under `max_concurrency`."""
    name = f"process '{p.name}'"
    if phase is not TaskPhase.ACTIVE:
        return f"the task is stopping (its supervisor is {phase.value}): nothing is restarted"
    if p.spec.final:
        return f"{name} is a final process: it runs only once the task is stopping"
    if p.state in (ProcessState.SUCCESS, ProcessState.FAILED, ProcessState.KILLED):
        return f"{name} has ended for good ({p.state.value}: {p.last_reason})"
    if p.state is ProcessState.RUNNING:
        return None
    if waiting_for:
        return f"{name} has not started: it waits for {', '.join(quoted(d) for d in waiting_for)}"
    gate = p.gate_at
    if gate is not None and now < gate:
        return None
    if max_concurrency <= 0 or running < max_concurrency:
        return None
    return f"{name} is waiting for a free slot (max_concurrency={max_concurrency})"


def request_restart(p: ProcessTrack, phase: TaskPhase, waiting_for: Sequence[str], now: float,
                    grace_secs: float, max_concurrency: int, running: int) -> RestartAnswer:
    """An operator asked for a new run of `p`: a running one is marked for SIGTERM at the
    planner's next decide() and SIGKILL `grace_secs` later; a waiting one starts at once.
    Refused as `restart_refusal` says."""
    refusal = restart_refusal(p, phase, waiting_for, now, max_concurrency, running)
    if refusal is not None:
        return RestartAnswer(False, refusal)
    if p.state is ProcessState.WAITING:
        gate = p.gate_at
        p.start_now = True
        if gate is not None and now < gate:
            return RestartAnswer(True, f"process '{p.name}' was waiting for its min_duration; "
                                       f"run {p.run + 1} starts now")
        ended = f"run {p.run} has just ended ({p.last_end}); " if p.run >= 0 else ""
        return RestartAnswer(True, f"process '{p.name}' {ended}run {p.run + 1} starts now")
    if p.restart_kill_at is not None:
        return RestartAnswer(True, f"process '{p.name}' run {p.run} is already restarting")
    grace = max(0.0, grace_secs)
    p.restart_kill_at = now + grace
    return RestartAnswer(True, f"restarting process '{p.name}': SIGTERM to run {p.run} now, "
                               f"SIGKILL {number(grace)} s later; run {p.run + 1} starts as "
                               f"soon as it has ended")


FAILURES_NAMED = 10  # a task's reason names this many failed processes, then counts the rest


def regular_outcome(procs: Sequence[ProcessTrack], max_failures: int, *,
                    settled: bool) -> tuple[TaskPhase, str] | None:
    """The task's outcome once its regular processes are unhealthy (`max_failures` of them
    failed) or `settled` (complete or deadlocked), else None; with the reason in words."""
    failed = [p for p in procs if p.state is ProcessState.FAILED]
    if max_failures > 0 and len(failed) >= max_failures:
        why = "; ".join(f"process '{p.name}' failed: {p.failed_because}"
                        for p in failed[:FAILURES_NAMED])
        if len(failed) > FAILURES_NAMED:  # the reason goes to the agent, the log and the console
            why += (f"; and {plural(len(failed) - FAILURES_NAMED, 'more process')} failed "
                    f"(stoker status lists them)")
        if max_failures > 1:
            why = (f"{plural(len(failed), 'process')} failed, reaching the task's "
                   f"max_failures={max_failures}: {why}")
        return TaskPhase.FAILED, why
    if not settled:
        return None
    waited = [p for p in procs if not p.spec.ephemeral]
    if any(p.state is not ProcessState.SUCCESS and p.state is not ProcessState.FAILED
           for p in waited):
        return TaskPhase.FAILED, _deadlock_reason(procs)
    if not waited:
        return TaskPhase.SUCCESS, "the task has no regular processes to wait for"
    ok = sum(p.state is ProcessState.SUCCESS for p in waited)
    if ok == len(waited):
        every = "the only regular process" if ok == 1 else f"all {ok} regular processes"
        return TaskPhase.SUCCESS, f"{every} finished successfully"
    return TaskPhase.SUCCESS, (
        f"{ok} of {plural(len(waited), 'regular process')} finished successfully; "
        f"{len(waited) - ok} failed, under the task's max_failures={max_failures}")


def _deadlock_reason(procs: Sequence[ProcessTrack]) -> str:
    state = {q.name: q.state for q in procs}
    for p in sorted(procs, key=lambda q: q.spec.ephemeral):  # one the task waits for first
        failed = next((d for d in p.deps if state[d] is ProcessState.FAILED), None)
        if p.state is ProcessState.WAITING and (d := failed) is not None:
            return f"process '{p.name}' can never start: it waits for '{d}', which failed (deadlock)"
    return "no regular process is running or can start, yet they are not done (deadlock)"
