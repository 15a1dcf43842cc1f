"""`stoker observe`: the host's read-only web view of its tasks, like Thermos' observer.

A small HTTP server (waitress: a bounded pool of worker threads, idle connections closed
after a timeout; `server`) that answers pages and JSON about the tasks of the host registry
(`executor/host/registry.py`), read exactly as `stoker ps` and `stoker status` read them
(`executor/task/inspection.py`), with each run's CPU and memory (`usage`, from /proc) and
its logs, read through `executor/procs/saferead.py` (no symlink, FIFO or device below a
sandbox is ever opened, and no response holds more than `logrange.MAX_CHUNK_BYTES` of a log),
and the same tasks as Prometheus metrics (`/metrics`).
It never controls a task, never polls: everything is read when a request asks for it.

Pure (no I/O, threads, clocks or logging): `routes` (a request's method, path, query and
Host → what to answer), `logrange` (which bytes of a log to read, cut on character and line
boundaries), `model` (what a page shows, and CPU % from two samples), `html`, `pages` and
`logpage` (the pages, from the model), `assets` (the stylesheet and the follow script),
`metrics` (every task as Prometheus metrics, `/metrics`) and `exposition` (Prometheus' text
format).
Adapters: `reader` (registry, sandboxes, logs), `usage` (/proc), `taskusage` (a task's use
against its reservation: its trees' usage added up, its `.stoker/usage.json`), `scrape`
(`/metrics`: the tasks one scrape exports, a task that fails left out and counted), `peers`
(the user at the other end of a connection, for `--show-tasks-to owner`), `server`
(WSGI, waitress).

May import: task, host, procs, events, logs, config/, healthcheck/. Never: cli, mesos,
local; nothing imports it but the `stoker observe` command and `stoker status` (which
reads a task's use against its reservation as the task page does: `taskusage`, `usage`),
so `stoker run` and `stoker executor` never load it or waitress (a test checks).
"""
