"""The task's updates as Mesos status updates: the `Reporter` `stoker executor` gives its
TaskOwner. Every task-level update becomes one status update through the driver (recorded as
owed before it is sent, docs/mesos.md §12) and one `status_update` log line.
"""
from __future__ import annotations

import logging

from executor.events import Transition
from executor.logs import log_event
from executor.mesos.driver import ExecutorDriver
from executor.mesos.wire import mesos_state_name, uuid_text
from executor.task.status import Update

logger = logging.getLogger("executor.mesos.executor")  # its lines read as the executor's

REASON_HEALTH = "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED"


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
                  state=mesos_state_name(update.state), healthy=update.healthy, uuid=uuid_text(uuid),
                  message=update.message)
