"""config.order: the one order graph, shared by the loader and the planner (tables)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.order import OrderGraph, find_cycle, order_graph, slot_trap
from config.orderproblems import Cycle, DuplicateName, MixedStages, NeverDone, UnknownNames, describe
from config.spec import ProcessSpec, TaskSpec
from executor.events import ExitStatus
from executor.task.planner import Planner

REGULAR = [("a", False), ("b", False), ("c", False), ("d", False)]


@pytest.mark.parametrize("constraints, deps", [
    ([], {"a": (), "b": (), "c": (), "d": ()}),
    ([("a", "b", "c")], {"a": (), "b": ("a",), "c": ("b",), "d": ()}),
    ([("c", "a"), ("b", "a"), ("c", "a")], {"a": ("b", "c"), "b": (), "c": (), "d": ()}),
    ([("d",), ()], {"a": (), "b": (), "c": (), "d": ()}),
])
def test_direct_predecessors_come_in_task_order(constraints, deps):
    assert order_graph(REGULAR, constraints) == OrderGraph(deps, ())


def test_predecessors_follow_the_task_order_not_the_alphabet():
    processes = [("d", False), ("c", False), ("b", False), ("a", False)]
    graph = order_graph(processes, [("c", "a"), ("d", "a"), ("b", "a")])
    assert graph.deps["a"] == ("d", "c", "b")


@pytest.mark.parametrize("processes, constraints, problems", [
    ([("a", False), ("b", False), ("a", True)], [], [DuplicateName(2, "a")]),
    (REGULAR, [("a", "x", "y")], [UnknownNames(0, ("a", "x", "y"), ("x", "y"), ("a", "b", "c", "d"))]),
    ([("a", False), ("f", True)], [("a", "f")], [MixedStages(0, ("a", "f"))]),
    (REGULAR, [("a", "b", "c"), ("c", "a")], [Cycle(("a", "b", "c", "a"))]),
    (REGULAR, [("a", "a")], [Cycle(("a", "a"))]),
    # A bad constraint is left out; the cycle among the good ones is still found.
    (REGULAR, [("b", "a"), ("a", "ghost"), ("a", "b")], [
        UnknownNames(1, ("a", "ghost"), ("ghost",), ("a", "b", "c", "d")), Cycle(("a", "b", "a"))]),
])
def test_each_broken_rule_is_one_problem_and_there_is_no_graph(processes, constraints, problems):
    assert order_graph(processes, constraints) == OrderGraph({}, tuple(problems))


@pytest.mark.parametrize("daemons, ephemerals, constraints, problems", [
    ({"b"}, (), [("a", "b", "c")], [NeverDone(0, ("a", "b", "c"), "b", "c", "daemon")]),
    ({"b"}, {"b"}, [("b", "c")], [NeverDone(0, ("b", "c"), "b", "c", "daemon")]),
    ((), {"a"}, [("a", "b")], [NeverDone(0, ("a", "b"), "a", "b", "ephemeral")]),
    ((), (), [("a", "b")], []),
    ({"b"}, (), [("a", "b")], []),  # a daemon may wait for a regular process
    ((), {"a", "b"}, [("a", "b")], []),  # an ephemeral one for an ephemeral one
    ((), {"b"}, [("a", "b")], []),  # and for a regular one
])
def test_nothing_waits_for_a_daemon_nor_a_waited_for_process_for_an_ephemeral_one(
        daemons, ephemerals, constraints, problems):
    graph = order_graph(REGULAR, constraints, daemons=daemons, ephemerals=ephemerals)
    assert graph.problems == tuple(problems)


@pytest.mark.parametrize("problem, sentence", [
    (DuplicateName(1, "a"), "job.task.processes[1].name = 'a' is used by more than one process"),
    (UnknownNames(0, ("a", "ghost"), ("ghost",), ("a",)),
     "job.task.constraints[0].order = ['a', 'ghost'] names unknown processes: ghost (the task has: a)"),
    (UnknownNames(2, ("x",), ("x",), ()),
     "job.task.constraints[2].order = ['x'] names unknown processes: x (the task has: none)"),
    (MixedStages(0, ("a", "z")), "job.task.constraints[0].order = ['a', 'z'] mixes final and non-final "
     "processes, which run in different stages and cannot be ordered against each other"),
    (Cycle(("a", "b", "a")), "job.task.constraints form a cycle, so none of these can ever start: a -> b -> a"),
    (NeverDone(3, ("a", "b", "c"), "b", "c", "daemon"), "job.task.constraints[3].order = ['a', 'b', 'c'] makes "
     "'c' wait for 'b', a daemon process: a daemon runs again after each success and never finishes, so 'c' "
     "would never start"),
    (NeverDone(1, ("a", "b", "c"), "a", "b", "ephemeral"), "job.task.constraints[1].order = ['a', 'b', 'c'] "
     "makes 'b' wait for 'a', an ephemeral process: the task does not wait for ephemeral processes, so a "
     "process it waits for may not wait for one"),
])
def test_each_problem_has_one_sentence(problem, sentence):
    assert describe(problem) == sentence
    assert describe(problem, "task") == sentence.replace("job.task", "task")


def test_what_is_no_problem_is_not_described():
    with pytest.raises(AssertionError, match="Expected code to be unreachable, but got: 'no problem'"):
        describe("no problem")  # type: ignore[arg-type]


def test_long_lists_in_a_sentence_are_cut():
    many = tuple(f"p{i:03d}" for i in range(100))  # 'p000, p001, ...': 598 characters
    listed = ", ".join(many)
    assert describe(UnknownNames(1, ("a",), many, many)) == (
        f"job.task.constraints[1].order = ['a'] names unknown processes: {listed[:197]}... "
        f"(the task has: {listed[:197]}...)")
    assert describe(UnknownNames(0, ("x", "y"), ("x", "y"), ("a", "b"))) == (
        "job.task.constraints[0].order = ['x', 'y'] names unknown processes: x, y (the task has: a, b)")
    loop = " -> ".join((*many, many[0]))
    assert describe(Cycle((*many, many[0]))) == (
        f"job.task.constraints form a cycle, so none of these can ever start: {loop[:397]}...")


def test_a_long_chain_needs_no_deep_recursion():
    names = [f"p{i}" for i in range(20000)]
    chain = [tuple(names)]
    graph = order_graph([(n, False) for n in names], chain)
    assert graph.problems == () and graph.deps["p19999"] == ("p19998",)
    looped = order_graph([(n, False) for n in names], chain + [(names[-1], names[0])])
    assert looped.problems == (Cycle((*names, names[0])),)


def test_the_planner_refuses_what_the_loader_refuses_with_the_same_sentence():
    task = TaskSpec(name="t", processes=(ProcessSpec("a", "x"), ProcessSpec("b", "x")),
                    constraints=(("a", "b"), ("b", "a")))
    with pytest.raises(ValueError) as info:
        Planner(task)
    assert str(info.value) == ("invalid schedule: task.constraints form a cycle, so none of these "
                               "can ever start: a -> b -> a")


names = st.sampled_from("abcdef")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(names, names), max_size=12))
def test_a_reported_cycle_is_real_and_a_graph_has_none(pairs):
    processes = [(n, False) for n in "abcdef"]
    graph = order_graph(processes, pairs)
    edges = {n: [b for a, b in pairs if a == n] for n in "abcdef"}
    cycle = find_cycle(edges)
    if cycle is None:
        assert graph.problems == ()
        for before, after in pairs:  # every pair is honoured directly
            assert before in graph.deps[after]
        done: set[str] = set()  # and the graph can be started in some order
        while len(done) < 6:
            ready = {n for n in "abcdef" if n not in done and set(graph.deps[n]) <= done}
            assert ready
            done |= ready
    else:
        assert graph.problems == (Cycle(cycle),)
        assert cycle[0] == cycle[-1]
        assert all(b in edges[a] for a, b in zip(cycle, cycle[1:]))


E, R = True, False  # ephemeral, or a process the task waits for
SLOT_TRAPS = {
    "a sidecar listed first takes the only slot": (
        [("side", E), ("main", R)], [], 1, (("side",), ("main",))),
    "listed after, it starts once the task's processes ended": ([("main", R), ("side", E)], [], 1, None),
    "a slot left for the rest": ([("side", E), ("main", R)], [], 2, None),
    "no limit": ([("side", E), ("main", R)], [], 0, None),
    "a sidecar that waits for a process is still listed before the rest": (
        [("setup", R), ("side", E), ("main", R)], [("setup", "side")], 1, (("side",), ("main",))),
    "the slot a regular process frees goes to the next in task order": (
        [("a", R), ("e1", E), ("e2", E), ("b", R)], [], 2, (("e1", "e2"), ("b",))),
    "what waits for a process waits for its slot too": (
        [("a", R), ("b", R), ("side", E)], [("a", "b")], 1, None),
    "two sidecars, three slots": ([("e1", E), ("e2", E), ("a", R), ("b", R)], [], 3, None),
}


def _planner_starved(procs, constraints, limit):
    """The real planner in the same rounds: start what it says, end every regular run."""
    task = TaskSpec(name="t", processes=tuple(ProcessSpec(n, "x", ephemeral=e) for n, e in procs),
                    constraints=tuple(constraints), max_concurrency=limit)
    planner, now, pid = Planner(task), 0.0, 0
    for _ in range(len(procs) + 1):
        started = planner.decide(now).start
        for s in started:
            pid += 1
            planner.started(s.process, s.run, pid, now)
        now += 1.0
        for s in started:
            if not dict(procs)[s.process]:
                planner.exited(s.process, s.run, ExitStatus(exit_code=0), now)
    return tuple(p.name for p in planner.processes() if p.run < 0 and not dict(procs)[p.name])


@pytest.mark.parametrize("procs, constraints, limit, trap", SLOT_TRAPS.values(), ids=SLOT_TRAPS)
def test_ephemeral_processes_that_take_every_slot_before_one_the_task_waits_for(procs, constraints, limit,
                                                                                 trap):
    """max_concurrency = 1 and a sidecar that never ends, listed first: every other process
    waited for ever (as under Thermos), and nothing said so. `stoker inspect`, `stoker run`
    and the executor now warn; the model agrees with the planner's own start order."""
    graph = order_graph(((n, False) for n, _ in procs), constraints)
    found = slot_trap(procs, graph.deps, limit)
    assert (None if found is None else (found.holding, found.starved)) == trap
    assert _planner_starved(procs, constraints, limit) == (() if trap is None else trap[1])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=5), st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)),
                                                                  max_size=4), st.integers(0, 3))
def test_the_slot_model_is_the_planners_start_order(flags, links, limit):
    """Any task (forward links only, none from an ephemeral process to one the task waits
    for, as the loader allows): the processes the model says never start are the planner's."""
    procs = [(f"p{i}", e) for i, e in enumerate(flags)]
    constraints = [(procs[a][0], procs[b][0]) for a, b in links
                   if a < b < len(procs) and not (procs[a][1] and not procs[b][1])]
    found = slot_trap(procs, order_graph(((n, False) for n, _ in procs), constraints).deps, limit)
    assert (() if found is None else found.starved) == _planner_starved(procs, constraints, limit)


def test_the_slot_trap_advice_names_a_limit_that_is_enough():
    """Three sidecars listed first, two slots: the warning said to raise max_concurrency to
    3, where the third sidecar takes the new slot and the trap stays (and then said 4)."""
    procs = [("e1", E), ("e2", E), ("e3", E), ("main", R)]
    found = slot_trap(procs, {}, 2)
    assert found is not None and "raise max_concurrency to 4 or more" in found.describe()
    assert slot_trap(procs, {}, 4) is None


@settings(max_examples=100, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=6), st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)),
                                                                  max_size=4), st.integers(1, 4))
def test_the_limit_the_slot_trap_advises_has_no_trap(flags, links, limit):
    procs = [(f"p{i}", e) for i, e in enumerate(flags)]
    constraints = [(procs[a][0], procs[b][0]) for a, b in links
                   if a < b < len(procs) and not (procs[a][1] and not procs[b][1])]
    deps = order_graph(((n, False) for n, _ in procs), constraints).deps
    found = slot_trap(procs, deps, limit)
    if found is not None:
        assert found.enough > limit and slot_trap(procs, deps, found.enough) is None


PROBLEMS_LOADED = r"""
import json, sys
from config.order import order_graph
good = order_graph([("a", False), ("b", False)], [("a", "b")])
at_good = "config.orderproblems" in sys.modules
bad = order_graph([("a", False), ("b", False)], [("b", "a"), ("a", "b")])
print(json.dumps({"deps": good.deps, "at_good": at_good, "bad": type(bad.problems[0]).__module__}))
"""


def test_a_graph_without_problems_never_loads_the_problems_module():
    """A job that breaks no ordering rule (every job that runs) makes none of the problems'
    classes: their module loads at the first problem, off a new config's path to its plan."""
    proc = subprocess.run([sys.executable, "-c", PROBLEMS_LOADED], cwd=Path(__file__).resolve().parents[2],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"deps": {"a": [], "b": ["a"]}, "at_good": False,
                                       "bad": "config.orderproblems"}
