"""The planner's test harness: tasks and processes built short, a Harness that drives a Planner
like the owner does (decide, fork what it says, report exits) on a fake clock, and the views
the planner tests compare (what started, what was signalled, the transitions as rows)."""
from __future__ import annotations

import signal

from config.spec import ProcessSpec, TaskSpec
from executor.events import ExitStatus, PhaseTransition, ProcessState, ProcessTransition
from executor.task.planner import Decision, Planner
from executor.task.plans import Plan
from tests.support.fake_clock import FakeClock

TERM = int(signal.SIGTERM)
KILL = int(signal.SIGKILL)


def proc(name: str, **kw) -> ProcessSpec:
    kw.setdefault("min_duration_secs", 0.0)  # most rules are easier to see without the gate
    return ProcessSpec(name=name, cmdline=f"run-{name}", **kw)


def task(*procs: ProcessSpec, constraints=(), **kw) -> TaskSpec:
    return TaskSpec(name="t", processes=tuple(procs), constraints=tuple(constraints), **kw)


class Harness:
    """Drives a Planner like the owner does: decide, fork what it says, report exits."""

    def __init__(self, spec: TaskSpec, **kw) -> None:
        self.clock = FakeClock()
        self.planner = Planner(spec, **kw)
        self.transitions: list = []
        self.next_pid = 100

    def decide(self) -> Decision:
        d = self.planner.decide(self.clock.now)
        self.transitions += d.transitions
        for s in d.start:
            self.next_pid += 1
            self.planner.started(s.process, s.run, self.next_pid, self.clock.now)
        assert_plans_kept(self.planner)
        return d

    def run_of(self, name: str) -> int:
        return self.planner.process(name).run

    def exit(self, name: str, code: int | None = 0, sig: int | None = None) -> Decision:
        status = ExitStatus(signal=sig) if sig is not None else ExitStatus(exit_code=code)
        self.planner.exited(name, self.run_of(name), status, self.clock.now)
        return self.decide()

    def state(self, name: str) -> ProcessState:
        return self.planner.process(name).state

    def states(self) -> dict[str, str]:
        return {v.name: v.state.value for v in self.planner.processes()}


def assert_plans_kept(planner: Planner) -> None:
    """What each plan keeps as the states change (`Plan.moved`) is what a plan made afresh
    from the same processes finds."""
    for plan in (planner._regular, planner._final):
        fresh = Plan(list(plan.procs), term_at=plan.term_at, kill_at=plan.kill_at)
        assert plan.ready() == fresh.ready()
        assert plan.running_procs() == fresh.running_procs()
        assert plan.settled() == fresh.settled()
        assert all(plan.count(s) == fresh.count(s) for s in ProcessState)
        assert all(plan.deps_done(p) == fresh.deps_done(p) for p in plan.procs)


def started(d: Decision) -> list[str]:
    return [s.process for s in d.start]


def signals(d: Decision) -> list[tuple[str, int]]:
    return [(s.process, s.signal) for s in d.signal]


def task_transitions(h: Harness) -> list[tuple[str, str]]:
    return [(t.from_.value, t.to.value) for t in h.transitions if isinstance(t, PhaseTransition)]


def row(t: ProcessTransition | PhaseTransition) -> tuple[str | None, str, str]:
    """(process or None for a phase, from, to) as the states' names."""
    process = t.process if isinstance(t, ProcessTransition) else None
    return process, t.from_.value, t.to.value
