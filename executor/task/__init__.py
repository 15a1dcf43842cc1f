"""One task's life, whoever asked for it (a Mesos LAUNCH or `stoker run`).

The decisions are pure machines (planner, status machine, replay); the TaskOwner is the
one thread that owns the task's mutable state, asks them what to do and executes it
through the process adapters; the checkpoint writer and the lifecycle endpoints are thin
adapters beside it.

May import: procs, events, logs, config/, healthcheck/. Never: mesos, local, cli.
"""
