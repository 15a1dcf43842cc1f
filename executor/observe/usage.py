"""CPU and memory of a task's running runs, each with its process tree (psutil).

Read when a page asks, never sampled in the background: one pass over the host's processes
builds the parent → children map, then each run's top process is checked to be the run the
checkpoint names (its start within `START_SLACK_SECS` of the run's recorded start, so a
reused pid is never shown as the run) and its tree's RSS and CPU time are added up.

The CPU % is since the previous look at the same process (the tree's CPU time then is
kept, `MAX_REMEMBERED` at most, dropped after `FORGET_SECS`), else the average since the
run started (`executor/observe/model.cpu_percent`). Thread-safe: requests are served by
several threads. Nothing here raises for a process that ends meanwhile.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping

import attrs
import psutil

from executor.observe.model import CpuSample, Usage, cpu_percent

START_SLACK_SECS = 2.0
MAX_TREE = 10000
MAX_REMEMBERED = 20000
FORGET_SECS = 3600.0


@attrs.frozen(slots=True)
class RunRef:
    """A run the checkpoint says is running: its process, top pid and recorded start."""

    process: str
    pid: int
    started_wall: float | None


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for proc in psutil.process_iter(["ppid"]):
        ppid = proc.info.get("ppid")
        if ppid:
            children.setdefault(ppid, []).append(proc.pid)
    return children


def _tree(pid: int, children: Mapping[int, list[int]]) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo and len(found) < MAX_TREE:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def _totals(pids: Iterable[int]) -> tuple[int, float, int]:
    """(processes, CPU seconds, RSS bytes) of the pids that still run."""
    count, cpu, rss = 0, 0.0, 0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                times = proc.cpu_times()
                rss += proc.memory_info().rss
        except (psutil.Error, OSError):
            continue
        count += 1
        cpu += times.user + times.system
    return count, cpu, rss


class UsageSampler:
    def __init__(self, monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self._monotonic, self._wall = monotonic, wall
        self._lock = threading.Lock()
        self._last: dict[tuple[int, float], CpuSample] = {}

    def sample(self, runs: Iterable[RunRef]) -> dict[str, Usage]:
        """The usage of each run's tree, by process name (runs not running are left out)."""
        runs = list(runs)
        if not runs:
            return {}
        children = _children_map()
        out: dict[str, Usage] = {}
        for ref in runs:
            usage = self._one(ref, children)
            if usage is not None:
                out[ref.process] = usage
        return out

    def _one(self, ref: RunRef, children: Mapping[int, list[int]]) -> Usage | None:
        try:
            created = psutil.Process(ref.pid).create_time()
        except (psutil.Error, OSError):
            return None
        if ref.started_wall is not None and abs(created - ref.started_wall) > START_SLACK_SECS:
            return None  # another process has the pid now
        count, cpu, rss = _totals(_tree(ref.pid, children))
        if count == 0:
            return None
        now = CpuSample(self._monotonic(), cpu)
        with self._lock:
            previous = self._last.get((ref.pid, created))
            self._remember((ref.pid, created), now)
        percent, basis = cpu_percent(previous, now, self._wall() - created)
        return Usage(pid=ref.pid, processes=count, rss_bytes=rss, cpu_percent=percent,
                     cpu_basis=basis, started_wall=created)

    def _remember(self, key: tuple[int, float], sample: CpuSample) -> None:
        self._last[key] = sample
        if len(self._last) <= MAX_REMEMBERED:
            return
        cutoff = sample.at - FORGET_SECS
        for old in [k for k, v in self._last.items() if v.at < cutoff]:
            del self._last[old]
        while len(self._last) > MAX_REMEMBERED:
            del self._last[next(iter(self._last))]
