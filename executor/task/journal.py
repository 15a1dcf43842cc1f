"""The task's journal: each change becomes one checkpoint record and one log line.

Owns, for one task: the checkpoint's header (`header_record`), turning transitions and
health attempts into the records of `executor/task/records.py` (with the pid and exit
status the owner knows), the log line of
each (`log_event`, one per change, its level saying how much it matters), and batching a
step's records into one write and one sync of the checkpoint sink. It decides nothing and
is called only from the owner's thread.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
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
from executor.host.identity import own_identity
from executor.logs import log_event
from executor.task.ports import CheckpointSink, ProcessPort
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
    from healthcheck.checkers import Checker
    from healthcheck.policy import HealthPolicy, Verdict

logger = logging.getLogger(__name__)


class Journal:
    def __init__(self, label: str, wall_clock: Callable[[], float]) -> None:
        self._label = label
        self._wall = wall_clock
        self._sink: CheckpointSink | None = None
        self._pending: list[Record] = []

    def open(self, sink: CheckpointSink, header: HeaderRecord) -> None:
        """Start writing to `sink`, header first: it is written with the records that follow
        it, at the next flush (the task's STARTING: one sync, not two, before a process starts)."""
        self._sink = sink
        self._pending.insert(0, attrs.evolve(header, wall=self._wall()))

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
                self._pending.append(TaskRecord(from_=t.from_, to=t.to, reason=t.reason, wall=wall))
                log_event(logger, logging.INFO, "task_state", task=self._label, **fields, reason=t.reason)
            case _:
                assert_never(t)

    def health(self, policy: HealthPolicy, verdict: Verdict, t: HealthTransition,
               latency_secs: float, attempt_reason: str) -> None:
        """Record and log one judged attempt: a counted failure is WARNING, one grace
        ignores or a snooze INFO, the rest DEBUG."""
        from healthcheck.policy import AttemptOutcome  # loaded with the task's health policy

        self._pending.append(HealthRecord(
            outcome=t.outcome, reason=attempt_reason, latency_secs=round(latency_secs, 6),
            state=t.to, attempts=policy.attempts, consecutive_failures=policy.consecutive_failures,
            consecutive_successes=policy.consecutive_successes, wall=self._wall()))
        level = logging.DEBUG
        if t.outcome is AttemptOutcome.FAILED:
            level = logging.INFO if verdict.ignored else logging.WARNING
        elif t.outcome is AttemptOutcome.SNOOZED:
            level = logging.INFO
        log_event(logger, level, "health_check", task=self._label, result=t.outcome.value,
                  attempt=t.attempt, latency_ms=round(latency_secs * 1000, 1),
                  state=t.to.value, reason=t.reason)

    def announcement(self, record: AnnounceRecord) -> None:
        """Record the task's ServerSet membership (the announcer logs each change itself)."""
        self._pending.append(attrs.evolve(record, wall=self._wall()))

    def flush(self) -> None:
        """Write the records queued since the last flush with one write and one sync."""
        records, self._pending = self._pending, []
        if self._sink is None or not records:
            return
        try:
            self._sink.append_many([r.to_json() for r in records])
        except (OSError, ValueError) as exc:
            logger.error("checkpoint task=%s write failed: %s: %s", self._label, type(exc).__name__, exc)

    def close(self) -> None:
        self.flush()
        if self._sink is not None:
            self._sink.close()


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
        containment=procs.containment)
