"""A walk of the task's subtree that misses no process whose parent exited during it.

`proctree.walk` reads a process, then its children list, one process at a time. A process
that exits after its parent's list was read and before its own children were (a
fork-hopper's generation: fork, exit, again; a daemonizer's middle child) hands its children
to this process, a subreaper, whose list the walk read already: one pass finds neither it
nor them. A run that exited 0 then kept nothing of a hopper it left (no process of its was
found to carry its marker), and the next pass of its leftover kill killed the hopper's next
generation; a look for the daemons found none alive and forgot their markers.

So the main thread's list, where the kernel puts every orphan, is read again after the
walk, and each unregistered pid on it not visited yet is walked too, until a read finds
none. Then every live process of the subtree at that read descends from a child of this
process the walk found alive (its children re-parent here before it turns zombie). A hopper
that forks faster than the walk reads could keep that going: `ROUNDS` reads at most; a walk
whose every re-read found new processes says so, one WARNING line (`orphan_walk_unsettled`:
the 1st, 10th, 100th... time in this process, as a hopper may go on for as long as the task).

With no root at all (a run's usual exit: it left nothing), the walk read no process, so none
could exit during it: the caller's list, read just before, is that read already, and it is
not read again (a kill -9's restart read the list twice before its fork).

`children_now`: the one read of this process's list a supervisor makes as it starts, the
children it had before (not the task's: its walks leave them out).
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from executor.logs import log_event
from executor.procs import proctree
from executor.procs.proctree import ProcInfo

logger = logging.getLogger(__name__)

ROUNDS = 16  # re-reads of the orphans' list a walk makes at most
_unsettled = [0]  # walks whose re-reads all found new processes, in this process


def walk(me: int, roots: list[int], registered: Callable[[], frozenset[int]],
         prune: Callable[[ProcInfo], bool], skip: frozenset[int] = frozenset(), label: str = "",
         ) -> tuple[dict[int, ProcInfo], list[int], frozenset[int]]:
    """`roots` (children of `me`) and their subtrees, then each orphan that came to `me`
    meanwhile; returns the processes (parents first within each subtree), every root
    visited, and the registered pids as read after the last list (`registered()`, read
    after each list: a child this process forked and listed is registered by then). With no
    root, nothing is walked nor listed again: the registered pids are read once.
    `label`: the task's, for the line a walk that never settled writes."""
    if not roots:
        return {}, roots, registered()
    procs = proctree.walk(roots, prune=prune, adopted=True)
    visited = set(roots) | skip
    regs = registered()
    for _ in range(ROUNDS):
        kids = proctree.children(me, leader_only=True)
        regs = registered()
        new = [k for k in kids if k not in visited and k not in procs and k not in regs]
        if not new:
            break
        visited.update(new)
        roots = [*roots, *new]
        procs.update(proctree.walk(new, prune=prune, adopted=True))
    else:
        _said_unsettled(label, len(roots))
    return procs, roots, regs


def _said_unsettled(label: str, roots: int) -> None:
    _unsettled[0] += 1
    if str(_unsettled[0]).rstrip("0") == "1":
        log_event(logger, logging.WARNING, "orphan_walk_unsettled", task=label, times=_unsettled[0],
                  reason=f"each of its {ROUNDS} re-reads of the orphans' list found new processes (a fork-hopper "
                         f"forking faster than the walk reads; {roots} roots walked)",
                  consequence="a process forked after the last read is left to the next walk")


def children_now(me: int, registered: frozenset[int]) -> frozenset[tuple[int, int]]:
    """The children `me` has now that are not `registered`, by pid and start time (those
    a supervisor had before it started: not the task's, `Containment.prepare`)."""
    found = set()
    for pid in proctree.children(me):
        info = proctree.read_proc(pid) if pid not in registered else None
        if info is not None:
            found.add((pid, info.start))
    return frozenset(found)
