"""`stoker executor`'s exit status as a table: how the run ended in, the code out.

The end-to-end tests (tests/e2e/test_executor.py) check the wiring for 0, 3 and 4 with the
real process under the agent simulator.
"""
from __future__ import annotations

import re

import pytest

from executor.mesos import process
from executor.mesos.process import RunEnd, exit_status
from executor.mesos.reconnect import Ending

NORMAL = dict(ending=None, ever_subscribed=True, shutdown_received=False, signalled=False,
              internal_error=False, acknowledged=True)

ROWS = {
    "task terminal, updates acknowledged": ({}, 0),
    "the agent sent SHUTDOWN; its updates were not all acknowledged": (
        dict(shutdown_received=True, acknowledged=False), 0),
    "SHUTDOWN as the first event, never SUBSCRIBED": (
        dict(shutdown_received=True, ever_subscribed=False, ending=Ending.SHUTDOWN), 0),
    "SIGTERM or SIGINT, then the kill": (dict(signalled=True, acknowledged=False), 0),
    "the executor stopped the driver itself": (dict(ending=Ending.STOPPED), 0),
    "the task thread failed": (dict(internal_error=True), 1),
    "the driver thread failed": (dict(ending=Ending.INTERNAL_ERROR, acknowledged=False), 1),
    "agent unreachable until the driver gave up": (
        dict(ever_subscribed=False, ending=Ending.NEVER_SUBSCRIBED, acknowledged=True), 3),
    "SUBSCRIBE rejected at start": (
        dict(ever_subscribed=False, ending=Ending.NEVER_SUBSCRIBED), 3),
    "a signal before the agent ever answered": (
        dict(ever_subscribed=False, signalled=True), 3),
    "down past MESOS_RECOVERY_TIMEOUT, or a disconnect with checkpointing off": (
        dict(ending=Ending.AGENT_LOST, acknowledged=False), 4),
    "the agent lost even though every update was acknowledged": (
        dict(ending=Ending.AGENT_LOST), 4),
    "task terminal, the bounded wait for ACKs ran out": (dict(acknowledged=False), 5),
}


@pytest.mark.parametrize("changes, code", ROWS.values(), ids=list(ROWS))
def test_exit_status(changes, code):
    assert exit_status(RunEnd(**{**NORMAL, **changes})) == code


def test_every_code_is_documented_in_the_module_docstring():
    documented = {int(m) for m in re.findall(r"^    (\d)  ", process.__doc__, re.MULTILINE)}
    constants = {value for name, value in vars(process).items() if name.startswith("EXIT_")}
    assert constants == documented - {2} and {code for _, code in ROWS.values()} == constants
