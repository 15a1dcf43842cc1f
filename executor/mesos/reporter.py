"""The task's updates as Mesos status updates: the `Reporter` `stoker executor` gives its
TaskOwner. Every task-level update becomes one status update through the driver (recorded as
owed before it is sent, docs/mesos.md §12), whose `status_update` log line the driver writes
(for every update, these and the executor's own, with the task's label when it has one).
"""
from __future__ import annotations

from executor.events import Transition
from executor.mesos.driver import ExecutorDriver
from executor.task.status import Update

REASON_HEALTH = "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED"


class MesosReporter:
    def __init__(self, driver: ExecutorDriver, task_id: str, label: str) -> None:
        self._driver = driver
        self._task_id = task_id
        self._label = label
        self.ended = False  # a terminal update sent: none is owed for the task any more

    def on_transition(self, t: Transition) -> None:
        pass  # the owner logs and checkpoints every transition and health attempt

    def on_update(self, update: Update) -> None:
        # The health reason marks health changes only: RUNNING with `healthy`, or the
        # terminal update of a task a failed check ended.
        reason = REASON_HEALTH if update.healthy is not None else None
        self._driver.send_status_update(self._task_id, update.state, update.message,
                                        healthy=update.healthy, reason=reason, task=self._label)
        self.ended |= update.state.terminal
