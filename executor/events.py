"""Events and commands that cross module boundaries, and the task-level states.

Events are past-tense facts posted to the task owner's queue (`ProcessExited`,
`HealthChecked`, `KillRequested`); commands are imperatives the pure machines hand back
(`StartRun`, `SignalRun`). All are frozen, slotted attrs classes. No I/O here.
"""
from __future__ import annotations

import enum

import attrs

from healthcheck.base import signal_name
from healthcheck.policy import Attempt


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


@attrs.frozen(slots=True)
class ExitStatus:
    """How a run ended: exactly one of `exit_code` and `signal` is set."""

    exit_code: int | None = None
    signal: int | None = None

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
        if self.signal is not None:
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
class KillRequested:
    reason: str
    grace_secs: float | None = None  # None: the task's finalization_wait
    at: float = 0.0
    use_lifecycle: bool = True  # False: straight to SIGTERM (e.g. SHUTDOWN with a short grace)


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


@attrs.frozen(slots=True)
class Transition:
    """One state change, for the owner to checkpoint and log as one line.

    `process` is None for a task-level change.
    """

    process: str | None
    run: int | None
    from_state: str
    to_state: str
    reason: str
