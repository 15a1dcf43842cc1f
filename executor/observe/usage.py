"""CPU and memory of a task's running runs, each with its process tree, read from /proc.

Read when a page asks, never sampled in the background. For each run the checkpoint says is
running: its top process must be the run the checkpoint names, a child of the task's live
supervisor (`executor/host/identity.child_start_ticks`), so a reused pid is never shown as
the run. Its tree is found through the kernel's `/proc/PID/task/TID/children` lists (no
scan of the host's processes), and the tree's RSS and CPU time (user + system) are added up
from each process's `/proc/PID/stat` (and whether the top one is stopped is read there).
These are the numbers psutil reads; reading them directly costs
a quarter of psutil's per-process objects, which keeps a page of 100 trees within its
budget (bench/bench_observe.py). Without the children lists (a kernel built without
CONFIG_PROC_CHILDREN) a tree is its top process alone.

The CPU % is since the previous look at the same process (the tree's CPU time then is
kept, `MAX_REMEMBERED` at most, dropped after `FORGET_SECS`), else the average since the
run started (`executor/observe/model.cpu_percent`). Thread-safe: requests are served by
several threads. Nothing here raises for a process that ends meanwhile.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable

import attrs

from executor.host.identity import boot_wall, child_start_ticks, is_stopped, read_proc
from executor.observe.model import CpuSample, Usage, cpu_percent

MAX_TREE = 10000
MAX_REMEMBERED = 20000
FORGET_SECS = 3600.0
_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@attrs.frozen(slots=True)
class RunRef:
    """A run the checkpoint says is running: its process, top pid and the pid of the live
    supervisor that started it."""

    process: str
    pid: int
    supervisor: int


def _stat(pid: int) -> tuple[int, float, int] | None:
    """(start ticks after boot, CPU seconds, RSS bytes) of a live process; None if gone."""
    data = read_proc(f"/proc/{pid}/stat", 4096)
    close = data.rfind(b")")
    fields = data[close + 2:].split()
    if close < 0 or len(fields) < 22 or fields[0] in (b"Z", b"X", b"x"):
        return None
    try:
        cpu = (int(fields[11]) + int(fields[12])) / _TICKS
        return int(fields[19]), cpu, int(fields[21]) * _PAGE
    except ValueError:
        return None


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in threads:
        found.extend(int(c) for c in read_proc(f"/proc/{pid}/task/{tid}/children", 65536).split())
    return found


def _tree_totals(pid: int) -> tuple[int, float, int]:
    """(processes, CPU seconds, RSS bytes) of `pid` and its descendants that still run."""
    count, cpu, rss = 0, 0.0, 0
    todo, seen = [pid], set()
    while todo and count < MAX_TREE:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        found = _stat(current)
        if found is None:
            continue
        count, cpu, rss = count + 1, cpu + found[1], rss + found[2]
        todo.extend(_children(current))
    return count, cpu, rss


class UsageSampler:
    def __init__(self, monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self._monotonic, self._wall = monotonic, wall
        self._lock = threading.Lock()
        self._last: dict[tuple[int, int], CpuSample] = {}

    def sample(self, runs: Iterable[RunRef]) -> dict[str, Usage]:
        """The usage of each run's tree, by process name (runs not running are left out)."""
        runs = list(runs)
        boot = boot_wall() if runs else None
        out: dict[str, Usage] = {}
        for ref in runs:
            usage = self._one(ref, boot)
            if usage is not None:
                out[ref.process] = usage
        return out

    def _one(self, ref: RunRef, boot: float | None) -> Usage | None:
        ticks = child_start_ticks(ref.pid, ref.supervisor)
        if ticks is None:
            return None  # another process has the pid now
        created = None if boot is None else boot + ticks / _TICKS
        count, cpu, rss = _tree_totals(ref.pid)
        if count == 0:
            return None
        now = CpuSample(self._monotonic(), cpu)
        key = (ref.pid, ticks)
        with self._lock:
            previous = self._last.get(key)
            self._remember(key, now)
        run_secs = None if created is None else self._wall() - created
        percent, basis = cpu_percent(previous, now, run_secs)
        return Usage(pid=ref.pid, processes=count, rss_bytes=rss, cpu_percent=percent,
                     cpu_basis=basis, started_wall=created, stopped=is_stopped(ref.pid))

    def _remember(self, key: tuple[int, int], sample: CpuSample) -> None:
        self._last[key] = sample
        if len(self._last) <= MAX_REMEMBERED:
            return
        cutoff = sample.at - FORGET_SECS
        for old in [k for k, v in self._last.items() if v.at < cutoff]:
            del self._last[old]
        while len(self._last) > MAX_REMEMBERED:
            del self._last[next(iter(self._last))]
