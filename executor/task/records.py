"""The checkpoint's records: one class per kind, to and from JSON. PURE.

The one owner of the record format: the task owner writes these classes, `replay` folds the
same classes, and `executor/task/checkpoint.py` only moves their JSON objects to and from
the file; the lines it reads become JSON objects here (`iter_parsed`: a torn or garbled line
skipped, or handed on as an `UnreadableLine`). No I/O, no clock, no logging. Every record is one JSON object with "kind" and
"wall" (time.time() when it was written; absent in hand-made records):

  header   task, job_key, task_id, sandbox, ports, supervisor_pid, supervisor_start,
           supervisor_boot, marker, processes, health, containment (how the processes are
           contained: the task's cgroup, or the fallback, in words), cgroup (the task
           cgroup's directory, "" without one: where a re-run finds it, `cgrouplost.py`), boot (the host's boot
           clock when it was written, `identity.boot_secs`: while the supervisor runs, the
           attempt's age is counted on it, which no step of the wall clock moves), run_uid
           (the real uid the task's processes run as: the role's under a root executor, the
           executor's own for a Docker task, whoever owns the sandbox; absent in older
           checkpoints, and dropped when not a uid: the reader then takes the sandbox's owner)
           (a new header starts a new attempt of the task: `stoker run` restarted it; the
           supervisor's start time in clock ticks since boot and the boot's id tell a live
           supervisor from a reused pid; the marker is the task's STOKER_TASK_MARKER value)
  task     from, to, reason                      (TaskStage names; no "from" before NEW)
  phase    from, to, reason                      (TaskPhase names: the supervisor's phase)
  process  process, run, from, to, reason, pid, exit_code, signal, outcome
           (ProcessState names; run is null for a process that never started; outcome,
           a RunOutcome name, is set when the change ended a run)
  health   outcome (passed|failed|snoozed), reason, latency_secs, state, attempts,
           consecutive_failures, consecutive_successes
  announce path, member, state, connection, reason, since
           (the task's ServerSet membership after a change: MemberState and Connection
           names of executor/task/membership.py; member null unless a member node exists;
           since: when it entered this state and member, e.g. when the member was created)
  summary  earlier_attempts, earlier_runs ({process: runs}, in the processes' order),
           health_state
           (written by compaction right after an attempt's header, or first: what the
           records it dropped said; `executor/task/compaction.py`)
  restart  delay_secs, reason, boot
           (written by `stoker run` once an attempt ended and its service rules restart
           the task: the next attempt starts `delay_secs` after `wall`, and after `boot` on
           the host's boot clock; docs/contract.md §7)

`parse` returns None for a damaged record: a wrong type, a missing required field, an
unknown state name, a number that is not finite or out of its range (below; each field is
read by `recordfields.py`, which raises `Damaged` with the reason); `parse_checked`
says what is damaged instead, and reads an `UnreadableLine` (a torn or garbled line, as the
reader found it) as damaged too. Optional fields may be absent or null. A change's "from"
that names no known state (a newer Stoker's) reads as not known, as when it is absent: the
change is read by where it went (an older `stoker status` shows a newer task's end).

Ranges (anything else could not have been written, and would break whoever shows it):
wall 0 ... 253402300799 (the end of year 9999), pids 1 ... 4194304 (Linux's PID_MAX_LIMIT),
exit codes 0 ... 255, signals 1 ... 64, runs 0 ... 2^31 - 1, ports 1 ... 65535, counts
0 ... 2^63 - 1, latencies 0 ... 10^9 s, restart delays 0 ... the end of year 9999 in seconds.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from config.words import quoted
from executor.events import ProcessState, RunOutcome, TaskPhase, TaskStage, TaskState
from executor.task import recordfields as f
from executor.task.membership import Connection, MemberState

if TYPE_CHECKING:  # reading a checkpoint loads them; writing one for a task without a health check never does
    from healthcheck.policy import AttemptOutcome, HealthState

@attrs.frozen(slots=True)
class UnreadableLine:
    """A checkpoint line that is not a JSON object (torn by a crash or a full disk, or
    garbled), as the reader found it; `excerpt` is its start; `offset` where it starts in the
    file (as the lines read count it) and `size` its bytes, without its newline (-1: not known);
    `too_long`: a line past the readers' cap (`saferead.iter_lines`), passed over unread (no
    excerpt): a header naming thousands of processes."""

    excerpt: str
    offset: int = -1
    size: int = -1
    too_long: bool = False


TOO_LONG = "longer than the 1 MiB a reader reads of a line: not read"  # (saferead.iter_lines' cap)


@attrs.frozen(slots=True)
class DamagedRecord:
    """A record `parse_checked` skipped, and why (a sentence naming the field)."""

    kind: str
    reason: str


@attrs.frozen(slots=True, kw_only=True)
class HeaderRecord:
    task: str = ""
    job_key: str = ""
    task_id: str = ""
    sandbox: str = ""
    ports: Mapping[str, int] = attrs.field(factory=dict, hash=False)
    supervisor_pid: int | None = None
    supervisor_start: int | None = None  # clock ticks after boot (/proc/PID/stat field 22)
    supervisor_boot: str = ""  # /proc/sys/kernel/random/boot_id
    marker: str = ""  # the STOKER_TASK_MARKER value every process of the task carries
    processes: tuple[str, ...] = ()
    health: str = "none"  # the checker's description
    containment: str = ""  # the mechanism in force, in words ("" in older checkpoints)
    cgroup: str = ""  # the task cgroup's directory ("" without one, and in older checkpoints)
    wall: float | None = None
    boot: float | None = None  # the host's boot clock then (identity.boot_secs; None: older)
    run_uid: int | None = None  # the uid its processes run as (None: not recorded, older)

    def to_json(self) -> dict[str, Any]:
        return f.record_json("header", {
            "task": self.task, "job_key": self.job_key, "task_id": self.task_id,
            "sandbox": self.sandbox, "ports": dict(self.ports),
            "supervisor_pid": self.supervisor_pid, "supervisor_start": self.supervisor_start,
            "supervisor_boot": self.supervisor_boot, "marker": self.marker,
            "processes": list(self.processes), "health": self.health,
            "containment": self.containment, "cgroup": self.cgroup, **f.stamp(self.boot),
            **({} if self.run_uid is None else {"run_uid": self.run_uid})}, self.wall)

    @classmethod
    def _read(cls, doc: Mapping[str, Any]) -> HeaderRecord:
        ports = f.field(doc, "ports", {})
        names = f.field(doc, "processes", [])
        if not isinstance(ports, Mapping):
            raise f.Damaged("'ports' is not a map of names to numbers")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise f.Damaged("'processes' is not a list of names")
        try:
            numbers = {str(k): f.integer(ports, k, within=f.PORTS) for k in ports}
        except f.Damaged as exc:
            raise f.Damaged(f"'ports': {exc}") from None
        return cls(task=f.text(doc, "task", ""), job_key=f.text(doc, "job_key", ""),
                   task_id=f.text(doc, "task_id", ""), sandbox=f.text(doc, "sandbox", ""),
                   ports=numbers,
                   supervisor_pid=f.integer(doc, "supervisor_pid", None, f.PIDS),
                   supervisor_start=f.integer(doc, "supervisor_start", None),
                   supervisor_boot=f.text(doc, "supervisor_boot", ""),
                   marker=f.text(doc, "marker", ""),
                   processes=tuple(names),
                   health=f.text(doc, "health", "none"),
                   containment=f.text(doc, "containment", ""), cgroup=f.text(doc, "cgroup", ""),
                   wall=f.number(doc, "wall", None), boot=f.boot(doc), run_uid=f.uid(doc, "run_uid"))


@attrs.frozen(slots=True, kw_only=True)
class TaskRecord:
    from_: TaskStage | None  # None: not known (hand-made records leave it empty)
    to: TaskStage
    reason: str = ""
    wall: float | None = None
    # to KILLING: how the kill ends the task, FAILED or KILLED (its cause); None: not
    # recorded (a checkpoint of a Stoker from before it), or not a kill's beginning
    ends_as: TaskState | None = None

    def to_json(self) -> dict[str, Any]:
        fields = {"from": f.value(self.from_), "to": self.to.value, "reason": self.reason}
        if self.ends_as is not None:
            fields["ends_as"] = self.ends_as.value
        return f.record_json("task", fields, self.wall)

    @classmethod
    def _read(cls, doc: Mapping[str, Any]) -> TaskRecord:
        return cls(from_=f.from_state(TaskStage, doc), to=f.state(TaskStage, doc, "to"),
                   reason=f.text(doc, "reason", ""), wall=f.number(doc, "wall", None),
                   ends_as=_ends_as(doc))


def _ends_as(doc: Mapping[str, Any]) -> TaskState | None:
    """A kill's end, FAILED or KILLED; None when absent or anything else (the record is read
    all the same: its state is what a reader needs most)."""
    try:
        found = TaskState(f.text(doc, "ends_as", None))
    except (ValueError, f.Damaged):
        return None
    return found if found in (TaskState.FAILED, TaskState.KILLED) else None


@attrs.frozen(slots=True, kw_only=True)
class PhaseRecord:
    from_: TaskPhase | None
    to: TaskPhase
    reason: str = ""
    wall: float | None = None

    def to_json(self) -> dict[str, Any]:
        return f.record_json("phase", {"from": f.value(self.from_), "to": self.to.value,
                               "reason": self.reason}, self.wall)

    @classmethod
    def _read(cls, doc: Mapping[str, Any]) -> PhaseRecord:
        return cls(from_=f.from_state(TaskPhase, doc), to=f.state(TaskPhase, doc, "to"),
                   reason=f.text(doc, "reason", ""), wall=f.number(doc, "wall", None))


@attrs.frozen(slots=True, kw_only=True)
class ProcessRecord:
    process: str
    run: int | None  # None: the process never started
    from_: ProcessState | None
    to: ProcessState
    reason: str = ""
    pid: int | None = None
    exit_code: int | None = None
    signal: int | None = None
    outcome: RunOutcome | None = None  # set when the change ended a run
    wall: float | None = None

    def to_json(self) -> dict[str, Any]:
        return f.record_json("process", {
            "process": self.process, "run": self.run, "from": f.value(self.from_),
            "to": self.to.value, "reason": self.reason, "pid": self.pid,
            "exit_code": self.exit_code, "signal": self.signal,
            "outcome": f.value(self.outcome)}, self.wall)

    @classmethod
    def _read(cls, doc: Mapping[str, Any]) -> ProcessRecord:
        process = f.text(doc, "process")
        if not process:
            raise f.Damaged("'process' is empty")
        return cls(process=process, run=f.integer(doc, "run", None, f.RUNS),
                   from_=f.from_state(ProcessState, doc),
                   to=f.state(ProcessState, doc, "to"), reason=f.text(doc, "reason", ""),
                   pid=f.integer(doc, "pid", None, f.PIDS),
                   exit_code=f.integer(doc, "exit_code", None, f.EXIT_CODES),
                   signal=f.integer(doc, "signal", None, f.SIGNALS),
                   outcome=f.state(RunOutcome, doc, "outcome", None),
                   wall=f.number(doc, "wall", None))


@attrs.frozen(slots=True, kw_only=True)
class HealthRecord:
    outcome: AttemptOutcome
    reason: str = ""
    latency_secs: float | None = None
    state: HealthState | None = None  # the verdict after this attempt
    attempts: int = 0
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    wall: float | None = None

    def to_json(self) -> dict[str, Any]:
        return f.record_json("health", {
            "outcome": self.outcome.value, "reason": self.reason,
            "latency_secs": self.latency_secs, "state": f.value(self.state),
            "attempts": self.attempts, "consecutive_failures": self.consecutive_failures,
            "consecutive_successes": self.consecutive_successes}, self.wall)

    @classmethod
    def _read(cls, doc: Mapping[str, Any]) -> HealthRecord:
        from healthcheck.policy import AttemptOutcome, HealthState  # only reading a checkpoint

        return cls(outcome=f.state(AttemptOutcome, doc, "outcome"),
                   reason=f.text(doc, "reason", ""),
                   latency_secs=f.number(doc, "latency_secs", None, f.LATENCY_SECS),
                   state=f.state(HealthState, doc, "state", None),
                   attempts=f.integer(doc, "attempts", 0),
                   consecutive_failures=f.integer(doc, "consecutive_failures", 0),
                   consecutive_successes=f.integer(doc, "consecutive_successes", 0),
                   wall=f.number(doc, "wall", None))


@attrs.frozen(slots=True, kw_only=True)
class AnnounceRecord:
    path: str
    state: MemberState
    connection: Connection
    member: str | None = None
    reason: str = ""
    since: float | None = None
    wall: float | None = None

    def to_json(self) -> dict[str, Any]:
        return f.record_json("announce", {
            "path": self.path, "member": self.member, "state": self.state.value,
            "connection": self.connection.value, "reason": self.reason,
            "since": self.since}, self.wall)

    @classmethod
    def _read(cls, doc: Mapping[str, Any]) -> AnnounceRecord:
        return cls(path=f.text(doc, "path"), state=f.state(MemberState, doc, "state"),
                   connection=f.state(Connection, doc, "connection"),
                   member=f.text(doc, "member", None), reason=f.text(doc, "reason", ""),
                   since=f.number(doc, "since", None), wall=f.number(doc, "wall", None))


@attrs.frozen(slots=True, kw_only=True)
class SummaryRecord:
    """What compaction dropped: the attempts before the kept ones, and, for the attempt it
    follows the header of, how many earlier runs of each process (every process of the
    attempt, in the order they first appeared) and the health state they left."""

    earlier_attempts: int = 0
    earlier_runs: Mapping[str, int] = attrs.field(factory=dict, hash=False)
    health_state: HealthState | None = None
    wall: float | None = None

    def to_json(self) -> dict[str, Any]:
        return f.record_json("summary", {
            "earlier_attempts": self.earlier_attempts, "earlier_runs": dict(self.earlier_runs),
            "health_state": f.value(self.health_state)}, self.wall)

    @classmethod
    def _read(cls, doc: Mapping[str, Any]) -> SummaryRecord:
        from healthcheck.policy import HealthState  # only reading a checkpoint

        runs = f.field(doc, "earlier_runs", {})
        if not isinstance(runs, Mapping):
            raise f.Damaged("'earlier_runs' is not a map of names to counts")
        try:
            earlier = {str(k): f.integer(runs, k) for k in runs}
        except f.Damaged as exc:
            raise f.Damaged(f"'earlier_runs': {exc}") from None
        return cls(earlier_attempts=f.integer(doc, "earlier_attempts", 0), earlier_runs=earlier,
                   health_state=f.state(HealthState, doc, "health_state", None),
                   wall=f.number(doc, "wall", None))


@attrs.frozen(slots=True, kw_only=True)
class RestartRecord:
    """`stoker run` restarts the task: its next attempt starts `delay_secs` after `wall`."""

    delay_secs: float
    reason: str = ""
    wall: float | None = None
    boot: float | None = None  # the host's boot clock then (identity.boot_secs; None: older)

    def to_json(self) -> dict[str, Any]:
        return f.record_json("restart", {"delay_secs": min(self.delay_secs, f.DELAY_SECS[1]),
                                 "reason": self.reason, **f.stamp(self.boot)}, self.wall)

    @classmethod
    def _read(cls, doc: Mapping[str, Any]) -> RestartRecord:
        return cls(delay_secs=f.number(doc, "delay_secs", within=f.DELAY_SECS),
                   reason=f.text(doc, "reason", ""), wall=f.number(doc, "wall", None), boot=f.boot(doc))


Record = (HeaderRecord | TaskRecord | PhaseRecord | ProcessRecord | HealthRecord | AnnounceRecord
          | SummaryRecord | RestartRecord)

_KINDS: Mapping[str, type[Record]] = {
    "header": HeaderRecord, "task": TaskRecord, "phase": PhaseRecord,
    "process": ProcessRecord, "health": HealthRecord, "announce": AnnounceRecord,
    "summary": SummaryRecord, "restart": RestartRecord,
}


def parse(doc: object) -> Record | None:
    """The record a JSON object holds; None for an unknown kind (newer writers may add some)
    or a damaged record."""
    record = parse_checked(doc)
    return None if isinstance(record, DamagedRecord) else record


def parse_checked(doc: object) -> Record | DamagedRecord | None:
    """The record a JSON object holds, or what is damaged in it (an `UnreadableLine` is
    damaged too); None for an unknown kind, which newer writers may add."""
    if isinstance(doc, UnreadableLine):
        at = f" at offset {doc.offset}" if doc.offset >= 0 else ""
        if doc.too_long:
            return DamagedRecord("?", f"a line of {doc.size:,} bytes{at}, {TOO_LONG}")
        return DamagedRecord("?", f"a torn line{at} (a write cut short by a crash or a full "
                                  f"disk) or not JSON: {quoted(doc.excerpt)}")
    if not isinstance(doc, Mapping):
        return DamagedRecord("?", f"a JSON {type(doc).__name__}, not an object")
    kind = doc.get("kind")
    if not isinstance(kind, str):
        return DamagedRecord("?", "'kind' is missing or not text")
    cls = _KINDS.get(kind)
    if cls is None:
        return None
    try:
        return cls._read(doc)
    except f.Damaged as exc:
        return DamagedRecord(kind, str(exc))


def iter_parsed(lines: Iterable[bytes | str], keep_unreadable: bool = False, offset: int = 0,
                skipped: Sequence[int] = ()) -> Iterator[Any]:
    """The checkpoint's lines as the readers hand them on (`checkpoint.records_at`): each JSON
    object with a "kind", in order; a torn or garbled line skipped, or with `keep_unreadable`
    handed on as an `UnreadableLine`. `offset`: where the first line starts (each next one a
    newline past the one before, and past the lines the reader passed over before it,
    `skipped`: `saferead.iter_lines`, each handed on too with `keep_unreadable`, as an
    `UnreadableLine` too long to read)."""
    passed = 0  # of `skipped`, those handed on
    for line in lines:
        if keep_unreadable and passed < len(skipped):
            yield from _too_long(skipped, passed, offset)
            passed = len(skipped)
        at, offset = offset + sum(skipped), offset + len(line) + 1
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except (ValueError, RecursionError):  # nested deeper than the parser recurses: planted
            doc = None  # torn (a crash or a full disk mid-write) or garbled
        if isinstance(doc, dict) and isinstance(doc.get("kind"), str):
            yield doc
        elif keep_unreadable:
            text = line if isinstance(line, str) else line.decode("utf-8", errors="replace")
            yield UnreadableLine(text[:60] + ("..." if len(text) > 60 else ""), at, len(line))
    if keep_unreadable and passed < len(skipped):  # the file's last lines
        yield from _too_long(skipped, passed, offset)


def _too_long(skipped: Sequence[int], first: int, offset: int) -> Iterator[UnreadableLine]:
    """The lines of `skipped` from its `first` (their bytes, newline included), which the reader
    passed over after the lines that end at `offset`, each as an `UnreadableLine` too long."""
    for index in range(first, len(skipped)):
        yield UnreadableLine("", offset + sum(skipped[:index]), skipped[index] - 1, too_long=True)


def parse_lines(lines: Iterable[bytes | str], keep_unreadable: bool = False) -> list[Any]:
    """`iter_parsed`'s records of `lines`, as a list."""
    return list(iter_parsed(lines, keep_unreadable))
