"""One task's life, whoever asked for it (a Mesos LAUNCH or `stoker run`).

The decisions are pure machines: the planner and Thermos' per-run rules (planner,
process_rules, including an operator's restart), the status machine (status), the kill
staging (kill), and the checkpoint's record format, its replay and its compaction
(records, replay, compaction). The TaskOwner (owner) is the one thread that owns the task's
mutable state: it asks them what to do and has its ports (ports: the Protocols it needs) do
it; journal turns each change into a checkpoint record and a log line, and operator answers
the operators' requests (`stoker kill`, `stoker restart`). wiring.owner_for plugs in the real
adapters: the process supervisor, the checkpoint writer (checkpoint), the health loop, the
lifecycle endpoints (lifecycle) and the host session (executor/host). inspection reads a
sandbox's task back, checked against the host (LOST, leftovers), for `stoker status`, `stoker
ps` and `stoker observe`; inspectionjson shows it as they do.

May import: host, procs, events, logs, config/, healthcheck/. Never: mesos, local, cli.
"""
