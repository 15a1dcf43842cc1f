"""`stoker status [SANDBOX|TASK_ID] [--json]`: a task's checkpointed state, told truthfully.

Replays the sandbox's checkpoint (read safely and bounded; each damaged record it skipped
is one `stoker: warning:` line on stderr), checks that its supervisor still runs, and prints the view of `executor/cli/views.py`: a task whose supervisor is gone
without a terminal record is LOST, with since when and its leftover processes; and the
task's use against its reservation (`executor/observe/taskusage.py`: CPU and RSS of its
running trees and of every other process it owns (its supervisor's other children but its
watchdog: daemons, orphans, shell checks), its last disk sample; `resources` in JSON). `--json`
prints the replayed view with the same truth beside it. A sandbox without a checkpoint whose
lock file says a supervisor took it is printed as what is known: its supervisor (pid, when
its registry entry, lock file or /proc/locks names it) died (LOST), let go, or is starting,
before it recorded anything. Exit 0 when printed, 1 when the sandbox has no readable
checkpoint and no supervisor took it (docs/contract.md §9).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from config.words import loggable, printable
from executor.cli.targets import TARGET_HELP, Target, error, registered, registry_arguments, resolve

if TYPE_CHECKING:
    from executor.host.entry import RegistryEntry
    from executor.task.inspection import Inspection
    from executor.task.taskview import TaskView
    from executor.task.usagefigures import Figures


def register(sub: Any, command: Any) -> None:
    status = command(sub, "status", "print the checkpointed state of a task's sandbox; LOST when "
                                    "its supervisor is gone",
                     "examples:\n  stoker status sandbox-hello-20261128-101500-3f2a1c\n"
                     "  stoker status hello-0-3f2a1c8e   (a task id, from `stoker ps`)\n"
                     "  stoker status hello-0            (the beginning of one running task's id)\n"
                     "  stoker status local/www-data/devel/hello/0   (a job key, and an instance)\n"
                     "  stoker status --json /var/lib/mesos/.../sandbox")
    status.add_argument("target", nargs="?", default=None, metavar="SANDBOX|TASK_ID",
                        help=f"{TARGET_HELP} (default $MESOS_SANDBOX, else the current directory)")
    status.add_argument("--json", action="store_true", help="print the replayed state as JSON")
    registry_arguments(status)
    status.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from executor.cli.views import Pending, format_status, format_unrecorded
    from executor.task.inspection import inspect_sandbox, marker_of, with_leftovers
    from executor.task.inspectionjson import shown_attempt, status_json

    target = resolve(args.target, args, deleted=True, command="status")  # a deleted sandbox's task id: GONE
    if target.entry is not None and _elsewhere(target.entry, args):
        return 0
    inspection = inspect_sandbox(target.sandbox, target.entry)
    if target.entry is None:
        target, inspection = _pinned(target, args, inspection)
    if inspection.view is None and not inspection.unrecorded and not inspection.truth.gone:
        error(inspection.problem)
        return 1
    marker = marker_of(inspection, target.entry)
    (inspection,) = with_leftovers([inspection], [marker])
    if inspection.truth.lost and not inspection.leftovers and target.entry is not None:
        inspection = _replaced(inspection, target.entry, args)
    if inspection.view is None:  # a supervisor took the sandbox and recorded nothing
        frozen = _say_frozen(inspection.supervisor_pid, inspection.truth.alive, frozenset())
        doc = status_json(inspection) | dict(supervisor_frozen=frozen is not None, supervisor_frozen_cgroup=frozen)
        sys.stdout.write(json.dumps(doc, indent=2) + "\n" if args.json else format_unrecorded(inspection, marker))
        return 0
    view = inspection.view
    assert view is not None
    for warning in view.warnings:  # damaged records: skipped, and said so
        print(f"stoker: warning: {printable(warning)}", file=sys.stderr)
    now = time.time()
    figures = figures_of(inspection, marker)
    starts, stopped = _kernel_view(view, inspection.truth.alive)
    frozen = _say_frozen(view.current.supervisor_pid, inspection.truth.alive, stopped)
    if args.json:
        print(json.dumps(_json_doc(inspection, figures, now, stopped, frozen), indent=2, default=str))
    else:
        pending = Pending(*shown_attempt(inspection), inspection.after_latest) if inspection.attempt is None else None
        text = format_status(view, now, inspection.truth, inspection.leftovers, starts, figures,
                             stopped, pending, inspection.foreign)
        sys.stdout.write(text)
    return 0


def _elsewhere(entry: RegistryEntry, args: argparse.Namespace) -> bool:
    """Says so, when `entry` is another host's (a registry root the hosts share): its
    supervisor runs there (or ran), whose pid means nothing here; nothing is inspected."""
    from config.registry import RegistrySettings
    from executor.cli.targets import elsewhere
    from executor.host.registrylookup import host_of

    host = host_of(entry)
    if not host:
        return False
    said = elsewhere(entry, RegistrySettings.from_args(args, os.environ).registry_root, "status", args.target)
    if args.json:
        named = args.target if entry.known_as(args.target or "") else entry.task_id  # named by its sandbox: its id
        print(json.dumps({"task_id": named, "host": host, "host_id": entry.host_id,
                          "sandbox": entry.sandbox, "supervisor_pid": entry.supervisor_pid,
                          "registered": entry.registered_wall, "ended": entry.ended_wall,
                          "problem": said}, indent=2))
    else:
        print(printable(said))
    return True


def _replaced(inspection: Inspection, entry: RegistryEntry, args: argparse.Namespace) -> Inspection:
    """A LOST task that left no process, with the supervisor that took its sandbox since, when
    one did (`inspection.with_replacements`, among this host's entries)."""
    from config.registry import RegistrySettings
    from executor.host.registry import Registry, RegistryUnreadable
    from executor.host.registrylookup import split_hosts
    from executor.task.inspection import with_replacements

    try:
        here = split_hosts(Registry(RegistrySettings.from_args(args, os.environ)).read())[0]
    except RegistryUnreadable:  # it was read to find the task: one that went since replaces nothing
        return inspection
    return with_replacements([inspection], [entry], [item.entry for item in here])[0]


def _json_doc(inspection: Inspection, figures: Figures, now: float, stopped: frozenset[str],
              frozen: str | None) -> dict[str, Any]:
    """`--json`'s document: the inspection's view, the resources, what the kernel shows
    stopped ("" the supervisor itself) and the cgroup that holds the supervisor frozen."""
    from executor.task.inspectionjson import status_json
    from executor.task.usagefigures import figures_json

    return dict(status_json(inspection), resources=figures_json(figures, now),
                supervisor_stopped="" in stopped, stopped_processes=sorted(stopped - {""}),
                supervisor_frozen=frozen is not None, supervisor_frozen_cgroup=frozen)


def _pinned(target: Target, args: argparse.Namespace, inspection: Inspection) -> tuple[Target, Inspection]:
    """A sandbox named by its path, read as its task id would be: through the `.stoker` its
    registry entry pins. Its usage record was `unverified` once its supervisor had ended (no
    live one holds the lock); a `.stoker` that went is said as renamed or removed. Only an
    entry whose attempt is the checkpoint's latest is taken: an earlier supervisor's would
    show its own attempt instead of the latest; for a sandbox with no checkpoint, or none of
    the entry's attempts in it (a re-run whose header a full disk holds back: the run before
    was shown, ended, while the new one ran), only the entry of the supervisor its lock
    names (it may say why that one stopped)."""
    from executor.task.inspection import inspect_sandbox

    if inspection.unrecorded:
        entry = registered(target, args)
        if entry is None or entry.supervisor_pid != inspection.supervisor_pid or not _lock_names(target, entry):
            return target, inspection
        return Target(target.sandbox, entry), inspect_sandbox(target.sandbox, entry)
    entry = registered(target, args)
    if entry is None or not entry.stoker_dir:
        return target, inspection
    pinned = inspect_sandbox(target.sandbox, entry)
    if inspection.view is None or (pinned.view is not None and pinned.attempt is pinned.view.current):
        return Target(target.sandbox, entry), pinned
    if pinned.view is None and pinned.unrecorded and _lock_names(target, entry):
        return Target(target.sandbox, entry), pinned  # the sandbox's newest supervisor, no record of it yet
    return target, inspection


def _lock_names(target: Target, entry: RegistryEntry) -> bool:
    """Whether the supervisor the sandbox's lock names is `entry`'s itself: its live holder, or
    the one the lock file names by pid, start and boot, not another that had its pid (before
    a reboot, or once the pids wrapped), whose entry would say why that one stopped."""
    from executor.host import identity, lock
    from executor.host.sandbox import open_stoker_dir

    if identity.is_alive(entry.supervisor_pid, entry.supervisor_start, entry.supervisor_boot):
        return True
    try:
        fd = open_stoker_dir(target.sandbox)
    except OSError:
        return False
    try:
        who = lock.holder(fd)
    finally:
        os.close(fd)
    return who is not None and (who.pid, who.start_ticks, who.boot_id) == (
        entry.supervisor_pid, entry.supervisor_start, entry.supervisor_boot)


def figures_of(inspection: Inspection, marker: str) -> Figures:
    """The task's use against its reservation: its running trees and the other processes it
    owns (daemons, orphans) looked at once (their CPU rate is each tree's average since its top started)
    and its usage record."""
    from executor.observe.taskusage import measure, task_figures
    from executor.observe.usage import UsageSampler

    return task_figures(inspection, marker, *measure(inspection, marker, UsageSampler()))


def _say_frozen(pid: int | None, alive: bool, stopped: frozenset[str]) -> str | None:
    """The cgroup that holds the live supervisor `pid` frozen (`systemctl freeze`, `docker
    pause`), said in one warning on stderr: the kernel shows it sleeping, so it reads as
    running, though it supervises nothing until thawed (one stopped is said in the view
    itself); one that recorded nothing yet too (it read as starting)."""
    if not alive or pid is None or "" in stopped:
        return None
    from executor.host.frozen import frozen_cgroup

    if (frozen := frozen_cgroup(pid)) is not None:
        print(f"stoker: warning: the supervisor (pid {pid}) is frozen (its cgroup {loggable(frozen)}): "
              f"nothing is supervised, restarted or health-checked until it is thawed", file=sys.stderr)
    return frozen


def _kernel_view(view: TaskView, alive: bool) -> tuple[dict[str, float], frozenset[str]]:
    """The start of each run of the current attempt that runs, as the kernel tells it (in
    today's wall clock: the recorded one is off by any step the clock took since), when its
    supervisor runs and the run is still its child; and which of those the kernel shows
    stopped (`kill -STOP`, a debugger), with "" for the supervisor itself."""
    from executor.host.identity import child_started_wall, is_stopped

    cur = view.current
    if not alive or cur.supervisor_pid is None:
        return {}, frozenset()
    starts, stopped = {}, {""} if is_stopped(cur.supervisor_pid) else set()
    for p in cur.processes:
        run = p.current
        if run is not None and run.state == "RUNNING" and run.pid is not None:
            started = child_started_wall(run.pid, cur.supervisor_pid)
            if started is not None:
                starts[p.name] = started
                if is_stopped(run.pid):
                    stopped.add(p.name)
    return starts, frozenset(stopped)
