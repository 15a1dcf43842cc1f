"""`owner_for`: a TaskOwner wired to the real adapters. The one place that does it.

Plugs into the owner's ports (`executor/task/ports.py`): the process supervisor
(`executor/procs/supervisor.py`), posting exits to the owner's queue; the checkpoint file,
opened when the task starts, with the bound task written beside it
(`executor/task/definition.py`) and its reservation (`executor/task/usagefile.py`, where
the disk-limit check's samples go too); the health loop with the job's checker (shell checks run
through the supervisor, so its one reaper reaps them); the lifecycle endpoints of a kill;
the disk-limit check (`executor/task/diskwatch.py`, imported only for a task that has one);
the host session (`executor/host/session.py`: the sandbox lock, the registry entry, the
control socket), joined when the task starts and let go when it ends (the front-end may
have opened it first: `stoker run` does, and so does `stoker executor`'s command line); and,
for a task that announces itself, the ServerSet announcer (`executor/task/announcer.py`),
imported only then, since it loads the ZooKeeper client.
`stoker run` (`executor/local/`) and `stoker executor` (`executor/mesos/`) both call it; the
front-ends also get from here who a task's processes may run as (`executor/procs/identity.py`),
and the reaper (`executor/procs/reaper.py`) kept running between two tasks in a PID
namespace's init (`reaping_as_init`: a container's orphans are reaped then too), and whether a
task's supervisor holds it (`reaper_in_use`: no front-end waits for a child of its own then).
"""
from __future__ import annotations

import contextlib
import logging
import os
from _queue import SimpleQueue  # `queue`'s own (its module and `heapq`: Queue classes)
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from config.spec import CheckKind, JobSpec
from executor.host.sandbox import remove_stale_temps
from executor.host.session import HostSession
from executor.logs import log_event, start_thread
from executor.procs import fdlimit
from executor.procs.exitby import ExitBy as ExitBy  # (`stoker executor`'s)
from executor.procs.identity import (
    RunAs,
    UnknownUser,
    current_user,
    give_sandbox,
    keep_logs_readable,
    user_named,
)
from executor.procs.reaper import Reaper
from executor.procs.sandboxfs import readied as readied  # (`executor/local/attempts.py`'s archive)
from executor.procs.supervisor import Supervisor
from executor.task.checkpoint import CheckpointWriter, NoCheckpoint, open_writer
from executor.task.definition import write_definition
from executor.task.killing import StopBounds
from executor.task.owner import TaskOwner
from executor.task.ports import OwnerPorts
from executor.task.usagefile import UsageWriter

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from executor.events import DiskSampled
    from executor.host.early import EarlyStart
    from executor.procs.spawn import Wrap
    from executor.task.ports import (
        Announcer,
        DiskChecks,
        HealthChecks,
        HealthStarter,
        Lifecycle,
        LifecycleStarter,
        Reporter,
    )
    from executor.task.serverset import Announcement
    from healthcheck.checkers import Checker
    from healthcheck.policy import Attempt

__all__ = ["RunAs", "UnknownUser", "current_user", "give_sandbox", "keep_logs_readable", "load_announcer", "owner_for",
           "user_named"]

SNOOZE_FILE = ".healthchecksnooze"


def owner_for(job: JobSpec, sandbox: Path, env: Mapping[str, str], reporter: Reporter, *,
              kill_grace_secs: float | None = None, stop_within_secs: float | None = None,
              stop_timeout_secs: float | None = None,
              run_cap: int | None = 100, run_as: RunAs | None = None, check_as: RunAs | None = None,
              cgroups: str = "auto", announcement: Announcement | None = None,
              early: EarlyStart | None = None, disk_check_secs: float | None = None,
              under_agent: bool = False, wrap: Wrap | None = None,
              heartbeat: Callable[[], float] | None = None,
              exit_by: ExitBy | None = None) -> TaskOwner:
    """The owner of `job` in `sandbox`, its processes started with `env` (no secrets in it)
    as `run_as` (None: as this process), its shell health checks as `check_as` (None: as
    `run_as`). `kill_grace_secs`: between SIGTERM and SIGKILL when
    a kill names none (None: the task's finalization_wait); `stop_within_secs`: a bound on
    every stop, lifecycle waits included (None: none); `stop_timeout_secs`: the outer bound on
    every stop, final processes included (None: none); `run_cap`: failed or lost runs per
    process (None: no cap); `cgroups`: the STOKER_CGROUPS setting (auto, off, or a directory
    to make the task's cgroup under); `announcement`: where the task announces itself in
    ZooKeeper once RUNNING (`serverset.plan_announcement`; None: it does not); `early`: the
    runs an early start forked (`executor/cli/launch.py`), for the supervisor to adopt;
    `disk_check_secs`: measure the sandbox this often and fail the task once it holds more than
    its `Resources.disk` (None: no check); `under_agent`: the agent's own files are in the
    sandbox (`stoker executor`), and are not counted; `wrap`: what every run and shell health
    check is started through (a filesystem-image task's `mesos-containerizer launch`);
    `heartbeat`: called at each turn of the owner's loop, returns when next (systemd's watchdog);
    `exit_by`: when this process must be gone, set by the front end (`Supervisor`; None: never)."""
    sandbox = Path(sandbox)
    events: SimpleQueue[object] = SimpleQueue()
    fdlimit.fit((p.logger for p in job.task.processes), job.label)  # before a descriptor is taken
    procs, running_early = _supervisor(job, sandbox, env, events.put, run_as=run_as, check_as=check_as,
                                       cgroups=cgroups, early=early, wrap=wrap, exit_by=exit_by)
    usage = _usage(job, sandbox, procs.marker, disk_check_secs)
    host = _SessionPort(sandbox)
    ports = OwnerPorts(
        procs=procs, open_checkpoint=lambda: _open_checkpoint(sandbox, job, usage, host), reporter=reporter,
        checker=_checker(job, procs), start_health=_health_starter(job, sandbox),
        start_lifecycle=_lifecycle_starter(job), host=host,
        announcer=_announcer(announcement, job.label, events.put, exit_by), events=events)
    return TaskOwner(job, ports, sandbox=sandbox,
                     stop=StopBounds(kill_grace_secs, stop_within_secs, stop_timeout_secs, exit_at=exit_by),
                     run_cap=run_cap, running_early=running_early, heartbeat=heartbeat,
                     disk=_disk_watch(job, sandbox, disk_check_secs, under_agent, events.put, usage.sampled))


def _supervisor(job: JobSpec, sandbox: Path, env: Mapping[str, str], post: Callable[[object], None], *,
                run_as: RunAs | None, check_as: RunAs | None, cgroups: str,
                early: EarlyStart | None, wrap: Wrap | None,
                exit_by: ExitBy | None) -> tuple[Supervisor, bool]:
    """The task's process port, handed what an early start forked (its runs, marker and
    watchdog), and whether runs were handed (the owner then adopts them first)."""
    early_runs = early.take_runs() if early is not None else []
    procs = Supervisor(sandbox=sandbox, task_label=job.label, env=env, post=post,
                       run_as=run_as, check_as=check_as, cgroups=cgroups,
                       marker=early.marker if early is not None else None, early_runs=early_runs,
                       early_watchdog=early.take_watchdog() if early is not None else None, wrap=wrap,
                       inherited=early.inherited if early is not None else frozenset(), exit_by=exit_by)
    return procs, bool(early_runs)


def _health_starter(job: JobSpec, sandbox: Path) -> HealthStarter:
    """How the task's health loop starts (the owner starts it once the processes are up);
    `healthcheck.loop` loads then."""

    def start_health(checker: Checker, on_result: Callable[[Attempt, float], None]) -> HealthChecks:
        from healthcheck.loop import HealthLoop

        loop = HealthLoop(checker, job.health.interval_secs, sandbox / SNOOZE_FILE, on_result,
                          start_thread=start_thread, task=job.label)
        loop.start()
        return loop

    return start_health


def _lifecycle_starter(job: JobSpec) -> LifecycleStarter:
    """How a kill's lifecycle endpoints start (`executor/task/lifecycle.py`, loaded then)."""

    def start_lifecycle(within_secs: float | None, progress: Callable[[str], None],
                        done: Callable[[str], None]) -> Lifecycle:
        from executor.task.lifecycle import LifecycleShutdown

        if job.lifecycle is None:
            raise ValueError(f"task {job.label} has no lifecycle endpoints to start")
        return LifecycleShutdown(job.lifecycle, job.label, done, within_secs=within_secs,
                                 progress=progress).start()

    return start_lifecycle


def load_announcer() -> None:
    """Loads the ServerSet announcer, and with it kazoo, for a task that announces: the
    front-ends call it as they decide the announcement, so that an installation without
    kazoo (setup.py requires it, stoker.pyz carries it) refuses the task with the reason
    before anything starts. Raises AnnounceError."""
    try:
        import executor.task.announcer  # noqa: F401
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != "kazoo":
            raise
        from executor.task.serverset import AnnounceError

        raise AnnounceError("announcing in ZooKeeper needs the kazoo package, which this installation "
                            "of Stoker lacks (pip install 'kazoo>=2.9'; stoker.pyz carries it)") from None


def _announcer(announcement: Announcement | None, label: str, post: Callable[[object], None],
               exit_by: ExitBy | None) -> Announcer | None:
    """The task's ServerSet announcer, its leave's and close's waits ending by `exit_by`;
    kazoo is imported here, and only for a task that announces."""
    if announcement is None:
        return None
    from executor.task.announcer import ServerSetAnnouncer

    return ServerSetAnnouncer(announcement, task=label, post=post, exit_by=exit_by)


def _usage(job: JobSpec, sandbox: Path, marker: str, disk_check_secs: float | None) -> UsageWriter:
    """The task's usage file (`usagefile.py`), its disk samples' interval when the task reserves disk."""
    return UsageWriter(sandbox, marker, job.label, job.task,
                       disk_check_secs if job.task.disk_bytes is not None else None)


def _disk_watch(job: JobSpec, sandbox: Path, interval_secs: float | None, under_agent: bool,
                post: Callable[[object], None], record: Callable[[DiskSampled], None]) -> DiskChecks | None:
    """The task's disk-limit check, when asked for and the task reserves disk."""
    if interval_secs is None or job.task.disk_bytes is None:
        return None
    from executor.task.diskwatch import DiskWatch, disk_check

    check = disk_check(sandbox, interval_secs, under_agent=under_agent)
    return DiskWatch(job.label, sandbox, job.task.disk_bytes, check, post, record=record)


def _open_checkpoint(sandbox: Path, job: JobSpec, usage: UsageWriter, host: _SessionPort) -> _TaskFiles:
    """As the task starts (its host session open: `TaskOwner.start`): its definition and its
    reservation beside the checkpoint (for `stoker observe` and `stoker status`), then the
    checkpoint writer, all in the `.stoker` the session pinned and locked, through its fd:
    a task that swapped `.stoker` for a symlink or a directory of its own since redirects
    nothing."""
    stoker_dir = host.stoker_dir()
    try:
        _remove_stale_temps(stoker_dir, job.label)
        write_definition(sandbox, job, stoker_dir)
        usage.start(stoker_dir)
        return _TaskFiles(open_writer(sandbox, job.label, stoker_dir), usage)
    finally:
        os.close(stoker_dir)


def _remove_stale_temps(stoker_dir: int, label: str) -> None:
    """What a supervisor killed (kill -9) as it wrote a file of `.stoker` left: one line."""
    try:
        removed = remove_stale_temps(stoker_dir)
    except OSError:  # not listed: the writes that follow say what fails
        return
    if removed:
        log_event(logger, logging.INFO, "stale_temporaries_removed", task=label, names=" ".join(removed),
                  reason="left by a supervisor killed as it wrote them (between their write and rename)")


class _TaskFiles:
    """The owner's CheckpointSink: the checkpoint's, closing the usage writer with it."""

    def __init__(self, sink: CheckpointWriter | NoCheckpoint, usage: UsageWriter) -> None:
        self._sink, self._usage = sink, usage
        self.append_many, self.replace_beside = sink.append_many, sink.replace_beside
        if isinstance(sink, CheckpointWriter):  # a disk sample says a .stoker renamed away
            usage.after_sample = sink.say_if_moved

    def close(self, ended: bool = False) -> None:
        self._usage.close()
        self._sink.close(ended)


def _checker(job: JobSpec, procs: Supervisor) -> Checker | None:
    """The job's health checker; the checkers are loaded only for a task that has one."""
    if job.health.kind is CheckKind.NONE:
        return None
    from healthcheck.checkers import make_checker

    return make_checker(job.health, procs.run_command)


class _SessionPort:
    """The owner's HostPort: this process's session of the sandbox, for the task's life."""

    def __init__(self, sandbox: Path) -> None:
        self._sandbox = sandbox
        self._session: HostSession | None = None

    def task_started(self, *, task_id: str, job_key: str, label: str, marker: str,
                     post: Callable[[object], None]) -> None:
        # no front end opened it (an owner driven in-process): listed by `task_started`'s write
        self._session = HostSession.open(self._sandbox, register=False)
        self._session.task_started(task_id=task_id, job_key=job_key, label=label,
                                   marker=marker, post=post)

    def stoker_dir(self) -> int:
        """A new fd of the session's pinned `.stoker` (`HostSession.stoker_dir`). Raises
        ValueError before `task_started`, OSError."""
        if self._session is None:
            raise ValueError(f"{self._sandbox}: the task's files are opened before its host session")
        return self._session.stoker_dir()

    def task_ended(self, recorded_end: str = "") -> None:
        session, self._session = self._session, None
        if session is not None:
            session.task_ended(recorded_end)
            session.close()


def reaper_in_use() -> bool:
    """Whether a task's supervisor holds this process's reaper (`Reaper.in_use`): its thread
    would reap a child the caller waits for itself as the task's orphan."""
    return Reaper.in_use()


@contextlib.contextmanager
def reaping_as_init() -> Iterator[None]:
    """The reaper's thread kept running meanwhile, in the init of a PID namespace
    (`stoker run` as a container's main process): every orphan of the namespace re-parents
    to it, what `docker exec` started included, and between two tasks (`stoker run`'s
    restart delay) no supervisor holds the reaper, so they would stay zombies until the next
    task. Elsewhere only the task's own orphans come, and none is left between two tasks."""
    if os.getpid() != 1:
        yield
        return
    reaper = Reaper.acquire()
    try:
        yield
    finally:
        reaper.release()
