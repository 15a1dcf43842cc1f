"""A decision costs what it starts or signals, not a look at every process.

Every decision used to look at each process of the task several times (which could start,
which ran, whether the plan was settled, when the next gate opened), and at every
dependency of each waiting one: a task of 1,000 processes spent about 0.7 ms in each
decision, so its start and end, one decision or two per process, was O(n^2) (a chain of
1,000 `true`s: 2.6 s of the planner alone). These tests count the processes a task's
decisions look at, by the items read from each plan's list of processes.
"""
from __future__ import annotations

import pytest

from config.spec import ProcessSpec, TaskSpec
from executor.events import ExitStatus, ProcessState
from executor.task.planner import START_BATCH, Planner

pytestmark = pytest.mark.timeout(10)

N = 300


class Looks(list):
    """A plan's processes, counting every item read."""

    looks = 0

    def __iter__(self):
        for item in super().__iter__():
            Looks.looks += 1
            yield item

    def __getitem__(self, index):
        item = super().__getitem__(index)
        Looks.looks += len(item) if isinstance(index, slice) else 1
        return item


def counted(spec: TaskSpec) -> Planner:
    planner = Planner(spec)
    for plan in (planner._regular, planner._final):  # the planner's own lists, counted
        plan.procs = Looks(plan.procs)
    Looks.looks = 0
    return planner


def names(n: int) -> list[str]:
    return [f"p{i}" for i in range(n)]


def spec_of(n: int, *, chain: bool, **kw) -> TaskSpec:
    procs = tuple(ProcessSpec(name=name, cmdline="x", min_duration_secs=0.0, **kw) for name in names(n))
    constraints = tuple(zip(names(n), names(n)[1:])) if chain else ()
    return TaskSpec(name="t", processes=procs, constraints=constraints)


def run_to_the_end(planner: Planner) -> int:
    """Start each run, end it with exit 0, one at a time, as a task's runs end; returns
    how many decisions it took."""
    now, decisions = 0.0, 1
    pending = list(planner.decide(now).start)
    while pending:
        s = pending.pop(0)
        planner.started(s.process, s.run, 100, now)
        planner.exited(s.process, s.run, ExitStatus(exit_code=0), now)
        pending += planner.decide(now).start
        decisions += 1
    return decisions


@pytest.mark.parametrize("chain", [True, False], ids=["a chain of order constraints", "independent"])
def test_a_task_of_many_processes_looks_at_each_a_few_times_in_its_whole_life(chain):
    planner = counted(spec_of(N, chain=chain))
    assert run_to_the_end(planner) == N + 1
    assert planner.phase.value == "SUCCESS"
    # One look to start each, one to end it, and the final outcome's reasons: not one per
    # process in each of the N decisions (632,400 looks before, for N = 300).
    assert Looks.looks <= 6 * N, Looks.looks


def test_an_operators_restarts_of_a_large_task_look_at_the_restarted_runs_only():
    planner = counted(spec_of(N, chain=False, daemon=True))
    now = 0.0
    more = True
    while more:  # (START_BATCH runs a decision)
        d = planner.decide(now)
        for s in d.start:
            planner.started(s.process, s.run, 100, now)
        more = d.more_to_start
    Looks.looks = 0
    for name in names(N)[:50]:
        assert planner.restart(name, now, grace_secs=5.0).accepted
        d = planner.decide(now)
        assert [(c.process, c.signal) for c in d.signal] == [(name, 15)]
        planner.exited(name, 0, ExitStatus(signal=15), now)
        d = planner.decide(now)
        assert [(c.process, c.run) for c in d.start] == [(name, 1)]
        assert planner.process(name).state is ProcessState.RUNNING
    assert Looks.looks <= 50 * 10, Looks.looks  # a few per restart, not N per decision


def test_a_start_of_thousands_comes_in_batches_each_decision_saying_whether_more_may_start():
    """A decision starts at most START_BATCH runs, so that the owner takes a KILL that came
    amid a start of thousands between two batches; the rest come from the next decisions,
    in task order, and the last says there are no more."""
    planner = Planner(spec_of(2 * START_BATCH + 5, chain=False))
    batches, more = [], True
    while more:
        d = planner.decide(0.0)
        batches.append([c.process for c in d.start])
        for s in d.start:
            planner.started(s.process, s.run, 100, 0.0)
        more = d.more_to_start
    assert [len(b) for b in batches] == [START_BATCH, START_BATCH, 5]
    assert sum(batches, []) == names(2 * START_BATCH + 5)
    assert not planner.decide(0.0).start


def test_a_kill_between_two_batches_leaves_the_runs_not_started_waiting_ended_not_started():
    planner = Planner(spec_of(START_BATCH + 10, chain=False))
    for s in planner.decide(0.0).start:
        planner.started(s.process, s.run, 100, 0.0)
    planner.kill(0.0, "killed", 1.0)
    d = planner.decide(0.0)
    assert not d.start and not d.more_to_start
    assert {c.process for c in d.signal} == set(names(START_BATCH))
    assert planner.process(f"p{START_BATCH}").state is not ProcessState.RUNNING
