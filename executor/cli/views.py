"""What `stoker status` and `stoker tail` show of a sandbox.

Owns: formatting a replayed `TaskView` as a readable table (`format_status`), finding a
process's latest run log (`latest_log`), and following a growing log (`follow`, which, like
`tail -f`, looks again every 0.2 s when idle and reopens the file when it was rotated).
Reads files only; never writes to the sandbox, never signals or starts anything.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from config.words import printable_lines
from executor.task.replay import AttemptView, ProcessView, RunView, TaskView

FOLLOW_IDLE_SECS = 0.2
FOLLOW_READ_BYTES = 65536


def format_duration(secs: float | None) -> str:
    """3.2s, 4m05s, 2h03m, 3d04h; '-' when unknown."""
    if secs is None or secs != secs:
        return "-"
    secs = max(0.0, secs)
    if secs < 60:
        return f"{secs:.1f}s"
    minutes, s = divmod(int(secs), 60)
    if minutes < 60:
        return f"{minutes}m{s:02d}s"
    hours, m = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{m:02d}m"
    days, h = divmod(hours, 24)
    return f"{days}d{h:02d}h"


def _clock(wall: float | None) -> str:
    if wall is None:
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(wall))


def _exit_text(run: RunView | None) -> str:
    if run is None:
        return "-"
    if run.signal is not None:
        return f"signal {run.signal}"
    if run.exit_code is not None:
        return f"exit {run.exit_code}"
    return "-"


def _time_text(run: RunView | None, now_wall: float) -> str:
    if run is None or run.started_wall is None:
        return "-"
    if run.ended_wall is None:
        return f"up {format_duration(now_wall - run.started_wall)}"
    return f"ran {format_duration(run.ended_wall - run.started_wall)}"


def _process_rows(processes: tuple[ProcessView, ...], now_wall: float) -> list[list[str]]:
    rows = [["PROCESS", "STATE", "RUN", "PID", "EXIT", "TIME", "RESTARTS", "REASON"]]
    for p in processes:
        run = p.current
        rows.append([
            p.name, p.state, "-" if run is None else str(run.run),
            "-" if run is None or run.pid is None else str(run.pid),
            _exit_text(run), _time_text(run, now_wall), str(p.restarts), p.reason,
        ])
    return rows


def _table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for r in rows:
        cells = [c.ljust(w) for c, w in zip(r, widths)] + [r[-1]]
        lines.append((indent + "  ".join(cells)).rstrip())
    return lines


def _health_lines(attempt: AttemptView) -> list[str]:
    h = attempt.health
    if h.checker == "none" and h.state is None:
        return ["health: no check configured"]
    lines = [
        f"health: {h.state or 'no attempt yet'} ({h.checker}); attempts={h.attempts} "
        f"consecutive_failures={h.consecutive_failures} "
        f"consecutive_successes={h.consecutive_successes}"
    ]
    for a in h.last_attempts:
        latency = "-" if a.latency_secs is None else f"{a.latency_secs * 1000:.1f} ms"
        lines.append(f"  {_clock(a.wall)}  {a.outcome:<7}  {latency:>10}  {a.reason}".rstrip())
    return lines


def format_status(view: TaskView, now_wall: float) -> str:
    """A readable status of the task as replayed from its checkpoint."""
    cur = view.current
    ports = " ".join(f"{k}={v}" for k, v in sorted(view.ports.items())) or "none"
    lines = [
        f"task {view.label or '?'}  key={view.job_key or '?'}  state={cur.state or 'unknown'}"
        f"  attempt={cur.number}",
    ]
    if cur.reason:
        lines.append(f"  reason: {cur.reason}")
    if cur.phase is not None and cur.phase.reason != cur.reason:  # nothing new: not repeated
        lines.append(f"  supervisor: {cur.phase.to_state} since {_clock(cur.phase.wall or None)}: "
                     f"{cur.phase.reason}".rstrip())
    lines.append(f"  ports: {ports}")
    since = "-" if cur.started_wall is None else f"{_clock(cur.started_wall)} " \
        f"({format_duration(now_wall - cur.started_wall)} ago)"
    lines.append(f"  task_id: {view.task_id or '-'}  supervisor_pid: "
                 f"{cur.supervisor_pid or '-'}  started: {since}")
    for old in view.attempts[:-1]:
        lines.append(f"  earlier attempt {old.number}: {old.state or 'unknown'} "
                     f"(started {_clock(old.started_wall)}) {old.reason}".rstrip())
    lines.append("")
    if cur.processes:
        lines.extend(_table(_process_rows(cur.processes, now_wall), indent=""))
    else:
        lines.append("no processes recorded")
    lines.append("")
    lines.extend(_health_lines(cur))
    return printable_lines("\n".join(lines)) + "\n"  # names and reasons come from the checkpoint


def latest_log(sandbox: Path, process: str, stderr: bool) -> Path:
    """SANDBOX/.logs/PROCESS/<highest run>/stdout (or stderr).

    Raises ValueError for a process name that leads outside the logs, FileNotFoundError
    (with the path in words) when the process has no log yet.
    """
    root = (Path(sandbox) / ".logs").resolve()
    directory = (root / process).resolve()
    if not process or directory.parent != root or directory.name != process:
        raise ValueError(f"{process!r} is not a process name")
    name = "stderr" if stderr else "stdout"
    try:
        runs = sorted((int(e.name) for e in os.scandir(directory)
                       if e.name.isdigit() and e.is_dir()), reverse=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"process {process!r} has no logs: {directory} does not "
                                f"exist") from None
    for run in runs:
        path = directory / str(run) / name
        if path.exists():
            return path
    raise FileNotFoundError(f"process {process!r} has no {name} log under {directory}")


def follow(path: Path, stop: Callable[[], bool], offset: int | None = None) -> Iterator[bytes]:
    """Yield bytes appended to `path` from `offset` (default: its end at the time of the call)
    until `stop()` is true when there is nothing new.

    Reopens the file from the start when it was replaced (rotated) or truncated. The file is
    opened by this call, not lazily, so nothing written after it returns is missed.
    """
    f = open(path, "rb")
    f.seek(0, os.SEEK_END) if offset is None else f.seek(offset)
    return _follow(path, f, stop)


def _follow(path: Path, f, stop: Callable[[], bool]) -> Iterator[bytes]:
    try:
        while True:
            data = f.read(FOLLOW_READ_BYTES)
            if data:
                yield data
                continue
            if stop():
                return
            if _replaced(path, f):
                rest = f.read()  # written to the old file just before it was rotated
                f.close()
                f = open(path, "rb")
                if rest:
                    yield rest
                continue
            time.sleep(FOLLOW_IDLE_SECS)
    finally:
        f.close()


def _replaced(path: Path, f) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False  # between a rotation's rename and the new file: look again later
    mine = os.fstat(f.fileno())
    return st.st_ino != mine.st_ino or st.st_size < f.tell()
