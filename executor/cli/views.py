"""What `stoker status` shows of a task: its replayed checkpoint, checked against the host.

Owns formatting a replayed `TaskView` as a readable table (`format_status`): the task's
state (LOST, with since when and which record says so, when its supervisor is gone without
a terminal record; RESTARTING, with the next attempt and when it starts, while `stoker run`
waits out its back-off between two attempts), its attempts, the supervisor's phase, its ServerSet announcement, each
process with its run, pid, exit and time, the health checks, its use against its reservation
(CPU, RSS and disk against its Resources: `executor/task/usagefigures.py`), and a LOST task's
leftover processes. Times are ISO 8601
dates with the local offset and an age beside them (`executor/host/clock.py`). What comes
from the checkpoint is escaped (`config.words.printable`): nothing printed can drive the
terminal. Formatting only: no I/O.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet

import attrs

from config.words import columns, pad, printable, printable_lines
from executor.host.clock import age, iso_time, when
from executor.host.truth import RESTARTING, Truth, describe_restart, describe_stopped
from executor.task.inspection import Inspection, Leftover
from executor.task.leftoverprocs import Foreign
from executor.task.replay import AnnouncementView, AttemptView, ProcessView, RunView, TaskView
from executor.task.taskview import DIED_KILLING
from executor.task.usagefigures import Figures, figure_rows

format_duration = age  # 3.2s, 4m05s, 2h03m, 3d04h


def _exit_text(run: RunView | None) -> str:
    if run is None:
        return "-"
    if run.signal is not None:
        return f"signal {run.signal}"
    if run.exit_code is not None:
        return f"exit {run.exit_code}"
    return "-"


def _time_text(run: RunView | None, now_wall: float, lost: bool, started: float | None) -> str:
    if run is None or run.started_wall is None:
        return "-"
    if run.ended_wall is None:  # a LOST task's run: how long it ran is not known
        return "-" if lost else f"up {age(now_wall - (started or run.started_wall))}"
    return f"ran {age(run.ended_wall - run.started_wall)}"


def _process_rows(processes: tuple[ProcessView, ...], now_wall: float, lost: bool,
                  starts: Mapping[str, float], stopped: AbstractSet[str]) -> list[list[str]]:
    rows = [["PROCESS", "STATE", "RUN", "PID", "EXIT", "TIME", "RESTARTS", "REASON"]]
    for p in processes:
        run = p.current
        state = "LOST" if lost and p.state == "RUNNING" else p.state
        state += " (stopped)" if p.name in stopped else ""
        rows.append([
            p.name, state, "-" if run is None else str(run.run),
            "-" if run is None or run.pid is None else str(run.pid),
            _exit_text(run), _time_text(run, now_wall, lost, starts.get(p.name)), str(p.restarts),
            p.reason,
        ])
    return rows


def table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    """Columns as wide as their longest cell on a terminal (the last one as it comes),
    each cell escaped first: a newline in a sandbox's name broke its row in two."""
    rows = [[printable(c) for c in r] for r in rows]
    widths = [max(columns(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for r in rows:
        cells = [pad(c, w) for c, w in zip(r, widths)] + [r[-1]]
        lines.append((indent + "  ".join(cells)).rstrip())
    return lines


def _health_lines(attempt: AttemptView, truth: Truth | None) -> list[str]:
    """The check's verdict and its last attempts; the verdict marked `was:` once the check no
    longer runs (the attempt ended, its supervisor is gone, or it is RESTARTING), as `stoker
    ps` marks it (`inspectionjson.health_shown`)."""
    h = attempt.health
    if h.checker == "none" and h.state is None:
        return ["health: no check configured"]
    from executor.task.inspectionjson import check_runs  # (as status' other inspection steps)

    verdict = h.state if h.state is None or check_runs(attempt.state, truth) else f"was:{h.state}"
    lines = [
        f"health: {verdict or 'no attempt yet'} ({h.checker}); attempts={h.attempts} "
        f"consecutive_failures={h.consecutive_failures} "
        f"consecutive_successes={h.consecutive_successes}"
    ]
    for a in h.last_attempts:
        latency = "-" if a.latency_secs is None else f"{a.latency_secs * 1000:.1f} ms"
        lines.append(f"  {iso_time(a.wall)}  {a.outcome:<7}  {latency:>10}  {a.reason}".rstrip())
    return lines


def announcement_text(a: AnnouncementView, now_wall: float, lost: bool = False) -> str:
    """The task's ServerSet membership in one line: where its member is and since when, or
    what the announcer is doing and why; a LOST task's member went with its supervisor."""
    zk = f"ZooKeeper {a.connection}"
    if a.state == "IDLE":
        return f"announcement: at {a.path} once RUNNING (not asked to join yet)"
    if a.state == "JOINED" and a.member_path is not None:
        gone = "; recorded: its session ended with the supervisor" if lost else ""
        return f"announced: {a.member_path} since {when(a.since_wall, now_wall)} ({zk}{gone})"
    tail = "" if a.state == "CLOSED" else f" ({zk})"
    return f"announcement: {a.state} at {a.path} since {when(a.since_wall, now_wall)}: {a.reason}{tail}"


def _state_text(attempt: AttemptView, truth: Truth | None, now_wall: float) -> str:
    recorded = attempt.state or "unknown"
    if truth is not None and truth.state == RESTARTING and attempt.restart is not None:
        due = attempt.restart.due_wall
        return f"{RESTARTING} ({describe_restart(attempt.number, attempt.state, due, now_wall)})"
    if truth is not None and truth.died_killing:
        return f"{truth.state} ({DIED_KILLING}; recorded {recorded})"
    if truth is None or not truth.lost:
        return recorded
    return f"{truth.describe_since(when(truth.since_wall, now_wall))}; recorded {recorded}"


def _leftover_lines(leftovers: Sequence[Leftover], foreign: Sequence[Foreign] = ()) -> list[str]:
    if not leftovers:
        lines = ["leftover processes: none (nothing of the task's user carries the task's marker)"]
    else:
        rows = [["PID", "PROCESS", "RUN", "COMMAND"]]
        rows += [[str(p.pid), p.process or "-", "-" if p.run is None else str(p.run), p.command]
                 for p in leftovers]
        lines = ["leftover processes (they carry the task's marker, or its watchdog held them; "
                 "its supervisor is gone):", *table(rows)]
    if foreign:
        lines += ["other users' processes carrying the task's marker (not counted as its leftovers: "
                  "the marker is anyone's to copy, and a root task's process may have changed user):",
                  *table([["PID", "USER", "COMMAND"], *([str(p.pid), p.user, p.command] for p in foreign)])]
    return lines


def format_status(view: TaskView, now_wall: float, truth: Truth | None = None,
                  leftovers: Sequence[Leftover] = (), starts: Mapping[str, float] | None = None,
                  figures: Figures | None = None, stopped: AbstractSet[str] = frozenset(),
                  pending: Pending | None = None, foreign: Sequence[Foreign] = ()) -> str:
    """A readable status of the task as replayed from its checkpoint; `truth` says whether
    its supervisor still runs (None: not checked); `starts`: the kernel's start of each
    running run, by process, in today's wall clock (its 'up' is from there); `figures`: its
    use against its reservation (None: not shown); `stopped`: the processes whose run the
    kernel shows stopped, and "" when the supervisor is; `pending`: the task id's attempt is
    not in the checkpoint yet (shown as `_pending_lines` say, with no process or health);
    `foreign`: other users' processes carrying a LOST task's marker, shown apart."""
    cur = view.current
    lost = truth is not None and truth.unsupervised
    if pending is not None:
        lines = [*_pending_lines(view, pending, now_wall, truth, stopped), "", "no processes recorded for this "
                 "attempt yet (its id is registered; its first record is not in the checkpoint)"]
    else:
        lines = _header_lines(view, now_wall, truth, stopped)
        lines.append("")
        if cur.processes:
            lines.extend(table(_process_rows(cur.processes, now_wall, lost, starts or {}, stopped), indent=""))
        else:
            lines.append("no processes recorded")
        if cur.not_shown_note:
            lines.append(cur.not_shown_note)
        lines += ["", *_health_lines(cur, truth)]
    if figures is not None:
        lines += ["", "resources (used of reserved):",
                  *table([["RESOURCE", "USED", "RESERVED", "%", "NOTE"],
                          *(list(r) for r in figure_rows(figures, now_wall))])]
    if lost:
        lines += ["", *_leftover_lines(leftovers, foreign)]
    return printable_lines("\n".join(lines)) + "\n"  # names and reasons come from the checkpoint


@attrs.frozen(slots=True)
class Pending:
    """A task id whose attempt has no record yet (`inspectionjson.shown_attempt`): `stoker run`
    registers its next attempt's id a moment before that attempt's header is written."""

    number: int | None  # the next attempt's (None: not known, the task is not RESTARTING)
    registered_wall: float | None  # its start, as `stoker ps` says: when the restart before it was due
    # The checkpoint's attempts are all before it (else its latest is a later id's, read with an
    # entry read just before that was written): listed as earlier ones. Only while RESTARTING
    # were they: once its supervisor was gone, the text dropped the attempt before, --json not.
    after_latest: bool = True


def _pending_lines(view: TaskView, pending: Pending, now_wall: float, truth: Truth | None,
                   stopped: AbstractSet[str]) -> list[str]:
    """The header of a `Pending` attempt: the state, the restart that starts it, its id and
    when it was registered, and the attempts before it; none of theirs is shown as its own."""
    before = view.current  # the attempt that scheduled it (RESTARTING), or a later id's
    restarting = truth is not None and truth.state == RESTARTING and before.restart is not None
    state = _state_text(before, truth, now_wall) if restarting else (truth.state if truth else "unknown")
    lines = [f"task {view.label or '?'}  key={view.job_key or '?'}  state={state}  "
             f"attempt={pending.number or '-'}"]
    if restarting:
        lines.append(_restart_line(before))
    lines += ["  ports: not recorded for this attempt yet",
              _ids_line(view, before, truth, stopped, when(pending.registered_wall, now_wall))]
    earlier = view.attempts if pending.after_latest else view.attempts[:-1]
    return lines + _earlier_lines(view, earlier)


def _restart_line(attempt: AttemptView) -> str:
    restart = attempt.restart
    assert restart is not None
    return f"  restart: attempt {attempt.number + 1} at {iso_time(restart.due_wall)}: {restart.reason}".rstrip()


def _ids_line(view: TaskView, cur: AttemptView, truth: Truth | None, stopped: AbstractSet[str],
              started: str) -> str:
    alive = "" if truth is None else (" (running)" if truth.alive else " (gone)")
    if truth is not None and truth.alive and "" in stopped:
        alive = f" ({describe_stopped(cur.supervisor_pid)})"
    return f"  task_id: {view.task_id or '-'}  supervisor_pid: {cur.supervisor_pid or '-'}{alive}  started: {started}"


def _earlier_lines(view: TaskView, earlier: Sequence[AttemptView]) -> list[str]:
    lines = [f"  {view.earlier_attempts} earlier attempts not kept"] if view.earlier_attempts else []
    return lines + [f"  earlier attempt {old.number}: {old.ended_state} (started {iso_time(old.started_wall)}) "
                    f"{old.reason}".rstrip() for old in earlier]


def _header_lines(view: TaskView, now_wall: float, truth: Truth | None,
                  stopped: AbstractSet[str]) -> list[str]:
    """The task's lines above its processes: state, reason, restart, supervisor, ports,
    announcement, ids, containment and earlier attempts."""
    cur = view.current
    lost = truth is not None and truth.unsupervised
    ports = " ".join(f"{k}={v}" for k, v in sorted(view.ports.items())) or "none"
    if cur.ports is None:  # records before any header: the attempt's ports are not known
        ports = "not recorded for this attempt"
    lines = [f"task {view.label or '?'}  key={view.job_key or '?'}  "
             f"state={_state_text(cur, truth, now_wall)}  attempt={cur.number}"]
    if cur.reason:
        lines.append(f"  reason: {cur.reason}")
    if truth is not None and truth.state == RESTARTING and cur.restart is not None:
        lines.append(_restart_line(cur))
    if cur.phase is not None and cur.phase.reason != cur.reason:  # nothing new: not repeated
        lines.append(f"  supervisor: {cur.phase.to_state} since {iso_time(cur.phase.wall or None)}: "
                     f"{cur.phase.reason}".rstrip())
    lines.append(f"  ports: {ports}")
    if cur.announcement is not None:
        lines.append(f"  {announcement_text(cur.announcement, now_wall, lost)}")
    lines.append(_ids_line(view, cur, truth, stopped, when(cur.started_wall, now_wall)))
    if cur.containment:
        lines.append(f"  containment: {cur.containment}")
    return lines + _earlier_lines(view, view.attempts[:-1])


def format_unrecorded(inspection: Inspection, marker: str) -> str:
    """A sandbox whose supervisor recorded nothing (no checkpoint): its state (LOST when the
    supervisor is gone, NEW while it starts or when it let go; GONE: its checkpoint no longer
    there), why, its pid when known, and a LOST one's leftovers (a GONE one's that did not
    let go) when its task's `marker` is known."""
    truth = inspection.truth
    pid = inspection.supervisor_pid
    lines = [f"sandbox {inspection.sandbox}  state={truth.state}", f"  {inspection.problem}",
             f"  supervisor_pid: {pid or '-'} ({'running' if truth.alive else 'gone'})"]
    if truth.unsupervised:
        lines += ["", *(_leftover_lines(inspection.leftovers, inspection.foreign) if marker else
                        ["leftover processes: not known (no task marker was recorded)"])]
    return printable_lines("\n".join(lines)) + "\n"
