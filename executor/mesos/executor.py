"""`stoker executor`: the driver's callbacks (pymesos names) wired to one TaskOwner.

The agent's LAUNCH becomes a task run on its own thread: decode the task document, resolve
ports, bind templates, then TaskOwner.run() with a reporter that turns every task-level
update into a Mesos status update. Any error before the owner starts becomes TASK_FAILED
with the message (no process starts). KILL and SHUTDOWN become kill requests; the process
exits once the terminal update is acknowledged, or after a bounded wait.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from config.bind import bind
from config.document import decode
from config.errors import ConfigError
from config.settings import ExecutorSettings, pop_secrets
from config.templates import port_names
from executor.events import TaskState, Transition
from executor.logs import log_event
from executor.mesos.driver import ExecutorDriver
from executor.mesos.errors import RemoteProtocolError
from executor.mesos.wire import (
    ports_from_resources,
    task_data,
    task_id,
    task_kill_grace_secs,
)
from executor.task.owner import TaskOwner
from executor.task.status import Update
from executor.task.wiring import owner_for

logger = logging.getLogger(__name__)

ACK_WAIT_SECS = 10.0  # bounded wait for the terminal update's acknowledgement
SHUTDOWN_MARGIN_SECS = 1.0  # kill this much before the agent's shutdown grace ends
REASON_TASK_INVALID = "REASON_TASK_INVALID"
REASON_HEALTH = "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED"


class LaunchError(Exception):
    """The task cannot start; the message goes out with TASK_FAILED."""


def resolve_ports(names: list[str], assigned: dict[str, int], offered: list[int]) -> dict[str, int]:
    """docs/contract.md §3: assigned_ports when it covers every name, else the names (sorted) take
    the TaskInfo's `ports` resource numbers in order."""
    if all(name in assigned for name in names):
        return {**assigned}
    missing = [n for n in sorted(names) if n not in assigned]
    free = [p for p in offered if p not in assigned.values()]
    if len(free) < len(missing):
        raise LaunchError(
            f"too few ports: the task needs {len(names)} ({_names(sorted(names))}); "
            f"no port for {_names(missing[len(free):])} "
            f"(assigned_ports has {len(assigned)}, the ports resource offers {len(offered)})"
        )
    ports = dict(assigned)
    ports.update(zip(missing, free))
    return ports


def _names(names: list[str], most: int = 20, width: int = 64) -> str:
    """Port names for a message: each cut to `width`, at most `most` of them."""
    shown = [n if len(n) <= width else n[: width - 3] + "..." for n in names[:most]]
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(shown) + more


class MesosReporter:
    def __init__(self, driver: ExecutorDriver, task_id: str, label: str) -> None:
        self._driver = driver
        self._task_id = task_id
        self._label = label

    def on_transition(self, t: Transition) -> None:
        pass  # the owner logs and checkpoints every transition and health attempt

    def on_update(self, update: Update) -> None:
        # The health reason marks health changes only: RUNNING with `healthy`, or the
        # terminal update of a task a failed check ended.
        reason = REASON_HEALTH if update.healthy is not None else None
        uuid = self._driver.send_status_update(
            self._task_id, update.state, update.message, healthy=update.healthy, reason=reason
        )
        log_event(logger, logging.INFO, "status_update", task=self._label, task_id=self._task_id,
                  state=f"TASK_{update.state.value}", healthy=update.healthy, uuid=uuid.hex() if uuid else None,
                  message=update.message)


class StokerExecutor:
    """The callbacks. Each returns quickly: real work happens on the task thread."""

    def __init__(self, settings: ExecutorSettings, task_env: dict[str, str]) -> None:
        self._settings = settings
        self._env = task_env
        self._lock = threading.Lock()  # guards the few fields shared with the driver thread
        self._task_id: str | None = None
        self._owner: TaskOwner | None = None
        self._pending_kill: tuple[str, float | None, bool] | None = None
        self._agent_hostname = settings.hostname or "localhost"
        self._framework_user: str | None = None
        self.done = threading.Event()  # the task is terminal (or there will be none)
        self.shutdown_requested = threading.Event()
        self.shutdown_at: float | None = None
        self.terminal_uuid: bytes | None = None

    # ---- driver callbacks ----

    def registered(self, driver, executor_info: dict, framework_info: dict, agent_info: dict) -> None:
        if not self._settings.hostname:  # STOKER_HOSTNAME / --hostname wins over the agent's
            self._agent_hostname = agent_info.get("hostname") or self._agent_hostname
        self._framework_user = framework_info.get("user") or None
        log_event(logger, logging.INFO, "registered", agent=agent_info.get("id", {}).get("value"),
                  hostname=self._agent_hostname, framework=framework_info.get("name"))

    def reregistered(self, driver, agent_info: dict) -> None:
        log_event(logger, logging.INFO, "reregistered", agent=agent_info.get("id", {}).get("value"))

    def disconnected(self, driver) -> None:
        log_event(logger, logging.WARNING, "disconnected", task_id=self._task_id)

    def launchTask(self, driver, task_info: dict) -> None:
        try:
            tid = task_id(task_info)
        except RemoteProtocolError as exc:
            logger.error("launch ignored: TaskInfo without a task id: %s", exc)
            return
        with self._lock:
            current = self._task_id
            if current is None:
                self._task_id = tid
        if current is not None:
            message = f"one task per executor: task {current} is already running here"
            driver.send_status_update(tid, TaskState.FAILED, message, reason=REASON_TASK_INVALID)
            log_event(logger, logging.WARNING, "launch_rejected", task_id=tid, reason=message)
            return
        log_event(logger, logging.INFO, "launch", task_id=tid, name=task_info.get("name"))
        thread = threading.Thread(target=self._run_task, args=(driver, task_info, tid),
                                  name=f"task-{tid}", daemon=True)
        thread.start()

    def launchTaskGroup(self, driver, task_group: Any) -> None:
        tasks = task_group.get("tasks", []) if isinstance(task_group, dict) else list(task_group)
        for info in tasks:
            try:
                tid = task_id(info)
            except RemoteProtocolError:
                continue
            driver.send_status_update(
                tid, TaskState.FAILED,
                "LAUNCH_GROUP is not supported by Stoker: launch each task with LAUNCH and a task document",
                reason=REASON_TASK_INVALID,
            )
        log_event(logger, logging.WARNING, "launch_group_rejected", tasks=len(tasks))

    def killTask(self, driver, task_id: str, grace_secs: float | None = None) -> None:
        if task_id != self._task_id:
            log_event(logger, logging.WARNING, "kill_ignored", task_id=task_id,
                      reason=f"unknown task; this executor runs {self._task_id}")
            return
        log_event(logger, logging.INFO, "kill", task_id=task_id, grace_secs=grace_secs)
        self._kill("killed by the agent (KILL)", grace_secs, True)

    def frameworkMessage(self, driver, data: bytes) -> None:
        log_event(logger, logging.INFO, "framework_message", bytes=len(data))

    def shutdown(self, driver) -> None:
        grace = max(0.0, self._settings.shutdown_grace_secs - SHUTDOWN_MARGIN_SECS)
        self.shutdown_at = time.monotonic()
        self.shutdown_requested.set()
        log_event(logger, logging.INFO, "shutdown", task_id=self._task_id, kill_grace_secs=grace)
        if self._task_id is None:
            self.done.set()
            return
        self._kill("executor shutting down (SHUTDOWN)", grace, False)

    def error(self, driver, message: str) -> None:
        log_event(logger, logging.ERROR, "driver_error", message=message)

    # ---- the task ----

    def _kill(self, reason: str, grace_secs: float | None, use_lifecycle: bool) -> None:
        with self._lock:
            owner = self._owner
            if owner is None:
                self._pending_kill = (reason, grace_secs, use_lifecycle)
                return
        owner.request_kill(reason, grace_secs, use_lifecycle=use_lifecycle)

    def _prepare(self, task_info: dict, task_id: str):
        try:
            document = decode(task_data(task_info))
            names = port_names(document.job)
            ports = resolve_ports(names, dict(document.assigned_ports), ports_from_resources(task_info))
            user = self._framework_user or str(document.job.role().get())
            spec = bind(document.job, instance=document.instance, ports=ports, task_id=task_id,
                        hostname=self._agent_hostname, user=user)
            grace = task_kill_grace_secs(task_info)
        except (ConfigError, RemoteProtocolError, LaunchError) as exc:
            raise LaunchError(f"invalid task: {exc}") from exc
        return spec, grace

    def _run_task(self, driver: ExecutorDriver, task_info: dict, task_id: str) -> None:
        reporter = None
        try:
            try:
                spec, grace = self._prepare(task_info, task_id)
            except LaunchError as exc:
                log_event(logger, logging.ERROR, "launch_failed", task_id=task_id, reason=str(exc))
                self.terminal_uuid = driver.send_status_update(
                    task_id, TaskState.FAILED, str(exc), reason=REASON_TASK_INVALID)
                return
            reporter = MesosReporter(driver, task_id, spec.label)
            owner = owner_for(spec, Path(self._settings.sandbox), self._env, reporter,
                              kill_grace_secs=grace)
            with self._lock:
                self._owner = owner
                pending = self._pending_kill
            if pending is not None:
                owner.request_kill(pending[0], pending[1], use_lifecycle=pending[2])
            final = owner.run()
            log_event(logger, logging.INFO, "task_done", task=spec.label, state=final.state.value,
                      reason=final.message)
        except Exception as exc:  # last resort: report, never die silently
            logger.error("task %s: executor internal error: %s: %s", task_id, type(exc).__name__, exc,
                         exc_info=True)
            if reporter is None:
                driver.send_status_update(task_id, TaskState.FAILED,
                                          f"executor internal error: {type(exc).__name__}: {exc}")
        finally:
            self.done.set()


def main(settings: ExecutorSettings, environ: MutableMapping[str, str]) -> int:
    """Run the executor until its task is over; returns the process exit code."""
    task_env = dict(environ)
    pop_secrets(task_env)
    executor = StokerExecutor(settings, task_env)
    driver = ExecutorDriver(executor, settings)

    def on_sigterm(signum, _frame):
        log_event(logger, logging.WARNING, "signal", signal=signal.Signals(signum).name,
                  reason="treated as SHUTDOWN")
        executor.shutdown(driver)

    signal.signal(signal.SIGTERM, on_sigterm)
    log_event(logger, logging.INFO, "executor_start", executor_id=settings.executor_id,
              framework_id=settings.framework_id, agent=settings.agent_endpoint, sandbox=settings.sandbox,
              checkpoint=settings.checkpoint)
    driver.start()
    try:
        # The driver calls shutdown() when it gives up on the agent, so `done` always comes.
        executor.done.wait()
    except KeyboardInterrupt:
        executor.shutdown(driver)
        executor.done.wait(settings.shutdown_grace_secs)
    acked = driver.wait_for_acknowledgements(_ack_budget(executor, settings))
    log_event(logger, logging.INFO, "executor_exit", acknowledged=acked,
              unacknowledged=driver.unacknowledged_count)
    driver.stop()
    return 0


def _ack_budget(executor: StokerExecutor, settings: ExecutorSettings) -> float:
    if executor.shutdown_at is None:
        return ACK_WAIT_SECS
    left = settings.shutdown_grace_secs - (time.monotonic() - executor.shutdown_at) - 0.2
    return max(0.0, min(ACK_WAIT_SECS, left))
