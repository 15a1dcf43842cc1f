"""An inspected task (`executor/task/inspection.py`) as the readers show it: `row`, one task
as `stoker ps --json` (and the observer's `/api/tasks`) lists it, and `status_json`, the view
`stoker status --json` prints; in both, a RESTARTING task (`stoker run` in its back-off
between two attempts) has its next attempt in `restart` (`restart_json`), and the attempt
shown is `shown_attempt`'s, which the text and HTML views show too.
Reads only the sandbox's owner (`inspection.task_user`, for a task whose leftovers were not
judged); never writes, never signals.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from executor.events import HEALTH_CHECK_FAILED
from executor.host.clock import iso_time
from executor.host.entry import RegistryEntry
from executor.host.truth import RESTARTING, UNKNOWN, Truth
from executor.task.inspection import Inspection, task_user
from executor.task.replay import AttemptView
from executor.task.taskview import ENDED_STATES


def _procs(inspection: Inspection) -> tuple[int, int]:
    """(running, total) of the attempt's processes; a LOST task's running are the ones
    that left processes behind."""
    attempt = inspection.attempt
    if attempt is None:
        return 0, 0
    total = attempt.processes_total
    if inspection.truth.unsupervised:
        return len({p.process for p in inspection.leftovers if p.process}), total
    return sum(p.state == "RUNNING" for p in attempt.processes), total


def health_summary(inspection: Inspection) -> str:
    """'none' (no check), 'STARTING' (no verdict yet), the health state, or '-' (no attempt):
    the attempt's last verdict, which is not its check's now when `health_current` is false."""
    attempt = inspection.attempt
    if attempt is None:
        return "-"
    h = attempt.health
    if h.checker == "none" and h.state is None:
        return "none"
    return h.state or "STARTING"


def health_current(inspection: Inspection) -> bool:
    """Whether the attempt's health verdict is its check's now (`check_runs`). False: the
    verdict is the last one recorded, of a check that no longer runs."""
    attempt = inspection.attempt
    return attempt is not None and check_runs(attempt.state, inspection.truth)


def check_runs(attempt_state: str | None, truth: Truth | None) -> bool:
    """Whether the health check of an attempt in `attempt_state` still runs: the attempt has
    not ended, and its supervisor (`truth`; None: not looked at) runs, its task neither ended
    nor RESTARTING between two attempts. `stoker ps`, `status` and the observer mark a
    verdict `was:` when it does not."""
    return attempt_state not in ENDED_STATES and (
        truth is None or truth.alive and truth.state not in ENDED_STATES and truth.state != RESTARTING)


def failed_by_health_check(inspection: Inspection) -> bool:
    """Whether a failed health check is why the attempt ended FAILED, or is being killed to
    end so (KILLING; its supervisor died during that kill too): its reason says so."""
    attempt = inspection.attempt
    return (attempt is not None and attempt.state in ("FAILED", "KILLING")
            and attempt.reason.startswith(HEALTH_CHECK_FAILED))


def health_shown(r: Mapping[str, Any]) -> str:
    """A row's HEALTH as `stoker ps` and the observer show it: its `health` while the check
    runs; else, but for `none` (no check) and `-` (no attempt), the last verdict marked
    `was:` (`was:RUNNING`: healthy at its end, not now), `(ended it)` after it when the failed
    check is why the task ended."""
    health = r["health"]
    if r["health_current"] or health in ("none", "-"):
        return health
    return f"was:{health}{' (ended it)' if r['failed_by_health_check'] else ''}"


def state_shown(r: Mapping[str, Any]) -> str:
    """A row's STATE as `stoker ps` and the observer's list show it: its `state`, but
    `SANDBOX GONE` for an UNKNOWN task whose sandbox was renamed or deleted (`sandbox_gone`)."""
    return "SANDBOX GONE" if r["state"] == UNKNOWN and r.get("sandbox_gone") else str(r["state"])


def procs_shown(r: Mapping[str, Any]) -> str:
    """A row's processes running / total, as `stoker ps` and the observer's list show them;
    `-` for an UNKNOWN task: none were read (its `--json` counts are 0)."""
    return "-" if r["state"] == UNKNOWN else f"{r['processes_running']}/{r['processes_total']}"


def row(entry: RegistryEntry, inspection: Inspection) -> dict[str, Any]:
    """One task as a JSON object (`stoker ps` shows some of it as text)."""
    entry = named(entry, inspection)
    attempt, truth = inspection.attempt, inspection.truth
    started = shown_attempt(inspection)[1] or entry.registered_wall
    running, total = _procs(inspection)
    user = (inspection.judged_as or task_user(inspection)) if inspection.view is not None else None
    return {
        "task_id": entry.task_id, "job_key": entry.job_key, "label": entry.label,
        "state": truth.state, "recorded_state": attempt.state if attempt else None,
        "supervisor_alive": truth.alive, "ended": truth.ended, "died_killing": truth.died_killing,
        "supervisor_pid": entry.supervisor_pid, "front_end": entry.front_end.value,
        "sandbox": entry.sandbox, "started": started, "started_iso": iso_time(started),
        "processes_running": running, "processes_total": total, "health": health_summary(inspection),
        "health_current": health_current(inspection), "failed_by_health_check": failed_by_health_check(inspection),
        "lost_since": truth.since_wall, "lost_since_source": truth.since.value if truth.since else None,
        "leftovers": [{"pid": p.pid, "process": p.process, "run": p.run, "command": p.command}
                      for p in inspection.leftovers],
        "foreign_processes": [attrs.asdict(p) for p in inspection.foreign],
        "task_uid": user.uid if user else None, "task_uid_source": user.source if user else None,
        "problem": inspection.problem, "sandbox_gone": inspection.sandbox_gone, "announcement": _announcement(attempt),
        "restart": restart_json(inspection), "replaced_by": replaced_json(inspection),
    }


def replaced_json(inspection: Inspection) -> dict[str, Any] | None:
    """The supervisor that took a LOST task's sandbox since, its task having left no process
    (`inspection.with_replacements`): its task id, pid and registration; None: not replaced."""
    taker = inspection.replaced_by
    if taker is None:
        return None
    return {"task_id": taker.task_id, "supervisor_pid": taker.supervisor_pid,
            "registered": taker.registered_wall, "registered_iso": iso_time(taker.registered_wall)}


def named(entry: RegistryEntry, inspection: Inspection) -> RegistryEntry:
    """`entry` with its task's id, job key and label from its supervisor's checkpoint when it
    was read before its supervisor named its task there: a reader reads every entry, then each
    checkpoint, and a supervisor names its task in its entry just before its header, so in a
    storm of starts `stoker ps` and the observer showed a STARTING or RUNNING task with no id,
    job key or label (then the same row with them)."""
    view = inspection.view
    if entry.task_id or view is None or inspection.attempt is None:
        return entry
    return attrs.evolve(entry, task_id=view.task_id, job_key=view.job_key, label=view.label)


def shown_attempt(inspection: Inspection) -> tuple[int | None, float | None]:
    """The number and start of the attempt `stoker status` shows: the inspected attempt's; for
    an id registered before its header is in, the next attempt's number (None unless RESTARTING)
    and when the restart before it was due (the entry's `registered_wall` is its supervisor's)."""
    if inspection.attempt is not None:
        return inspection.attempt.number, inspection.attempt.started_wall
    restart = restart_json(inspection)
    before = inspection.view.current.restart if inspection.view is not None and inspection.after_latest else None
    return (restart["attempt"] if restart else None), before.due_wall if before else inspection.registered_wall


def restart_json(inspection: Inspection) -> dict[str, Any] | None:
    """A RESTARTING task's next attempt: its number, the state the last one ended in, the
    back-off, when it starts and why (None: the task is not RESTARTING)."""
    attempt = inspection.attempt or (inspection.view.current if inspection.view is not None else None)
    restart = attempt.restart if attempt is not None else None
    if inspection.truth.state != RESTARTING or attempt is None or restart is None:
        return None
    return {"attempt": attempt.number + 1, "after_state": attempt.state, "delay_secs": restart.delay_secs,
            "due": restart.due_wall, "due_iso": iso_time(restart.due_wall), "reason": restart.reason}


def _announcement(attempt: AttemptView | None) -> dict[str, Any] | None:
    """The task's ServerSet membership as its checkpoint last recorded it (None: no announcing)."""
    a = attempt.announcement if attempt is not None else None
    if a is None:
        return None
    return {"path": a.path, "member": a.member, "member_path": a.member_path, "state": a.state,
            "connection": a.connection, "reason": a.reason, "since": a.since_wall,
            "since_iso": iso_time(a.since_wall)}


def status_json(inspection: Inspection) -> dict[str, Any]:
    """The replayed view, plus what is true now: `state` (LOST when the supervisor is
    gone without a terminal record; RESTARTING between two attempts), `supervisor_alive`,
    `lost_since` and its source, the leftover processes, a RESTARTING task's `restart`, the
    attempt shown, with its start (`shown_attempt`), and the task's user the leftovers are
    judged against and whence (`task_user`), a sandbox without a record's too: its owner."""
    doc: dict[str, Any] = attrs.asdict(inspection.view) if inspection.view else {}  # all plain: no enum in a view
    truth = inspection.truth
    user = inspection.judged_as or task_user(inspection)  # (each attempt's `run_uid`: as recorded)
    doc.update(task_uid=user.uid, task_uid_source=user.source)  # no header: the sandbox's owner
    if inspection.view is None:  # `unrecorded`: what the sandbox's lock and entry say
        doc.update(sandbox=str(inspection.sandbox), supervisor_pid=inspection.supervisor_pid,
                   problem=inspection.problem)
    else:  # the attempt shown, as the text's `attempt=` and `started:`
        number, started = shown_attempt(inspection)
        doc.update(attempt=number, started=started, started_iso=iso_time(started))
    doc.update(state=truth.state, supervisor_alive=truth.alive, ended=truth.ended,
               lost_since=truth.since_wall, lost_since_source=truth.since.value if truth.since else None,
               leftovers=[attrs.asdict(p) for p in inspection.leftovers],
               foreign_processes=[attrs.asdict(p) for p in inspection.foreign], restart=restart_json(inspection),
               replaced_by=replaced_json(inspection))
    return doc
