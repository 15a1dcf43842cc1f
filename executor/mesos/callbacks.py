"""What the driver calls: pymesos' executor callback names, typed.

`ExecutorDriver` runs these one at a time on its dispatch thread, each guarded (an exception
is logged, never kills the driver), so each should return quickly. The names are pymesos'
(camelCase included), so a pymesos executor's callbacks read the same; Stoker's own
`killTask` also receives the KILL's grace period.

The raw dicts are the Mesos JSON objects as the agent sent them (ExecutorInfo, FrameworkInfo,
AgentInfo, TaskInfo); `executor.mesos.wire` reads fields out of them. `callback_for` says
which callback each event becomes.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, assert_never

from executor.mesos.wire import (
    Acknowledged,
    Error,
    Event,
    Heartbeat,
    Kill,
    Launch,
    LaunchGroup,
    Message,
    Oversized,
    Shutdown,
    Subscribed,
    UnknownEvent,
    Unreadable,
)

if TYPE_CHECKING:
    from executor.mesos.driver import ExecutorDriver


class ExecutorCallbacks(Protocol):
    def registered(self, driver: ExecutorDriver, executor_info: dict[str, Any],
                   framework_info: dict[str, Any], agent_info: dict[str, Any]) -> None:
        """The first SUBSCRIBED of this executor's life."""

    def reregistered(self, driver: ExecutorDriver, agent_info: dict[str, Any]) -> None:
        """SUBSCRIBED again, after a disconnect (the agent may have restarted)."""

    def disconnected(self, driver: ExecutorDriver) -> None:
        """A subscribed event stream ended; the driver resubscribes or gives up."""

    def launchTask(self, driver: ExecutorDriver, task_info: dict[str, Any]) -> None:
        """LAUNCH: one TaskInfo."""

    def launchTooLarge(self, driver: ExecutorDriver, task_id: str, size_bytes: int) -> None:
        """LAUNCH too large to read (docs/mesos.md §4): only its task id and size are known.
        Stoker's own; pymesos has no such callback."""

    def launchTaskGroup(self, driver: ExecutorDriver, task_group: dict[str, Any]) -> None:
        """LAUNCH_GROUP: `{"tasks": [TaskInfo, ...]}`."""

    def killTask(self, driver: ExecutorDriver, task_id: str, grace_secs: float | None) -> None:
        """KILL: the task id, and the KILL's own grace period when it has a kill policy."""

    def frameworkMessage(self, driver: ExecutorDriver, data: bytes) -> None:
        """MESSAGE: the scheduler's bytes, base64-decoded."""

    def shutdown(self, driver: ExecutorDriver) -> None:
        """SHUTDOWN, or the driver gave up on the agent: kill everything and exit."""

    def error(self, driver: ExecutorDriver, message: str) -> None:
        """The agent rejected a call for good, or sent ERROR."""


def callback_for(cb: ExecutorCallbacks, event: Event, *,
                 first_subscription: bool) -> tuple[Callable[..., None], tuple[Any, ...]] | None:
    """The callback `event` becomes and its arguments after the driver; None for the events
    the driver only books or logs (ACKNOWLEDGED, HEARTBEAT, an unknown type, an unreadable or
    oversized event that is no LAUNCH naming its task). `first_subscription`: no SUBSCRIBED came before."""
    match event:
        case Subscribed() if first_subscription:
            return cb.registered, (event.executor_info, event.framework_info, event.agent_info)
        case Subscribed():
            return cb.reregistered, (event.agent_info,)
        case Launch(task_info=info):
            return cb.launchTask, (info,)
        case LaunchGroup(task_infos=infos):
            return cb.launchTaskGroup, ({"tasks": list(infos)},)
        case Kill(task_id=tid, grace_secs=grace):
            return cb.killTask, (tid, grace)
        case Message(data=data):
            return cb.frameworkMessage, (data,)
        case Shutdown():
            return cb.shutdown, ()
        case Error(message=message):
            return cb.error, (message,)
        case Oversized(type="LAUNCH", task_id=str() as tid, size_bytes=size):
            return cb.launchTooLarge, (tid, size)
        case Acknowledged() | Heartbeat() | UnknownEvent() | Unreadable() | Oversized():
            return None
        case _:
            assert_never(event)
