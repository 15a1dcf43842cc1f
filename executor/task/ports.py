"""The collaborators a TaskOwner is given: what it needs of each, as Protocols.

The owner decides nothing itself and does nothing itself: it feeds events to the pure
machines and hands their commands to these ports. `executor/task/wiring.py` plugs in the real
adapters (`procs.Supervisor` for processes, the checkpoint file, the health loop, the disk
check, the lifecycle endpoints, the host session, the ServerSet announcer); tests plug in
fakes that record what they were asked. Protocols, and `OwnerPorts`, the set one owner is
given: no behaviour here.
"""
from __future__ import annotations

from _queue import SimpleQueue  # `queue`'s own (its module and `heapq`: Queue classes)
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from config.spec import ProcessSpec
from executor.events import DiskSampled, Transition
from executor.procs.spawn import SpawnError
from executor.task.membership import AnnouncerView
from executor.task.status import Update

if TYPE_CHECKING:  # loaded only by a task with a health check
    from healthcheck.checkers import Checker, CommandResult
    from healthcheck.policy import Attempt

# what runs: the Protocols below are the type checker's only (a star import of them, listed
# here, raised AttributeError); a module imports them by name under TYPE_CHECKING
__all__ = ["OwnerPorts", "SpawnError"]


# The ports, for the type checker: annotations only (`from __future__ import annotations`),
# so that a supervisor holds none of these classes (a Protocol class is an ABC: 48 KiB for
# the eight, with their functions).
if TYPE_CHECKING:
    class ProcessPort(Protocol):
        """The task's processes (`executor.procs.supervisor.Supervisor` is one). Exits come back
        as `ProcessExited` events posted to the owner's queue, not through this port."""

        @property
        def marker(self) -> str:
            """The STOKER_TASK_MARKER value every process of the task carries."""
            ...

        def start(self) -> None: ...

        @property
        def run_uid(self) -> int:
            """The real uid the task's processes run as."""
            ...

        @property
        def containment(self) -> str:
            """How the task's processes are contained, in words (known once started)."""
            ...

        @property
        def cgroup(self) -> str | None:
            """The task's cgroup directory while there is one (known once started)."""
            ...

        def ready_ahead(self, runs: list[tuple[ProcessSpec, int]]) -> None:
            """The runs the first step will start: make what each needs before its fork (its
            log files) now, while the port's start settles; never raises (a run not readied
            is made ready by its spawn, which says what failed)."""
            ...

        def spawn_many(self, runs: list[tuple[ProcessSpec, int]]) -> Sequence[int | SpawnError]:
            """Fork each (process, run) now: its pid, or the SpawnError that says why not."""
            ...

        def signal_runs(self, runs: list[tuple[str, int]], sig: int) -> int:
            """Signal every process of each (process, run)'s tree; returns how many got it."""
            ...

        def daemons(self) -> bool:
            """Whether daemons the task's runs left (outside their process groups) still live."""

        def signal_daemons(self, sig: int) -> int:
            """Signal those daemons; returns how many were signalled."""

        def run_command(self, command: str, timeout_secs: float) -> CommandResult: ...

        def stop_commands(self, within_secs: float) -> bool:
            """No shell command (a health check's) starts after this; each one running is
            SIGKILLed and waited for up to `within_secs`. True when none is left."""
            ...

        def left_running(self) -> str:
            """What of the task still lives, in words ("" when nothing): at its end, the
            processes of a run given up on after its SIGKILL (held in D state)."""
            ...

        def held(self) -> Mapping[int, int]:
            """What the watchdog holds by pid: pid → start time (`executor/procs/handover.py`)."""
            ...

        @property
        def watchdog_pid(self) -> int | None:
            """The task's watchdog's pid, while one runs (a reader of the figures leaves it out)."""
            ...

        def idle(self) -> float | None:
            """The owner has nothing to do until its next event or deadline: a moment for work
            that would otherwise delay a later one (making the next runs' log directories).
            Returns in how many seconds to call it again at the latest (None: at the next step)."""
            ...

        def stop_begun(self) -> None:
            """The task's stop begins (its kill, before its first signal): what the port
            kept for it (room in the address space) is its now."""
            ...

        def close(self) -> None:
            """Kill whatever of the task still runs and release everything."""
            ...


    class CheckpointSink(Protocol):
        """Where the owner's records go (the checkpoint file): JSON objects, written in order."""

        def append_many(self, records: Iterable[Mapping[str, Any]]) -> None:
            """Write the records of one step, durably; raises OSError (none of them was kept:
            they may be written again) or ValueError (closed)."""
            ...

        def replace_beside(self, name: str, data: bytes) -> None:
            """Make `data` the file `name` beside the checkpoint, through the directory the
            checkpoint was opened in (never by path); raises OSError or ValueError (closed)."""
            ...

        def close(self, ended: bool = False) -> None:
            """Close it; `ended`: the task's terminal record is written (it may be folded
            once more for its readers first)."""
            ...


    class Reporter(Protocol):
        """Who hears of the task: `stoker run`'s console, or the Mesos agent."""

        def on_transition(self, t: Transition) -> None:
            """One state change (already logged and checkpointed by the owner)."""
            ...

        def on_update(self, u: Update) -> None:
            """A task-level status to report (STARTING, RUNNING, and the terminal one)."""
            ...


    class HostPort(Protocol):
        """The host's view of the task (`executor.host.session.HostSession`): its entry in the
        host registry and the control socket through which operators reach the owner."""

        def task_started(self, *, task_id: str, job_key: str, label: str, marker: str,
                         post: Callable[[object], None]) -> None:
            """List the task, and post operators' requests (`KillRequested`,
            `RestartRequested`) to the owner's queue through `post`. May raise
            `executor.host.lock.SandboxBusy`: the task must not start."""
            ...

        def task_ended(self, recorded_end: str = "") -> None:
            """The owner is done: operators' requests no longer reach it. `recorded_end`:
            the task's terminal state, once its record is in the checkpoint ("": not)."""
            ...


    class HealthChecks(Protocol):
        """The running health loop (`healthcheck.loop.HealthLoop`)."""

        def stop_async(self) -> None: ...

        def stop(self, timeout_secs: float = ...) -> bool: ...


    class DiskChecks(Protocol):
        """The disk-limit check (`executor.task.diskwatch.DiskWatch`): its samples come back as
        `DiskSampled` events posted to the owner's queue."""

        def start(self) -> None:
            """The task's processes run: the first sample now."""
            ...

        def tick(self) -> None:
            """Start the sample that is due, if one is."""
            ...

        def sampled(self, sample: DiskSampled) -> str | None:
            """A sample's result: the reason to fail the task, once it is over its limit."""
            ...

        def deadline_at(self) -> float | None:
            """When the next sample is due (None: not before some other event)."""
            ...

        def stop(self) -> None: ...


    class Lifecycle(Protocol):
        """The running lifecycle endpoints of a kill (`executor.task.lifecycle`)."""

        def regular_processes_gone(self) -> None: ...

        def cancel(self) -> None: ...


    class Announcer(Protocol):
        """The task's ServerSet membership in ZooKeeper (`executor.task.announcer`'s
        `ServerSetAnnouncer`); its changes come back as `AnnouncementChanged` events posted to
        the owner's queue."""

        def join(self) -> None:
            """Be in the ServerSet; returns at once (the member is created in the background)."""
            ...

        def leave(self, timeout_secs: float = ..., waiting: Callable[[float], None] | None = None) -> bool:
            """Leave it; True once the member is gone, False if `timeout_secs` passed first;
            `waiting(secs left)` once, on this thread, when it is not gone at once."""
            ...

        def close(self, timeout_secs: float = ..., waiting: Callable[[float], None] | None = None) -> None:
            """Leave and end the ZooKeeper session (`waiting` as `leave`'s). Final."""
            ...

        def hurry(self) -> None:
            """A kill at once: `leave` and `close` wait no more (from any thread)."""
            ...

        def view(self) -> AnnouncerView: ...

        def overdue(self, now: float) -> bool:
            """The first announcement missed its bound (`now`: the owner's monotonic clock)."""
            ...

        @property
        def first_join_deadline_at(self) -> float | None:
            """When `overdue` may first be true (None until `join`)."""
            ...


    # Start the health loop: each attempt's result and latency go to the callback.
    HealthStarter = Callable[["Checker", Callable[["Attempt", float], None]], HealthChecks]
    # Start the lifecycle endpoints, their waits ending within the given seconds (None: each
    # its configured wait): the first callback gets each endpoint's answer and what the kill
    # waits for, the second a summary when they are done.
    LifecycleStarter = Callable[[float | None, Callable[[str], None], Callable[[str], None]], Lifecycle]


@attrs.frozen(kw_only=True)
class OwnerPorts:
    """What one `TaskOwner` is plugged into: its task's processes, the checkpoint (opened as
    the task starts), who hears of the task, its health checker (None: no health check) and
    how to start the health loop and a kill's lifecycle endpoints, the host (None: not
    listed, no control socket), the announcer (None: the task does not announce), and the
    queue the adapters' threads post the owner's events to."""

    procs: ProcessPort
    open_checkpoint: Callable[[], CheckpointSink]
    reporter: Reporter
    checker: Checker | None
    start_health: HealthStarter
    start_lifecycle: LifecycleStarter
    host: HostPort | None = None
    announcer: Announcer | None = None
    events: SimpleQueue[object] = attrs.Factory(SimpleQueue)
