"""Replaying the checkpoint: records in, a frozen `TaskView` out. PURE.

Owns the views `stoker status` shows (task, attempts, processes, runs, health) and the fold
that builds them from checkpoint records (see `executor/task/checkpoint.py` for the record
kinds). No I/O, no clock, no logging, no threads: the caller reads the file and passes
`now` to whatever formats the view. Unknown kinds are ignored, and so is a record whose
fields have the wrong types, so a damaged checkpoint still shows what it can.

How a process record maps to runs: a record with `to` = RUNNING starts run `run` (its
wall time is the run's start); the next record of that run that leaves RUNNING ends it,
with its exit code / signal. The run's state is the record's `to` when that is an outcome
(SUCCESS, FAILED, KILLED, LOST); when the process goes back to WAITING (a restart) the
outcome is derived from the exit: 0 → SUCCESS, a signal → LOST, else FAILED. A run that
never started (a spawn error: WAITING → FAILED) is kept with no pid.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

HEALTH_HISTORY = 10
_RUNNING = "RUNNING"
_WAITING = "WAITING"
_OUTCOMES = ("SUCCESS", "FAILED", "KILLED", "LOST")

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
class TaskTransitionView:
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
    history: tuple[TaskTransitionView, ...]
    processes: tuple[ProcessView, ...]
    health: HealthView


@attrs.frozen(slots=True)
class TaskView:
    label: str
    job_key: str
    task_id: str
    sandbox: str
    ports: dict[str, int]
    attempts: tuple[AttemptView, ...]  # oldest first; never empty

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
    def history(self) -> tuple[TaskTransitionView, ...]:
        return self.current.history

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


def _opt_int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {value!r}")
    return int(value)


def _opt_float(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


@attrs.define
class _Run:
    run: int
    pid: int | None = None
    state: str = _WAITING
    started_wall: float | None = None
    ended_wall: float | None = None
    exit_code: int | None = None
    signal: int | None = None
    reason: str = ""

    def apply(self, rec: Mapping[str, Any], wall: float | None) -> None:
        src, dst = _text(rec.get("from")), _text(rec.get("to"))
        pid = _opt_int(rec.get("pid"))
        code, sig = _opt_int(rec.get("exit_code")), _opt_int(rec.get("signal"))
        if pid is not None:
            self.pid = pid
        self.reason = _text(rec.get("reason"))
        if dst == _RUNNING:
            self.state = _RUNNING
            if self.started_wall is None:
                self.started_wall = wall
            return
        if code is not None or sig is not None:
            self.exit_code, self.signal = code, sig
        if self.ended_wall is None:
            self.ended_wall = wall
        if dst in _OUTCOMES:
            self.state = dst
        elif src == _RUNNING or self.exit_code is not None or self.signal is not None:
            self.state = self._derived_outcome()
        else:
            self.state = dst or self.state

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
    state: str = _WAITING
    reason: str = ""
    runs: dict[int, _Run] = attrs.Factory(dict)

    def apply(self, rec: Mapping[str, Any], wall: float | None) -> None:
        run = _opt_int(rec.get("run"))
        src, dst = _text(rec.get("from")), _text(rec.get("to"))
        if dst:
            self.state = dst
        self.reason = _text(rec.get("reason"))
        if run is None or run < 0:
            return
        if dst == _WAITING and src != _RUNNING and run not in self.runs:
            return  # waiting for a run that has not started: no run yet
        self.runs.setdefault(run, _Run(run)).apply(rec, wall)

    def view(self) -> ProcessView:
        runs = tuple(self.runs[k].view() for k in sorted(self.runs))
        return ProcessView(name=self.name, state=self.state, reason=self.reason, runs=runs)


@attrs.define
class _Attempt:
    number: int
    started_wall: float | None = None
    supervisor_pid: int | None = None
    checker: str = "none"
    state: str | None = None
    reason: str = ""
    history: list[TaskTransitionView] = attrs.Factory(list)
    processes: dict[str, _Process] = attrs.Factory(dict)
    health_state: str | None = None
    health_counts: tuple[int, int, int] = (0, 0, 0)
    health_attempts: deque[HealthAttemptView] = attrs.Factory(lambda: deque(maxlen=HEALTH_HISTORY))

    def task(self, rec: Mapping[str, Any], wall: float | None) -> None:
        src, dst, reason = _text(rec.get("from")), _text(rec.get("to")), _text(rec.get("reason"))
        self.history.append(TaskTransitionView(wall=wall or 0.0, from_state=src,
                                               to_state=dst, reason=reason))
        self.state, self.reason = dst, reason

    def process(self, rec: Mapping[str, Any], wall: float | None) -> None:
        name = rec.get("process")
        if not isinstance(name, str) or not name:
            raise TypeError("a process record needs a process name")
        self.processes.setdefault(name, _Process(name)).apply(rec, wall)

    def health(self, rec: Mapping[str, Any], wall: float | None) -> None:
        counts = (_opt_int(rec.get("attempts")) or 0,
                  _opt_int(rec.get("consecutive_failures")) or 0,
                  _opt_int(rec.get("consecutive_successes")) or 0)
        attempt = HealthAttemptView(wall=wall or 0.0, outcome=_text(rec.get("outcome")),
                                    reason=_text(rec.get("reason")),
                                    latency_secs=_opt_float(rec.get("latency_secs")))
        self.health_counts = counts
        self.health_state = _text(rec.get("state")) or self.health_state
        self.health_attempts.append(attempt)

    def view(self) -> AttemptView:
        a, f, s = self.health_counts
        health = HealthView(checker=self.checker, state=self.health_state, attempts=a,
                            consecutive_failures=f, consecutive_successes=s,
                            last_attempts=tuple(self.health_attempts))
        return AttemptView(number=self.number, started_wall=self.started_wall,
                           supervisor_pid=self.supervisor_pid, state=self.state,
                           reason=self.reason, history=tuple(self.history),
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

    def current(self) -> _Attempt:
        if not self.attempts:
            self.attempts.append(_Attempt(1))  # records before any header
        return self.attempts[-1]

    def header(self, rec: Mapping[str, Any], wall: float | None) -> None:
        ports = rec.get("ports") or {}
        if not isinstance(ports, Mapping):
            raise TypeError("ports must be a map")
        parsed_ports = {str(k): int(v) for k, v in ports.items()}
        names = rec.get("processes") or []
        if not isinstance(names, list):
            raise TypeError("processes must be a list")
        attempt = _Attempt(len(self.attempts) + 1, started_wall=wall,
                           supervisor_pid=_opt_int(rec.get("supervisor_pid")),
                           checker=_text(rec.get("health")) or "none")
        for name in names:
            attempt.processes[str(name)] = _Process(str(name))
        self.label = _text(rec.get("task")) or self.label
        self.job_key = _text(rec.get("job_key")) or self.job_key
        self.task_id = _text(rec.get("task_id")) or self.task_id
        self.sandbox = _text(rec.get("sandbox")) or self.sandbox
        self.ports = parsed_ports
        self.attempts.append(attempt)

    def apply(self, rec: Mapping[str, Any]) -> None:
        kind = rec.get("kind")
        wall = _opt_float(rec.get("wall"))
        if kind == "header":
            self.header(rec, wall)
        elif kind == "task":
            self.current().task(rec, wall)
        elif kind == "process":
            self.current().process(rec, wall)
        elif kind == "health":
            self.current().health(rec, wall)
        # unknown kinds are ignored: newer writers may add some

    def view(self) -> TaskView:
        self.current()
        return TaskView(label=self.label, job_key=self.job_key, task_id=self.task_id,
                        sandbox=self.sandbox, ports=dict(self.ports),
                        attempts=tuple(a.view() for a in self.attempts))


def replay(records: Iterable[Mapping[str, Any]]) -> TaskView:
    """Fold checkpoint records into the task's view. Pure; never raises for bad records."""
    task = _Task()
    for rec in records:
        if not isinstance(rec, Mapping):
            continue
        try:
            task.apply(rec)
        except (TypeError, ValueError, KeyError, AttributeError):
            continue  # a damaged record: show what the others say
    return task.view()
