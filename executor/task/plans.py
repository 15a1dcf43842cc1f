"""A `Plan`: the regular or the final processes of a task, as the planner keeps them. PURE.

Owns each process's direct predecessors (`dependencies`, from the task's order constraints), and
what the planner asks of a plan at every decision (which processes run, which could
start, whether the plan is settled, how many failed) and its stop deadlines. It keeps the
answers up to date as each process changes state (`Plan.moved`), so that a decision costs
what it starts or signals, not a look at every process and every dependency. No I/O, no
clock, no logging.
"""
from __future__ import annotations

import math

import attrs

from config.order import order_graph
from config.spec import TaskSpec
from executor.events import ProcessState
from executor.task.process_rules import ProcessTrack

_DONE = (ProcessState.SUCCESS, ProcessState.FAILED, ProcessState.KILLED)
# A run the task SIGKILLed ends, for the report, once its exit is in or this long after the
# SIGKILL: a process in D state (a FUSE or NFS request held) cannot die until the kernel lets it
# go, but runs no user code again (docs/design.md §5). Short, so that under Mesos the task's end
# reaches the agent within its shutdown grace (the SIGKILL comes 1 s before the grace's end).
GIVE_UP_AFTER_SIGKILL_SECS = 0.25


@attrs.define
class Plan:
    """The regular or the final processes (order constraints never mix the two, so every
    dependency is in the same plan), and when their runs get signalled once stopping.

    It keeps, as the states change (`moved`, which the planner calls for every change), how
    many processes are in each state, how many of each one's dependencies have not
    succeeded, and which processes are RUNNING and which WAITING ones could start: so a
    decision costs what it starts or signals, not a look at every process and dependency
    (a task of 1,000 processes spent 0.7 ms in each, and its start and end of each process
    O(n^2); a chain of them O(n^2) dependency checks)."""

    procs: list[ProcessTrack]
    term_at: float = math.inf  # infinity: not stopping
    kill_at: float = math.inf
    _by_name: dict[str, ProcessTrack] = attrs.field(init=False)  # the dependencies' only
    _index: dict[str, int] = attrs.field(init=False)  # task order
    # only the processes some other one depends on, and only those with dependencies: a
    # task of 100 independent processes kept 100 empty lists and two dicts of 100 entries
    _dependents: dict[str, list[ProcessTrack]] = attrs.field(init=False)
    _unmet: dict[str, int] = attrs.field(init=False)  # dependencies not SUCCESS
    _counts: dict[ProcessState, int] = attrs.field(init=False)
    # indices, as dict keys (values None): a dict of 100 ints holds a third of a set's table
    # (8 KiB), and `_ready`, which empties once the runs started, is made anew when empty
    _ready: dict[int, None] = attrs.field(init=False)  # WAITING, every dependency succeeded
    _running: dict[int, None] = attrs.field(init=False)
    _open: int = attrs.field(init=False)  # not ephemeral and not ended for good
    _waited_running: int = attrs.field(init=False)  # not ephemeral and RUNNING

    def __attrs_post_init__(self) -> None:
        self._index = {p.name: i for i, p in enumerate(self.procs)}
        self._dependents = {}
        for p in self.procs:
            for d in p.deps:
                self._dependents.setdefault(d, []).append(p)
        self._by_name = {p.name: p for p in self.procs if p.name in self._dependents}
        self._unmet = {p.name: sum(self._state(d) is not ProcessState.SUCCESS for d in p.deps)
                       for p in self.procs if p.deps}
        self._counts = dict.fromkeys(ProcessState, 0)
        self._ready, self._running = {}, {}
        self._open = self._waited_running = 0
        for p in self.procs:
            self._counts[p.state] += 1
            self._enter(p, p.state)

    def moved(self, p: ProcessTrack, old: ProcessState) -> None:
        """`p` went from `old` to its state now."""
        new = p.state
        self._counts[old] -= 1
        self._counts[new] += 1
        self._leave(p, old)
        self._enter(p, new)
        if (old is ProcessState.SUCCESS) is not (new is ProcessState.SUCCESS):
            step = -1 if new is ProcessState.SUCCESS else 1
            for d in self._dependents.get(p.name, ()):
                self._unmet[d.name] += step
                self._leave(d, d.state)
                self._enter(d, d.state)

    def _enter(self, p: ProcessTrack, state: ProcessState) -> None:
        i = self._index[p.name]
        if state is ProcessState.WAITING and not self._unmet.get(p.name):
            self._ready[i] = None
        elif state is ProcessState.RUNNING:
            self._running[i] = None
        if not p.spec.ephemeral:
            self._open += state not in _DONE
            self._waited_running += state is ProcessState.RUNNING

    def _leave(self, p: ProcessTrack, state: ProcessState) -> None:
        i = self._index[p.name]
        if self._ready.pop(i, 0) is None and not self._ready:
            self._ready = {}  # a dict keeps its table when emptied
        self._running.pop(i, None)
        if not p.spec.ephemeral:
            self._open -= state not in _DONE
            self._waited_running -= state is ProcessState.RUNNING

    @property
    def stopping(self) -> bool:
        return self.term_at < math.inf

    def stop(self, term_at: float, kill_at: float) -> None:
        """Stop (or stop sooner): deadlines only ever move earlier."""
        self.term_at = min(self.term_at, term_at)
        self.kill_at = min(self.kill_at, kill_at)

    def count(self, state: ProcessState) -> int:
        return self._counts[state]

    def running(self) -> int:
        return len(self._running)

    def running_procs(self) -> list[ProcessTrack]:
        """The RUNNING processes, in task order."""
        return [self.procs[i] for i in sorted(self._running)]

    def ready(self) -> list[ProcessTrack]:
        """The WAITING processes whose dependencies all succeeded, in task order (each may
        still wait for its min_duration, or for a slot under max_concurrency)."""
        return [self.procs[i] for i in sorted(self._ready)]

    def deps_done(self, p: ProcessTrack) -> bool:
        return not self._unmet.get(p.name)

    def waiting_for(self, p: ProcessTrack) -> list[str]:
        """The processes `p` still waits for (they have not succeeded yet)."""
        return [d for d in p.deps if self._state(d) is not ProcessState.SUCCESS]

    def failed_dep(self, p: ProcessTrack) -> str | None:
        """The first process `p` waits for that failed: `p` can never start."""
        return next((d for d in p.deps if self._state(d) is ProcessState.FAILED), None)

    def settled(self) -> bool:
        """Complete (every non-ephemeral process ended for good) or deadlocked: none of them
        runs or can start. Ephemeral runs do not count: none of those processes waits for
        one (`config.order`), so they cannot unblock it (Thermos would wait for ever)."""
        if self._open == 0:
            return True
        if self._waited_running:
            return False
        return all(self.procs[i].spec.ephemeral for i in self._ready)

    def _state(self, name: str) -> ProcessState:
        return self._by_name[name].state

    def kill_time(self, p: ProcessTrack) -> float:
        """When a stopping run gets SIGKILL: the plan's time, or sooner the one an operator's
        restart gave it (a stop never puts off a SIGKILL already due), once the restart's
        SIGTERM went out: a restart that came with the stop SIGTERMs the run first."""
        restart = p.restart_kill_at if p.termed else None
        return self.kill_at if restart is None else min(self.kill_at, restart)

    def stop_times(self, killed_at: float | None, termed: bool, kill_at: float) -> list[float]:
        """When a stopping run (or the runs' daemons) is next due something: its give-up after
        its SIGKILL, else its SIGKILL (`kill_at`), and the plan's SIGTERM while not sent."""
        if killed_at is not None:
            return [killed_at + GIVE_UP_AFTER_SIGKILL_SECS]
        return [kill_at] if termed else [kill_at, self.term_at]


def dependencies(task: TaskSpec) -> dict[str, tuple[str, ...]]:
    """Each process's direct predecessors (`config.order`, the loader's rules too). A loaded
    job never breaks them; this guard stops a TaskSpec built around the loader."""
    graph = order_graph(((p.name, p.final) for p in task.processes), task.constraints,
                        daemons={p.name for p in task.processes if p.daemon},
                        ephemerals={p.name for p in task.processes if p.ephemeral})
    if graph.problems:
        from config.orderproblems import describe

        raise ValueError("invalid schedule: " + "; ".join(describe(p, "task") for p in graph.problems))
    return graph.deps
