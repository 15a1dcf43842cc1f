"""A task's use against its reservation, read for `stoker status` and the observer's task
page: the CPU rate and RSS of its running process trees and of every other process the task
owns, each a child of its live supervisor, its subreaper (`usage`, from /proc, added up: the
daemons its runs left, the orphans it adopted, whether or not it has looked at them since,
its shell health checks; not its watchdog) and what its supervisor keeps in `.stoker/usage.json` (its reservation and its
last disk sample: `executor/task/usagefile.py`), as `executor/task/usagefigures.Figures`.

The observer's CPU rate is since its previous look at each tree (its `UsageSampler` lives
with the server); `stoker status` looks once, so its rate is each run's average since it
started (`cpu_basis` says which). Figures are read on each request, never cached: the usage
file changes at each disk sample while the checkpoint (whose replayed view the observer
keeps, `executor/task/viewcache.py`) does not.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from executor.host import identity
from executor.observe.model import Usage
from executor.observe.usage import RunRef, UsageSampler
from executor.task.inspection import Inspection
from executor.task.taskview import DIED_KILLING
from executor.task.usagefigures import Figures, Live, figures
from executor.task.usagefile import read_usage

ENDED = frozenset({"FINISHED", "FAILED", "KILLED"})


def running(inspection: Inspection) -> list[RunRef]:
    """The runs the checkpoint says are running, when their supervisor runs."""
    attempt = inspection.attempt
    if attempt is None or not inspection.truth.alive or attempt.supervisor_pid is None:
        return []
    refs = []
    for p in attempt.processes:
        run = p.current
        if run is not None and run.state == "RUNNING" and run.pid is not None:
            refs.append(RunRef(p.name, run.pid, attempt.supervisor_pid))
    return refs


def measure(inspection: Inspection, marker: str, sampler: UsageSampler) -> tuple[dict[str, Usage], list[Usage]]:
    """The trees of the task's running runs, by process, and of every other process the
    task owns (the live supervisor's other children but its watchdog: the daemons its runs
    left, the orphans it adopted, its shell health checks; the watchdog is the one `marker`'s
    list beside the checkpoint names), read while its supervisor runs."""
    runs = running(inspection)
    usage = sampler.sample(runs)
    attempt = inspection.attempt
    if attempt is None or not inspection.truth.alive or attempt.supervisor_pid is None:
        return usage, []
    from executor.task.heldfile import read_watchdog

    watchdog = read_watchdog(inspection.sandbox, marker, pinned=inspection.pinned)
    return usage, sampler.owned(attempt.supervisor_pid, (r.pid for r in runs), watchdog)


def live(inspection: Inspection, usage: Mapping[str, Usage], held: Sequence[Usage] = ()) -> Live:
    """The task's CPU rate (cores) and RSS now, from each running run's tree (`usage`, by
    process) and each held process's (`held`); not known once its supervisor is gone or its
    task ended."""
    truth, attempt = inspection.truth, inspection.attempt
    if attempt is None:
        return Live(None, None, note="the task recorded no attempt")
    if truth.died_killing:  # ended as its kill would have, and what the kill did not end lives on
        return Live(None, None, note=f"the task is {truth.state} ({DIED_KILLING}): its supervisor is gone, "
                                     f"so its processes are not measured")
    if attempt.state in ENDED or truth.ended:
        return Live(None, None, note=f"the task ended ({attempt.state or truth.state}): no process of it runs")
    if truth.state == "RESTARTING":
        return Live(None, None, note="between two attempts: no process of the task runs")
    if not truth.alive:
        return Live(None, None, note=f"the task is {truth.state}: its supervisor is gone, "
                                     f"so its processes are not measured")
    trees = [*usage.values(), *held]
    cores = [u.cpu_percent / 100.0 for u in trees if u.cpu_percent is not None]
    rss = sum(u.rss_bytes for u in trees)
    if len(cores) < len(trees):
        return Live(None, rss, note="a process tree's CPU time is not known yet")
    bases = sorted({u.cpu_basis for u in trees})
    return Live(sum(cores), rss, basis="; ".join(bases))


def task_figures(inspection: Inspection, marker: str, usage: Mapping[str, Usage],
                 held: Sequence[Usage] = ()) -> Figures:
    """The figures of the inspected attempt (its `marker` names its usage record)."""
    attempt = inspection.attempt
    supervisor = None if attempt is None or not attempt.supervisor_pid or attempt.supervisor_start is None \
        else identity.ProcessIdentity(attempt.supervisor_pid, attempt.supervisor_start, attempt.supervisor_boot)
    record, problem = read_usage(inspection.sandbox, marker, inspection.pinned, supervisor)
    return figures(record, problem, live(inspection, usage, held))
