"""Linux process containment: fork/exec of runs and shell commands, the one reaper thread,
process trees found in /proc and signalled by pidfd, the watchdog that outlives us, and
the log pump. Adapters only: they decide nothing about restarts or task states.

May import: events, logs, config/, healthcheck/ (CommandResult). Never: task, mesos,
local, cli — results go back through the callbacks they are given.
"""
