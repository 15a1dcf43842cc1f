"""`GET /metrics`: the tasks the pages show, as Prometheus metrics. PURE: the model in, the
families out (`exposition` writes them).

Every task of the registry the viewer may see (`reader.visible`, as the list page) that the
answer's `Window` keeps (its supervisor runs, or it ended lately: `scrape`) is read as its
page reads it (`TaskDetail`) and gives:

- its identity on every series: `task_id`, `supervisor` (PID-START, which names one of two
  tasks that share an id, as the observer's links do), and, where its job key and label
  say, `role`, `environment`, `job_name` and `task_instance` (not `job` and `instance`,
  which Prometheus gives every series of a target: a scraped one of that name would become
  `exported_job`); `stoker_task_info` carries the rest (`cluster`, `job_key`, `sandbox`,
  `front_end`);
- its state as an enum: `stoker_task_state{state="S"}` is 1 for its state and 0 for each
  other of `TASK_STATES` (a state this list does not know is written too, 1), the same
  state `stoker ps` and the pages show (LOST once its supervisor is gone, RESTARTING between
  two attempts of `stoker run`); the health check's and each process's state alike;
- a LOST task's leftover processes (`stoker_task_leftover_processes`: those still carrying
  its marker, or held by its watchdog, alive; 0 when none), the count the pages list; no
  series for a task not LOST, or whose marker is not known (nothing was looked for);
- per process (`process` label): its runs (`stoker_process_runs_total`, every run ever
  started, also those the checkpoint no longer keeps), the failed runs among the last it
  keeps, its latest run's start, and the CPU and RSS of its running run's process tree;
- its use against its reservation, where the task page has a figure (`Figures`: a figure
  not known is no sample, never 0).

A counter here is what the checkpoint counts (runs, health checks): it resets only with the
task (a new task id or supervisor: other series). CPU is a gauge: a tree's
CPU time is that of the processes in it now (one that exits takes its time along), and
its rate is the page's (since the observer's previous look at the tree, else the average
since the run started).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import attrs

from executor.observe.exposition import COUNTER, GAUGE, Family, Labels, LabelText
from executor.observe.model import TaskDetail
from executor.task.inspectionjson import health_current
from executor.task.taskview import ProcessView

if TYPE_CHECKING:
    from executor.task.inspection import Inspection

TASK_STATES = ("NEW", "STARTING", "RUNNING", "RESTARTING", "FINISHED", "FAILED", "KILLED", "LOST", "GONE", "UNKNOWN")
PROCESS_STATES = ("WAITING", "RUNNING", "SUCCESS", "FAILED", "KILLED", "LOST")
HEALTH_STATES = ("STARTING", "RUNNING", "FAILED")
HEALTH_OUTCOMES = ("passed", "failed", "snoozed")

# name: (type, help); the order is the answer's.
FAMILIES: dict[str, tuple[str, str]] = {
    "stoker_task_info": (GAUGE, "A task of the host registry (always 1), with what identifies it."),
    "stoker_task_state": (GAUGE, "1 for the task's state (as stoker ps says it), 0 for each other."),
    "stoker_task_start_time_seconds": (GAUGE, "When the task's attempt started, in seconds since the epoch."),
    "stoker_task_attempt": (
        GAUGE, "The task's attempt: 1, or the attempt of stoker run's restarts (each has its own task id)."),
    "stoker_task_supervisor_alive": (GAUGE, "1 while the task's supervisor runs."),
    "stoker_task_leftover_processes": (
        GAUGE, "A LOST task's processes still alive after its supervisor died (no series unless LOST, "
               "died while killing, or GONE without an end)."),
    "stoker_task_health_state": (
        GAUGE, "1 for the health check's state, 0 for each other (no series without a check): the last once it stopped."),
    "stoker_task_health_check_running": (
        GAUGE, "1 while the health check runs; 0 once its attempt ended or its supervisor is gone."),
    "stoker_task_health_checks_total": (COUNTER, "Health checks of the task's attempt so far."),
    "stoker_task_health_consecutive_failures": (GAUGE, "Health checks failed in a row, up to the last."),
    "stoker_task_health_consecutive_successes": (GAUGE, "Health checks passed in a row, up to the last."),
    "stoker_task_health_recent_checks": (
        GAUGE, "Outcomes among the last health checks the checkpoint keeps (at most 10)."),
    "stoker_task_health_last_check_duration_seconds": (GAUGE, "How long the last health check took."),
    "stoker_task_health_last_check_time_seconds": (GAUGE, "When the last health check ended, in seconds since the epoch."),
    "stoker_task_cpu_usage_cores": (
        GAUGE, "CPU the task's processes use, in cores (since the observer's previous look, else since each run started)."),
    "stoker_task_cpu_reserved_cores": (GAUGE, "CPU the task reserved (Resources.cpu), in cores."),
    "stoker_task_memory_rss_bytes": (GAUGE, "Resident memory of the task's processes."),
    "stoker_task_memory_reserved_bytes": (GAUGE, "Memory the task reserved (Resources.ram)."),
    "stoker_task_disk_used_bytes": (GAUGE, "The sandbox's size at the disk-limit check's last sample."),
    "stoker_task_disk_reserved_bytes": (GAUGE, "Disk the task reserved (Resources.disk)."),
    "stoker_task_disk_sample_time_seconds": (GAUGE, "When the last disk sample was taken, in seconds since the epoch."),
    "stoker_process_state": (GAUGE, "1 for the process's state, 0 for each other (LOST: running when its task was lost)."),
    "stoker_process_runs_total": (COUNTER, "Runs of the process started (restarts are this less one)."),
    "stoker_process_failed_runs": (
        GAUGE, "Runs that FAILED among the process's last runs the checkpoint keeps (at most 20)."),
    "stoker_process_run_start_time_seconds": (
        GAUGE, "When the process's latest run started, in seconds since the epoch."),
    "stoker_process_stopped": (GAUGE, "1 while the running run's process is stopped (SIGSTOP, a debugger)."),
    "stoker_process_tree_processes": (GAUGE, "Processes in the running run's process tree."),
    "stoker_process_cpu_seconds": (
        GAUGE, "CPU time (user and system) of the processes now in the running run's tree."),
    "stoker_process_cpu_usage_cores": (
        GAUGE, "CPU the running run's tree uses, in cores (since the observer's previous look, else since it started)."),
    "stoker_process_memory_rss_bytes": (GAUGE, "Resident memory of the running run's process tree."),
    "stoker_observer_scrape_duration_seconds": (GAUGE, "How long this answer took to read the registry, tasks and /proc."),
    "stoker_observer_tasks": (
        GAUGE, "Tasks in this answer (those the connection may see whose supervisor runs, that ended lately "
               "or that left processes alive)."),
    "stoker_observer_registry_unreadable_entries": (
        GAUGE, "Registry entries of running supervisors this observer cannot read (another version's, or damaged)."),
    "stoker_observer_registry_files_not_read": (
        GAUGE, "Other files in the registry read as no task (put there by hand, not JSON, a field missing), as `stoker ps` counts them."),
    "stoker_observer_checkpoint_replays_total": (
        COUNTER, "Checkpoints the observer replayed since it started (a view kept is not replayed)."),
    "stoker_observer_task_errors_total": (
        COUNTER, "Times a task was left out of an answer because reading or exporting it failed (logged once per task)."),
}
OBSERVER = ("stoker_observer_scrape_duration_seconds", "stoker_observer_tasks",
            "stoker_observer_registry_unreadable_entries", "stoker_observer_checkpoint_replays_total",
            "stoker_observer_task_errors_total", "stoker_observer_registry_files_not_read")
DEFAULT_ENDED_SECS = 600.0


@attrs.frozen(slots=True)
class Window:
    """Which tasks an answer exports: every task whose supervisor runs, and each other one
    until `ended_secs` after it ended (None: as long as the registry keeps it). When it ended:
    the time its supervisor marked its registry entry ended as it let go, known before its
    checkpoint is read (`keeps_entry`); a supervisor gone without letting go (a LOST task) is
    judged once inspected (`keeps`), by its last sign of life. A LOST task past the window is
    exported still while processes of it live on (`keeps_lost`: orphans that may hold its
    ports for days; `stoker_task_leftover_processes > 0` fires until they are gone)."""

    ended_secs: float | None
    now: float

    def keeps_entry(self, ended_wall: float | None) -> bool:
        """Whether a task whose registry entry says it ended at `ended_wall` (None: its
        supervisor did not let go) may be in the answer: read it."""
        return self.ended_secs is None or ended_wall is None or self.now - ended_wall <= self.ended_secs

    def keeps(self, inspection: Inspection, registered_wall: float, ended_wall: float | None,
              seen_wall: float | None = None) -> bool:
        """Whether the inspected task is in the answer: its supervisor runs, or it ended
        lately: when its supervisor let go (`ended_wall`), else at its last sign (LOST: of
        life; else its checkpoint's last record; else, its checkpoint gone (GONE), the last
        record the reader read of it before (`seen_wall`): a task LOST lately, its sandbox then
        deleted, was measured from its registration and left out at once; else its registration)."""
        truth = inspection.truth
        if self.ended_secs is None or truth.alive:
            return True
        view = inspection.view
        last = ended_wall or truth.since_wall or (view.last_wall if view is not None else None) or seen_wall \
            or registered_wall
        return self.now - last <= self.ended_secs

    @staticmethod
    def keeps_lost(inspection: Inspection) -> bool:
        """Whether a LOST task `keeps` leaves out is in the answer all the same, once its
        leftovers were looked for (`with_leftovers`): while any of its processes lives."""
        return inspection.truth.unsupervised and bool(inspection.leftovers)


@attrs.frozen(slots=True)
class ObserverFigures:
    scrape_secs: float
    tasks: int
    unreadable: int | None  # None: not shown to this viewer
    replays: int | None  # None: not shown to this viewer (other users' checkpoints count)
    task_errors: int | None = None  # None: not shown to this viewer
    not_read: int | None = None  # the registry's other files read as no task; None: not shown to this viewer


def identity(row: Mapping[str, object], supervisor: str) -> Labels:
    """The labels every series of the task carries (an unknown one is left out)."""
    key = str(row.get("job_key")).split("/")  # None: "None", one part: no role either
    role, environment, job = key[1:] if len(key) == 4 else ("", "", "")
    instance = str(row.get("label")).rpartition(".")[2]  # None: "None", not decimal
    pairs = (("task_id", str(row.get("task_id") or "")), ("supervisor", supervisor), ("role", role),
             ("environment", environment), ("job_name", job),
             ("task_instance", instance if instance.isdecimal() else ""))
    return tuple((k, v) for k, v in pairs if v)


Set = tuple[Labels, str]  # labels, and their text as written (`LabelText`): a task's, a process's, written once


class _Out:
    def __init__(self) -> None:
        self.samples: dict[str, list[tuple[Labels, float]]] = {name: [] for name in FAMILIES}
        self.written: dict[str, list[str]] = {name: [] for name in FAMILIES}
        self._text = LabelText()

    def labels(self, labels: Labels) -> Set:
        return labels, self._text.of(labels)

    def plus(self, labels: Set, *pairs: tuple[str, str]) -> Set:
        return (*labels[0], *pairs), self._text.more(labels[1], pairs)

    def enum(self, name: str, labels: Set, label: str, current: str, known: Sequence[str]) -> None:
        """1 for `current`, 0 for each other of `known` (`current` added when not in it)."""
        (pairs, written), samples, texts = labels, self.samples[name], self.written[name]
        for s in known if current in known else (*known, current):
            pair = (label, s)
            samples.append(((*pairs, pair), int(s == current)))
            texts.append(self._text.more(written, (pair,)))

    def add(self, name: str, labels: Set, number: float | None) -> None:
        if number is not None:
            self.samples[name].append((labels[0], number))
            self.written[name].append(labels[1])

    def counts(self) -> dict[str, int]:
        return {name: len(samples) for name, samples in self.samples.items()}

    def cut(self, counts: dict[str, int]) -> None:
        """Take back the samples added since `counts`."""
        for name, count in counts.items():
            del self.samples[name][count:], self.written[name][count:]

    def families(self) -> list[Family]:
        return [Family(name, kind, text, self.samples[name], self.written[name])
                for name, (kind, text) in FAMILIES.items()]


def _task(out: _Out, d: TaskDetail) -> None:
    row, labels = d.row, out.labels(identity(d.row, d.supervisor))
    key = str(row.get("job_key") or "")
    more = (("cluster", key.split("/")[0] if key.count("/") == 3 else ""), ("job_key", key),
            ("sandbox", str(row.get("sandbox") or "")), ("front_end", str(row.get("front_end") or "")))
    out.add("stoker_task_info", out.plus(labels, *((k, v) for k, v in more if v)), 1)
    out.enum("stoker_task_state", labels, "state", str(row["state"]), TASK_STATES)
    out.add("stoker_task_supervisor_alive", labels, int(d.inspection.truth.alive))
    if d.inspection.leftovers_looked:  # LOST, its marker known: else nothing was looked for
        out.add("stoker_task_leftover_processes", labels, len(d.inspection.leftovers))
    attempt = d.inspection.attempt  # None while a re-run's new id has no attempt in the checkpoint
    if attempt is not None or d.inspection.view is None:  # no checkpoint yet: when it was registered
        out.add("stoker_task_start_time_seconds", labels, _number(row.get("started")))
    if attempt is None:
        return
    out.add("stoker_task_attempt", labels, attempt.number)
    _health(out, labels, d)
    _resources(out, labels, d)
    for p in attempt.processes:
        _process(out, labels, d, p)


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _health(out: _Out, labels: Set, d: TaskDetail) -> None:
    assert d.inspection.attempt is not None
    h = d.inspection.attempt.health
    if h.checker == "none" and h.state is None:
        return
    out.enum("stoker_task_health_state", labels, "state", h.state or "STARTING", HEALTH_STATES)
    out.add("stoker_task_health_check_running", labels, int(health_current(d.inspection)))
    out.add("stoker_task_health_checks_total", labels, h.attempts)
    out.add("stoker_task_health_consecutive_failures", labels, h.consecutive_failures)
    out.add("stoker_task_health_consecutive_successes", labels, h.consecutive_successes)
    outcomes = [a.outcome for a in h.last_attempts]
    for outcome in (*HEALTH_OUTCOMES, *sorted(set(outcomes) - set(HEALTH_OUTCOMES))):
        out.add("stoker_task_health_recent_checks", out.plus(labels, ("outcome", outcome)), outcomes.count(outcome))
    if h.last_attempts:
        last = h.last_attempts[-1]
        out.add("stoker_task_health_last_check_duration_seconds", labels, last.latency_secs)
        out.add("stoker_task_health_last_check_time_seconds", labels, last.wall or None)


def _resources(out: _Out, labels: Set, d: TaskDetail) -> None:
    f = d.figures
    if f is None:
        return
    out.add("stoker_task_cpu_usage_cores", labels, f.cpu_used)
    out.add("stoker_task_memory_rss_bytes", labels, f.ram_used)
    if f.unverified:  # the reservation and disk figure may be the task's own writing
        return
    out.add("stoker_task_cpu_reserved_cores", labels, f.cpu_reserved)
    out.add("stoker_task_memory_reserved_bytes", labels, f.ram_reserved)
    out.add("stoker_task_disk_used_bytes", labels, f.disk_used)
    out.add("stoker_task_disk_reserved_bytes", labels, f.disk_reserved)
    out.add("stoker_task_disk_sample_time_seconds", labels, f.disk_sampled if f.disk_used is not None else None)


def _process(out: _Out, task: Set, d: TaskDetail, p: ProcessView) -> None:
    labels = out.plus(task, ("process", p.name))
    lost = d.inspection.truth.unsupervised and p.state == "RUNNING"
    out.enum("stoker_process_state", labels, "state", "LOST" if lost else p.state, PROCESS_STATES)
    out.add("stoker_process_runs_total", labels, p.earlier_runs + len(p.runs))
    out.add("stoker_process_failed_runs", labels, sum(r.state == "FAILED" for r in p.runs))
    run, usage = p.current, d.usage.get(p.name)
    if run is not None and run.started_wall is not None:
        live = run.ended_wall is None and usage is not None and usage.started_wall is not None
        out.add("stoker_process_run_start_time_seconds", labels, usage.started_wall if live and usage else run.started_wall)
    if usage is None:
        return
    out.add("stoker_process_stopped", labels, int(usage.stopped))
    out.add("stoker_process_tree_processes", labels, usage.processes)
    out.add("stoker_process_cpu_seconds", labels, usage.cpu_secs)
    out.add("stoker_process_cpu_usage_cores", labels,
            None if usage.cpu_percent is None else usage.cpu_percent / 100.0)
    out.add("stoker_process_memory_rss_bytes", labels, usage.rss_bytes)


Failed = Callable[[TaskDetail, Exception], None]


def task_families(tasks: Iterable[TaskDetail], failed: Failed | None = None) -> list[Family]:
    """The tasks' families, each with the samples of every task in `tasks`. A task whose
    samples cannot be made (`failed` is told; without it, the error is raised) is left out
    whole, every other task is there."""
    out = _Out()
    for d in tasks:
        before = out.counts()
        try:
            _task(out, d)
        except Exception as exc:
            if failed is None:
                raise
            out.cut(before)
            failed(d, exc)
    return [f for f in out.families() if f.name not in OBSERVER]


def observer_families(observer: ObserverFigures) -> list[Family]:
    """The observer's own families (after the tasks' in an answer)."""
    out = _Out()
    numbers = (observer.scrape_secs, observer.tasks, observer.unreadable, observer.replays, observer.task_errors,
               observer.not_read)
    for name, number in zip(OBSERVER, numbers):  # six names, six figures
        out.add(name, ((), ""), number)
    return [f for f in out.families() if f.name in OBSERVER]


def families(tasks: Iterable[TaskDetail], observer: ObserverFigures) -> list[Family]:
    """The answer's families: the tasks' (`task_families`), then the observer's."""
    return [*task_families(tasks), *observer_families(observer)]
