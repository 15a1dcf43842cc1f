"""Orphans that are not the task's: what a PID namespace's init adopts from others.

`stoker run` may be the first process of a PID namespace (`docker run IMAGE stoker run
job.aurora`): the namespace's init. The kernel then re-parents to it every orphan of the
namespace, not only the task's: what `docker exec` (or `nsenter`) started and left behind
(`docker exec c sh -c 'profiler &'`), a process whose own parent is outside. Such a
stranger is no process of the task: the leftover kill after a run's or a health command's
exit, and the task's stop, leave it alone (they took it for a leftover of the task and
killed it), and it is not handed to the watchdog. The reaper reaps it when it exits.

An orphan is a stranger when it is outside the task's cgroup (nothing the task starts can
leave it but root); without a cgroup, when its environment is read and has no task marker
(every process of the task inherits it). Not when it is in a registered child's process
group (a live run's). So, without a cgroup, a run's daemon that cleared its environment
and left the group lives on, across restarts, until `stoker run` exits: the kernel then
kills whatever is left in the namespace with its init. A subreaper that is not an init adopts only its own
descendants' orphans: there is no stranger.
"""
from __future__ import annotations

from executor.procs.cgroups import TaskCgroup
from executor.procs.proctree import ProcInfo
from executor.procs.spawn import TASK_MARKER

_TASK_PREFIX = f"{TASK_MARKER}=".encode()


def is_stranger(info: ProcInfo, registered: frozenset[int], cgroup: TaskCgroup | None) -> bool:
    """Whether `info`, an orphan this init adopted, is not the task's (see above)."""
    if info.pid in registered or info.pgrp in registered:
        return False
    if cgroup is not None:
        return cgroup.holds(info.pid) is False
    marked = info.environ.startswith(_TASK_PREFIX) or b"\0" + _TASK_PREFIX in info.environ
    return not info.hidden and not marked
