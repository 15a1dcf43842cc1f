"""The task's journal: each change becomes one checkpoint record and one log line.

Owns, for one task: the checkpoint's header (`header_record`), turning transitions and
health attempts into the records of `executor/task/records.py` (with the pid and exit
status the owner knows), the log line of
each (`log_event`, one per change, its level saying how much it matters), and batching a
step's records into one write and one sync of the checkpoint sink, holding them while
that write fails (a full disk) until one works (once many are held, tried again every few
seconds, not at each step); and the list of what the watchdog holds by
pid, kept beside the checkpoint (`keep_held`, `executor/task/heldfile.py`). It decides
nothing and is called only from the owner's thread.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, assert_never

import attrs

from config.spec import JobSpec
from executor.events import (
    ExitStatus,
    HealthTransition,
    PhaseTransition,
    ProcessState,
    ProcessTransition,
    RunOutcome,
    TaskTransition,
)
from executor.host.entry import TERMINAL_STATES
from executor.host.identity import boot_secs, own_identity
from executor.logs import log_event
from executor.procs.sandboxfs import describe_os_error
from executor.task.records import (
    AnnounceRecord,
    HeaderRecord,
    HealthRecord,
    PhaseRecord,
    ProcessRecord,
    Record,
    TaskRecord,
)

if TYPE_CHECKING:
    from executor.task.heldfile import HeldWriter
    from executor.task.ports import CheckpointSink, ProcessPort
    from healthcheck.checkers import Checker
    from healthcheck.policy import HealthPolicy, Verdict

logger = logging.getLogger(__name__)

MAX_HELD_RECORDS = 10_000  # kept while the checkpoint cannot be written (about 2 MB as JSON)
HELD_RETRY_FROM = 1_000  # held records from which a failing write is tried again only every
HELD_RETRY_SECS = 5.0  # few seconds: each try encodes them all (60 ms for 10,000)


class Journal:
    def __init__(self, label: str, wall_clock: Callable[[], float]) -> None:
        self._label = label
        self._wall = wall_clock
        self._sink: CheckpointSink | None = None
        self._pending: list[Record] = []  # queued, or refused by a write that failed
        self._failing: str | None = None  # why writing fails, while it does
        self._dropped = 0  # held records dropped beyond MAX_HELD_RECORDS
        self._retry_at = 0.0  # time.monotonic() of the next try, once HELD_RETRY_FROM are held
        self._health_failing = False  # the last attempt judged (not snoozed) failed
        self._held: HeldWriter | None = None  # what the watchdog holds, beside the checkpoint
        self._end_queued = ""  # the terminal task state of a record queued, not written yet
        # The task's terminal state once a write put its record in the checkpoint ("": not
        # recorded, as when the task ended while the checkpoint could not be written).
        self.recorded_end = ""

    def open(self, sink: CheckpointSink, header: HeaderRecord) -> None:
        """Start writing to `sink`, header first: it is written with the records that follow
        it, at the next flush (the task's STARTING: one sync, not two, before a process starts)."""
        self._sink = sink
        self._pending.insert(0, attrs.evolve(header, wall=self._wall(), boot=boot_secs()))

    def keep_held(self, sandbox: Path, marker: str, held: Mapping[int, int], watchdog: int | None = None) -> None:
        """Keep beside the checkpoint what the watchdog holds by pid (pid → start time) and
        the watchdog's own pid, from the checkpoint's opening on."""
        if self._sink is None:
            return
        if self._held is None:
            if not held and watchdog is None:
                return
            from executor.task.heldfile import HeldWriter

            self._held = HeldWriter(self.replace_beside, sandbox, marker, self._label)
        self._held.update(held, watchdog)

    def replace_beside(self, name: str, data: bytes) -> None:
        """Make `data` the file `name` beside the checkpoint (`CheckpointSink.replace_beside`);
        raises OSError, or ValueError before `open` or once closed."""
        if self._sink is None:
            raise ValueError("the checkpoint is not open")
        self._sink.replace_beside(name, data)

    def transition(self, t: ProcessTransition | PhaseTransition | TaskTransition,
                   pid: int | None = None, status: ExitStatus | None = None) -> None:
        """Record and log one change; `pid` and `status` belong to a process's run."""
        wall = self._wall()
        fields = {"from": t.from_.value, "to": t.to.value}
        match t:
            case ProcessTransition():
                self._pending.append(ProcessRecord(
                    process=t.process, run=t.run, from_=t.from_, to=t.to, reason=t.reason,
                    pid=pid, exit_code=status.exit_code if status else None,
                    signal=status.signal if status else None, outcome=t.outcome, wall=wall))
                # A loss (a signal nobody in the task sent: the OOM killer, an operator) is
                # restarted like a failure is, and is as worth a look.
                lost = t.outcome is RunOutcome.LOST
                level = logging.WARNING if t.to is ProcessState.FAILED or lost else logging.INFO
                log_event(logger, level, "process_state", task=self._label, process=t.process,
                          run=t.run, pid=pid, **fields,
                          outcome=t.outcome.value if t.outcome else None, reason=t.reason)
            case PhaseTransition():
                self._pending.append(PhaseRecord(from_=t.from_, to=t.to, reason=t.reason, wall=wall))
                log_event(logger, logging.INFO, "task_phase", task=self._label, **fields, reason=t.reason)
            case TaskTransition():
                self._pending.append(TaskRecord(from_=t.from_, to=t.to, reason=t.reason, wall=wall,
                                                ends_as=t.ends_as))
                if t.to.value in TERMINAL_STATES:
                    self._end_queued = t.to.value
                log_event(logger, logging.INFO, "task_state", task=self._label, **fields, reason=t.reason)
            case _:
                assert_never(t)

    def health(self, policy: HealthPolicy, verdict: Verdict, t: HealthTransition,
               latency_secs: float, attempt_reason: str) -> None:
        """Record and log one judged attempt: a counted failure is WARNING, one grace
        ignores INFO, a pass after failures that leaves the health state as it was (the
        checks recovered; a change of state is the task's own line) INFO, the rest DEBUG (a
        snoozed attempt too: the health loop says once when the snooze begins and ends)."""
        from healthcheck.policy import AttemptOutcome  # loaded with the task's health policy

        self._pending.append(HealthRecord(
            outcome=t.outcome, reason=attempt_reason, latency_secs=round(latency_secs, 6),
            state=t.to, attempts=policy.attempts, consecutive_failures=policy.consecutive_failures,
            consecutive_successes=policy.consecutive_successes, wall=self._wall()))
        level = logging.DEBUG
        if t.outcome is AttemptOutcome.FAILED:
            level = logging.INFO if verdict.ignored else logging.WARNING
        elif t.outcome is AttemptOutcome.PASSED and self._health_failing and t.from_ is t.to:
            level = logging.INFO
        if t.outcome is not AttemptOutcome.SNOOZED:
            self._health_failing = t.outcome is AttemptOutcome.FAILED
        log_event(logger, level, "health_check", task=self._label, result=t.outcome.value,
                  attempt=t.attempt, latency_ms=round(latency_secs * 1000, 1),
                  state=t.to.value, reason=t.reason)

    def announcement(self, record: AnnounceRecord) -> None:
        """Record the task's ServerSet membership (the announcer logs each change itself)."""
        self._pending.append(attrs.evolve(record, wall=self._wall()))

    def flush(self, force: bool = False) -> None:
        """Write the records queued since the last flush with one write and one sync. When
        the write fails (a full disk), none of them is lost: they are kept, in order, and
        written with the next flush's (at most `MAX_HELD_RECORDS`: beyond, the oldest go,
        counted; from `HELD_RETRY_FROM` on, tried again every `HELD_RETRY_SECS` unless
        `force`). One ERROR line when writing starts to fail, one WARNING when it works
        again."""
        records = self._pending
        if self._sink is None or not records:
            return
        if not force and len(records) >= HELD_RETRY_FROM and time.monotonic() < self._retry_at:
            self._bound()
            return
        try:
            self._sink.append_many(r.to_json() for r in records)  # encoded only once the sink writes
        except OSError as exc:
            self._hold(exc)
            return
        except ValueError as exc:  # closed: nothing more can be written
            self._pending = []
            log_event(logger, logging.ERROR, "checkpoint_write_failed", task=self._label,
                      error=f"{type(exc).__name__}: {exc}", records_lost=len(records))
            return
        self._pending = []
        self.recorded_end = self._end_queued or self.recorded_end
        if self._failing is not None:
            log_event(logger, logging.WARNING, "checkpoint_write_recovered", task=self._label,
                      records=len(records), records_lost=self._dropped,
                      reason=f"written now, held since {self._failing}")
            self._failing, self._dropped = None, 0

    def _hold(self, exc: OSError) -> None:
        """Keep the records the sink refused for the next flush."""
        self._bound()
        self._retry_at = time.monotonic() + HELD_RETRY_SECS
        if self._failing is None:
            self._failing = describe_os_error(exc)
            log_event(logger, logging.ERROR, "checkpoint_write_failed", task=self._label,
                      error=self._failing, records_held=len(self._pending),
                      reason="kept in memory, written again at each step (every few seconds once "
                             "many are held) until it works")

    def _bound(self) -> None:
        """At most `MAX_HELD_RECORDS` held: beyond, the oldest go (the header stays first)."""
        if len(self._pending) > MAX_HELD_RECORDS:
            keep = 1 if isinstance(self._pending[0], HeaderRecord) else 0
            excess = len(self._pending) - MAX_HELD_RECORDS
            del self._pending[keep:keep + excess]
            self._dropped += excess

    def close(self) -> None:
        self.flush(force=True)
        if self._pending and self._sink is not None:
            log_event(logger, logging.ERROR, "checkpoint_records_lost", task=self._label,
                      records=len(self._pending) + self._dropped, error=self._failing,
                      reason="the task ended while its checkpoint could not be written")
            self._pending = []
        if self._sink is not None:
            self._sink.close(ended=bool(self.recorded_end))


def header_record(job: JobSpec, sandbox: Path, procs: ProcessPort, checker: Checker | None) -> HeaderRecord:
    """The checkpoint's first record: the task, who supervises it (this process, as the host
    registry identifies it) and how its processes are contained (asked last: the process
    port's containment is known once its move into the task's cgroup is over)."""
    me = own_identity()
    return HeaderRecord(
        task=job.label, job_key=job.key, task_id=job.task_id, sandbox=str(sandbox),
        ports=dict(job.ports), supervisor_pid=me.pid, supervisor_start=me.start_ticks,
        supervisor_boot=me.boot_id, marker=procs.marker,
        processes=tuple(p.name for p in job.task.processes),
        health=checker.describe() if checker is not None else "none",
        containment=procs.containment, cgroup=procs.cgroup or "", run_uid=procs.run_uid)
