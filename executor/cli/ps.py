"""`stoker ps [--all] [--json]`: every task Stoker supervises on this host.

Reads the host registry (`executor/host/registry.py`; reading prunes what the retention
let go), inspects each entry's sandbox (`executor/cli/inspection.py`: the checkpoint,
whether its supervisor still runs, LOST and its leftovers) and prints one row per task:
task id, job key, state, supervisor pid, sandbox, started (date, time and age), processes
running / total, health. Columns are as wide as their longest value. Without `--all`, only
the tasks that have not ended (a LOST task has not: it is listed). A task that announces
itself in ZooKeeper gets a line after the table (its member and since when, or what its
announcer is doing); a LOST task's since and leftover processes follow. `--json` prints the same as a list of objects.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config.registry import RegistrySettings
from executor.cli.targets import registry_arguments
from executor.host.clock import iso_time, when

if TYPE_CHECKING:
    from executor.cli.inspection import Inspection
    from executor.host.entry import RegistryEntry
    from executor.task.taskview import AttemptView

COLUMNS = ["TASK_ID", "JOB_KEY", "STATE", "PID", "SANDBOX", "STARTED", "PROCS", "HEALTH"]


def register(sub: Any, command: Any) -> None:
    ps = command(sub, "ps", "list the tasks Stoker supervises on this host",
                 "examples:\n  stoker ps\n  stoker ps --all --json\n"
                 "  stoker ps --root /var/run/stoker")
    ps.add_argument("--all", action="store_true", help="also the tasks that ended")
    ps.add_argument("--json", action="store_true", help="print the list as JSON")
    registry_arguments(ps)
    ps.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from executor.cli.inspection import inspect_sandbox, marker_of, with_leftovers
    from executor.host.registry import Registry

    settings = RegistrySettings.from_args(args, os.environ)
    listed = Registry(settings).entries()
    entries = [item.entry for item in listed]
    found = [inspect_sandbox(Path(e.sandbox), e) for e in entries]
    found = with_leftovers(found, [marker_of(i, e) for i, e in zip(found, entries)])
    rows = [row(e, i) for e, i in zip(entries, found) if args.all or not i.truth.ended]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        which = "tasks" if args.all else "live tasks"
        print(f"no {which} in the registry {settings.registry_root}"
              f"{'' if args.all else ' (--all lists ended ones too)'}")
        return 0
    sys.stdout.write(format_rows(rows, time.time()))
    return 0


def _procs(inspection: Inspection) -> tuple[int, int]:
    """(running, total) of the attempt's processes; a LOST task's running are the ones
    that left processes behind."""
    attempt = inspection.attempt
    if attempt is None:
        return 0, 0
    total = len(attempt.processes)
    if inspection.truth.lost:
        return len({p.process for p in inspection.leftovers if p.process}), total
    return sum(p.state == "RUNNING" for p in attempt.processes), total


def _health(inspection: Inspection) -> str:
    attempt = inspection.attempt
    if attempt is None:
        return "-"
    h = attempt.health
    if h.checker == "none" and h.state is None:
        return "none"
    return h.state or "STARTING"


def row(entry: RegistryEntry, inspection: Inspection) -> dict[str, Any]:
    """One task as a JSON object (the text table shows some of it)."""
    attempt, truth = inspection.attempt, inspection.truth
    started = attempt.started_wall if attempt and attempt.started_wall else entry.registered_wall
    running, total = _procs(inspection)
    return {
        "task_id": entry.task_id, "job_key": entry.job_key, "label": entry.label,
        "state": truth.state, "recorded_state": attempt.state if attempt else None,
        "supervisor_alive": truth.alive, "ended": truth.ended,
        "supervisor_pid": entry.supervisor_pid, "front_end": entry.front_end.value,
        "sandbox": entry.sandbox, "started": started, "started_iso": iso_time(started),
        "processes_running": running, "processes_total": total, "health": _health(inspection),
        "lost_since": truth.since_wall, "lost_since_source": truth.since.value if truth.since else None,
        "leftovers": [{"pid": p.pid, "process": p.process, "run": p.run, "command": p.command}
                      for p in inspection.leftovers],
        "problem": inspection.problem,
        "announcement": _announcement(attempt),
    }


def _announcement(attempt: AttemptView | None) -> dict[str, Any] | None:
    """The task's ServerSet membership as its checkpoint last recorded it (None: it does not
    announce)."""
    a = attempt.announcement if attempt is not None else None
    if a is None:
        return None
    return {"path": a.path, "member": a.member, "member_path": a.member_path, "state": a.state,
            "connection": a.connection, "reason": a.reason, "since": a.since_wall,
            "since_iso": iso_time(a.since_wall)}


def _announcement_note(r: dict[str, Any], now_wall: float) -> str:
    from executor.cli.views import announcement_text
    from executor.task.taskview import AnnouncementView

    a = r["announcement"]
    view = AnnouncementView(path=a["path"], member=a["member"], state=a["state"],
                            connection=a["connection"], reason=a["reason"], since_wall=a["since"])
    return announcement_text(view, now_wall, lost=r["state"] == "LOST")


def format_rows(rows: list[dict[str, Any]], now_wall: float) -> str:
    """The table and the LOST tasks' notes; what came from the registry and the checkpoints
    is escaped, so nothing printed can drive the terminal."""
    from config.words import printable_lines
    from executor.cli.views import table

    cells = [COLUMNS]
    for r in rows:
        cells.append([r["task_id"] or "-", r["job_key"] or "-", r["state"], str(r["supervisor_pid"]),
                      r["sandbox"], when(r["started"], now_wall),
                      f"{r['processes_running']}/{r['processes_total']}", r["health"]])
    lines = table([c + [""] for c in cells], indent="")
    for r in rows:
        if r["announcement"] is not None:
            lines.append(f"{r['task_id'] or r['sandbox']}: {_announcement_note(r, now_wall)}")
    for r in rows:
        if r["state"] != "LOST":
            continue
        since = when(r["lost_since"], now_wall) if r["lost_since"] else "an unknown time"
        lines.append(f"{r['task_id'] or r['sandbox']}: LOST (supervisor gone since {since}, "
                     f"{r['lost_since_source'] or 'no record'})")
        left = ", ".join(f"{p['pid']} ({p['process'] or '?'} run {p['run']})" for p in r["leftovers"])
        lines.append(f"  leftover processes: {left or 'none'}")
    return printable_lines("\n".join(lines)) + "\n"
