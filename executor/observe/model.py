"""What the observer's pages and JSON show, as the adapters read it. PURE.

`TaskDetail` is one task as read for its page: its `stoker ps` row, its `stoker status`
inspection (the replayed view, the truth about its supervisor, LOST leftovers), the CPU and
memory of each running run's process tree (`Usage`), and its bound definition. `LogChunk`
is a range of one run's log, cut on character and line boundaries (`logrange`).

`cpu_look` is the one rule of the CPU figures: the CPU time a tree used since the
previous look, over the wall time between the looks; at the first look (or when the tree
lost processes, whose time left with them) the average since the run started. A look within
MIN_INTERVAL_SECS of the previous one (two viewers, a page and a scraper) measures nothing:
it shows the figure the look before measured, and that look's sample stays the next one's
start. The observer samples nothing on its own: a figure is as fresh as the page.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from executor.task.inspection import Inspection
    from executor.task.usagefigures import Figures

SINCE_LAST_LOOK = "since the previous look"
SINCE_START = "average since the run started"
MIN_INTERVAL_SECS = 0.2  # shorter than this between looks: too noisy, use the average


@attrs.frozen(slots=True)
class CpuSample:
    """A tree's CPU time (user + system, seconds) at a monotonic time, and the percent a look
    measured there (since the look before it; None: none measured)."""

    at: float
    cpu_secs: float
    percent: float | None = None


@attrs.frozen(slots=True)
class Usage:
    """One run's process tree now."""

    pid: int
    processes: int  # in the tree, the run's top process included
    rss_bytes: int
    cpu_percent: float | None  # of one core; None when not known
    cpu_basis: str  # SINCE_LAST_LOOK or SINCE_START
    started_wall: float | None  # the top process's start
    stopped: bool = False  # the top process is stopped (`kill -STOP`, a debugger)
    cpu_secs: float = 0.0  # CPU time (user + system) of the processes in the tree now


def cpu_look(previous: CpuSample | None, now: CpuSample,
             run_secs: float | None) -> tuple[float | None, str, CpuSample]:
    """(percent of one core, basis, the sample the next look starts from): since `previous`
    when it is usable; too soon after it, what it measured, `previous` kept; else the
    average over `run_secs` (how long the tree's top process has run)."""
    keep = now
    if previous is not None and now.cpu_secs >= previous.cpu_secs:
        if now.at - previous.at >= MIN_INTERVAL_SECS:
            percent = 100.0 * (now.cpu_secs - previous.cpu_secs) / (now.at - previous.at)
            return percent, SINCE_LAST_LOOK, attrs.evolve(now, percent=percent)
        if previous.percent is not None:
            return previous.percent, SINCE_LAST_LOOK, previous
        keep = previous  # too soon, nothing measured yet: the window stays open from it
    average = 100.0 * now.cpu_secs / run_secs if run_secs is not None and run_secs > 0 else None
    return average, SINCE_START, keep


@attrs.frozen(slots=True)
class Choice:
    """One of the running tasks that share the task id asked for, and where it is shown."""

    task_id: str  # as its entry writes it (the same as Unicode text as the one asked for)
    supervisor: str  # PID-START, which names it
    supervisor_pid: int
    job_key: str
    sandbox: str
    registered_wall: float
    url: str = ""  # the page asked for, of this task


@attrs.frozen(slots=True)
class TaskSummary:
    """One task of the list: its `stoker ps` row (`executor/task/inspectionjson.row`) and the
    ports its checkpoint names."""

    row: Mapping[str, Any]
    ports: Mapping[str, int]
    supervisor: str = ""  # its registry entry's PID-START, which its links name ("": none)


@attrs.frozen(slots=True)
class TaskDetail:
    row: Mapping[str, Any]
    inspection: Inspection
    usage: Mapping[str, Usage]  # by process name: its current run, when it runs
    definition: Mapping[str, Any] | None
    definition_problem: str  # why there is no definition ("" when there is one)
    status: Mapping[str, Any]  # `stoker status --json` of the task
    figures: Figures | None = None  # its use against its reservation
    supervisor_stopped: bool = False  # its live supervisor is stopped (`kill -STOP`, a debugger)
    supervisor_frozen: str = ""  # the cgroup that holds its live supervisor frozen (a task's page only)
    supervisor: str = ""  # its registry entry's PID-START, which its links name ("": none)


@attrs.frozen(slots=True)
class LogChunk:
    """Bytes [start, end) of a run's log of `size` bytes, and where the neighbours start."""

    task_id: str
    process: str
    run: int
    stream: str
    start: int
    end: int
    size: int
    data: str  # the bytes as UTF-8 (an invalid byte shows as U+FFFD)
    capped: bool  # less than asked: the server's cap
    runs: tuple[int, ...]  # the runs that have a log
    parts: tuple[str, ...]  # the run's streams, rotated parts included (stdout.1, ...)
    file: str = ""  # which file was read ("DEVICE:INODE:GENERATION", `logrange.FILE_IDENT`): another one once it was rotated
    run_dir: str = ""  # the run's directory ("DEVICE:INODE"): another one in a new attempt
    continues: bool = True  # follow mode: right after what the request held (False: its
    # file was truncated, or rotated out of reach: this is a file from its start)
    rotated: bool = False  # follow mode: a rotated file, complete: more follows in another
    over: bool = False  # the task's supervisor let go or is gone: no process writes any more
    supervisor: str = ""  # the task's registry entry's PID-START, which its links name
    hole_before: int = 0  # a sparse log's hole that ends at `start` (never read): the range
    # before ends where it begins (`executor/observe/logread.py`)

    @property
    def length(self) -> int:
        return self.end - self.start

    def to_json(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "process": self.process, "run": self.run,
                "stream": self.stream, "offset": self.start, "end": self.end,
                "length": self.length, "size": self.size, "capped": self.capped,
                "data": self.data, "runs": list(self.runs), "parts": list(self.parts),
                "file": self.file, "dir": self.run_dir, "continues": self.continues,
                "rotated": self.rotated, "over": self.over, "supervisor": self.supervisor or None,
                "latest_run": self.runs[-1] if self.runs else None,
                "hole_before": self.hole_before}
