"""`stoker ps [--all] [--json]`: every task Stoker supervises on this host.

Reads the host registry (`executor/host/registry.py`; reading prunes what the retention
let go), inspects each entry's sandbox (`executor/task/inspection.py`: the checkpoint,
whether its supervisor still runs, LOST and its leftovers; `row` makes each task's object)
and prints one row per task (without `--all`, an entry whose supervisor let go once its task's
end was recorded, `RegistryEntry.end_recorded`, is not inspected: its task ended, and its
checkpoint, up to a megabyte of records, is not replayed): task id, job key, state, supervisor pid, sandbox, started
(date, time and age), processes running / total, health (`was:` the last verdict once the
check no longer runs: `inspectionjson.health_shown`). Columns are as wide as their longest value. Without `--all`, only
the tasks that have not ended (a LOST task has not: it is listed, but one a later supervisor
in its sandbox replaced that left no process: `inspection.with_replacements`; a GONE one with no end so too), and one whose supervisor
died while killing it while a process of it lives (ended, its leftovers to end). A task that announces
itself in ZooKeeper gets a line after the table (its member and since when, or what its
announcer is doing); so does a RESTARTING one (`stoker run` between two attempts: how the
last one ended, and when the next starts); what kept a task's checkpoint from being read (its sandbox renamed or deleted,
its `.stoker` renamed away: the row shows nothing read, `SANDBOX GONE` or `UNKNOWN` with `-` processes under
a live supervisor, else GONE) and a LOST task's since and leftover processes follow. `--json` prints the same as a list of objects.
A registry that is there but cannot be read (another user's, not trusted) is one `stoker:
error:` line and exit 1, never an empty list; an entry it cannot read whose supervisor runs
(another version of Stoker wrote it) is one line on stderr, naming it; any other file it does
not read as a task, but what the registry and file systems keep there, is counted in one line on
stderr, naming the first (`Registry.read_noting`). Where several hosts
share the registry root (a home on NFS), only this host's tasks are listed (another host's
supervisor's pid means nothing here: it read LOST or GONE), and one line on stderr, with
`--json` too, says how many of the others' it holds and which hosts' (`split_hosts`).
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
from config.words import printable
from executor.cli.targets import error, registry_arguments
from executor.host.clock import when

if TYPE_CHECKING:
    from executor.task.inspection import Inspection

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
    from executor.host.identity import one_reading
    from executor.host.lock import LockTable
    from executor.host.registry import Registry, RegistryUnreadable
    from executor.host.registrylookup import other_hosts_line, split_hosts
    from executor.task.inspection import inspect_sandbox, marker_of, with_leftovers, with_replacements
    from executor.task.inspectionjson import row

    settings = RegistrySettings.from_args(args, os.environ)
    with one_reading():  # each supervisor looked at once: by the pruning, then the inspection
        try:
            listed, unreadable, not_read = Registry(settings).read_noting()
        except RegistryUnreadable as exc:  # never "no tasks" for a registry it could not read
            error(str(exc))
            return 1
        listed, others = split_hosts(listed)  # another host's pid means nothing here
        every = [item.entry for item in listed]
        if not args.all:  # an end its supervisor recorded: not listed, its checkpoint not replayed
            listed = [item for item in listed if not item.entry.end_recorded]
        locks = LockTable()  # /proc/locks read once for all of them, when one is asked about
        found = [inspect_sandbox(Path(item.entry.sandbox), item.entry, locks=locks) for item in listed]
    shown_root = printable(settings.registry_root)  # a newline or a byte not UTF-8 of it written out
    _say_unlisted(unreadable, other_hosts_line(others, settings.registry_root) if others else "", shown_root)
    _say_not_read(not_read, shown_root)
    entries = [item.entry for item in listed]
    found = with_leftovers(found, [marker_of(i, e) for i, e in zip(found, entries)])
    found = with_replacements(found, entries, every)  # a LOST task a later run in its sandbox replaced
    shown = [(e, i) for e, i in zip(entries, found) if args.all or _listed(i)]
    rows = [row(e, i) for e, i in shown]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        which = "tasks" if args.all else "live tasks"
        print(f"no {which} in the registry {shown_root}"
              f"{'' if args.all else ' (--all lists ended ones too)'}")
        return 0
    starting = {n for n, (_, i) in enumerate(shown) if i.unrecorded and i.truth.alive}
    sys.stdout.write(format_rows(rows, time.time(), starting))
    return 0


def _say_unlisted(unreadable: list[str], other_hosts: str, shown_root: str) -> None:
    """What the list leaves out, on stderr: the entries this version cannot read (`unreadable`,
    of live supervisors) and the tasks of other hosts (`other_hosts`, their line; "": none)."""
    for name in unreadable:
        pid = name.split("-", 1)[0]
        print(f"stoker ps: {shown_root}/{printable(name)} is not an entry this version of "
              f"Stoker reads (another version's, or damaged); its supervisor (pid {pid}) "
              f"runs, and its task is not listed", file=sys.stderr)
    if other_hosts:
        print(f"stoker ps: {printable(other_hosts)}", file=sys.stderr)


def _say_not_read(names: list[str], shown_root: str) -> None:
    """The other files of the registry it did not read as tasks (`Registry.read_noting`): one
    line on stderr, how many and the first, whatever the output (nothing else to do: the
    exit status is the list's)."""
    from executor.host.registrylookup import not_read_line

    if names:
        print(f"stoker ps: {not_read_line(names, shown_root)}", file=sys.stderr)


def _listed(inspection: Inspection) -> bool:
    """Whether `stoker ps` lists the task without `--all`: it has not ended, or its
    supervisor died while killing it (ended as the kill would have) and a process of it
    lives on, for the operator to see and end, as a LOST task's; not a LOST task a later
    supervisor in its sandbox replaced, which left no process (nothing to act on)."""
    return not inspection.truth.ended and inspection.replaced_by is None or (inspection.truth.died_killing and bool(inspection.leftovers))


def _announcement_note(r: dict[str, Any], now_wall: float) -> str:
    from executor.cli.views import announcement_text
    from executor.task.taskview import AnnouncementView

    a = r["announcement"]
    view = AnnouncementView(path=a["path"], member=a["member"], state=a["state"],
                            connection=a["connection"], reason=a["reason"], since_wall=a["since"])
    return announcement_text(view, now_wall, lost=r["state"] == "LOST")


def format_rows(rows: list[dict[str, Any]], now_wall: float, starting: set[int] | frozenset[int] = frozenset()) -> str:
    """The table and the tasks' notes; what came from the registry and the checkpoints is
    escaped, so nothing printed can drive the terminal. Each row's problem is a note but
    for the `starting` rows' (by index: a live supervisor that has recorded nothing yet)."""
    from config.words import printable_lines
    from executor.cli.views import table
    from executor.task.inspectionjson import health_shown, procs_shown, state_shown

    cells = [COLUMNS]
    for r in rows:
        cells.append([r["task_id"] or "-", r["job_key"] or "-", state_shown(r), str(r["supervisor_pid"]),
                      r["sandbox"], when(r["started"], now_wall), procs_shown(r), health_shown(r)])
    lines = table([c + [""] for c in cells], indent="")
    for r in rows:
        if r["announcement"] is not None:
            lines.append(f"{r['task_id'] or r['sandbox']}: {_announcement_note(r, now_wall)}")
    for r in rows:
        if (restart := r.get("restart")) is not None:
            from executor.host.truth import describe_restart

            said = describe_restart(restart["attempt"] - 1, restart["after_state"], restart["due"], now_wall)
            lines.append(f"{r['task_id'] or r['sandbox']}: {r['state']} ({said})")
    for n, r in enumerate(rows):  # a sandbox deleted under its task, a checkpoint that cannot
        # be read, a `.stoker` renamed away under a live supervisor (the row says SANDBOX GONE or
        # UNKNOWN -: nothing read); not a live supervisor's that has recorded nothing yet (one starting)
        if r.get("problem") and n not in starting:
            lines.append(f"{r['task_id'] or r['sandbox']}: {r['problem']}")
    for r in rows:
        lines += _unsupervised_lines(r, now_wall)
    return printable_lines("\n".join(lines)) + "\n"


def _unsupervised_lines(r: dict[str, Any], now_wall: float) -> list[str]:
    """A LOST task's since, or the end of one whose supervisor died while killing it (or
    went without an end, GONE), and then its leftover processes; nothing for another task."""
    from executor.host.truth import replaced_words, taker_name
    from executor.task.taskview import DIED_KILLING

    if r.get("died_killing"):
        head = f"{r['state']} ({DIED_KILLING})"
    elif r["state"] in ("LOST", "GONE") and not r["ended"]:  # (GONE: its supervisor recorded no end: it may have left some)
        taker = taker_name(r["replaced_by"]["task_id"], r["replaced_by"]["supervisor_pid"]) if r["replaced_by"] else ""
        if r["state"] == "GONE":
            head = f"GONE (its supervisor recorded no end{replaced_words(taker)})"
        else:
            since = when(r["lost_since"], now_wall) if r["lost_since"] else "an unknown time"
            head = f"LOST (supervisor gone since {since}, {r['lost_since_source'] or 'no record'}{replaced_words(taker)})"
    else:
        return []
    left = ", ".join(f"{p['pid']} ({p['process'] or '?'} run {p['run']})" for p in r["leftovers"])
    lines = [f"{r['task_id'] or r['sandbox']}: {head}", f"  leftover processes: {left or 'none'}"]
    if r["foreign_processes"]:
        others = ", ".join(f"{p['pid']} ({p['user']})" for p in r["foreign_processes"])
        lines.append(f"  other users' processes carrying its marker (not its leftovers): {others}")
    return lines
