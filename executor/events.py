"""The shared vocabulary: the states, events, commands and transitions that cross modules.

States are enums several modules read (the planner writes `ProcessState`, `RunOutcome` and
`TaskPhase`; the status machine `TaskStage`; checkpoint records, replay and the reporters
read them all). Events are past-tense facts posted to the task owner's queue
(`ProcessExited`, `HealthChecked`, `KillRequested`, `RestartRequested`, `LifecycleProgress`,
`LifecycleDone`, `DiskSampled`); an operator's request (`stoker kill`, `stoker restart`, through the
control socket) carries a `Replier` the owner answers with `ControlReply`s; commands are
imperatives the pure machines hand back (`StartRun`, `SignalRun`); transitions are the state
changes the owner checkpoints, logs and reports, one class per kind of subject
(`ProcessTransition`, `PhaseTransition`, `TaskTransition`, `HealthTransition`), and the
steps of a kill (`KillStep`) the reporters show with them. All are frozen, slotted attrs
classes. No I/O here.
"""
from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:  # annotations only: a task without a health check never loads the policy
    from healthcheck.policy import Attempt, AttemptOutcome, HealthState


class TaskState(enum.Enum):
    """The task's state as the outside world sees it (Mesos names it TASK_<NAME>)."""

    STARTING = "STARTING"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"

    @property
    def terminal(self) -> bool:
        return self in (TaskState.FINISHED, TaskState.FAILED, TaskState.KILLED)


class TaskStage(enum.Enum):
    """Where the task is, as its owner tracks it: the TaskStates plus NEW (before launch) and
    KILLING (a staged kill is under way; the world still sees the state it came from)."""

    NEW = "NEW"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    KILLING = "KILLING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"

    @classmethod
    def of(cls, state: TaskState) -> TaskStage:
        return cls(state.value)


class ProcessState(enum.Enum):
    """One process of the task, across its runs (the planner's process machine)."""

    WAITING = "WAITING"  # not started yet / waiting for order, concurrency or min_duration
    RUNNING = "RUNNING"  # a run was started (StartRun issued) and has not exited
    SUCCESS = "SUCCESS"  # finished successfully for good
    FAILED = "FAILED"  # failed for good (max_failures reached, run cap, spawn errors)
    KILLED = "KILLED"  # stopped by the task's kill / cleaning


class RunOutcome(enum.Enum):
    """How one run ended, as the planner counts it."""

    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    LOST = "LOST"  # killed by a signal nobody in the task sent: restarted, not a failure
    KILLED = "KILLED"  # ended after the task signalled it
    RESTARTED = "RESTARTED"  # stopped for an operator's restart: neither a failure nor a loss


class TaskPhase(enum.Enum):
    """The supervisor's phase of the task (the planner's task machine)."""

    ACTIVE = "ACTIVE"
    CLEANING = "CLEANING"
    FINALIZING = "FINALIZING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    KILLED = "KILLED"

    @property
    def terminal(self) -> bool:
        return self in (TaskPhase.SUCCESS, TaskPhase.FAILED, TaskPhase.KILLED)


# The planner's task machine as data (its drawing: executor/task/planner.py; a test checks both).
_P = TaskPhase
PHASE_EDGES: dict[TaskPhase, frozenset[TaskPhase]] = {
    _P.ACTIVE: frozenset({_P.CLEANING}),
    _P.CLEANING: frozenset({_P.FINALIZING, _P.SUCCESS, _P.FAILED, _P.KILLED}),
    _P.FINALIZING: frozenset({_P.SUCCESS, _P.FAILED, _P.KILLED}),
    _P.SUCCESS: frozenset(),
    _P.FAILED: frozenset(),
    _P.KILLED: frozenset(),
}



@attrs.frozen(slots=True)
class ExitStatus:
    """How a run ended: exactly one of `exit_code` and `signal` is set; `killer` names who
    sent the signal when the supervisor could tell ("the kernel's OOM killer (memory cgroup
    /a: limit 30 MiB)", `executor/procs/oomkill.py`)."""

    exit_code: int | None = None
    signal: int | None = None
    killer: str | None = None

    def __attrs_post_init__(self) -> None:
        if (self.exit_code is None) == (self.signal is None):
            raise ValueError("ExitStatus needs exactly one of exit_code and signal")

    @classmethod
    def from_wait_status(cls, status: int) -> ExitStatus:
        import os  # only the decoding helpers; no system calls

        if os.WIFSIGNALED(status):
            return cls(signal=os.WTERMSIG(status))
        return cls(exit_code=os.waitstatus_to_exitcode(status))

    @property
    def success(self) -> bool:
        return self.exit_code == 0

    def describe(self) -> str:
        if self.killer is not None:
            return f"killed by {self.killer}"
        if self.signal is not None:
            from healthcheck.base import signal_name  # a killed run's words: after the first report

            return f"killed by {signal_name(self.signal)}"
        return f"exit status {self.exit_code}"


# ---- events (facts, posted to the owner's queue) ----


@attrs.frozen(slots=True)
class ProcessExited:
    process: str
    run: int
    pid: int
    status: ExitStatus
    at: float  # time.monotonic()


@attrs.frozen(slots=True)
class HealthChecked:
    attempt: Attempt
    latency_secs: float
    at: float


@attrs.frozen(slots=True)
class ControlReply:
    """One answer to an operator's request: `ok` (accepted, or what was asked happened),
    `done` (the last answer to this request), and the facts that go with it."""

    ok: bool
    done: bool
    message: str
    state: str | None = None  # the task's state, in the last answer to a kill
    process: str | None = None
    run: int | None = None  # the new run, in the last answer to a restart
    pid: int | None = None


Replier = Callable[[ControlReply], None]  # must not block: it writes to a socket or a list


@attrs.frozen(slots=True)
class KillRequested:
    reason: str
    grace_secs: float | None = None  # None: the task's finalization_wait
    at: float = 0.0
    use_lifecycle: bool = True  # False: straight to SIGTERM (e.g. SHUTDOWN with a short grace)
    immediate: bool = False  # True: SIGKILL now, skip every wait and the final processes
    # SIGKILL whatever still runs, the final processes too, at this time (`time.monotonic()`;
    # None: no such bound): a SHUTDOWN's grace end, kept by the owner as its other deadlines
    kill_all_at: float | None = None
    reply: Replier | None = attrs.field(default=None, eq=False)  # an operator waits for the end


@attrs.frozen(slots=True)
class RestartRequested:
    """An operator asked for a new run of one process (`stoker restart`)."""

    process: str
    at: float
    reply: Replier | None = attrs.field(default=None, eq=False)


@attrs.frozen(slots=True)
class LifecycleDone:
    """The lifecycle endpoints' stage of a kill is over; `summary` says how it ended."""

    summary: str
    at: float


@attrs.frozen(slots=True)
class LifecycleProgress:
    """A lifecycle endpoint answered (or not); `detail` says how and what the kill waits for."""

    detail: str
    at: float


@attrs.frozen(slots=True)
class DaemonsExited:
    """A process of the task's was reaped while daemons its runs left were kept: one of
    them may be gone (the owner asks the process port)."""

    at: float


@attrs.frozen(slots=True)
class WatchdogRestarted:
    """The task's watchdog died and another was started (on the reaper's thread): the owner
    steps, so that `.stoker/held.json` names the new one at once, not at the next event of
    a task that may stay idle for hours."""

    pid: int
    at: float


@attrs.frozen(slots=True)
class DiskSampled:
    """One sample of the sandbox's usage, posted to the owner by the disk check's sampling
    thread (`executor/task/diskwatch.py`). `used_bytes` None: no sample could be made
    (`error` says why)."""

    used_bytes: int | None
    files: int = 0  # inodes counted (a hard-linked one once)
    unreadable: int = 0  # directories that could not be read (their contents not counted)
    secs: float = 0.0  # how long the walk took
    error: str = ""


@attrs.frozen(slots=True)
class TimerFired:
    """Wakes the owner at a deadline it asked for; carries nothing."""

    at: float


# ---- commands (what the pure machines ask the shell to do) ----


@attrs.frozen(slots=True)
class StartRun:
    process: str
    run: int


@attrs.frozen(slots=True)
class SignalRun:
    """Signal every process of one run's tree (group, descendants, run marker)."""

    process: str
    run: int
    signal: int


# ---- transitions (one state change each: the owner checkpoints, logs and reports it) ----


@attrs.frozen(slots=True)
class ProcessTransition:
    """A process changed state. `run` is None for a process that never started; `outcome`
    is set when the change ends a run (a restart, or the process's state for good)."""

    process: str
    run: int | None
    from_: ProcessState
    to: ProcessState
    reason: str
    outcome: RunOutcome | None = None


@attrs.frozen(slots=True)
class PhaseTransition:
    """The supervisor's phase of the task changed (ACTIVE, CLEANING, FINALIZING, ...)."""

    from_: TaskPhase
    to: TaskPhase
    reason: str


# The words that begin the reason of a task a failed health check kills (its KILLING and its
# end): the readers tell by them that the check ended the task (`failed_by_health_check`).
HEALTH_CHECK_FAILED = "health check failed"


@attrs.frozen(slots=True)
class TaskTransition:
    """The task's state changed (what the world sees, plus NEW and KILLING). `ends_as`: to
    KILLING, how the kill ends the task (FAILED or KILLED: its cause), which the checkpoint
    keeps so that a reader knows it when the supervisor dies before the end."""

    from_: TaskStage
    to: TaskStage
    reason: str
    ends_as: TaskState | None = None


@attrs.frozen(slots=True)
class HealthTransition:
    """One health-check attempt was judged: the health state before and after it (often
    the same), the attempt's 1-based number and outcome, and the verdict's reason."""

    from_: HealthState
    to: HealthState
    attempt: int
    outcome: AttemptOutcome
    reason: str


@attrs.frozen(slots=True)
class KillStep:
    """A step of a staged kill and what the kill now waits for, for whoever shows the stop
    (`stoker run`'s console). `stage`: `lifecycle`, `signals` or `now` (every wait skipped),
    or `announcer` (the ServerSet's leave, or the session's close, still waiting for ZooKeeper).
    Logged, not checkpointed: the task's and the processes' transitions tell the story."""

    stage: str
    reason: str


Transition = ProcessTransition | PhaseTransition | TaskTransition | HealthTransition | KillStep
