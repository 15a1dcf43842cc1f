"""`stoker executor`: the driver's callbacks (pymesos names) wired to one TaskOwner.

The agent's LAUNCH becomes a task run on its own thread: decode TaskInfo.data (Stoker's task
document or Aurora's AssignedTask), resolve ports, bind templates (`launch.py`), decide who
the processes run as (an Aurora task as its role when the executor is root, as Thermos does,
in a sandbox given to that user; anything else as the executor's user), then
TaskOwner.run() with a reporter that turns every task-level update into a Mesos status
update (and, with --announcer-ensemble, the task's ServerSet announcement in ZooKeeper).
Any error before the owner starts becomes TASK_FAILED with the message (no process starts).
KILL and SHUTDOWN become kill requests; the process exits once the terminal update is
acknowledged, or after a bounded wait. Its main thread, signals and exit status: `process.py`.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from config.document import MAX_DOCUMENT_BYTES
from config.executorsettings import ExecutorSettings
from config.words import quoted
from executor.events import TaskState
from executor.host.session import OPERATOR_KILL
from executor.logs import log_event, no_room, start_thread
from executor.mesos.driver import ExecutorDriver
from executor.mesos.launch import LaunchError, TaskLaunch, prepare_launch
from executor.mesos.recordio import MAX_RECORD_BYTES
from executor.mesos.reporter import MesosReporter
from executor.mesos.wire import task_id
from executor.task.owner import TaskOwner
from executor.task.wiring import (
    ExitBy,
    RunAs,
    UnknownUser,
    current_user,
    give_sandbox,
    keep_logs_readable,
    load_announcer,
    owner_for,
    user_named,
)

if TYPE_CHECKING:
    from config.spec import JobSpec
    from executor.mesos.imagetask import ImageTask
    from executor.task.serverset import Announcement

logger = logging.getLogger(__name__)

SHUTDOWN_MARGIN_SECS = 1.0  # kill this much before the agent's shutdown grace ends
EXIT_MARGIN_SECS = 0.5  # the close's waits end this much before it: for the last ACK and the exit
REASON_TASK_INVALID = "REASON_TASK_INVALID"
LATE = "the executor is exiting: no task was launched within its --launch-timeout"
GROUP_REFUSED = "LAUNCH_GROUP is not supported by Stoker: launch each task with LAUNCH and a task document"


@attrs.frozen(slots=True)
class PendingKill:
    """A KILL, SHUTDOWN or `stoker kill` that came before the owner existed; applied once it
    does, each in its turn (the first decides how the task ends, later ones only hasten it)."""

    reason: str
    grace_secs: float | None
    use_lifecycle: bool
    kill_all_at: float | None = None  # SIGKILL what still runs then, final processes too


class StokerExecutor:
    """The callbacks. Each returns quickly: real work happens on the task thread."""

    def __init__(self, settings: ExecutorSettings, task_env: dict[str, str], *,
                 on_done: Callable[[], None], on_launched: Callable[[], None] = lambda: None) -> None:
        self._settings, self._env = settings, task_env
        # called when the task is over (or there will be none); once, when a LAUNCH's task is taken
        self._on_done, self._on_launched = on_done, on_launched
        self._lock = threading.Lock()  # guards the few fields shared with the driver thread
        self._task_id: str | None = None
        self._owner: TaskOwner | None = None
        self._pending_kills: list[PendingKill] = []  # in the order they came
        self._launching = False  # a LAUNCH's task thread runs: its owner is made or soon will be
        self._timed_out = False  # --launch-timeout ran out before any LAUNCH: none is taken now
        self._agent_hostname = settings.hostname or "localhost"
        self._framework_user: str | None = None
        self.shutdown_at: float | None = None  # the first SHUTDOWN's (or stop signal's)
        self._exit = ExitBy()  # the task's close ends its waits by it, set then (`exit_by`)
        self.internal_error = False  # the task thread failed (a bug)
        # ... or the host had no thread, memory or descriptor for it (`no_room`): raised again
        # once the executor is done, for the entry point's one line (exit 2)
        self.cannot_go_on: Exception | None = None

    # ---- driver callbacks ----

    def registered(self, driver: ExecutorDriver, executor_info: dict[str, Any],
                   framework_info: dict[str, Any], agent_info: dict[str, Any]) -> None:
        if not self._settings.hostname:  # STOKER_HOSTNAME / --hostname wins over the agent's
            self._agent_hostname = agent_info.get("hostname") or self._agent_hostname
        self._framework_user = framework_info.get("user") or None
        log_event(logger, logging.INFO, "registered", agent=agent_info.get("id", {}).get("value"),
                  hostname=self._agent_hostname, framework=framework_info.get("name"))

    def reregistered(self, driver: ExecutorDriver, agent_info: dict[str, Any]) -> None:
        log_event(logger, logging.INFO, "reregistered", agent=agent_info.get("id", {}).get("value"))

    def disconnected(self, driver: ExecutorDriver) -> None:
        # DEBUG: the driver's `mesos_disconnected` said it, with the reason, at WARNING
        log_event(logger, logging.DEBUG, "disconnected", task_id=self._task_id)

    def launchTask(self, driver: ExecutorDriver, task_info: dict[str, Any]) -> None:
        tid = task_id(task_info)  # the driver's parser let in no LAUNCH without one (`wire._parse_launch`)
        current = self._claim(tid)
        if current == tid:
            return
        if current is not None:
            message = LATE if self._timed_out else f"one task per executor: task {current} is already running here"
            driver.send_status_update(tid, TaskState.FAILED, message, reason=REASON_TASK_INVALID)
            log_event(logger, logging.WARNING, "launch_rejected", task_id=tid, reason=message)
            return
        log_event(logger, logging.INFO, "launch", task_id=tid, name=task_info.get("name"))
        self._on_launched()
        thread = threading.Thread(target=self._run_task, args=(driver, task_info, tid),
                                  name=f"task-{tid}", daemon=True)
        try:
            self._launching = True
            start_thread(thread)
        except RuntimeError as exc:  # a full pids cgroup, no memory: the task cannot run here
            self._launching = False
            message = f"executor error: the task's thread could not start ({exc}); nothing started"
            log_event(logger, logging.ERROR, "launch_failed", task_id=tid, reason=message)
            driver.send_status_update(tid, TaskState.FAILED, message)
            self._on_done()

    def launchTooLarge(self, driver: ExecutorDriver, task_id: str, size_bytes: int) -> None:
        """A LAUNCH too large to read (docs/mesos.md §4) fails its task, naming the size."""
        message = (f"invalid task: its LAUNCH event is {size_bytes} bytes, larger than the "
                   f"{MAX_RECORD_BYTES} bytes an event may have (a task document is at most "
                   f"{MAX_DOCUMENT_BYTES} bytes)")
        current = self._claim(task_id)
        if current == task_id:
            return
        log_event(logger, logging.ERROR, "launch_failed", task_id=task_id, reason=message)
        driver.send_status_update(task_id, TaskState.FAILED, message, reason=REASON_TASK_INVALID)
        if current is None:
            self._on_done()  # no task will run here

    def launchTaskGroup(self, driver: ExecutorDriver, task_group: dict[str, Any]) -> None:
        """Every task of the group fails (docs/mesos.md §9); with no task here, it exits."""
        tasks = task_group.get("tasks", [])
        with self._lock:
            current = self._task_id
        # each named once (was: an update each time), never the running task's; the parser let in no task without an id
        named = list(dict.fromkeys(task_id(info) for info in tasks))
        refused = [tid for tid in named if tid != current]
        for tid in refused:
            driver.send_status_update(tid, TaskState.FAILED, GROUP_REFUSED, reason=REASON_TASK_INVALID)
        log_event(logger, logging.WARNING, "launch_group_rejected", tasks=len(refused), running=current if current in named else None)
        if current is None:
            self._on_done()

    def killTask(self, driver: ExecutorDriver, task_id: str, grace_secs: float | None = None) -> None:
        if task_id != self._task_id:
            log_event(logger, logging.WARNING, "kill_ignored", task_id=task_id,
                      reason=f"unknown task; this executor runs {self._task_id}")
            return
        log_event(logger, logging.INFO, "kill", task_id=task_id, grace_secs=grace_secs)
        self._kill(PendingKill("killed by the agent (KILL)", grace_secs, use_lifecycle=True))

    def frameworkMessage(self, driver: ExecutorDriver, data: bytes) -> None:
        log_event(logger, logging.INFO, "framework_message", bytes=len(data))

    def shutdown(self, driver: ExecutorDriver, *, cause: str | None = None) -> None:
        """SHUTDOWN (a stop signal: `cause`; the driver giving up on the agent: its `ending`):
        kill the task without the lifecycle endpoints within the agent's grace less
        `SHUTDOWN_MARGIN_SECS`, then SIGKILL what still runs, final processes included
        (`kill_all_at`, a deadline the owner keeps), so that TASK_KILLED reaches the agent before
        it destroys the container (docs/mesos.md §16). A second (a signal after SHUTDOWN) counts
        from the first, as the agent does. One step under the lock: a SHUTDOWN (the driver's
        thread) and a signal (the main thread) at once both saw none yet, and the later write
        won (the grace counted from the second)."""
        with self._lock:
            now = time.monotonic()
            shutdown_at = self.shutdown_at
            first = shutdown_at is None
            if shutdown_at is None:
                self.shutdown_at = shutdown_at = now
        kill_all_at = shutdown_at + max(0.0, self._settings.shutdown_grace_secs - SHUTDOWN_MARGIN_SECS)
        ending = None if driver.shutdown_received else driver.ending  # a lost agent's: why
        reason = f"executor shutting down ({cause or (ending.value if ending else 'SHUTDOWN')})"
        if first:  # (an image task's ask of its containerizer, ended by it, says `reason` too)
            self._exit.set(now + self._settings.shutdown_grace_secs - EXIT_MARGIN_SECS, kill_all_at, reason)
        grace = max(0.0, kill_all_at - now)
        log_event(logger, logging.INFO, "shutdown", task_id=self._task_id, kill_grace_secs=round(grace, 3))
        if self._task_id is None:
            self._on_done()
            return
        self._kill(PendingKill(reason, grace, use_lifecycle=False, kill_all_at=kill_all_at))

    def error(self, driver: ExecutorDriver, message: str) -> None:  # the driver said it, at ERROR
        log_event(logger, logging.DEBUG, "driver_error", message=message)

    # ---- the task ----

    def exit_by(self) -> float | None:
        """When this process must be gone (`time.monotonic()`), after SHUTDOWN (or a stop
        signal): the agent's shutdown grace, counted from the first, less `EXIT_MARGIN_SECS`;
        the agent destroys the container once it is over. None before either: no bound. The
        task's close is handed the same (`ExitBy`), and ends its waits by it, set before the
        close or while it waits."""
        return self._exit()

    def launch_timed_out(self) -> bool:
        """--launch-timeout ran out: True when no LAUNCH came (none is taken from now on)."""
        with self._lock:
            if self._task_id is not None:
                return False
            self._task_id, self._timed_out = "(none: the launch timeout ran out)", True
        return True

    def _claim(self, tid: str) -> str | None:
        """Takes the one task slot for `tid`: None when it did, else the task holding it.
        For `tid` itself (a duplicate LAUNCH: an agent's retry, or forged) that is logged;
        it gets no answer, as any answer would be an update for the running task."""
        with self._lock:
            current = self._task_id
            if current is None:
                self._task_id = tid
        if current == tid:
            log_event(logger, logging.WARNING, "launch_duplicate", task_id=tid,
                      reason="this task is already running here; the LAUNCH is ignored")
        return current

    def operator_kill(self, reached: bool, grace_secs: float | None) -> str | None:
        """`stoker kill` (the session's hook, on its control thread: it only sets and posts)
        that no owner listening got, while a LAUNCH's task is being prepared or its owner
        starts: it waits for the owner, as an agent's KILL that came then does, and the task
        stops before it starts anything (the operator heard "no task is running", and the
        task started). None when no task is on its way."""
        if reached:
            return None
        with self._lock:
            owner = self._owner
            if not self._launching or (owner is not None and owner.final_update is not None):
                return None  # none yet, or the task has ended
            if owner is None:  # after an agent's KILL or SHUTDOWN waiting already, if one is
                self._pending_kills.append(PendingKill(OPERATOR_KILL, grace_secs, True))
        if owner is not None:
            owner.request_kill(OPERATOR_KILL, grace_secs)
        return "the task was starting; it stops"

    def _kill(self, kill: PendingKill) -> None:
        with self._lock:
            owner = self._owner
            if owner is None:
                self._pending_kills.append(kill)
                return
        owner.request_kill(kill.reason, kill.grace_secs, use_lifecycle=kill.use_lifecycle,
                           kill_all_at=kill.kill_all_at)

    def _prepare(self, task_info: dict[str, Any], tid: str) -> TaskLaunch:
        return prepare_launch(task_info, task_id=tid, hostname=self._agent_hostname,
                              framework_user=self._framework_user)

    def _run_as(self, launch: TaskLaunch) -> RunAs:
        """Who the processes run as (docs/aurora.md §13): an Aurora task as its role when the
        executor is root (not a Docker task, not --nosetuid), in a sandbox given to the role;
        with --execute-as-user, any task but a Docker one as that user instead (--nosetuid
        wins, as in Thermos); anything else as the executor's own user. Raises LaunchError."""
        me = current_user()
        aurora = launch.aurora
        docker = aurora is not None and aurora.docker
        override = self._settings.execute_as_user
        label = launch.spec.label
        if aurora is None and override is None:
            return me
        if docker or self._settings.nosetuid or (override is None and me.uid != 0) or override == me.name:
            log_event(logger, logging.INFO, "run_as", task=label, user=me.name, uid=me.uid,
                      reason=self._why_not_switch(docker, launch.role, me))
            return me
        name, why = (override, "--execute-as-user") if override is not None else (
            launch.role, "the job's role, as Thermos runs it")
        user = self._user(name, override is not None)
        if me.uid != 0:
            raise LaunchError(f"--execute-as-user={override}: the executor runs as {me.name}, not root, "
                              f"so it cannot run the task as {override}")
        try:
            give_sandbox(Path(self._settings.sandbox), user)
        except OSError as exc:
            raise LaunchError(f"cannot give the sandbox {self._settings.sandbox} to {user.name}: "
                              f"{exc.strerror or exc}") from None
        log_event(logger, logging.INFO, "run_as", task=label, user=user.name, uid=user.uid, gid=user.gid,
                  groups=",".join(map(str, user.groups)), reason=why)
        return attrs.evolve(user, umask=keep_logs_readable())

    @staticmethod
    def _user(name: str, override: bool) -> RunAs:
        try:
            return user_named(name)
        except UnknownUser as exc:
            if override:
                raise LaunchError(f"--execute-as-user={name}: {exc}") from None
            raise LaunchError(f"invalid task: the job's role {quoted(name)} is the user the task runs as, "
                              f"and {exc}") from None

    def _why_not_switch(self, docker: bool, role: str, me: RunAs) -> str:
        if docker:
            return "a Docker task runs as the image's user, as with Thermos"
        if self._settings.nosetuid:
            override = self._settings.execute_as_user
            also = f" nor as --execute-as-user={override} (--nosetuid wins, as in Thermos)" if override else ""
            return f"--nosetuid: not as the role {quoted(role)}{also}"
        if self._settings.execute_as_user is not None:
            return "--execute-as-user names the executor's own user"
        if me.name == role:
            return "the executor already runs as the job's role"
        return f"the executor is not root, so it runs the task as itself, not as the role {quoted(role)}"

    def _announcement(self, launch: TaskLaunch) -> Announcement | None:
        """Where the task announces itself (README "Service discovery"): with
        --announcer-ensemble and the job's `announce`, else None (without loading the
        ServerSet's modules). Raises LaunchError."""
        if launch.spec.announce is None or self._settings.announcer_ensemble is None:
            return None
        from executor.task.serverset import AnnounceError, plan_announcement

        try:
            announcement = plan_announcement(launch.spec, launch.spec.announce, self._settings.announcer,
                                             launch.hostname)
            if announcement is not None:
                load_announcer()
        except AnnounceError as exc:
            raise LaunchError(f"invalid task: {exc}") from None
        return announcement

    def _image(self, launch: TaskLaunch, user: RunAs, task_info: dict[str, Any]) -> ImageTask | None:
        """A filesystem-image task's containerizer and prepared sandbox (docs/aurora.md §13;
        its modules load only then); None for any other task. Raises LaunchError."""
        if launch.aurora is None or not launch.aurora.image:
            return None
        from executor.mesos.imagetask import ImageSettings, executor_volumes, start_image_task

        s = self._settings
        image = start_image_task(ImageSettings(s.mesos_containerizer_path, s.sandbox_mount_point, not s.no_create_user),
                                 sandbox=Path(s.sandbox), mesos_directory=self._env.get("MESOS_DIRECTORY"),
                                 run_as=user, volumes=executor_volumes(task_info), exit_by=self._exit)
        for note in image.sandbox.notes:
            log_event(logger, logging.INFO, "image_sandbox", task=launch.spec.label, reason=note)
        log_event(logger, logging.INFO, "image_task", task=launch.spec.label, rootfs=image.wrap.rootfs,
                  containerizer=image.wrap.path, launch_info=image.wrap.launch_info,
                  reason="every process and shell health check runs inside the image through mesos-containerizer")
        return image

    @staticmethod
    def _release(image: ImageTask, tid: str) -> None:
        count, problems = image.release()
        for problem in problems:
            log_event(logger, logging.WARNING, "image_sandbox", task_id=tid, reason=problem)
        if not problems:
            log_event(logger, logging.INFO, "image_sandbox", task_id=tid,
                      reason=f"the task is over: detached the {count} mounts made in its filesystem image")

    def _disk_check_secs(self) -> float | None:
        s = self._settings
        return s.disk_check_interval_secs if s.disk_limit else None

    @staticmethod
    def _check_as(user: RunAs) -> RunAs:
        """--nosetuid-health-checks: the executor's own user, with the umask the task's
        processes start with (the agent's, not the one `keep_logs_readable` relaxed), as
        Thermos' checks run in its executor."""
        return attrs.evolve(current_user(), umask=user.umask)

    def _task_env(self, user: RunAs) -> dict[str, str]:
        env = dict(self._env)
        env.update(HOME=str(Path(self._settings.sandbox).absolute()), USER=user.name, LOGNAME=user.name)
        return env

    def _owner_for(self, prepared: TaskLaunch, spec: JobSpec, user: RunAs, reporter: MesosReporter,
                   announcement: Announcement | None, image: ImageTask | None) -> TaskOwner:
        """The task's owner, made the one KILLs go to (the kills that came meanwhile applied, in turn)."""
        s = self._settings
        owner = owner_for(spec, Path(s.sandbox), self._task_env(user), reporter,
                          kill_grace_secs=prepared.kill_grace_secs, run_as=user,
                          check_as=self._check_as(user) if s.nosetuid_health_checks else None,
                          stop_timeout_secs=s.stop_timeout_secs, cgroups=s.cgroups, announcement=announcement,
                          disk_check_secs=self._disk_check_secs(), under_agent=True,
                          wrap=image.wrap if image is not None else None, exit_by=self._exit)
        with self._lock:  # posted under it: a kill that comes next goes after them
            self._owner = owner
            # a SHUTDOWN's grace end bounds each of them, those before it too: a KILL taken past
            # that end must not start the final processes the bound's SIGKILL would cut at once
            bound = min((p.kill_all_at for p in self._pending_kills if p.kill_all_at is not None), default=None)
            for pending in self._pending_kills:
                owner.request_kill(pending.reason, pending.grace_secs, use_lifecycle=pending.use_lifecycle,
                                   kill_all_at=bound)
        return owner

    def _run_task(self, driver: ExecutorDriver, task_info: dict[str, Any], tid: str) -> None:
        reporter = owner = image = None
        try:
            try:
                prepared = self._prepare(task_info, tid)
                user = self._run_as(prepared)
                announcement = self._announcement(prepared)
                image = self._image(prepared, user, task_info)
            except LaunchError as exc:
                log_event(logger, logging.ERROR, "launch_failed", task_id=tid, reason=str(exc))
                driver.send_status_update(tid, TaskState.FAILED, str(exc), reason=exc.reason)
                return
            spec = prepared.spec.with_logger_defaults(self._settings.logger_defaults)
            for warning in spec.warnings:
                log_event(logger, logging.WARNING, "task_warning", task=spec.label, reason=warning)
            reporter = MesosReporter(driver, tid, spec.label)
            owner = self._owner_for(prepared, spec, user, reporter, announcement, image)
            final = owner.run()
            log_event(logger, logging.INFO, "task_done", task=spec.label, state=final.state.value,
                      reason=final.message)
        except Exception as exc:  # last resort: report, never die silently
            self._task_failed(driver, tid, exc, owner is not None, reporter is not None and reporter.ended)
        finally:
            if image is not None:
                self._release(image, tid)
            with self._lock:
                self._launching = False
            self._on_done()

    def _task_failed(self, driver: ExecutorDriver, tid: str, exc: Exception, owned: bool,
                     reported: bool) -> None:
        """The task thread's error, `owned`: the owner's (it logged it and stopped the processes),
        `reported`: its terminal update sent (`MesosReporter.ended`). One the host's (no thread,
        memory or descriptor: `no_room`) is kept for the entry point's `stoker: error: cannot go
        on` line, exit 2 (was: exit 1 and `executor_internal_error error="MemoryError: "`, a bug's,
        for a task the owner had ended with its one line); anything else is a bug's, exit 1."""
        why = no_room(exc)
        if why is not None:
            self.cannot_go_on = exc
            reason = f"the task could not go on: {why}"
            if not owned:
                log_event(logger, logging.ERROR, "task_cannot_go_on", task_id=tid, reason=reason)
        else:
            self.internal_error = True
            reason = f"executor internal error: {type(exc).__name__}: {exc}"
            log_event(logger, logging.ERROR, "executor_internal_error", task_id=tid,
                      error=f"{type(exc).__name__}: {exc}", exc_info=not owned)
        if not reported:
            driver.send_status_update(tid, TaskState.FAILED, reason)

