"""The views `stoker status` shows of a task, as `executor/task/replay.py` folds them from
the checkpoint. PURE: frozen attrs classes, state names as text (they are for showing), a
few derived properties; no I/O, no clock, no logging.

A `TaskView` holds its last attempts (`AttemptView`: the task's states, the supervisor's
phases, each process with its last runs, the health checks); what the bounded view left
out is counted (`earlier_attempts`, `ProcessView.earlier_runs`), and the damaged records it
skipped are named (`warnings`). A task that announces itself in ZooKeeper has its
membership in `AttemptView.announcement` (`TaskView.announcement` for the current attempt).
An attempt after which `stoker run` scheduled the next one has it in `AttemptView.restart`.
"""
from __future__ import annotations

import attrs

ENDED_STATES = frozenset({"FINISHED", "FAILED", "KILLED"})
# The words after a kill's end when the supervisor died before it: its record said how the
# kill ends the task (a failed health check, the disk limit: FAILED; an operator: KILLED).
DIED_KILLING = "its supervisor died while killing"


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
    runs: tuple[RunView, ...]  # the last RUNS_KEPT runs
    earlier_runs: int = 0  # runs before those

    @property
    def current(self) -> RunView | None:
        return self.runs[-1] if self.runs else None

    @property
    def restarts(self) -> int:
        return max(0, self.earlier_runs + len(self.runs) - 1)


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
class AnnouncementView:
    """The task's ServerSet membership, as its last `announce` record says."""

    path: str  # the ServerSet, e.g. /aurora/www-data/prod/hello
    member: str | None  # e.g. member_0000000003; None while no member node exists
    state: str  # JOINING, JOINED, LEAVING, LEFT or CLOSED
    connection: str  # CONNECTED, SUSPENDED or LOST
    reason: str
    since_wall: float | None  # when it entered this state (JOINED: the member's creation)

    @property
    def member_path(self) -> str | None:
        return None if self.member is None else f"{self.path.rstrip('/')}/{self.member}"


@attrs.frozen(slots=True)
class RestartView:
    """The next attempt `stoker run` scheduled once this one ended (its `restart` record)."""

    wall: float | None  # when it was scheduled: the back-off began
    delay_secs: float
    reason: str  # the service rules' words ("task failed (1 of max_task_failures=3); ...")
    boot: float | None = None  # the same moment on the host's boot clock (None: not recorded)

    @property
    def due_wall(self) -> float | None:
        """When the next attempt starts (None: the record had no wall time)."""
        return None if self.wall is None else self.wall + self.delay_secs


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
    supervisor_start: int | None  # its start in clock ticks after boot (None: not recorded)
    supervisor_boot: str  # the boot's id ("": not recorded)
    marker: str  # the task's STOKER_TASK_MARKER value ("": not recorded)
    containment: str  # how the processes were contained ("": not recorded)
    state: str | None  # None before the first task record
    reason: str
    history: tuple[TransitionView, ...]  # the task's states
    phases: tuple[TransitionView, ...]  # the supervisor's phases (ACTIVE, CLEANING, ...)
    processes: tuple[ProcessView, ...]
    health: HealthView
    announcement: AnnouncementView | None = None  # None: the task does not announce
    restart: RestartView | None = None  # None: no next attempt scheduled after this one
    ports: dict[str, int] | None = None  # as its header recorded them (None: no header kept)
    started_boot: float | None = None  # its start on the host's boot clock (None: not recorded)
    run_uid: int | None = None  # the uid its processes ran as (None: not recorded)
    # The task's processes past PROCESSES_KEPT (its header names them all): not in `processes`.
    processes_not_shown: int = 0
    # KILLING: how the kill ends the task, FAILED or KILLED, as its record says (None: not
    # recorded, a checkpoint of a Stoker from before it): its end if its supervisor dies first
    killing_ends_as: str | None = None

    @property
    def processes_total(self) -> int:
        return len(self.processes) + self.processes_not_shown

    @property
    def not_shown_note(self) -> str:
        """The line saying that processes are left out ("" when none is)."""
        n = self.processes_not_shown
        if not n:
            return ""
        return (f"{n} more process{'es' if n != 1 else ''} of the task not shown: a task's view "
                f"keeps its first {len(self.processes)}")

    @property
    def phase(self) -> TransitionView | None:
        """The supervisor's current phase and why (None before the first phase record)."""
        return self.phases[-1] if self.phases else None

    @property
    def ended_state(self) -> str:
        """The state of an attempt a later one followed: its recorded end, else LOST. A later
        attempt starts in the sandbox only once this one's supervisor let go of it or died
        (a crash, `kill -9`), so one that recorded no end never reaches it: it is not
        RUNNING, whatever its last record says."""
        if self.state in ENDED_STATES:
            return self.state
        if self.killing_ends_as is not None:
            return f"{self.killing_ends_as} ({DIED_KILLING})"
        return f"LOST (recorded {self.state or 'nothing'})"


@attrs.frozen(slots=True)
class TaskView:
    label: str
    job_key: str
    task_id: str
    sandbox: str
    ports: dict[str, int]
    attempts: tuple[AttemptView, ...]  # oldest first, the last ATTEMPTS_KEPT; never empty
    earlier_attempts: int = 0  # attempts before those
    last_wall: float | None = None  # the wall time of the last record (None: it had none)
    warnings: tuple[str, ...] = ()  # one sentence per damaged record skipped
    # The first attempt's records follow no header, and this record, damaged or of a kind not
    # known, came before them all (its header's line, garbled?), or none did (said so); ""
    # when not so: a header that lacks its supervisor's pid is read, and a damaged line
    # further down is not it.
    headless_after: str = ""

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
    def announcement(self) -> AnnouncementView | None:
        return self.current.announcement

    @property
    def supervisor_pid(self) -> int | None:
        return self.current.supervisor_pid

    @property
    def supervisor_start(self) -> int | None:
        return self.current.supervisor_start

    @property
    def marker(self) -> str:
        return self.current.marker
