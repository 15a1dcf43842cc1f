"""The supervisor's descriptor limit, raised to what the task's logs will hold.

The log pump holds descriptors for every run whose output it copies while the run lives:
each stream's pipe and its log file, and, for a rotating log, a duplicate of the run
directory's descriptor that its renames act on (`executor/procs/logpump.py`): 6 a process
with `Logger(mode='rotate')`, 4 with `destination='both'`. A batch of runs being started
holds their directories, files and pipes until each is forked (`SPAWN_BATCH` of them at
most: `Supervisor.spawn_many`). Thermos spreads these over a process of its own per task
process; one supervisor holds them all, so under the usual soft limit of 1,024 (`ulimit
-n`) a task of about 110 processes with rotating logs failed at start, run after run, with
`Too many open files (EMFILE)`; one of about 340 plain processes too, all of whose
directories and files were made before the first fork.

`fit` raises this process's soft RLIMIT_NOFILE, once, before the task starts, to what its
processes need plus room for the supervisor's own (checkpoint, control connections, health
checks), never above the hard limit and never lower than it was; one INFO line says so, or
one WARNING line when the hard limit is too low, naming the limit to raise. The task's
processes inherit the raised soft limit (which their own user could have set itself, being
within the hard limit). Linux only, like the rest of `executor/procs`.
"""
from __future__ import annotations

import logging
import resource
from collections.abc import Iterable

from config.spec import LogDestination, LoggerSpec, LogMode
from executor.logs import log_event

logger = logging.getLogger(__name__)

# Descriptors a run holds while it lives (the pump's), and while it starts: from the making
# of its log directory and files until its fork, with its pipes' write ends and the
# directory's own descriptor (`executor/procs/spawn.py` open_stdio). A plain log: none once
# forked, 3 while it starts.
ROTATING_RUN, ROTATING_START = 6, 9  # two pipes, two log files, two duplicates of the directory's
COPIED_RUN, COPIED_START = 4, 7  # destination='both' without rotation: two pipes, two log files
PLAIN_START = 3
SPAWN_BATCH = 128  # runs made ready together, then forked (Supervisor.spawn_many)
OWN = 64  # the supervisor's own (about 20 when idle): its log, checkpoint, control clients, checks


def needed(loggers: Iterable[LoggerSpec]) -> int:
    """The descriptors a supervisor may hold: with one run of each process live, and a
    batch of runs starting."""
    live, starting = 0, []
    for spec in loggers:
        if spec.destination in (LogDestination.CONSOLE, LogDestination.NONE):
            starting.append(0)
        elif spec.mode is LogMode.ROTATE:
            live += ROTATING_RUN
            starting.append(ROTATING_START)
        elif spec.destination is LogDestination.BOTH:
            live += COPIED_RUN
            starting.append(COPIED_START)
        else:
            starting.append(PLAIN_START)
    batch = sorted(starting, reverse=True)[:SPAWN_BATCH]
    return OWN + live + sum(batch)


def ready_ceiling() -> int:
    """The highest descriptor number the runs made ready before the first step may hold
    (`Supervisor.ready_ahead`): the soft limit less `OWN`, which the supervisor opens after
    them (its checkpoint, its registry entry, its control socket). Descriptors are taken
    lowest first, so one numbered N means that N are open below it. Under a hard limit
    below `needed`, 128 runs made ready took the descriptors the checkpoint needed: the task
    failed before its first run instead of some runs failing. 0 when the limit is unknown."""
    try:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (OSError, ValueError):
        return 0
    return soft - OWN if soft != resource.RLIM_INFINITY else 1 << 31


def fit(loggers: Iterable[LoggerSpec], label: str) -> int:
    """Raise the soft limit to `needed(loggers)` when it is lower; returns the soft limit in
    force afterwards. Never raises: a limit that cannot be changed is a WARNING line."""
    want = needed(loggers)
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return want
    if soft == resource.RLIM_INFINITY or soft >= want:
        return soft
    new = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if new > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        except (OSError, ValueError) as exc:
            log_event(logger, logging.WARNING, "descriptor_limit_low", task=label, soft=soft,
                      hard=hard, needed=want, error=f"{type(exc).__name__}: {exc}",
                      reason="the soft descriptor limit could not be raised: runs may fail "
                             "to start with EMFILE (raise ulimit -n)")
            return soft
        log_event(logger, logging.INFO, "descriptor_limit_raised", task=label, soft=soft, to=new,
                  hard=hard, reason=f"the task's logs may hold {want - OWN} descriptors at once "
                                    f"(and {OWN} are kept for the supervisor's own)")
    if new < want:
        log_event(logger, logging.WARNING, "descriptor_limit_low", task=label, soft=new,
                  hard=hard, needed=want,
                  reason=f"the hard descriptor limit {hard} is below the {want} the task's "
                         f"logs may need: runs may fail to start with EMFILE (raise "
                         f"ulimit -Hn, or LimitNOFILE for a service)")
    return new
