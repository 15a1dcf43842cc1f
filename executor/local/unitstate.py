"""What `stoker run` tells systemd as the main process of a `Type=notify` unit
(`executor/host/sdnotify.py` sends it; loaded only when systemd named a socket).

- `READY=1` once the task is first RUNNING (in the first attempt, or a later one when the
  first ended before): its processes started and, with a health check, its first check
  passed (the update `stoker run` prints as `STARTING → RUNNING`). A unit ordered `After=` it starts only then; a task that never gets there keeps
  the unit `activating` until `TimeoutStartSec=` (or it ends, and the unit fails).
- `STATUS=` one line per task state change (`svc.0 RUNNING: processes started; ...`), the
  restart delay between attempts, and the run's verdict: `systemctl status` shows it.
- `STOPPING=1` as the stop begins (`systemctl stop`'s SIGTERM, `stoker kill`).
- `WATCHDOG=1` with `WatchdogSec=`: at half the period, from the task owner's loop (its
  deadline is the loop's timer: a loop that no longer turns feeds it no more) and from the
  wait between attempts.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from executor.events import TaskStage, TaskState, TaskTransition, Transition
from executor.host.sdnotify import Heartbeat, Notifier
from executor.task.status import Update

if TYPE_CHECKING:
    from executor.task.ports import Reporter


class UnitState:
    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier
        self._heartbeat: Heartbeat | None = notifier.heartbeat()

    @property
    def beat(self) -> Callable[[], float] | None:
        """Feeds the watchdog when due, returns when next (None: systemd asked for none)."""
        return self._heartbeat.beat if self._heartbeat is not None else None

    def reporter(self, inner: Reporter, label: str) -> Reporter:
        """`inner` (the console), telling systemd of the task's states too."""
        return _Reporting(inner, self._notifier, label)

    def status(self, text: str) -> None:
        self._notifier.status(text)

    def stopping(self, reason: str) -> None:
        self._notifier.stopping(f"stopping: {reason}")

    def wait(self, stop: Callable[[float], bool], secs: float) -> bool:
        """`stop(secs)` (an Event's wait), cut in pieces to feed the watchdog meanwhile."""
        if self._heartbeat is None:
            return stop(secs)
        end = self._heartbeat.clock() + secs
        while (left := end - self._heartbeat.clock()) > 0:
            if stop(min(left, max(0.0, self._heartbeat.beat() - self._heartbeat.clock()))):
                return True
        return stop(0)

    def close(self) -> None:
        self._notifier.close()


class _Reporting:
    def __init__(self, inner: Reporter, notifier: Notifier, label: str) -> None:
        self._inner = inner
        self._notifier = notifier
        self._label = label

    def on_transition(self, t: Transition) -> None:
        self._inner.on_transition(t)
        if isinstance(t, TaskTransition) and t.to is not TaskStage.RUNNING:  # RUNNING: on_update's
            self._notifier.status(f"{self._label} {t.to.value}: {t.reason}")

    def on_update(self, u: Update) -> None:
        self._inner.on_update(u)
        if u.state is TaskState.RUNNING:
            self._notifier.ready(f"{self._label} RUNNING: {u.message}")
