"""A loopback Mesos agent that speaks the v1 executor HTTP API (docs/mesos.md §19), for tests and
bench scripts.

It owns one HTTP/1.1 server on 127.0.0.1 (a given port or an ephemeral one), the executor it
launches (in its own process group, with an agent's environment, stderr kept as
SANDBOX/executor.log), the event stream(s) it writes by hand as chunked RecordIO, and the
agent-side record of every request, every status update and every acknowledgement.

What it reproduces (docs/mesos.md §5, §13, §19): validation in the agent's order with its
status codes; SUBSCRIBED then queued events; one current stream (a new SUBSCRIBE closes the
old one gracefully); the agent's update rules (duplicates re-ACKed, nothing after a terminal
update, unknown tasks not ACKed, a wrong agent_id silently ignored); ACK modes (immediate,
delay, hold, duplicate, unknown_uuid); chunking modes (record, packed, fuzz); crash and
restart on the same port with a 503 recovery period and a re-registration window; the
shutdown grace; the agent's own updates when the executor dies with live tasks.

Usage:
    with AgentSimulator() as sim:
        sim.launch_executor([sys.executable, "tests/support/echo_executor.py"])
        sim.wait_subscribed()
        sim.launch(make_task_info("task-42", b"{}"))
        sim.wait_for_state("task-42", "TASK_RUNNING")

It must never reach beyond 127.0.0.1 and never leave a process or a port behind after
`close()` (also called by `__exit__`).

The package: records.py (ids, states, make_task_info, the records tests read), transport.py
(the HTTP server and the RecordIO stream), endpoint.py (the agent's answers to calls),
driving.py (events and ACKs), simulator.py (AgentSimulator: the executor, crash/restart,
inspection). Every name tests use is importable from here.
"""
from tests.support.agent_sim.records import (
    ACK_MODES,
    AGENT_ID,
    CALL_TYPES,
    CHUNKING_MODES,
    CONTAINER_ID,
    EXECUTOR_ID,
    FRAMEWORK_ID,
    TASK_STATES,
    TERMINAL_STATES,
    RecordedRequest,
    UpdateRecord,
    make_task_info,
    parse_duration,
)
from tests.support.agent_sim.simulator import AgentSimulator
from tests.support.agent_sim.transport import _Server

__all__ = [
    "ACK_MODES", "AGENT_ID", "CALL_TYPES", "CHUNKING_MODES", "CONTAINER_ID", "EXECUTOR_ID",
    "FRAMEWORK_ID", "TASK_STATES", "TERMINAL_STATES", "AgentSimulator", "RecordedRequest",
    "UpdateRecord", "_Server", "make_task_info", "parse_duration",
]
