"""Replaying the checkpoint: records in, a frozen `TaskView` out. PURE.

Owns the views `stoker status` shows (task, supervisor phase, attempts, processes, runs,
health) and the fold that builds them from the checkpoint's records (the classes of
`executor/task/records.py`, parsed from the JSON objects). No I/O, no clock, no logging,
no threads: the caller reads the file and passes `now` to whatever formats the view.
Unknown kinds are ignored; a damaged record (a torn line, a wrong type, a number out of
range) is skipped and named in the view's `warnings`, so a damaged checkpoint still shows
what it can and says what it skipped. Views hold state names as text: they are for showing.

How a process record maps to runs: a record with `to` = RUNNING starts run `run` (its
wall time is the run's start); the next record of that run that leaves RUNNING ends it,
with its exit code / signal. The run's state is the record's `to` when that is final
(SUCCESS, FAILED, KILLED); when the process goes back to WAITING (a restart) it is the
record's outcome (SUCCESS, FAILED or LOST), or, in records written without one, derived from
the exit: 0 → SUCCESS, a signal → LOST, else FAILED. A run that could not start (a spawn
error: RUNNING → WAITING or FAILED without a pid) is kept with no pid.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import assert_never

import attrs

from executor.events import ProcessState
from executor.task.records import (
    DamagedRecord,
    HeaderRecord,
    HealthRecord,
    PhaseRecord,
    ProcessRecord,
    Record,
    TaskRecord,
    parse_checked,
)

HEALTH_HISTORY = 10
_FINAL = (ProcessState.SUCCESS, ProcessState.FAILED, ProcessState.KILLED)

@attrs.frozen(slots=True)
class RunView:
    run: int
    pid: int | None
    state: str  # RUNNING while it runs; then SUCCESS / FAILED / LOST / KILLED
    started_wall: float | None
    ended_wall: float | None
    exit_code: int | None
    signal: int | None
    reason: str


@attrs.frozen(slots=True)
class ProcessView:
    name: str
    state: str
    reason: str
    runs: tuple[RunView, ...]

    @property
    def current(self) -> RunView | None:
        return self.runs[-1] if self.runs else None

    @property
    def restarts(self) -> int:
        return max(0, len(self.runs) - 1)


@attrs.frozen(slots=True)
class HealthAttemptView:
    wall: float
    outcome: str
    reason: str
    latency_secs: float | None


@attrs.frozen(slots=True)
class HealthView:
    checker: str  # the header's description, "none" without a check
    state: str | None  # None until the first attempt
    attempts: int
    consecutive_failures: int
    consecutive_successes: int
    last_attempts: tuple[HealthAttemptView, ...]  # at most HEALTH_HISTORY, oldest first


@attrs.frozen(slots=True)
class TransitionView:
    """One change of the task's state or of its supervisor phase ("" when not recorded)."""

    wall: float
    from_state: str
    to_state: str
    reason: str


@attrs.frozen(slots=True)
class AttemptView:
    """One attempt of the task: everything after one header."""

    number: int  # 1-based
    started_wall: float | None
    supervisor_pid: int | None
    state: str | None  # None before the first task record
    reason: str
    history: tuple[TransitionView, ...]  # the task's states
    phases: tuple[TransitionView, ...]  # the supervisor's phases (ACTIVE, CLEANING, ...)
    processes: tuple[ProcessView, ...]
    health: HealthView

    @property
    def phase(self) -> TransitionView | None:
        """The supervisor's current phase and why (None before the first phase record)."""
        return self.phases[-1] if self.phases else None


@attrs.frozen(slots=True)
class TaskView:
    label: str
    job_key: str
    task_id: str
    sandbox: str
    ports: dict[str, int]
    attempts: tuple[AttemptView, ...]  # oldest first; never empty
    warnings: tuple[str, ...] = ()  # one sentence per damaged record skipped

    @property
    def current(self) -> AttemptView:
        return self.attempts[-1]

    @property
    def attempt(self) -> int:
        return self.current.number

    @property
    def state(self) -> str | None:
        return self.current.state

    @property
    def reason(self) -> str:
        return self.current.reason

    @property
    def history(self) -> tuple[TransitionView, ...]:
        return self.current.history

    @property
    def phase(self) -> TransitionView | None:
        return self.current.phase

    @property
    def processes(self) -> tuple[ProcessView, ...]:
        return self.current.processes

    @property
    def health(self) -> HealthView:
        return self.current.health

    @property
    def supervisor_pid(self) -> int | None:
        return self.current.supervisor_pid


# ---- the fold ----


@attrs.define
class _Run:
    run: int
    pid: int | None = None
    state: str = ProcessState.WAITING.value
    started_wall: float | None = None
    ended_wall: float | None = None
    exit_code: int | None = None
    signal: int | None = None
    reason: str = ""

    def apply(self, rec: ProcessRecord) -> None:
        if rec.pid is not None:
            self.pid = rec.pid
        self.reason = rec.reason
        if rec.to is ProcessState.RUNNING:
            self.state = rec.to.value
            if self.started_wall is None:
                self.started_wall = rec.wall
            return
        if rec.exit_code is not None or rec.signal is not None:
            self.exit_code, self.signal = rec.exit_code, rec.signal
        if self.ended_wall is None:
            self.ended_wall = rec.wall
        if rec.to in _FINAL:
            self.state = rec.to.value
        elif rec.outcome is not None:
            self.state = rec.outcome.value
        elif rec.from_ is ProcessState.RUNNING or self.exit_code is not None \
                or self.signal is not None:
            self.state = self._derived_outcome()
        else:
            self.state = rec.to.value

    def _derived_outcome(self) -> str:
        if self.signal is not None:
            return "LOST"
        return "SUCCESS" if self.exit_code == 0 else "FAILED"

    def view(self) -> RunView:
        return RunView(run=self.run, pid=self.pid, state=self.state,
                       started_wall=self.started_wall, ended_wall=self.ended_wall,
                       exit_code=self.exit_code, signal=self.signal, reason=self.reason)


@attrs.define
class _Process:
    name: str
    state: str = ProcessState.WAITING.value
    reason: str = ""
    runs: dict[int, _Run] = attrs.Factory(dict)

    def apply(self, rec: ProcessRecord) -> None:
        self.state = rec.to.value
        self.reason = rec.reason
        run = rec.run
        if run is None or run < 0:
            return
        if rec.to is ProcessState.WAITING and rec.from_ is not ProcessState.RUNNING \
                and run not in self.runs:
            return  # waiting for a run that has not started: no run yet
        self.runs.setdefault(run, _Run(run)).apply(rec)

    def view(self) -> ProcessView:
        runs = tuple(self.runs[k].view() for k in sorted(self.runs))
        return ProcessView(name=self.name, state=self.state, reason=self.reason, runs=runs)


def _transition(rec: TaskRecord | PhaseRecord) -> TransitionView:
    return TransitionView(wall=rec.wall or 0.0, to_state=rec.to.value, reason=rec.reason,
                          from_state="" if rec.from_ is None else rec.from_.value)


@attrs.define
class _Attempt:
    number: int
    started_wall: float | None = None
    supervisor_pid: int | None = None
    checker: str = "none"
    state: str | None = None
    reason: str = ""
    history: list[TransitionView] = attrs.Factory(list)
    phases: list[TransitionView] = attrs.Factory(list)
    processes: dict[str, _Process] = attrs.Factory(dict)
    health_state: str | None = None
    health_counts: tuple[int, int, int] = (0, 0, 0)
    health_attempts: deque[HealthAttemptView] = attrs.Factory(lambda: deque(maxlen=HEALTH_HISTORY))

    def apply(self, rec: TaskRecord | PhaseRecord | ProcessRecord | HealthRecord) -> None:
        match rec:
            case TaskRecord():
                self.history.append(_transition(rec))
                self.state, self.reason = rec.to.value, rec.reason
            case PhaseRecord():
                self.phases.append(_transition(rec))
            case ProcessRecord():
                self.processes.setdefault(rec.process, _Process(rec.process)).apply(rec)
            case HealthRecord():
                self.health(rec)
            case _:
                assert_never(rec)

    def health(self, rec: HealthRecord) -> None:
        self.health_counts = (rec.attempts, rec.consecutive_failures, rec.consecutive_successes)
        if rec.state is not None:
            self.health_state = rec.state.value
        self.health_attempts.append(HealthAttemptView(
            wall=rec.wall or 0.0, outcome=rec.outcome.value, reason=rec.reason,
            latency_secs=rec.latency_secs))

    def view(self) -> AttemptView:
        a, f, s = self.health_counts
        health = HealthView(checker=self.checker, state=self.health_state, attempts=a,
                            consecutive_failures=f, consecutive_successes=s,
                            last_attempts=tuple(self.health_attempts))
        return AttemptView(number=self.number, started_wall=self.started_wall,
                           supervisor_pid=self.supervisor_pid, state=self.state,
                           reason=self.reason, history=tuple(self.history),
                           phases=tuple(self.phases),
                           processes=tuple(p.view() for p in self.processes.values()),
                           health=health)


@attrs.define
class _Task:
    label: str = ""
    job_key: str = ""
    task_id: str = ""
    sandbox: str = ""
    ports: dict[str, int] = attrs.Factory(dict)
    attempts: list[_Attempt] = attrs.Factory(list)
    warnings: list[str] = attrs.Factory(list)

    def current(self) -> _Attempt:
        if not self.attempts:
            self.attempts.append(_Attempt(1))  # records before any header
        return self.attempts[-1]

    def header(self, rec: HeaderRecord) -> None:
        attempt = _Attempt(len(self.attempts) + 1, started_wall=rec.wall,
                           supervisor_pid=rec.supervisor_pid, checker=rec.health)
        for name in rec.processes:
            attempt.processes[name] = _Process(name)
        self.label = rec.task or self.label
        self.job_key = rec.job_key or self.job_key
        self.task_id = rec.task_id or self.task_id
        self.sandbox = rec.sandbox or self.sandbox
        self.ports = dict(rec.ports)
        self.attempts.append(attempt)

    def apply(self, rec: Record) -> None:
        if isinstance(rec, HeaderRecord):
            self.header(rec)
        else:
            self.current().apply(rec)

    def view(self) -> TaskView:
        self.current()
        return TaskView(label=self.label, job_key=self.job_key, task_id=self.task_id,
                        sandbox=self.sandbox, ports=dict(self.ports),
                        attempts=tuple(a.view() for a in self.attempts),
                        warnings=tuple(self.warnings))


def replay(records: Iterable[object]) -> TaskView:
    """Fold checkpoint records (JSON objects as read, and the reader's `UnreadableLine`s)
    into the task's view. Pure; never raises for bad records: one of an unknown kind is
    ignored, a damaged one skipped and named in `warnings` (by its place among the records)."""
    task = _Task()
    for number, doc in enumerate(records, 1):
        rec = parse_checked(doc)
        if isinstance(rec, DamagedRecord):
            what = "a record" if rec.kind == "?" else f"a {rec.kind} record"
            task.warnings.append(f"checkpoint record {number}, {what}: {rec.reason}; skipped")
        elif rec is not None:
            task.apply(rec)
    return task.view()
