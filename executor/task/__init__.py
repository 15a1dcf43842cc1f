"""One task's life, whoever asked for it (a Mesos LAUNCH or `stoker run`).

The decisions are pure machines: the planner and Thermos' per-run rules (planner,
process_rules), the status machine (status), the kill staging (kill), and the checkpoint's
record format and its replay (records, replay). The TaskOwner (owner) is the one thread that
owns the task's mutable state: it asks them what to do and has its ports (ports: the
Protocols it needs) do it; journal turns each change into a checkpoint record and a log
line. wiring.owner_for plugs in the real adapters: the process supervisor, the checkpoint
writer (checkpoint), the health loop and the lifecycle endpoints (lifecycle).

May import: procs, events, logs, config/, healthcheck/. Never: mesos, local, cli.
"""
