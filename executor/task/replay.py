"""Replaying the checkpoint: records in, a frozen `TaskView` out. PURE.

Owns the fold that builds the views `stoker status` shows (`executor/task/taskview.py`:
task, supervisor phase, attempts, processes, runs, health, the ServerSet announcement: the
last `announce` record of the attempt) from the checkpoint's records
(the classes of `executor/task/records.py`, parsed from the JSON objects). No I/O, no clock, no logging,
no threads: the caller reads the file and passes `now` to whatever formats the view.
Unknown kinds are ignored; a damaged record (a torn line, a wrong type, a number out of
range) is skipped and named in the view's `warnings` (the first `WARNINGS_KEPT`, then how
many more), so a damaged checkpoint still shows what it can and says what it skipped; one
damaged (or of a kind not known) after the supervisor's terminal phase, with no task end
read after it, is taken for that end (the task ended as the phase says, "its last record
damaged or unknown"), not for a task that runs on.
Views hold state names as text: they are for showing.

How a process record maps to runs: a record with `to` = RUNNING starts run `run` (its
wall time is the run's start); the next record of that run that leaves RUNNING ends it,
with its exit code / signal. The run's state is the record's `to` when that is final
(SUCCESS, FAILED, KILLED); when the process goes back to WAITING (a restart) it is the
record's outcome (SUCCESS, FAILED or LOST), or, in records written without one, derived from
the exit: 0 → SUCCESS, a signal → LOST, else FAILED. A run that could not start (a spawn
error: RUNNING → WAITING or FAILED without a pid) is kept with no pid.

Bounded whatever the file holds: the view keeps the last `ATTEMPTS_KEPT` attempts, per
attempt at most `PROCESSES_KEPT` processes and the last `TRANSITIONS_KEPT` task and phase
changes, per process the last `RUNS_KEPT` runs (older ones are counted in `earlier_runs`),
and the last `HEALTH_HISTORY` health attempts. A `summary` record (compaction's) adds what
was dropped before it. `classify` says what a process record does to its process; the fold
and `executor/task/compaction.py` both use it, so a compacted checkpoint replays to the
same view as the whole one.
"""
from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable
from typing import assert_never

import attrs

from config.words import quoted
from executor.events import ProcessState
from executor.task.records import (
    AnnounceRecord,
    DamagedRecord,
    HeaderRecord,
    HealthRecord,
    PhaseRecord,
    ProcessRecord,
    Record,
    RestartRecord,
    SummaryRecord,
    TaskRecord,
    UnreadableLine,
    parse_checked,
)
from executor.task.taskview import (
    AnnouncementView,
    AttemptView,
    HealthAttemptView,
    HealthView,
    ProcessView,
    RestartView,
    RunView,
    TaskView,
    TransitionView,
)

__all__ = [
    "ATTEMPTS_KEPT", "HEALTH_HISTORY", "PROCESSES_KEPT", "RUNS_KEPT", "TRANSITIONS_KEPT",
    "AnnouncementView", "AttemptView", "Fold", "HealthAttemptView", "HealthView", "ProcessView", "RestartView",
    "RunView", "Slot",
    "TaskView", "TransitionView", "classify", "replay",
]

HEALTH_HISTORY = 10
ATTEMPTS_KEPT = 20
RUNS_KEPT = 20
TRANSITIONS_KEPT = 100
PROCESSES_KEPT = 1000
WARNINGS_KEPT = 20
_FINAL = (ProcessState.SUCCESS, ProcessState.FAILED, ProcessState.KILLED)
# The task state a terminal supervisor phase ends the task in (`executor/task/status.py` `task_ended`)
_ENDED_AS = {"SUCCESS": "FINISHED", "FAILED": "FAILED", "KILLED": "KILLED"}
TORN_END = "its last record damaged or unknown: ended as its supervisor's terminal phase before it says"

# ---- the fold ----


class Slot(enum.Enum):
    """What a process record does to its process (`classify`)."""

    LOOSE = "LOOSE"  # changes the process's state only: no run, or a run not started yet
    RUN = "RUN"  # belongs to a run the view keeps
    NEW_RUN = "NEW_RUN"  # starts a newer run (the oldest kept one may have to go)
    IGNORED = "IGNORED"  # a run dropped earlier, or out of order: changes nothing


def classify(rec: ProcessRecord, kept: bool, newest: int) -> Slot:
    """`kept`: the view keeps run `rec.run` already; `newest`: the highest run seen."""
    run = rec.run
    if run is None or run < 0:
        return Slot.LOOSE
    if kept:
        return Slot.RUN
    if rec.to is ProcessState.WAITING and rec.from_ is not ProcessState.RUNNING:
        return Slot.LOOSE  # waiting for a run that has not started: no run yet
    return Slot.NEW_RUN if run > newest else Slot.IGNORED


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
    runs: dict[int, _Run] = attrs.Factory(dict)  # insertion order is run order
    earlier_runs: int = 0
    newest: int = -1

    def apply(self, rec: ProcessRecord) -> None:
        run = rec.run
        slot = classify(rec, run in self.runs, self.newest)
        if slot is Slot.IGNORED:
            return
        self.state = rec.to.value
        self.reason = rec.reason
        if slot is Slot.LOOSE:
            return
        assert run is not None
        if slot is Slot.NEW_RUN:
            self.newest = run
            self.runs[run] = _Run(run)
            if len(self.runs) > RUNS_KEPT:
                del self.runs[next(iter(self.runs))]
                self.earlier_runs += 1
        self.runs[run].apply(rec)

    def view(self) -> ProcessView:
        return ProcessView(name=self.name, state=self.state, reason=self.reason,
                           runs=tuple(r.view() for r in self.runs.values()),
                           earlier_runs=self.earlier_runs)


def _transition(rec: TaskRecord | PhaseRecord) -> TransitionView:
    return TransitionView(wall=rec.wall or 0.0, to_state=rec.to.value, reason=rec.reason,
                          from_state="" if rec.from_ is None else rec.from_.value)


@attrs.define
class _Attempt:
    started_wall: float | None = None
    started_boot: float | None = None
    supervisor_pid: int | None = None
    supervisor_start: int | None = None
    supervisor_boot: str = ""
    marker: str = ""
    run_uid: int | None = None
    containment: str = ""
    checker: str = "none"
    state: str | None = None
    reason: str = ""
    killing_ends_as: str | None = None  # KILLING: the end its record says the kill brings
    history: deque[TransitionView] = attrs.Factory(lambda: deque(maxlen=TRANSITIONS_KEPT))
    phases: deque[TransitionView] = attrs.Factory(lambda: deque(maxlen=TRANSITIONS_KEPT))
    processes: dict[str, _Process] = attrs.Factory(dict)
    declared: int = 0  # how many processes its header names (a task may have more than are kept)
    health_state: str | None = None
    health_counts: tuple[int, int, int] = (0, 0, 0)
    health_attempts: deque[HealthAttemptView] = attrs.Factory(lambda: deque(maxlen=HEALTH_HISTORY))
    announcement: AnnouncementView | None = None
    restart: RestartView | None = None
    ports: dict[str, int] | None = None
    torn_end: bool = False  # a damaged record after its terminal phase (`ended_state`)

    def process(self, name: str) -> _Process | None:
        """The process named `name`; None once PROCESSES_KEPT others are known."""
        found = self.processes.get(name)
        if found is None and len(self.processes) < PROCESSES_KEPT:
            found = self.processes[name] = _Process(name)
        return found

    def apply(self, rec: TaskRecord | PhaseRecord | ProcessRecord | HealthRecord | AnnounceRecord
              | SummaryRecord | RestartRecord) -> None:
        match rec:
            case TaskRecord():
                self.history.append(_transition(rec))
                self.state, self.reason = rec.to.value, rec.reason
                self.killing_ends_as = rec.ends_as.value if rec.ends_as is not None else None
            case PhaseRecord():
                self.phases.append(_transition(rec))
            case ProcessRecord():
                if (process := self.process(rec.process)) is not None:
                    process.apply(rec)
            case HealthRecord():
                self.health(rec)
            case AnnounceRecord():
                self.announcement = AnnouncementView(
                    path=rec.path, member=rec.member, state=rec.state.value,
                    connection=rec.connection.value, reason=rec.reason, since_wall=rec.since)
            case SummaryRecord():
                self.summary(rec)
            case RestartRecord():
                self.restart = RestartView(wall=rec.wall, delay_secs=rec.delay_secs, reason=rec.reason,
                                           boot=rec.boot)
            case _:
                assert_never(rec)

    def summary(self, rec: SummaryRecord) -> None:
        for name, earlier in rec.earlier_runs.items():
            if (process := self.process(name)) is not None:
                process.earlier_runs += earlier
        if rec.health_state is not None:
            self.health_state = rec.health_state.value

    def health(self, rec: HealthRecord) -> None:
        self.health_counts = (rec.attempts, rec.consecutive_failures, rec.consecutive_successes)
        if rec.state is not None:
            self.health_state = rec.state.value
        self.health_attempts.append(HealthAttemptView(
            wall=rec.wall or 0.0, outcome=rec.outcome.value, reason=rec.reason,
            latency_secs=rec.latency_secs))

    def ended_past_phase(self) -> bool:
        """Whether its supervisor's phase ended (SUCCESS, FAILED, KILLED) and no task end is
        read after it: a record damaged now is, at best, that end (`damaged_record`). Not
        while the task was KILLING: its end is then the kill's cause (a failed health check,
        the disk limit: FAILED, though the phase says KILLED; an operator's kill: KILLED),
        which no record names (`executor/task/status.py` `task_ended`)."""
        return (bool(self.phases) and self.phases[-1].to_state in _ENDED_AS
                and self.state not in (*_ENDED_AS.values(), "KILLING"))

    def ended_state(self) -> tuple[str | None, str]:
        """Its state and reason; a task end torn or damaged after its terminal phase (the
        task ended: the planner said how) is that phase's end, said so, never a task that
        still runs (LOST once its supervisor is gone)."""
        if self.torn_end and self.ended_past_phase():
            phase = self.phases[-1]
            return _ENDED_AS[phase.to_state], f"{phase.reason} ({TORN_END})"
        return self.state, self.reason

    def view(self, number: int) -> AttemptView:
        a, f, s = self.health_counts
        state, reason = self.ended_state()
        health = HealthView(checker=self.checker, state=self.health_state, attempts=a,
                            consecutive_failures=f, consecutive_successes=s,
                            last_attempts=tuple(self.health_attempts))
        return AttemptView(number=number, started_wall=self.started_wall,
                           supervisor_pid=self.supervisor_pid,
                           supervisor_start=self.supervisor_start,
                           supervisor_boot=self.supervisor_boot, marker=self.marker,
                           containment=self.containment, state=state, reason=reason, history=tuple(self.history),
                           phases=tuple(self.phases),
                           processes=tuple(p.view() for p in self.processes.values()),
                           health=health, announcement=self.announcement, restart=self.restart,
                           ports=None if self.ports is None else dict(self.ports),
                           started_boot=self.started_boot, run_uid=self.run_uid,
                           killing_ends_as=self.killing_ends_as if state == "KILLING" else None,
                           processes_not_shown=max(0, self.declared - len(self.processes)))


@attrs.define
class _Task:
    label: str = ""
    job_key: str = ""
    task_id: str = ""
    sandbox: str = ""
    ports: dict[str, int] = attrs.Factory(dict)
    attempts: deque[_Attempt] = attrs.Factory(deque)
    earlier_attempts: int = 0
    last_wall: float | None = None
    warnings: list[str] = attrs.Factory(list)
    damaged: int = 0
    unread_first: str = ""  # the first record skipped before any read, else "no header came first"
    headless: _Attempt | None = None  # the attempt of records read before any header

    def current(self) -> _Attempt:
        if not self.attempts:
            self.headless = _Attempt()
            self.attempts.append(self.headless)  # records before any header
        return self.attempts[-1]

    def header(self, rec: HeaderRecord) -> None:
        attempt = _Attempt(started_wall=rec.wall, started_boot=rec.boot, supervisor_pid=rec.supervisor_pid,
                           supervisor_start=rec.supervisor_start,
                           supervisor_boot=rec.supervisor_boot, marker=rec.marker, run_uid=rec.run_uid,
                           containment=rec.containment, checker=rec.health, ports=dict(rec.ports))
        for name in rec.processes:
            attempt.process(name)
        attempt.declared = len(rec.processes)
        self.label = rec.task or self.label
        self.job_key = rec.job_key or self.job_key
        self.task_id = rec.task_id or self.task_id
        self.sandbox = rec.sandbox or self.sandbox
        self.ports = dict(rec.ports)
        self.attempts.append(attempt)
        if len(self.attempts) > ATTEMPTS_KEPT:
            self.attempts.popleft()
            self.earlier_attempts += 1

    def apply(self, rec: Record) -> None:
        if isinstance(rec, HeaderRecord):
            self.last_wall = rec.wall
            self.header(rec)
            return
        if isinstance(rec, SummaryRecord):  # not something the task did: no wall time
            self.earlier_attempts += rec.earlier_attempts
        else:
            self.last_wall = rec.wall
        self.current().apply(rec)

    def view(self) -> TaskView:
        """The view so far; changes nothing (a `Fold` goes on after it)."""
        first = self.earlier_attempts + 1
        attempts = self.attempts or (_Attempt(),)  # no header yet: one attempt, as `current` makes
        return TaskView(label=self.label, job_key=self.job_key, task_id=self.task_id,
                        sandbox=self.sandbox, ports=dict(self.ports),
                        attempts=tuple(a.view(first + i) for i, a in enumerate(attempts)),
                        earlier_attempts=self.earlier_attempts, last_wall=self.last_wall,
                        warnings=tuple(self.warnings) + self._more_warnings(),
                        headless_after=self.unread_first if self.headless is attempts[0] else "")

    def unread_record(self, said: str) -> None:
        """A record skipped (`said`: which and why), damaged or of a kind not known (a byte
        changed in `"kind"`): after the attempt's terminal phase, with no task end read yet,
        its task end at best (`_Attempt.ended_state`); before any record was read, what the
        records after it follow instead of a header (the header's line, garbled)."""
        if not self.attempts and not self.unread_first:
            self.unread_first = said
        if self.attempts and self.current().ended_past_phase():
            self.current().torn_end = True

    def headerless(self) -> None:
        """A record read, no header, comes before any other read: with nothing skipped before
        it (the header's line lost, not garbled), the hint says so (not which record: a
        compaction puts its summary first, and the view must not change)."""
        if not self.attempts and not self.unread_first:
            self.unread_first = "no header came before its first record"

    def damaged_record(self, number: int, rec: DamagedRecord) -> None:
        self.damaged += 1
        what = "a record" if rec.kind == "?" else f"a {rec.kind} record"
        said = f"checkpoint record {number}, {what}: {rec.reason}; skipped"
        self.unread_record(said)
        if len(self.warnings) < WARNINGS_KEPT:
            self.warnings.append(said)

    def _more_warnings(self) -> tuple[str, ...]:
        more = self.damaged - len(self.warnings)
        return (f"{more} more damaged checkpoint records skipped",) if more else ()


class Fold:
    """The fold `replay` makes, kept to go on with: records fed later (a checkpoint's lines
    appended since) give the view the whole file would. Not thread-safe: one owner at a time."""

    def __init__(self) -> None:
        self._task = _Task()
        self.fed = 0  # items fed, records and unreadable lines (a damaged record's number)
        self.records = 0  # JSON objects among them
        self.first_unreadable: UnreadableLine | None = None  # the first line that was none

    def feed(self, records: Iterable[object]) -> Fold:
        for doc in records:
            self.fed += 1
            self.records += isinstance(doc, dict)
            if self.first_unreadable is None and isinstance(doc, UnreadableLine):
                self.first_unreadable = doc
            rec = parse_checked(doc)
            if isinstance(rec, DamagedRecord):
                self._task.damaged_record(self.fed, rec)
            elif rec is not None:
                if not isinstance(rec, HeaderRecord):
                    self._task.headerless()
                self._task.apply(rec)
            else:  # a kind not known: a newer writer's, or a damaged one's (an excerpt, as of a damaged line)
                kind = str(doc.get("kind")) if isinstance(doc, dict) else "?"
                kind = quoted(kind[:60] + "...") if len(kind) > 60 else quoted(kind)
                self._task.unread_record(f"checkpoint record {self.fed}, of a kind not known ({kind}); skipped")
        return self

    def view(self) -> TaskView:
        return self._task.view()


def replay(records: Iterable[object]) -> TaskView:
    """Fold checkpoint records (JSON objects as read, and the reader's `UnreadableLine`s)
    into the task's view. Pure; never raises for bad records: one of an unknown kind is
    ignored, a damaged one skipped and named in `warnings` (by its place among the
    records). Memory stays bounded whatever `records` holds (see the module docstring)."""
    return Fold().feed(records).view()
