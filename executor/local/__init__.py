"""The `stoker run` front-end: plays the scheduler's part on one machine (free loopback
ports, a sandbox, the service restart rules and back-off in service.py, console output in
console.py).

May import: task, events, logs, config/, healthcheck/. Never: mesos, cli.
"""
