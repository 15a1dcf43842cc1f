"""Whether a run's SIGKILL came from the kernel's OOM killer, and the memory limit, in words.

A run killed by a signal nobody in the task sent is a loss (`process_rules.py`); when that
signal is a SIGKILL, the likeliest sender is the kernel's OOM killer, and nothing in the
exit says so. The kernel counts its kills per memory cgroup: cgroup v2's `memory.events`
`oom_kill` (hierarchical: a cgroup's count includes its descendants'), cgroup v1's
`memory.oom_control` `oom_kill` (Linux ≥ 4.13; the victim's own cgroup). Every run is
forked by the supervisor, so it is born in the supervisor's memory cgroup (or, under v2, in
the task's cgroup below it, which that count includes): `oomcount.OomCounter` is that
cgroup's count, read when the supervisor starts and as each run is forked (an early start's
runs: just before), by `oomcount.py`, which finds and reads it with no module the early
start would not load; and when a run ends by a SIGKILL nobody in the task sent
(`oomcount.named`, which loads this module then, and only then): a count that grew during
the run means the kernel's OOM killer killed in that cgroup meanwhile, and the run's end
says so, with the cgroup and its limit (`named`). One pread of a few dozen bytes each, of
the file the supervisor keeps open (`OomCounter.hold`), 4-5 us.

What it cannot tell: a kill of another process of the same cgroup (another task's under a
shared v2 parent, a child of the run, a shell check) during a run that someone else
SIGKILLed: that run is named the OOM killer's. One kill names one run (`named`): of two
runs SIGKILLed as one kill came, the first reaped is named, the other is not (the victim
dies first, and is reaped first, unless the other's SIGKILL came first). What it misses
(the end reads as before, "killed by SIGKILL"): a run that moved itself to another memory
cgroup (root only); a host without the counter (Linux < 4.13, or the root cgroup, which
has no v2 `memory.events`).

Who the OOM killer takes (`oomcount.shield`, kept there: every supervisor sets it as it
starts): the process with the highest badness in the cgroup out of memory, its RSS + swap +
page tables plus `oom_score_adj` thousandths of the memory it chooses within, with no regard
for who started whom. The supervisor (`stoker run`'s or `stoker executor`'s Python, about 22
MiB of RSS) shares the cgroup with the task's processes; a task that runs several smaller
processes, or whose memory is not any process's (tmpfs, /dev/shm), has it taken first: the
watchdog then kills the task, and under Mesos the agent hears only that the executor died.
So a supervisor that may lower its `oom_score_adj` (CAP_SYS_RESOURCE: root) sets it to
`PROTECTED_ADJ`, and every child it forks (runs, shell health checks, the watchdog) is
forked at the adj it started with (`oomcount.Shield.lift` before the fork, `restore` after:
`Reaper.forking`); a process written to with that privilege may lower its own no further
than that, so no run inherits the protection or the right to take it. A supervisor that may
not lower it (not root), or that started at `PROTECTED_ADJ` or below (a unit's
`OOMScoreAdjust=`), leaves it as it is.

Never raises: an unreadable file is no explanation.
"""
from __future__ import annotations

import posixpath
import re

import attrs

from executor.events import ExitStatus
from executor.procs.oomcount import OomCounter, read

UNLIMITED = 1 << 62  # v1 writes "no limit" as the largest page multiple below 2**63
_MIB = 1 << 20


def named(status: ExitStatus, counter: OomCounter, since: int | None) -> ExitStatus:
    """`status` (a SIGKILL nobody in the task sent: `oomcount.named` looked), naming the
    kernel's OOM killer as its sender when the kill count grew since the run was forked."""
    killer = explain(counter, since)
    return status if killer is None else attrs.evolve(status, killer=killer)  # none: the status itself


def explain(counter: OomCounter, since: int | None = None) -> str | None:
    """The OOM killer's part in a run's SIGKILL, in words ("the kernel's OOM killer (memory
    cgroup /a: limit 30 MiB)"), None when the count did not grow since `since` (the count
    as the run was forked; None: as the supervisor started) by a kill that has not named
    another run already (two runs SIGKILLed as one was OOM-killed: the first reaped is
    named, the other was someone else's)."""
    now = counter.count()
    before = counter.seen if since is None else since
    if now is None:
        return None
    with counter.claiming:  # the look and the claim as one: two runs' ends, two threads
        kill = next((n for n in range(now, before, -1) if n not in counter.claimed), None)
        if kill is None:
            return None
        counter.claimed.add(kill)
    more = f"; {now - before} OOM kills there during the run" if now - before > 1 else ""
    return f"the kernel's OOM killer (memory cgroup {counter.path}: {limit(counter)}{more})"


def limit(counter: OomCounter) -> str:
    """'limit 30 MiB', or 'no memory limit: the host ran out of memory'."""
    value = _limit_bytes(counter)
    if value is None:
        return "no memory limit: the host ran out of memory"
    return f"limit {format_bytes(value)}"


def _limit_bytes(counter: OomCounter) -> int | None:
    if not counter.v2:  # the lowest limit of the cgroup and its ancestors
        text = read(counter.directory, "memory.stat")
        found = re.search(r"^hierarchical_memory_limit (\d+)$", text, re.M) if text else None
        value = int(found.group(1)) if found else None
        return value if value is not None and value < UNLIMITED else None
    lowest, directory = None, counter.directory
    while True:
        text = read(directory, "memory.max")  # "max", or None: no such file (the root cgroup's)
        if text is not None and text.strip().isdigit():
            lowest = int(text) if lowest is None else min(lowest, int(text))
        if directory == counter.top or directory == "/":
            return lowest
        directory = posixpath.dirname(directory)


def format_bytes(value: int) -> str:
    """30 MiB, 1.5 GiB, 4096 bytes."""
    if value < _MIB:
        return f"{value} bytes"
    for unit, size in (("GiB", 1 << 30), ("MiB", _MIB)):
        if value >= size:
            return f"{value / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{value} bytes"  # unreachable
