"""The tasks page and one task's page, as HTML. PURE: the model and `now` in, text out.

The list shows the live tasks first (a LOST one counts: it has not ended), then the ended
ones, newest first within each. A task's page shows what `stoker status` shows, and more:
its facts (state, LOST since when, supervisor, sandbox, ports, health), each process with
its current run (state, run, pid, exit, failures, start, CPU % and RSS of its process tree),
the task's use against its reservation (CPU, RSS and disk against its Resources: Thermos'
executor metrics), the processes' earlier runs, a LOST task's leftover processes, the
health history, the changes of the task's state and of its supervisor's phase, and the
bound task it runs.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from executor.host.clock import age, iso_time, when
from executor.host.registrylookup import not_read_line
from executor.host.truth import describe_frozen, describe_restart, describe_stopped, replaced_words
from executor.observe.html import esc, facts, log_url, page, state, table, task_url
from executor.observe.model import Choice, TaskDetail, TaskSummary, Usage
from executor.task.inspectionjson import health_shown, procs_shown, shown_attempt, state_shown
from executor.task.taskview import DIED_KILLING, AttemptView, ProcessView, RunView, TransitionView
from executor.task.usagefigures import figure_rows, size_text


def _sorted(tasks: Sequence[TaskSummary]) -> list[TaskSummary]:
    def key(t: TaskSummary) -> tuple[bool, float]:
        return bool(t.row["ended"]), -float(t.row["started"] or 0.0)
    return sorted(tasks, key=key)


def _ended_state(attempt: AttemptView) -> str:
    """An earlier attempt's end, coloured as the state it starts with: "LOST (recorded
    RUNNING)" as LOST (the stylesheet's `s-NAME` classes)."""
    text = attempt.ended_state
    return f'<span class="state s-{text.split(" ", 1)[0]}">{esc(text)}</span>'


def _ports(ports: Mapping[str, int]) -> str:
    return esc(" ".join(f"{k}={v}" for k, v in sorted(ports.items())) or "-")


def _uptime(row: Mapping[str, Any], now_wall: float) -> str:
    if row["ended"] or row["state"] in ("LOST", "RESTARTING", "GONE", "UNKNOWN") or not row["started"]:
        return "-"
    return esc(age(now_wall - float(row["started"])))


def tasks_page(tasks: Sequence[TaskSummary], now_wall: float, root: str,
               unreadable: Sequence[str] = (), shown_to: str = "", other_hosts: str = "",
               not_read: Sequence[str] = ()) -> str:
    """The host's tasks; `unreadable`: the registry's entries this version cannot read
    whose supervisors run (another version of Stoker's), named below the table; `shown_to`:
    whose tasks these are, when not everyone's (`--show-tasks-to owner`); `other_hosts`: the
    sentence on other hosts' tasks in the registry (a shared root), which are not listed;
    `not_read`: the registry's other files read as no task, counted below the table as
    `stoker ps` counts them."""
    rows = []
    for t in _sorted(tasks):
        r = t.row
        task_id = str(r["task_id"])
        name = f'<a href="{esc(task_url(task_id, supervisor=t.supervisor))}">{esc(task_id)}</a>' if task_id else "-"
        links = (f'<a href="{esc(task_url(task_id, True, t.supervisor))}">json</a>' if task_id else "")
        rows.append([name, esc(r["job_key"] or "-"), state(state_shown(r)), esc(iso_time(r["started"])),
                     _uptime(r, now_wall), state(health_shown(r)), esc(procs_shown(r)), _ports(t.ports), links])
    live = sum(not t.row["ended"] for t in tasks)
    body = [f"<h1>Tasks on this host</h1><p class=\"muted\">{live} live, "
            f"{len(tasks) - live} ended (kept by the registry's retention).</p>"]
    if shown_to:
        body.append(f'<p class="note">{esc(shown_to)}</p>')
    if rows:
        body.append(table("Tasks", ["task", "job key", "state", "started", "uptime", "health",
                           "running", "ports", "links"], rows))
    else:
        body.append(f"<p>No task in the registry {esc(root)}.</p>")
    if unreadable:
        what = "1 entry" if len(unreadable) == 1 else f"{len(unreadable)} entries"
        body.append(f"<p>Not listed: {what} of the registry this version of Stoker does not read "
                    f"(another version's, or damaged), whose supervisor runs: "
                    f"{esc(', '.join(unreadable))}.</p>")
    if other_hosts:
        body.append(f"<p>{esc(other_hosts)}.</p>")
    if not_read:
        body.append(f"<p>{esc(not_read_line(list(not_read), root))}.</p>")
    return page("Tasks on this host", "".join(body), where=f"registry {esc(root)}")


def choices_page(reason: str, choices: Sequence[Choice]) -> str:
    """The running tasks that share the task id asked for (300), each linked by its
    supervisor: neither is shown in place of the other, and neither is hidden."""
    rows = [[f'<a href="{esc(c.url)}">{esc(c.task_id)}</a>', esc(c.job_key or "-"),
             esc(c.supervisor_pid), esc(iso_time(c.registered_wall)), esc(c.sandbox)] for c in choices]
    body = ("<h1>Two or more running tasks have this id</h1>"
            f"<p>{esc(reason)}. Each is linked below, named by its supervisor (its pid and start).</p>"
            + table("Tasks with this id", ["task", "job key", "supervisor", "registered", "sandbox"],
                    rows, numeric=(2,), wrap=(4,)))
    return page("Tasks with this id", body)


# ---- one task ----

def _exit(run: RunView | None) -> str:
    if run is None:
        return "-"
    if run.signal is not None:
        return f"signal {run.signal}"
    return "-" if run.exit_code is None else f"exit {run.exit_code}"


def _run_time(run: RunView | None, now_wall: float, lost: bool, usage: Usage | None) -> str:
    if run is None or run.started_wall is None:
        return "-"
    if run.ended_wall is None:
        # the kernel's start of the live run, in today's wall clock: the recorded one is
        # off by any step the clock took since (NTP, a VM resumed after days)
        started = usage.started_wall if usage is not None and usage.started_wall is not None \
            else run.started_wall
        return "-" if lost else f"up {age(now_wall - started)}"
    return f"ran {age(run.ended_wall - run.started_wall)}"


def _failures(p: ProcessView) -> str:
    failed = sum(r.state == "FAILED" for r in p.runs)
    return f"{failed} (of the last {len(p.runs)} runs)" if p.earlier_runs else str(failed)


def _usage_cells(u: Usage | None) -> list[str]:
    if u is None:
        return ["-", "-", "-"]
    cpu = "-" if u.cpu_percent is None else f"{u.cpu_percent:.1f}"
    return [esc(cpu), esc(size_text(u.rss_bytes)), esc(u.processes)]


_CPU_OF = "CPU % is per cent of one core (100 = one core busy),"


def _cpu_note(d: TaskDetail, attempt: AttemptView) -> str:
    """What the CPU % column measures, in the page's text (a tooltip reaches neither a
    keyboard nor a touch screen); the processes named when their bases differ."""
    by_basis: dict[str, list[str]] = {}
    for p in attempt.processes:
        u = d.usage.get(p.name)
        if u is not None and u.cpu_percent is not None:
            by_basis.setdefault(u.cpu_basis, []).append(p.name)
    if len(by_basis) > 1:
        bases = "; ".join(f"{basis} for {', '.join(names)}" for basis, names in sorted(by_basis.items()))
        return f'<p class="muted">{_CPU_OF} {esc(bases)}.</p>'
    return "".join(f'<p class="muted">{_CPU_OF} {esc(basis)}.</p>' for basis in by_basis)


def _log_links(d: TaskDetail, process: str, run: RunView | None) -> str:
    task_id = str(d.row["task_id"])
    if run is None or not task_id:
        return "-"
    return " ".join(f'<a href="{esc(log_url(task_id, process, supervisor=d.supervisor, run=run.run, stream=s))}">'
                    f"{s}</a>" for s in ("stdout", "stderr"))


def _process_rows(d: TaskDetail, attempt: AttemptView, now_wall: float) -> list[list[str]]:
    lost = d.inspection.truth.unsupervised
    rows = []
    for p in attempt.processes:
        run = p.current
        shown = "LOST" if lost and p.state == "RUNNING" else p.state
        usage = d.usage.get(p.name)
        stopped = " (stopped)" if usage is not None and usage.stopped else ""
        rows.append([esc(p.name), state(shown) + esc(stopped), "-" if run is None else esc(run.run),
                     "-" if run is None or run.pid is None else esc(run.pid), esc(_exit(run)),
                     esc(_failures(p)), esc(p.restarts),
                     esc(iso_time(run.started_wall) if run else "-"),
                     esc(_run_time(run, now_wall, lost, d.usage.get(p.name))),
                     *_usage_cells(d.usage.get(p.name)),
                     _log_links(d, p.name, run), esc(p.reason)])
    return rows


def _earlier_runs(d: TaskDetail, attempt: AttemptView) -> str:
    parts = []
    for p in attempt.processes:
        if len(p.runs) < 2 and not p.earlier_runs:
            continue
        rows = [[esc(r.run), "-" if r.pid is None else esc(r.pid), state(r.state),
                 esc(iso_time(r.started_wall)), esc(iso_time(r.ended_wall)), esc(_exit(r)),
                 _log_links(d, p.name, r), esc(r.reason)] for r in reversed(p.runs)]
        more = f" ({p.earlier_runs} earlier runs not kept)" if p.earlier_runs else ""
        parts.append(f"<details><summary>{esc(p.name)}: {len(p.runs)} runs{esc(more)}</summary>"
                     + table(f"Runs of {p.name}", ["run", "pid", "state", "started", "ended", "exit", "logs",
                              "reason"], rows, numeric=(0, 1), wrap=(7,)) + "</details>")
    return "<h2>Earlier runs</h2>" + "".join(parts) if parts else ""


def _leftovers(d: TaskDetail) -> str:
    if not d.inspection.truth.unsupervised:
        return ""
    left, foreign = d.inspection.leftovers, d.inspection.foreign
    others = "" if not foreign else (
        "<h2>Other users' processes carrying its marker</h2><p>Not counted as its leftovers: the "
        "marker is anyone's to copy, and a root task's process may have changed user.</p>"
        + table("Other users' processes carrying its marker", ["pid", "user", "command"],
                [[esc(p.pid), esc(p.user), esc(p.command)] for p in foreign], numeric=(0,), wrap=(2,)))
    if not left:
        return "<h2>Leftover processes</h2><p>None: nothing of the task's user carries its marker.</p>" + others
    rows = [[esc(p.pid), esc(p.process or "-"), esc("-" if p.run is None else p.run),
             esc(p.command)] for p in left]
    return ("<h2>Leftover processes</h2><p>They carry the task's marker; its supervisor is "
            "gone.</p>" + table("Leftover processes", ["pid", "process", "run", "command"], rows, numeric=(0,), wrap=(3,))
            + others)


def _health(attempt: AttemptView, r: Mapping[str, Any]) -> str:
    """The check, its verdict (`was:` when the check no longer runs, as in the task list)
    and its last attempts."""
    h = attempt.health
    if h.checker == "none" and h.state is None:
        return "<h2>Health</h2><p>No health check configured.</p>"
    verdict = (h.state or "no attempt yet") if r["health_current"] or h.state is None else health_shown(r)
    head = facts([("check", esc(h.checker)), ("state", state(verdict)),
                  ("attempts", esc(h.attempts)),
                  ("consecutive", esc(f"{h.consecutive_failures} failures, "
                                      f"{h.consecutive_successes} successes"))])
    rows = [[esc(iso_time(a.wall)), state(a.outcome),
             "-" if a.latency_secs is None else esc(f"{a.latency_secs * 1000:.1f} ms"),
             esc(a.reason)] for a in reversed(h.last_attempts)]
    last = table("Last health check attempts", ["time", "outcome", "latency", "reason"], rows, numeric=(2,), wrap=(3,)) \
        if rows else "<p>No attempt yet.</p>"
    return f"<h2>Health</h2>{head}<h3>Last {len(rows)} attempts</h3>{last}"


def _transitions(title: str, items: Sequence[TransitionView]) -> str:
    rows = [[esc(iso_time(t.wall or None)), state(t.from_state or "-"), state(t.to_state),
             esc(t.reason)] for t in reversed(items)]
    return f"<h2>{esc(title)}</h2>" + (table(title, ["time", "from", "to", "reason"], rows, wrap=(3,))
                                       if rows else "<p>None recorded.</p>")


def _announcement(attempt: AttemptView, now_wall: float) -> str:
    """The task's ServerSet membership, as its checkpoint last recorded it."""
    a = attempt.announcement
    if a is None:
        return ""
    since = when(a.since_wall, now_wall) if a.since_wall else "-"
    return "<h2>Service discovery</h2>" + facts([
        ("serverset", esc(a.path)), ("member", esc(a.member_path or "none yet")),
        ("state", state(a.state)), ("since", esc(since)), ("ZooKeeper", esc(a.connection)),
        ("reason", esc(a.reason))])


def _resources(d: TaskDetail, now_wall: float) -> str:
    """The task's use against its reservation (Thermos' executor metrics); `-` where a
    figure is not known, with the reason beside it."""
    if d.figures is None:
        return ""
    rows = [[esc(name), esc(used), esc(reserved), esc(pct), esc(note)]
            for name, used, reserved, pct, note in figure_rows(d.figures, now_wall)]
    return "<h2>Resources</h2>" + table("Resources", ["resource", "used", "reserved", "%", "note"], rows,
                                        numeric=(1, 2, 3), wrap=(4,))


def _definition(d: TaskDetail) -> str:
    if d.definition is None:
        return f"<h2>Definition</h2><p class=\"muted\">{esc(d.definition_problem)}</p>"
    task = d.definition.get("task")
    procs = task.get("processes", []) if isinstance(task, Mapping) else []
    rows = []
    for p in procs if isinstance(procs, list) else []:
        if isinstance(p, Mapping):
            flags = [k for k in ("daemon", "ephemeral", "final") if p.get(k)]
            flags += [f"max_failures={p.get('max_failures')}", f"min_duration={p.get('min_duration_secs')}"]
            rows.append([esc(p.get("name")), esc(" ".join(flags)), f"<pre>{esc(p.get('cmdline'))}</pre>"])
    text = json.dumps(d.definition, indent=2, sort_keys=True)
    return ("<h2>Definition</h2><p class=\"muted\">The bound task as it runs (templates "
            "expanded, defaults applied).</p>"
            + table("Definition", ["process", "flags", "command"], rows, wrap=(2,))
            + f"<details><summary>the whole definition (JSON)</summary><pre>{esc(text)}</pre></details>")


def _facts(d: TaskDetail, attempt: AttemptView | None, now_wall: float) -> str:
    r, truth, view = d.row, d.inspection.truth, d.inspection.view
    shown = state(state_shown(r))
    if truth.lost:
        shown += esc(f" (supervisor gone since {when(truth.since_wall, now_wall)}, "
                     f"{truth.since.value if truth.since else 'no record'}{replaced_words(truth.replaced_by)}); recorded "
                     f"{r['recorded_state'] or 'nothing'}")
    elif truth.died_killing:  # as `stoker status` says it
        shown += esc(f" ({DIED_KILLING}; recorded {r['recorded_state']})")
    if (restart := r.get("restart")) is not None:
        shown += esc(f" ({describe_restart(restart['attempt'] - 1, restart['after_state'], restart['due'], now_wall)})")
    alive = describe_stopped(r["supervisor_pid"]) if d.supervisor_stopped else describe_frozen(d.supervisor_frozen) \
        if d.supervisor_frozen else "running" if truth.alive else "gone"
    sup = f"{r['supervisor_pid']} ({alive}, stoker {r['front_end']})"
    pairs = [("job key", esc(r["job_key"] or "-")), ("state", shown),
             ("reason", esc(attempt.reason if attempt else "-")), ("supervisor", esc(sup)),
             ("started", esc(when(r["started"], now_wall))), ("uptime", _uptime(r, now_wall)),
             ("attempt", esc(shown_attempt(d.inspection)[0] or "-")),
             ("ports", _ports(view.ports if view else {})), ("health", state(health_shown(r))),
             ("sandbox", esc(r["sandbox"]))]
    if attempt is not None and attempt.phase is not None:
        pairs.insert(4, ("supervisor phase", esc(f"{attempt.phase.to_state}: {attempt.phase.reason}")))
    return facts(pairs)


def task_page(d: TaskDetail, now_wall: float) -> str:
    r, view, attempt = d.row, d.inspection.view, d.inspection.attempt
    task_id = str(r["task_id"])
    body = [f"<h1>{esc(task_id)}</h1>",
            f'<p class="muted"><a href="{esc(task_url(task_id, True, d.supervisor))}">json</a></p>',
            _facts(d, attempt, now_wall)]
    if d.inspection.problem:
        body.append(f'<p class="note">{esc(d.inspection.problem)}</p>')
    for warning in view.warnings if view else ():
        body.append(f'<p class="note">{esc(warning)}</p>')
    if attempt is not None:
        body.append(_announcement(attempt, now_wall))
        body.append(f"<h2>Processes ({attempt.processes_total})</h2>")
        body.append(table("Processes", ["process", "state", "run", "pid", "exit", "failures", "restarts",
                           "started", "time", "CPU %", "RSS", "procs", "logs", "reason"],
                          _process_rows(d, attempt, now_wall), numeric=(2, 3, 9, 10, 11),
                          wrap=(13,)))
        body.append(_cpu_note(d, attempt))
        if attempt.not_shown_note:
            body.append(f'<p class="note">{esc(attempt.not_shown_note)}</p>')
        body.append(_resources(d, now_wall))
        body.append(_earlier_runs(d, attempt))
        body.append(_leftovers(d))
        body.append(_health(attempt, r))
        body.append(_transitions("Status updates (the task's states)", attempt.history))
        body.append(_transitions("Supervisor phases", attempt.phases))
    earlier = () if view is None else view.attempts if attempt is None and d.inspection.after_latest else \
        view.attempts[:-1]  # a new id's pending attempt (`stoker status`'s): all before it
    if earlier:
        rows = [[esc(a.number), _ended_state(a), esc(iso_time(a.started_wall)),
                 esc(a.reason)] for a in reversed(earlier)]
        body.append("<h2>Earlier attempts</h2>" + table("Earlier attempts", ["attempt", "state", "started", "reason"],
                                                          rows, wrap=(3,)))
    body.append(_definition(d))
    return page(task_id or "task", "".join(body), where=esc(r["job_key"] or ""))
