"""Compacting the checkpoint: fewer records, the same view. PURE.

A task that runs for months writes a health record per attempt and two process records per
restart; `compact` keeps only what `executor/task/replay.py` shows and rolls the rest into
one `summary` record per attempt (`executor/task/records.py`), so that

    replay(compact(records)) == replay(records)

for every checkpoint a writer produced. It keeps, like the view: the last `ATTEMPTS_KEPT`
attempts (header first), per attempt the last `TRANSITIONS_KEPT` task and phase changes,
the last `HEALTH_HISTORY` health attempts, the last `ANNOUNCE_KEPT` announce records (the
view shows the last), the last `restart` record, and per process the records of its last
`RUNS_KEPT` runs plus its last `LOOSE_KEPT` records outside any run; and it always keeps
the last record (its wall time is when the task last wrote). The summary after each kept
header lists every process of the attempt in the order they first appeared, with how many
of its runs were dropped, the attempts dropped before it, and the health state the dropped
health records left. Which run a process record belongs to is `replay.classify`, the rule
the view itself follows.

Records come in one at a time (`Compactor.add`) and memory stays bounded by what is kept,
so a checkpoint of any size compacts in one pass, and a writer that feeds each record as it
writes it compacts at the cost of what is kept. No I/O, no clock, no logging: the
checkpoint writer feeds `Compactor`, and writes `kept()` beside the file before renaming it
over.
"""
from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable
from typing import assert_never

import attrs

from executor.task.records import (
    AnnounceRecord,
    HeaderRecord,
    HealthRecord,
    PhaseRecord,
    ProcessRecord,
    Record,
    RestartRecord,
    SummaryRecord,
    TaskRecord,
)
from executor.task.replay import (
    ATTEMPTS_KEPT,
    HEALTH_HISTORY,
    PROCESSES_KEPT,
    RUNS_KEPT,
    TRANSITIONS_KEPT,
    Slot,
    classify,
)
from healthcheck.policy import HealthState

LOOSE_KEPT = 5  # only the last one matters (the process's state); a few more read well
ANNOUNCE_KEPT = 3  # the view shows the last announce record; a few more read well

Indexed = tuple[int, Record]  # (position in the input, record)
# What an attempt holds after its header (a header starts the next attempt).
Body = TaskRecord | PhaseRecord | ProcessRecord | HealthRecord | AnnounceRecord | SummaryRecord | RestartRecord


@attrs.define
class _ProcessKeep:
    runs: dict[int, list[Indexed]] = attrs.Factory(dict)  # kept runs, oldest first
    loose: deque[Indexed] = attrs.Factory(lambda: deque(maxlen=LOOSE_KEPT))
    earlier_runs: int = 0
    newest: int = -1

    def add(self, item: Indexed, rec: ProcessRecord) -> None:
        run = rec.run
        slot = classify(rec, run in self.runs, self.newest)
        match slot:
            case Slot.IGNORED:
                return
            case Slot.LOOSE:
                self.loose.append(item)
                return
            case Slot.NEW_RUN:
                assert run is not None
                self.newest = run
                self.runs[run] = []
                if len(self.runs) > RUNS_KEPT:
                    del self.runs[next(iter(self.runs))]
                    self.earlier_runs += 1
            case Slot.RUN:
                pass
            case _:
                assert_never(slot)
        assert run is not None
        self.runs[run].append(item)

    def kept(self) -> list[Indexed]:
        return [item for records in self.runs.values() for item in records] + list(self.loose)


@attrs.define
class _AttemptKeep:
    header: HeaderRecord | None = None
    processes: dict[str, _ProcessKeep] = attrs.Factory(dict)
    tasks: deque[Indexed] = attrs.Factory(lambda: deque(maxlen=TRANSITIONS_KEPT))
    phases: deque[Indexed] = attrs.Factory(lambda: deque(maxlen=TRANSITIONS_KEPT))
    health: deque[Indexed] = attrs.Factory(lambda: deque(maxlen=HEALTH_HISTORY))
    announce: deque[Indexed] = attrs.Factory(lambda: deque(maxlen=ANNOUNCE_KEPT))
    health_state: HealthState | None = None  # what the dropped health records left
    restart: Indexed | None = None  # the last restart record (the view shows it)

    def process(self, name: str) -> _ProcessKeep | None:
        found = self.processes.get(name)
        if found is None and len(self.processes) < PROCESSES_KEPT:
            found = self.processes[name] = _ProcessKeep()
        return found

    def add(self, position: int, rec: Body) -> None:
        item = (position, rec)
        match rec:
            case TaskRecord():
                self.tasks.append(item)
            case PhaseRecord():
                self.phases.append(item)
            case ProcessRecord():
                if (process := self.process(rec.process)) is not None:
                    process.add(item, rec)
            case HealthRecord():
                if len(self.health) == HEALTH_HISTORY:
                    dropped = self.health.popleft()[1]
                    assert isinstance(dropped, HealthRecord)
                    self.health_state = dropped.state or self.health_state
                self.health.append(item)
            case AnnounceRecord():
                self.announce.append(item)
            case SummaryRecord():
                for name, earlier in rec.earlier_runs.items():
                    if (process := self.process(name)) is not None:
                        process.earlier_runs += earlier
                self.health_state = rec.health_state or self.health_state
            case RestartRecord():
                self.restart = item
            case _:
                assert_never(rec)

    def records(self, earlier_attempts: int) -> list[Record]:
        kept = [*self.tasks, *self.phases, *self.health, *self.announce,
                *([] if self.restart is None else [self.restart])]
        for process in self.processes.values():
            kept += process.kept()
        summary = SummaryRecord(
            earlier_attempts=earlier_attempts, health_state=self.health_state,
            earlier_runs={name: p.earlier_runs for name, p in self.processes.items()})
        head: list[Record] = [] if self.header is None else [self.header]
        return head + [summary] + [rec for _, rec in sorted(kept)]  # positions are unique


class Compactor:
    """The fold behind `compact`, one record at a time: the checkpoint writer feeds it every
    record it writes and asks for `kept()` when the file has grown, so a compaction costs
    what is kept, not the file's length."""

    def __init__(self) -> None:
        self._attempts: deque[_AttemptKeep] = deque()
        self._earlier_attempts = 0
        self._last: Record | None = None
        self._positions = itertools.count()

    def add(self, rec: Record) -> None:
        position = next(self._positions)
        if not isinstance(rec, SummaryRecord):  # a summary is folded in, never kept
            self._last = rec
        if isinstance(rec, HeaderRecord):
            attempt = _AttemptKeep(header=rec)
            for name in rec.processes:
                attempt.process(name)
            self._attempts.append(attempt)
            if len(self._attempts) > ATTEMPTS_KEPT:
                self._attempts.popleft()
                self._earlier_attempts += 1
            return
        if isinstance(rec, SummaryRecord):
            self._earlier_attempts += rec.earlier_attempts
        if not self._attempts:
            self._attempts.append(_AttemptKeep())  # records before any header
        self._attempts[-1].add(position, rec)

    def kept(self) -> list[Record]:
        """The records to keep, in their order, with a summary after each kept header."""
        out: list[Record] = []
        for number, attempt in enumerate(self._attempts):
            out += attempt.records(self._earlier_attempts if number == 0 else 0)
        last = self._last
        if last is not None and not any(rec is last for rec in out):
            out.append(last)  # dropped (a run the view ignores): kept for its wall time
        return out


def compact(records: Iterable[Record]) -> list[Record]:
    """The records to keep, in their order, with a summary after each kept header."""
    compactor = Compactor()
    for rec in records:
        compactor.add(rec)
    return compactor.kept()
