"""Which callback each agent event becomes (executor/mesos/callbacks.py `callback_for`), and
with what: a row per event, the callback's pymesos name and its arguments after the driver.
The driver's tests (tests/integration/test_mesos_driver.py) see the same through a simulated
agent; this table states each row without one."""
from __future__ import annotations

from typing import Any, get_args

import pytest

from executor.mesos import wire
from executor.mesos.callbacks import callback_for

EXECUTOR = {"executor_id": {"value": "thermos-1"}}
FRAMEWORK = {"id": {"value": "aurora"}}
AGENT = {"id": {"value": "agent-1"}, "hostname": "h1"}
TASK = {"task_id": {"value": "t1"}, "name": "hello"}
OTHER = {"task_id": {"value": "t2"}, "name": "bye"}
SUBSCRIBED = wire.Subscribed(EXECUTOR, FRAMEWORK, AGENT, container_id="c1")


class Callbacks:
    """Every callback the driver may call; `callback_for` only picks one."""

    def registered(self, driver: Any, executor_info: Any, framework_info: Any, agent_info: Any) -> None: ...
    def reregistered(self, driver: Any, agent_info: Any) -> None: ...
    def disconnected(self, driver: Any) -> None: ...
    def launchTask(self, driver: Any, task_info: Any) -> None: ...
    def launchTooLarge(self, driver: Any, task_id: str, size_bytes: int) -> None: ...
    def launchTaskGroup(self, driver: Any, task_group: Any) -> None: ...
    def killTask(self, driver: Any, task_id: str, grace_secs: float | None) -> None: ...
    def frameworkMessage(self, driver: Any, data: bytes) -> None: ...
    def shutdown(self, driver: Any) -> None: ...
    def error(self, driver: Any, message: str) -> None: ...


# A row for each kind of event (wire.Event), at least.
ROWS = [
    (SUBSCRIBED, True, ("registered", (EXECUTOR, FRAMEWORK, AGENT))),
    (SUBSCRIBED, False, ("reregistered", (AGENT,))),
    (wire.Launch(TASK), False, ("launchTask", (TASK,))),
    (wire.LaunchGroup((TASK, OTHER)), False, ("launchTaskGroup", ({"tasks": [TASK, OTHER]},))),
    (wire.Kill("t1", 2.5), False, ("killTask", ("t1", 2.5))),
    (wire.Kill("t1", None), False, ("killTask", ("t1", None))),
    (wire.Message(b"\x00hi"), False, ("frameworkMessage", (b"\x00hi",))),
    (wire.Shutdown(), False, ("shutdown", ())),
    (wire.Error("framework removed"), True, ("error", ("framework removed",))),
    (wire.Oversized("LAUNCH", 9_000_000, "t1"), False, ("launchTooLarge", ("t1", 9_000_000))),
    # what the driver only books or logs
    (wire.Oversized("LAUNCH", 9_000_000, None), False, None),  # no task id: nothing to fail
    (wire.Oversized("MESSAGE", 9_000_000, None), False, None),
    (wire.Oversized("KILL", 9_000_000, "t1"), False, None),  # only a LAUNCH is failed by its id
    (wire.Acknowledged("t1", b"u" * 16), False, None),
    (wire.Heartbeat(), False, None),
    (wire.UnknownEvent("LAUNCH_NESTED"), False, None),
    (wire.Unreadable("MESSAGE", "MESSAGE event: data is not valid base64"), False, None),
]


@pytest.mark.parametrize("event, first, expected", ROWS,
                         ids=lambda v: type(v).__name__ if not isinstance(v, (bool, tuple)) and v is not None else None)
def test_each_event_becomes_its_callback_with_its_arguments(event: wire.Event, first: bool, expected):
    target = callback_for(Callbacks(), event, first_subscription=first)
    if expected is None:
        assert target is None
        return
    callback, args = target
    assert (callback.__name__, args) == expected


def test_the_table_has_a_row_for_every_kind_of_event():
    assert {type(event) for event, _, _ in ROWS} == set(get_args(wire.Event))
