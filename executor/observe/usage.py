"""CPU and memory of a task's running runs, each with its process tree, and of the
other processes it owns (daemons, orphans), read from /proc.

Read when a page asks, never sampled in the background. For each run the checkpoint says is
running: its top process must be the run the checkpoint names, a child of the task's live
supervisor (the parent in its `/proc/PID/stat`, the same read that gives its start, CPU,
RSS and whether it is stopped: no window for the pid to be reused between them), so a
reused pid is never shown as the run. The task's held processes (what a run that exited 0
left, the orphans its supervisor adopted: the list beside the checkpoint,
`executor/task/heldfile.py`) count the same way: each only while it is a child of the live
supervisor with the start the list records (so neither a reused pid nor another process a
planted list names). Each tree is found through the kernel's `/proc/PID/task/TID/children`
lists (no scan of the host's processes), and its RSS and CPU time (user + system) are added
up from each process's `/proc/PID/stat`.
These are the numbers psutil reads; reading them directly costs
a quarter of psutil's per-process objects, which keeps a page of 100 trees within its
budget (bench/bench_observe.py). Without the children lists (a kernel built without
CONFIG_PROC_CHILDREN) a tree is its top process alone.

The CPU % is since the previous look at the same process, else the average since the run
started (`executor/observe/model.cpu_look`: a look too soon after the previous one shows
what that one measured). The tree's CPU time at a look is kept by
what was looked at: a task's runs (by its supervisor), or the other processes it owns; the
next look at the same kind replaces what the previous one kept, so a run that has ended is
forgotten at the next look at its task (a flapping task's pids do not pile up), and the
looks at `MAX_LOOKED_AT` tasks and kinds at most are kept, the least recently looked at
dropped first. Thread-safe: requests are served by
several threads. Nothing here raises for a process that ends meanwhile.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable

import attrs

from executor.host.identity import boot_wall, read_proc
from executor.observe.model import CpuSample, Usage, cpu_look
from executor.procs.pidsignal import live_fields
from executor.procs.watchdogsh import WATCHDOG_NAME

MAX_TREE = 10000
MAX_LOOKED_AT = 4096  # (supervisor, kind) pairs whose last look is kept
RUNS, OWNED = "runs", "owned"
Looked = dict[tuple[int, int], CpuSample]  # (pid, start) -> the tree's CPU time at a look
_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@attrs.frozen(slots=True)
class RunRef:
    """A run the checkpoint says is running: its process, top pid and the pid of the live
    supervisor that started it."""

    process: str
    pid: int
    supervisor: int


@attrs.frozen(slots=True)
class _Stat:
    parent: int
    start: int  # ticks after boot (field 22, as this reader's time namespace counts it)
    stopped: bool  # state T (SIGSTOP, job control) or t (a tracer)
    cpu: float  # seconds, user + system
    rss: int  # bytes
    threads: int  # field 20: 1 for most processes, whose one children list is named by the pid


def _stat(pid: int) -> _Stat | None:
    """What one read of /proc/PID/stat tells of a live process; None if gone or a zombie."""
    fields = live_fields(read_proc(f"/proc/{pid}/stat", 4096))  # a headless thread group lives
    if fields is None or len(fields) < 22:
        return None
    try:
        cpu = (int(fields[11]) + int(fields[12])) / _TICKS
        return _Stat(int(fields[1]), int(fields[19]), fields[0] in (b"T", b"t"), cpu, int(fields[21]) * _PAGE,
                     int(fields[17]))
    except ValueError:
        return None


def _children(pid: int, threads: int = 0) -> list[int]:
    """The children of `pid`, each thread's (`threads`, from its stat: 1 saves listing
    its threads, the one is the pid; 0: not known)."""
    if threads == 1:
        return [int(c) for c in read_proc(f"/proc/{pid}/task/{pid}/children", 65536).split()]
    found: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tids:
        found.extend(int(c) for c in read_proc(f"/proc/{pid}/task/{tid}/children", 65536).split())
    return found


def _is_watchdog(pid: int) -> bool:
    """Whether `pid` runs as a watchdog does (`executor/procs/watchdog.start_watchdog`:
    `/bin/sh -c COMMAND stoker-watchdog MARKER ...`): asked only of the pid its supervisor
    wrote, which a task that planted its own held.json could name."""
    words = read_proc(f"/proc/{pid}/cmdline", 65536).split(b"\0")
    return len(words) > 3 and words[0] == b"/bin/sh" and words[3] == WATCHDOG_NAME.encode()


def _tree_totals(pid: int, top: _Stat) -> tuple[int, float, int]:
    """(processes, CPU seconds, RSS bytes) of `pid` (`top`: its stat, read already) and its
    descendants that still run."""
    count, cpu, rss = 1, top.cpu, top.rss
    todo, seen = _children(pid, top.threads), {pid}
    while todo and count < MAX_TREE:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        found = _stat(current)
        if found is None:
            continue
        count, cpu, rss = count + 1, cpu + found.cpu, rss + found.rss
        todo.extend(_children(current, found.threads))
    return count, cpu, rss


class UsageSampler:
    def __init__(self, monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self._monotonic, self._wall = monotonic, wall
        self._lock = threading.Lock()
        # (supervisor, RUNS or OWNED) -> (pid, start) -> the tree's CPU time at the last look
        self._last: dict[tuple[int, str], Looked] = {}

    def sample(self, runs: Iterable[RunRef]) -> dict[str, Usage]:
        """The usage of each run's tree, by process name (runs not running are left out)."""
        runs = list(runs)
        boot = boot_wall() if runs else None
        out: dict[str, Usage] = {}
        looks: dict[int, Looked] = {}  # by supervisor: a task's runs have one
        for ref in runs:
            usage = self._one(ref, boot, self._kept((ref.supervisor, RUNS)), looks.setdefault(ref.supervisor, {}))
            if usage is not None:
                out[ref.process] = usage
        for supervisor, looked in looks.items():
            self._keep((supervisor, RUNS), looked)
        return out

    def owned(self, supervisor: int, runs: Iterable[int], watchdog: int | None) -> list[Usage]:
        """The trees of the live `supervisor`'s other children, the `runs`' tops left out:
        as the task's subreaper it is the parent of every process of the task that is no
        run's (the daemons its runs left, each orphan it adopted, whether or not it looked
        since: its held list waits for that look, and waits for ever for an idle task's
        orphan adopted more than 0.8 s after its run started), and of its shell health
        checks; its `watchdog` (the pid its supervisor wrote beside the checkpoint, and
        running as one: never one told by its command line alone, which a task's process
        can take), which is not the task's, is left out. Each counts only while the supervisor is its parent in the same
        read of its stat that gives its figures, so a pid reused meanwhile is not."""
        skip = set(runs)
        children = [pid for pid in dict.fromkeys(_children(supervisor)) if pid not in skip]
        boot = boot_wall() if children else None
        out: list[Usage] = []
        before = self._kept((supervisor, OWNED))
        looked: Looked = {}
        for pid in children:
            top = _stat(pid)
            if top is None or top.parent != supervisor or pid == watchdog and _is_watchdog(pid):
                continue
            out.append(self._measure(pid, top, boot, before, looked))
        self._keep((supervisor, OWNED), looked)
        return out

    def _one(self, ref: RunRef, boot: float | None, before: Looked, looked: Looked) -> Usage | None:
        top = _stat(ref.pid)
        if top is None or top.parent != ref.supervisor:
            return None  # gone, or another process has the pid now
        return self._measure(ref.pid, top, boot, before, looked)

    def _measure(self, pid: int, top: _Stat, boot: float | None, before: Looked, looked: Looked) -> Usage:
        """The tree of `pid`, whose stat `top` was read once: its identity, CPU, RSS and
        whether it is stopped come from that one read (no window for the pid to be reused
        between them). Its CPU time is since `before`, what the previous look kept; now goes into
        `looked`, what this look keeps."""
        created = None if boot is None else boot + top.start / _TICKS
        count, cpu, rss = _tree_totals(pid, top)
        key = (pid, top.start)
        run_secs = None if created is None else self._wall() - created
        percent, basis, looked[key] = cpu_look(before.get(key), CpuSample(self._monotonic(), cpu), run_secs)
        return Usage(pid=pid, processes=count, rss_bytes=rss, cpu_percent=percent,
                     cpu_basis=basis, started_wall=created, stopped=top.stopped,
                     cpu_secs=round(cpu, 2))

    def _kept(self, kind: tuple[int, str]) -> Looked:
        """What the previous look at `kind` kept (never changed once kept: a look replaces it)."""
        with self._lock:
            return self._last.get(kind, {})

    def _keep(self, kind: tuple[int, str], looked: Looked) -> None:
        """What this look at `kind` found replaces what the previous look kept (a tree it
        did not find has ended), as the most recently looked at."""
        with self._lock:
            self._last.pop(kind, None)
            if looked:
                self._last[kind] = looked
            while len(self._last) > MAX_LOOKED_AT:
                del self._last[next(iter(self._last))]
