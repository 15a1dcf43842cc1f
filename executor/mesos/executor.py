"""`stoker executor`: the driver's callbacks (pymesos names) wired to one TaskOwner.

The agent's LAUNCH becomes a task run on its own thread: decode TaskInfo.data (Stoker's task
document or Aurora's AssignedTask), resolve ports, bind templates (`launch.py`), decide who
the processes run as (an Aurora task as its role when the executor is root, as Thermos does,
in a sandbox given to that user; anything else as the executor's user), then
TaskOwner.run() with a reporter that turns every task-level update into a Mesos status
update (and, with --announcer-ensemble, the task's ServerSet announcement in ZooKeeper).
Any error before the owner starts becomes TASK_FAILED with the message (no process
starts). KILL and SHUTDOWN become kill requests; the process exits once the terminal update
is acknowledged, or after a bounded wait.

The main thread only waits: SIGTERM and SIGINT handlers record the signal, the end of the
task is recorded alike, on one queue `main` blocks on (no polling); a signal acts as SHUTDOWN.

Exit status (`main`'s return value; the agent logs it):

    0  a normal run: the task ended and its updates were acknowledged, or the agent (SHUTDOWN)
       or a signal (SIGTERM, SIGINT) asked the executor to stop, and it did
    1  an internal error (a bug) ended the task or the driver; the log has the traceback
    3  never subscribed: the agent never answered SUBSCRIBED (unreachable, or refusing
       SUBSCRIBE) until the driver gave up, after 5 s without checkpointing and after
       MESOS_RECOVERY_TIMEOUT with it (or until a signal came)
    4  the agent was lost for good after the executor had subscribed: down past
       MESOS_RECOVERY_TIMEOUT, a disconnect with checkpointing off, a resubscription refused
    5  the task ended, but some of its updates were still unacknowledged when the bounded
       wait ran out: the agent may never have got them

(2 is the CLI's: a missing MESOS_* variable or an invalid setting, such as a
MESOS_AGENT_ENDPOINT that is not host:port or a token no HTTP header can carry, before
anything starts.)
"""
from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, assert_never

import attrs

from config.document import MAX_DOCUMENT_BYTES
from config.environment import task_environment
from config.errors import SettingsError
from config.settings import TOKEN_VARIABLE, ExecutorSettings
from executor.events import TaskState
from executor.host.signals import SignalRelay
from executor.logs import log_event
from executor.mesos.driver import ExecutorDriver
from executor.mesos.errors import RemoteProtocolError
from executor.mesos.launch import LaunchError, TaskLaunch, prepare_launch
from executor.mesos.reconnect import Ending
from executor.mesos.recordio import MAX_RECORD_BYTES
from executor.mesos.reporter import MesosReporter
from executor.mesos.transport import BadToken, agent_url
from executor.mesos.wire import task_id
from executor.task.owner import TaskOwner
from executor.task.wiring import RunAs, UnknownUser, current_user, give_sandbox, owner_for, user_named

if TYPE_CHECKING:
    from executor.task.serverset import Announcement

logger = logging.getLogger(__name__)

ACK_WAIT_SECS = 10.0  # bounded wait for the terminal update's acknowledgement
SHUTDOWN_MARGIN_SECS = 1.0  # kill this much before the agent's shutdown grace ends
ACK_MARGIN_SECS = 0.2  # ... and stop waiting for ACKs this much before it ends
REASON_TASK_INVALID = "REASON_TASK_INVALID"
GROUP_REFUSED = "LAUNCH_GROUP is not supported by Stoker: launch each task with LAUNCH and a task document"

EXIT_OK = 0
EXIT_INTERNAL_ERROR = 1
EXIT_NEVER_SUBSCRIBED = 3
EXIT_AGENT_LOST = 4
EXIT_UNACKNOWLEDGED = 5


@attrs.frozen(slots=True)
class PendingKill:
    """A KILL or SHUTDOWN that came before the owner existed; applied once it does."""

    reason: str
    grace_secs: float | None
    use_lifecycle: bool
    immediate: bool = False  # SIGKILL now, the final processes too


class StokerExecutor:
    """The callbacks. Each returns quickly: real work happens on the task thread."""

    def __init__(self, settings: ExecutorSettings, task_env: dict[str, str], *,
                 on_done: Callable[[], None]) -> None:
        self._settings = settings
        self._env = task_env
        self._on_done = on_done  # called when the task is over (or there will be none)
        self._lock = threading.Lock()  # guards the few fields shared with the driver thread
        self._task_id: str | None = None
        self._owner: TaskOwner | None = None
        self._pending_kill: PendingKill | None = None
        self._agent_hostname = settings.hostname or "localhost"
        self._framework_user: str | None = None
        self.shutdown_at: float | None = None
        self.internal_error = False  # the task thread failed (a bug)

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
        log_event(logger, logging.WARNING, "disconnected", task_id=self._task_id)

    def launchTask(self, driver: ExecutorDriver, task_info: dict[str, Any]) -> None:
        try:
            tid = task_id(task_info)
        except RemoteProtocolError as exc:
            logger.error("launch ignored: TaskInfo without a task id: %s", exc)
            return
        current = self._claim(tid)
        if current == tid:
            return
        if current is not None:
            message = f"one task per executor: task {current} is already running here"
            driver.send_status_update(tid, TaskState.FAILED, message, reason=REASON_TASK_INVALID)
            log_event(logger, logging.WARNING, "launch_rejected", task_id=tid, reason=message)
            return
        log_event(logger, logging.INFO, "launch", task_id=tid, name=task_info.get("name"))
        thread = threading.Thread(target=self._run_task, args=(driver, task_info, tid),
                                  name=f"task-{tid}", daemon=True)
        try:
            thread.start()
        except RuntimeError as exc:  # a full pids cgroup, no memory: the task cannot run here
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
        for info in tasks:
            try:
                tid = task_id(info)
            except RemoteProtocolError:
                continue
            if tid == current:  # an update would be about the running task
                continue
            driver.send_status_update(tid, TaskState.FAILED, GROUP_REFUSED, reason=REASON_TASK_INVALID)
        log_event(logger, logging.WARNING, "launch_group_rejected", tasks=len(tasks))
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

    def shutdown(self, driver: ExecutorDriver) -> None:
        grace = max(0.0, self._settings.shutdown_grace_secs - SHUTDOWN_MARGIN_SECS)
        self.shutdown_at = time.monotonic()
        log_event(logger, logging.INFO, "shutdown", task_id=self._task_id, kill_grace_secs=grace)
        if self._task_id is None:
            self._on_done()
            return
        self._kill(PendingKill("executor shutting down (SHUTDOWN)", grace, use_lifecycle=False))
        # The grace bounds SIGTERM to SIGKILL, not the final processes (finalization_wait):
        # what still runs when it is over is SIGKILLed, so that TASK_KILLED reaches the agent
        # before it destroys the container (docs/mesos.md §16).
        deadline = threading.Timer(grace, self._kill, [PendingKill(
            "executor shutting down (SHUTDOWN): its grace is over", 0.0, use_lifecycle=False,
            immediate=True)])
        deadline.daemon = True
        deadline.start()

    def error(self, driver: ExecutorDriver, message: str) -> None:
        log_event(logger, logging.ERROR, "driver_error", message=message)

    # ---- the task ----

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

    def _kill(self, kill: PendingKill) -> None:
        with self._lock:
            owner = self._owner
            if owner is None:
                self._pending_kill = kill
                return
        owner.request_kill(kill.reason, kill.grace_secs, use_lifecycle=kill.use_lifecycle,
                           immediate=kill.immediate)

    def _prepare(self, task_info: dict[str, Any], tid: str) -> TaskLaunch:
        return prepare_launch(task_info, task_id=tid, hostname=self._agent_hostname,
                              framework_user=self._framework_user)

    def _run_as(self, launch: TaskLaunch) -> RunAs:
        """Who the processes run as (docs/aurora.md §13): an Aurora task as its role when the
        executor is root (not a Docker task, not --nosetuid), in a sandbox given to the role;
        anything else as the executor's own user. Raises LaunchError."""
        me = current_user()
        aurora = launch.aurora
        label = launch.spec.label
        if aurora is None:
            return me
        if aurora.docker or self._settings.nosetuid or me.uid != 0:
            log_event(logger, logging.INFO, "run_as", task=label, user=me.name, uid=me.uid,
                      reason=self._why_not_the_role(aurora.docker, aurora.role, me))
            return me
        try:
            user = user_named(aurora.role)
        except UnknownUser as exc:
            raise LaunchError(f"invalid task: the job's role {aurora.role!r} is the user the task runs as, "
                              f"and {exc}") from None
        try:
            give_sandbox(Path(self._settings.sandbox), user)
        except OSError as exc:
            raise LaunchError(f"cannot give the sandbox {self._settings.sandbox} to {user.name}: "
                              f"{exc.strerror or exc}") from None
        log_event(logger, logging.INFO, "run_as", task=label, user=user.name, uid=user.uid, gid=user.gid,
                  groups=",".join(map(str, user.groups)), reason="the job's role, as Thermos runs it")
        return user

    def _why_not_the_role(self, docker: bool, role: str, me: RunAs) -> str:
        if docker:
            return "a Docker task runs as the image's user, as with Thermos"
        if self._settings.nosetuid:
            return f"--nosetuid: not as the role {role!r}"
        if me.name == role:
            return "the executor already runs as the job's role"
        return f"the executor is not root, so it runs the task as itself, not as the role {role!r}"

    def _announcement(self, launch: TaskLaunch) -> Announcement | None:
        """Where the task announces itself (README "Service discovery"): with
        --announcer-ensemble and the job's `announce`, else None (without loading the
        ServerSet's modules). Raises LaunchError."""
        if launch.spec.announce is None or self._settings.announcer_ensemble is None:
            return None
        from executor.task.serverset import AnnounceError, plan_announcement

        try:
            return plan_announcement(launch.spec, launch.spec.announce, self._settings.announcer,
                                     launch.hostname)
        except AnnounceError as exc:
            raise LaunchError(f"invalid task: {exc}") from None

    def _task_env(self, user: RunAs) -> dict[str, str]:
        env = dict(self._env)
        env.update(HOME=str(Path(self._settings.sandbox).absolute()), USER=user.name, LOGNAME=user.name)
        return env

    def _run_task(self, driver: ExecutorDriver, task_info: dict[str, Any], tid: str) -> None:
        reporter = None
        try:
            try:
                prepared = self._prepare(task_info, tid)
                user = self._run_as(prepared)
                announcement = self._announcement(prepared)
            except LaunchError as exc:
                log_event(logger, logging.ERROR, "launch_failed", task_id=tid, reason=str(exc))
                driver.send_status_update(tid, TaskState.FAILED, str(exc), reason=REASON_TASK_INVALID)
                return
            spec = prepared.spec
            for warning in spec.warnings:
                log_event(logger, logging.WARNING, "task_warning", task=spec.label, reason=warning)
            reporter = MesosReporter(driver, tid, spec.label)
            owner = owner_for(spec, Path(self._settings.sandbox), self._task_env(user), reporter,
                              kill_grace_secs=prepared.kill_grace_secs, run_as=user,
                              cgroups=self._settings.cgroups, announcement=announcement)
            with self._lock:
                self._owner = owner
                pending = self._pending_kill
            if pending is not None:
                owner.request_kill(pending.reason, pending.grace_secs, use_lifecycle=pending.use_lifecycle,
                                   immediate=pending.immediate)
            final = owner.run()
            log_event(logger, logging.INFO, "task_done", task=spec.label, state=final.state.value,
                      reason=final.message)
        except Exception as exc:  # last resort: report, never die silently
            self.internal_error = True
            logger.error("task %s: executor internal error: %s: %s", tid, type(exc).__name__, exc,
                         exc_info=True)
            if reporter is None:
                driver.send_status_update(tid, TaskState.FAILED,
                                          f"executor internal error: {type(exc).__name__}: {exc}")
        finally:
            self._on_done()


# ---- the process ----


@attrs.frozen(slots=True)
class TaskDone:
    """The task is over, or there will be none."""


@attrs.frozen(slots=True)
class Signalled:
    signum: int


Wakeup = TaskDone | Signalled


@attrs.frozen(slots=True)
class RunEnd:
    """What decides the exit status (module docstring)."""

    ending: Ending | None  # why the driver stopped; None while it still runs
    ever_subscribed: bool
    shutdown_received: bool  # the agent sent SHUTDOWN
    signalled: bool  # SIGTERM or SIGINT asked the executor to stop
    internal_error: bool  # the task thread failed
    acknowledged: bool  # every update was acknowledged at exit


def exit_status(end: RunEnd) -> int:
    """The exit status for how the run ended; the codes are in the module docstring."""
    if end.internal_error or end.ending is Ending.INTERNAL_ERROR:
        return EXIT_INTERNAL_ERROR
    if not end.ever_subscribed and not end.shutdown_received:
        return EXIT_NEVER_SUBSCRIBED
    if end.ending is Ending.AGENT_LOST:
        return EXIT_AGENT_LOST
    if end.shutdown_received or end.signalled or end.acknowledged:
        return EXIT_OK
    return EXIT_UNACKNOWLEDGED


def main(settings: ExecutorSettings, environ: MutableMapping[str, str]) -> int:
    """Runs the executor until its task is over; returns the exit status (module docstring)."""
    task_env = task_environment(environ, preserve_env=settings.preserve_env,
                                keep_agent_env=settings.pass_agent_env)
    wakeups: queue.SimpleQueue[Wakeup] = queue.SimpleQueue()
    executor = StokerExecutor(settings, task_env, on_done=lambda: wakeups.put(TaskDone()))
    driver = _driver(executor, settings)
    # The relay's thread only posts; main acts (`executor.host.signals`: a signal may land
    # on any thread, and main is blocked in the queue until something is posted).

    def on_signal(received: int) -> None:  # a stop, like SHUTDOWN: ACKs only within its grace
        driver.cut_ack_wait(settings.shutdown_grace_secs - ACK_MARGIN_SECS)
        wakeups.put(Signalled(received))

    relay = SignalRelay((signal.SIGTERM, signal.SIGINT), on_signal)
    try:
        return _run(settings, executor, driver, wakeups)
    finally:
        relay.close()


def _run(settings: ExecutorSettings, executor: StokerExecutor, driver: ExecutorDriver,
         wakeups: queue.SimpleQueue[Wakeup]) -> int:
    log_event(logger, logging.INFO, "executor_start", executor_id=settings.executor_id,
              framework_id=settings.framework_id, agent=settings.agent_endpoint, sandbox=settings.sandbox,
              checkpoint=settings.checkpoint)
    driver.start()
    # The driver calls shutdown() when it gives up on the agent, so TaskDone always comes.
    signalled = _wait_for_task(wakeups, executor, driver)
    budget = _ack_budget(executor, settings)  # after SHUTDOWN, a signal: not through an outage
    acked = driver.wait_for_acknowledgements(budget, through_outage=executor.shutdown_at is None)
    end = RunEnd(ending=driver.ending, ever_subscribed=driver.ever_subscribed,
                 shutdown_received=driver.shutdown_received, signalled=signalled,
                 internal_error=executor.internal_error, acknowledged=acked)
    status = exit_status(end)
    log_event(logger, logging.INFO if status == EXIT_OK else logging.ERROR, "executor_exit",
              status=status, acknowledged=acked, unacknowledged=driver.unacknowledged_count,
              driver=end.ending.name if end.ending else "running")
    driver.stop()
    return status


def _driver(executor: StokerExecutor, settings: ExecutorSettings) -> ExecutorDriver:
    """The driver; a MESOS_AGENT_ENDPOINT or a token it cannot use: a settings error (exit 2)."""
    try:
        agent_url(settings.agent_endpoint)
    except ValueError as exc:
        raise SettingsError(f"MESOS_AGENT_ENDPOINT: {exc}") from None
    try:
        return ExecutorDriver(executor, settings)
    except BadToken as exc:
        raise SettingsError(f"{TOKEN_VARIABLE}: {exc}") from None


def _wait_for_task(wakeups: queue.SimpleQueue[Wakeup], executor: StokerExecutor,
                   driver: ExecutorDriver) -> bool:
    """Blocks until the task is over; a signal meanwhile is treated as SHUTDOWN. True when
    a signal came."""
    signalled = False
    while True:
        wakeup = wakeups.get()
        match wakeup:
            case TaskDone():
                return signalled
            case Signalled(signum=signum):
                signalled = True
                log_event(logger, logging.WARNING, "signal", signal=signal.Signals(signum).name,
                          reason="treated as SHUTDOWN")
                executor.shutdown(driver)
            case _:
                assert_never(wakeup)


def _ack_budget(executor: StokerExecutor, settings: ExecutorSettings) -> float:
    if executor.shutdown_at is None:
        return ACK_WAIT_SECS
    left = settings.shutdown_grace_secs - (time.monotonic() - executor.shutdown_at) - ACK_MARGIN_SECS
    return max(0.0, min(ACK_WAIT_SECS, left))
