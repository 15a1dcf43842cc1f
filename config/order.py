"""The order graph: which processes of a task must end before each one starts.

Owns `order_graph()`, the one reading of a task's `order(...)` constraints, used by the
loader (to reject a bad job with a message naming the field) and by the planner (to get each
process's direct predecessors). Rules: process names are unique; a constraint names only
processes of the task; a constraint does not mix final and regular processes (they run in
different stages); as in Thermos, no process waits for a daemon (it never finishes for
good) and no process the task waits for waits for an ephemeral one (the task does not wait
for it); the constraints form no cycle. Each broken rule is one typed problem
(`config.orderproblems`, with `describe()`, the one sentence for it: loaded at the first
problem, so a job that breaks no rule never makes their classes). `slot_trap()` finds ephemeral processes that would
take every `max_concurrency` slot before a process the task waits for (a warning, not a
refusal: Thermos runs such a job too). Pure: no I/O, no logging.
"""
from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

import attrs

from config.errors import show

TYPE_CHECKING = False  # the problems' module loads at the first problem (its docstring)
if TYPE_CHECKING:
    from config.orderproblems import NeverDone, OrderProblem


@attrs.frozen(slots=True)
class OrderGraph:
    """Each process's direct predecessors (in task order), or why there are none."""

    deps: dict[str, tuple[str, ...]]  # empty when there are problems
    problems: tuple[OrderProblem, ...]


def order_graph(processes: Iterable[tuple[str, bool]],
                constraints: Iterable[Sequence[str]], *, daemons: Collection[str] = (),
                ephemerals: Collection[str] = ()) -> OrderGraph:
    """The graph of `processes` ((name, final) in task order) under `constraints` (each the
    names of one `order(...)`, first to last); `daemons` and `ephemerals` name the processes
    with those flags. A bad constraint is reported and left out, so the cycle check still
    sees the good ones."""
    listed = list(processes)
    names = [name for name, _ in listed]
    final = {name: is_final for name, is_final in listed}  # a duplicate's last entry wins
    problems = _duplicates(names)
    edges: dict[str, list[str]] = {name: [] for name in final}
    for i, constraint in enumerate(constraints):
        chain = tuple(constraint)
        unknown = tuple(n for n in chain if n not in final)
        if unknown:
            from config.orderproblems import UnknownNames

            problems.append(UnknownNames(i, chain, unknown, tuple(final)))
        elif len({final[n] for n in chain}) > 1:
            from config.orderproblems import MixedStages

            problems.append(MixedStages(i, chain))
        elif never := _never_done(i, chain, daemons, ephemerals):
            problems.append(never)
        else:
            for before, after in zip(chain, chain[1:]):
                edges[before].append(after)
    cycle = find_cycle(edges)
    if cycle is not None:
        from config.orderproblems import Cycle

        problems.append(Cycle(cycle))
    if problems:
        return OrderGraph({}, tuple(problems))
    return OrderGraph(_predecessors(edges, names), ())


def _duplicates(names: Sequence[str]) -> list[OrderProblem]:
    """A problem for each name that a process before it has too."""
    problems: list[OrderProblem] = []
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            from config.orderproblems import DuplicateName

            problems.append(DuplicateName(i, name))
        seen.add(name)
    return problems


def _predecessors(edges: dict[str, list[str]], names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Each process's direct predecessors under `edges` (each a process's successors), in the
    task's order (`names`)."""
    deps: dict[str, set[str]] = {name: set() for name in edges}
    for before, afters in edges.items():
        for after in afters:
            deps[after].add(before)
    position = {name: i for i, name in enumerate(names)}
    return {n: tuple(sorted(deps[n], key=position.__getitem__)) for n in edges}


def _never_done(index: int, chain: tuple[str, ...], daemons: Collection[str],
                ephemerals: Collection[str]) -> NeverDone | None:
    """Thermos' two rules on each link of `chain`: nothing waits for a daemon, and a process
    the task waits for does not wait for an ephemeral one."""
    for before, after in zip(chain, chain[1:]):
        if before in daemons or before in ephemerals and after not in ephemerals:
            from config.orderproblems import NeverDone

            return NeverDone(index, chain, before, after, "daemon" if before in daemons else "ephemeral")
    return None


@attrs.frozen(slots=True)
class SlotTrap:
    """Under max_concurrency = `limit`, the ephemeral processes `holding` start before
    `starved` (processes the task waits for) and take every slot: if they never end, those
    never start and the task never finishes. Thermos has the same trap. `enough`: the least
    limit without it (more slots may let more of the ephemeral processes start first)."""

    limit: int
    holding: tuple[str, ...]
    starved: tuple[str, ...]
    enough: int

    def describe(self, task_path: str = "job.task") -> str:
        one = len(self.holding) == 1
        holding = ", ".join(map(show, self.holding))
        starved = ", ".join(map(show, self.starved[:5])) + (", ..." if len(self.starved) > 5 else "")
        slot = "the only slot" if self.limit == 1 else "every slot"
        return (f"{task_path}.max_concurrency = {self.limit}: ephemeral "
                + (f"process {holding} starts before {starved} and holds {slot} while it runs; if "
                   "it never ends, " if one else
                   f"processes {holding} start before {starved} and hold {slot} while they run; if "
                   "they never end, ")
                + f"{starved} never {'starts' if len(self.starved) == 1 else 'start'} and the task "
                f"never finishes (as under Thermos): raise max_concurrency to {self.enough} "
                "or more, or list the processes the task waits for first")


def slot_trap(processes: Iterable[tuple[str, bool]], deps: dict[str, tuple[str, ...]],
              limit: int) -> SlotTrap | None:
    """Whether ephemeral processes take every slot of `limit` (0: no limit) before a process
    the task waits for starts. `processes`: (name, ephemeral) of the regular stage in task
    order, `deps` their predecessors (`order_graph`)."""
    if limit <= 0:
        return None
    listed = list(processes)
    trapped = _slots_taken(listed, deps, limit)
    if trapped is None:
        return None
    enough = next(n for n in range(limit + 1, len(listed) + 1) if _slots_taken(listed, deps, n) is None)
    return SlotTrap(limit, *trapped, enough=enough)


def _slots_taken(listed: list[tuple[str, bool]], deps: dict[str, tuple[str, ...]],
                 limit: int) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """(the ephemeral processes holding every slot, the processes the task waits for that
    never start), or None. In rounds: what may start starts as the planner starts it, in
    task order while a slot is free; then every regular process running ends (an ephemeral
    one never does), and the next round begins."""
    ephemeral = {name for name, is_ephemeral in listed if is_ephemeral}
    waiting, done = [name for name, _ in listed], set()
    holding: list[str] = []  # ephemeral processes started: each holds its slot for ever
    while True:
        running: list[str] = []  # regular processes started this round: they end before the next
        for name in list(waiting):
            if len(holding) + len(running) >= limit:
                break
            if all(d in done for d in deps.get(name, ())):
                waiting.remove(name)
                (holding if name in ephemeral else running).append(name)
        if not running:
            break
        done.update(running)
    starved = tuple(n for n in waiting if n not in ephemeral)
    return (tuple(holding), starved) if starved and len(holding) >= limit else None


def find_cycle(edges: dict[str, list[str]]) -> tuple[str, ...] | None:
    """The first cycle a depth-first walk in `edges` order meets, as `a, b, ..., a`.

    Every name an edge leads to is a key of `edges`. Iterative, so a chain of thousands of
    processes cannot exhaust Python's stack."""
    done: set[str] = set()
    for start in edges:
        if start in done:
            continue
        path, on_path = [start], {start}  # the list for its order, the set to look up
        stack = [iter(edges[start])]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                node = path.pop()
                on_path.remove(node)
                done.add(node)
                stack.pop()
            elif nxt in on_path:
                return (*path[path.index(nxt):], nxt)
            elif nxt not in done:
                path.append(nxt)
                on_path.add(nxt)
                stack.append(iter(edges[nxt]))
    return None
