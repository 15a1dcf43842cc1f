"""The Mesos front-end: everything shaped by the agent's v1 executor HTTP API.

The protocol (RecordIO framing, events, calls, the session and its unacknowledged updates)
is pure; the transport (`requests`) and the driver (threads, reconnects) are adapters; the
executor wires the driver's callbacks (pymesos names) to one TaskOwner and turns task
updates into Mesos status updates. `TASK_*` and `REASON_*` names live only here.

May import: task, events, logs, config/, healthcheck/. Never: local, cli.
"""
