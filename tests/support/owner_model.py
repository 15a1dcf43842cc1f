"""What the owner machine test (tests/unit/test_owner_machine.py) knows independently of the
owner: the jobs it draws (`Shape`, `SHAPES`), the runs alive as the fake process port saw
them spawned and signalled (`World`), the health rules of docs/contract.md §5 written out
again (`HealthOracle`), and the invariants of the updates, the runs, the checkpoint and the
clock (`check_*`), each failing with a sentence that says which rule broke.

Nothing here starts a process, a thread or a socket.
"""
from __future__ import annotations

import math
import re

import attrs
from hypothesis import strategies as st

from config.spec import JobSpec, ProcessSpec
from executor.events import ProcessState, ProcessTransition, TaskPhase, TaskState
from executor.task.replay import replay
from tests.support.owner_rig import HEALTH, LIFECYCLE, OwnerRig, job

_EFFECT = re.compile(r"^(?P<at>\S+) (?P<what>spawn|SIGTERM|SIGKILL) (?P<proc>[\w.-]+)\[(?P<run>\d+)\]"
                     r"(?P<failed> failed)?$")
_DAEMONS = re.compile(r"^\S+ (?P<what>SIGTERM|SIGKILL) daemons$")


@attrs.frozen
class Shape:
    """A job as few numbers, so that a failing sequence prints short: process `a` (its
    max_failures, min_duration), `b` (None: no b; "free", or "after a"), the final
    processes (`f`, or `f` and `g`, maybe in order), the lifecycle endpoints, the health
    check (None, or initial_interval, max_consecutive_failures, min_consecutive_successes),
    finalization_wait, the task's max_failures and max_concurrency."""

    a: tuple[int, float] = (1, 0.0)
    b: tuple[str, int] | None = None
    finals: str = ""  # "", "f", "f g" (unordered), "f>g" (in order)
    lifecycle: bool = False
    health: tuple[float, int, int] | None = None
    finalization_wait: float = 2.0
    task: tuple[int, int] = (1, 0)
    stop: tuple[float | None, float | None, float | None] = (None, None, None)  # StopBounds
    cannot_start: str = ""  # a process whose every spawn fails (EAGAIN)
    kills: bool = True  # whether kills come at all (else the processes and checks end the task)

    def job(self) -> JobSpec:
        procs = [ProcessSpec(name="a", cmdline="serve", max_failures=self.a[0], min_duration_secs=self.a[1])]
        constraints = []
        if self.b is not None:
            procs.append(ProcessSpec(name="b", cmdline="work", max_failures=self.b[1], min_duration_secs=0.0))
            if self.b[0] == "after a":
                constraints.append(("a", "b"))
        for name in self.finals.replace(">", " ").split():
            procs.append(ProcessSpec(name=name, cmdline="clean", final=True, min_duration_secs=0.0))
        if ">" in self.finals:
            constraints.append(("f", "g"))
        spec = job(*procs, lifecycle=LIFECYCLE if self.lifecycle else None, health=self.health is not None,
                   finalization_wait_secs=self.finalization_wait)
        spec = attrs.evolve(spec, task=attrs.evolve(spec.task, constraints=tuple(constraints),
                                                    max_failures=self.task[0], max_concurrency=self.task[1]))
        if self.health is not None:
            initial, failures, successes = self.health
            spec = attrs.evolve(spec, health=attrs.evolve(
                HEALTH, initial_interval_secs=initial, max_consecutive_failures=failures,
                min_consecutive_successes=successes))
        return spec

    def deps(self) -> dict[str, tuple[str, ...]]:
        """Each process's predecessors, as the shape orders them."""
        deps = {name: () for name in ["a", "b", "f", "g"]}
        if self.b is not None and self.b[0] == "after a":
            deps["b"] = ("a",)
        if ">" in self.finals:
            deps["g"] = ("f",)
        return deps


SHAPES = st.builds(
    Shape,
    a=st.tuples(st.sampled_from([0, 1, 2, 3]), st.sampled_from([0.0, 1.0])),
    b=st.none() | st.tuples(st.sampled_from(["free", "after a"]), st.sampled_from([0, 1, 2])),
    finals=st.sampled_from(["", "f", "f g", "f>g"]),
    lifecycle=st.sampled_from([True, False]),
    health=st.tuples(st.sampled_from([1.0, 0.0, 2.0]), st.sampled_from([1, 0, 2]),
                     st.sampled_from([2, 1, 0])) | st.none(),
    finalization_wait=st.sampled_from([2.0, 5.0]),
    task=st.tuples(st.sampled_from([0, 1, 2]), st.sampled_from([0, 0, 1])),
    stop=st.tuples(st.sampled_from([None, None, 1.0]), st.sampled_from([None, None, 4.0]),
                   st.sampled_from([None, None, 6.0])),
    cannot_start=st.sampled_from([""] * 8 + ["a", "b"]),
    kills=st.sampled_from([True, False]))


@attrs.define
class Run:
    process: str
    run: int
    spawned_at: float
    termed_at: float | None = None
    killed_at: float | None = None
    alive: bool = True
    restarted_at: float | None = None  # an operator's restart asked for while it ran


class World:
    """The runs as the process port saw them: spawned, signalled, exited."""

    def __init__(self, rig: OwnerRig) -> None:
        self._rig = rig
        self._seen = 0  # effect lines already read
        self.runs: dict[tuple[str, int], Run] = {}
        self.new_spawns: list[Run] = []  # spawned in the last step
        self.daemons = False  # daemons the runs left live (as the test sets them)
        self.daemons_termed_at: float | None = None
        self.daemons_killed_at: float | None = None

    def read_effects(self) -> None:
        self.new_spawns = []
        now = self._rig.clock.now
        for line in self._rig.effects.lines[self._seen:]:
            if (d := _DAEMONS.match(line)) is not None:
                self._daemons_signalled(d["what"], line, now)
                continue
            m = _EFFECT.match(line)
            if m is None:
                continue
            key = (m["proc"], int(m["run"]))
            if m["what"] == "spawn":
                assert key not in self.runs, f"{key} spawned twice"
                self.runs[key] = run = Run(key[0], key[1], now, alive=not m["failed"])
                self.new_spawns.append(run)
                continue
            run = self.runs[key]
            assert run.alive, f"{line}: a signal to a run that already exited"
            if m["what"] == "SIGTERM" and run.termed_at is None:
                run.termed_at = now
            elif m["what"] == "SIGKILL" and run.killed_at is None:
                run.killed_at = now
        self._seen = len(self._rig.effects.lines)

    def _daemons_signalled(self, what: str, line: str, now: float) -> None:
        assert self.daemons, f"{line}: no daemon lives"
        if what == "SIGTERM" and self.daemons_termed_at is None:
            self.daemons_termed_at = now
        elif what == "SIGKILL" and self.daemons_killed_at is None:
            self.daemons_killed_at = now

    def alive(self) -> list[Run]:
        return [r for r in self.runs.values() if r.alive]


class HealthOracle:
    """docs/contract.md §5 as an outsider reads it: m grace attempts whose failures are not
    counted, `need` consecutive passes for RUNNING, FAILED past max_consecutive_failures
    counted failures or once the passes cannot fit in the n attempts; FAILED sticks."""

    def __init__(self, job: JobSpec) -> None:
        h = job.health
        self.m = math.ceil(round(h.initial_interval_secs / h.interval_secs, 9))
        self.need = max(1, h.min_consecutive_successes)
        self.max_failures = h.max_consecutive_failures
        self.n = self.m + self.max_failures + self.need
        self.attempts = self.passes = self.failures = 0
        self.state = "STARTING"

    def attempt(self, ok: bool) -> None:
        if self.state == "FAILED":
            return
        self.attempts += 1
        if ok:
            self.passes += 1
            self.failures = 0
            if self.state == "STARTING" and self.passes >= self.need:
                self.state = "RUNNING"
            return
        self.passes = 0
        if self.attempts > self.m:
            self.failures += 1
        if self.failures > self.max_failures:
            self.state = "FAILED"
        elif self.state == "STARTING" and self.need > self.n - self.attempts:
            self.state = "FAILED"


def stopping(rig: OwnerRig) -> bool:
    """The owner stops the task: a kill or a failure is under way, or the planner left ACTIVE."""
    owner = rig.owner
    return (owner._planner.phase is not TaskPhase.ACTIVE or owner._status.killing
            or owner._status.state.terminal)


def check_updates(rig: OwnerRig, health: bool) -> None:
    """STARTING first, RUNNING at most once and only after it, at most one terminal update,
    last; RUNNING says `healthy: true` exactly when a check is configured."""
    updates = rig.reporter.updates
    states = [u.state for u in updates]
    assert states[:1] == [TaskState.STARTING], f"the first update is not STARTING: {states}"
    rest = states[1:]
    if rest and rest[0] is TaskState.RUNNING:
        assert updates[1].healthy is (True if health else None), f"RUNNING's healthy: {updates[1]}"
        rest = rest[1:]
    assert len(rest) <= 1 and all(s.terminal for s in rest), f"updates out of order: {states}"
    assert bool(rest) == rig.done, f"the task ended ({rig.done}) but its updates are {states}"


def check_checkpoint(rig: OwnerRig) -> None:
    """Replaying what the owner wrote gives its own view of the task and of every process."""
    owner = rig.owner
    view = replay(rig.checkpoint.records)
    assert view.state == owner._status.stage.value, (view.state, owner._status.stage)
    phase = "ACTIVE" if view.phase is None else view.phase.to_state  # the first phase is not recorded
    assert phase == owner._planner.phase.value, (view.phase, owner._planner.phase)
    policy = owner._checks._policy
    if policy is not None:  # the health checks the owner judged, as `stoker status` shows them
        health = view.health
        assert (health.attempts, health.consecutive_failures, health.consecutive_successes) == (
            policy.attempts, policy.consecutive_failures, policy.consecutive_successes), (health, policy)
    replayed = {p.name: p for p in view.processes}
    for mine in owner._planner.processes():
        theirs = replayed[mine.name]
        assert theirs.state == mine.state.value, (mine.name, theirs.state, mine.state)
        current = theirs.current
        if mine.run < 0:
            assert current is None, (mine.name, current)
            continue
        assert current is not None and current.run == mine.run, (mine.name, current, mine.run)
        assert current.pid == mine.pid, (mine.name, current.pid, mine.pid)
        assert theirs.earlier_runs + len(theirs.runs) == mine.run + 1, (mine.name, theirs)
        changes = [t for t in rig.reporter.transitions if isinstance(t, ProcessTransition)
                   and t.process == mine.name and t.run == current.run]
        assert changes and current.reason == changes[-1].reason, (mine.name, current, changes[-1:])
        outcomes = [t.outcome for t in changes if t.outcome is not None]
        if mine.state in (ProcessState.SUCCESS, ProcessState.FAILED, ProcessState.KILLED) and outcomes:
            # the run that ended the process shows the process's end (a run that exited 0
            # as the task was killed is KILLED, its exit status 0 beside it)
            assert current.state == mine.state.value, (mine.name, current, mine.state)
        elif outcomes:
            assert current.state == outcomes[-1].value, (mine.name, current, outcomes)
        else:
            assert current.state in ("RUNNING", "WAITING"), (mine.name, current)


def check_runs(rig: OwnerRig, world: World, job: JobSpec, deps: dict[str, tuple[str, ...]],
               stopping_before: bool) -> None:
    """Order constraints, one run at a time, no restart past max_failures or while the task
    stops, the final processes only once every regular run has ended; the task stops once
    its max_failures regular processes failed."""
    owner = rig.owner
    views = {v.name: v for v in owner._planner.processes()}
    regular_alive = [r for r in world.alive() if not job.task.process(r.process).final]
    for run in world.new_spawns:
        spec = job.task.process(run.process)
        for dep in deps[run.process]:
            assert views[dep].state is ProcessState.SUCCESS, f"{run.process}[{run.run}] before {dep} succeeded"
        if run.run > 0:
            before = world.runs.get((run.process, run.run - 1))
            assert before is not None and not before.alive, f"{run.process}[{run.run}] while run {run.run - 1} runs"
        if spec.final:
            assert not regular_alive, f"final {run.process} started while {regular_alive} run"
        else:
            assert not stopping_before, f"{run.process}[{run.run}] started while the task was stopping"
    for name in views:
        spec = job.task.process(name)
        failed = sum(1 for t in rig.reporter.transitions if isinstance(t, ProcessTransition)
                     and t.process == name and t.outcome is not None and t.outcome.value == "FAILED")
        if spec.max_failures > 0:
            assert failed <= spec.max_failures, f"{name}: {failed} failed runs, max_failures={spec.max_failures}"
    failed_for_good = [name for name, v in views.items()
                       if v.state is ProcessState.FAILED and not job.task.process(name).final]
    if 0 < job.task.max_failures <= len(failed_for_good):
        assert stopping(rig), f"{failed_for_good} failed (the task's max_failures={job.task.max_failures}), it goes on"


def check_clock(rig: OwnerRig) -> None:
    """The owner asks to be woken in the future, never in the past."""
    at = rig.owner.next_deadline_at
    if not rig.done and at is not None:
        assert at > rig.clock.now, f"a deadline at {at}, now is {rig.clock.now}"
