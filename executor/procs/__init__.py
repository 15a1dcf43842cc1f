"""Linux process containment: fork/exec of runs and shell commands, the one reaper thread,
the task's processes found in /proc and signalled by pidfd, or by kill() where a kernel or
seccomp profile allows none (containment, proctree, pidsignal), the
task's own cgroup (cgroups, cgroup_paths), the watchdog that outlives us, the log pump,
the next runs' log directories made ahead of time (logstage),
opening sandbox files that a task could have replaced (sandboxfs), reading them for
inspection with bounded memory (saferead: lines, the last lines, ranges; rotation: a
rotated log followed from file to file), and keeping the
agent's token out of the task's reach (hardening). Adapters only: they decide nothing
about restarts or task states.

The supervisor (`supervisor.py`) uses the others: `spawn.py` (env, logs, fork),
`runlogs.py` (`.logs` kept open, each run's log files, the pump), `logstage.py` (a next
run's logs, made at `idle()`), `sandboxfs.py` (opening files a task could have replaced),
`reaper.py`, `logpump.py` (its console copies: `consolecopy.py`), `containment.py` (which processes are the task's), `draining.py`
(a SIGTERMed run whose top exited first), `proctree.py` (/proc walks and scans; whether a process lives,
one signal through a pidfd, or by kill(), and the waits for exits, in `pidsignal.py`), `cgroups.py`, `watchdog.py`, `commands.py`, `unsignalled.py` (the processes it
may not signal, named at close).

How the supervisor keeps a task contained (docs/design.md §5): every run is `/bin/bash -c CMDLINE`
(a filesystem-image task's through its containerizer, `wrap`) in a session of its own,
carrying the task's and the run's markers, as the `run_as` user; the supervisor's process is a child
subreaper, in the task's cgroup when the host allows one (`cgroups.py`). One process-wide
reaper thread (`reaper.py`) reaps EVERY child: no other code here may wait for children
(shell health commands go through `Supervisor.run_command`, `commands.py`); runs are forked off the
main thread, where the orphans are listed. What a run's exit leaves is killed
(`containment.py`), drained within its grace when the task SIGTERMed it (`draining.py`), or
kept as the task's daemons when it exited 0 on its own (`daemons.py`; their exit is posted
as `DaemonsExited`). Signals reach a run by one walk of the supervisor's subtree, by pidfd
(`proctree.py`). A `/bin/sh` watchdog (`watchdog.py`) kills the task when the supervisor's
process dies, even by SIGKILL.

May import: events, logs, config/, healthcheck/ (CommandResult). Never: task, host, mesos,
local, cli — results go back through the callbacks they are given.
"""
