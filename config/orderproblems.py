"""The order graph's problems: one typed problem per broken rule of a task's `order(...)`
constraints (`config.order.order_graph`), and `describe()`, the one sentence for each.

Apart from `config.order` because a job that breaks no rule never makes one: their five
attrs classes were about 0.6 ms of CPU on a new config's path (its planning child loads
`config.order` before its plan is sent, and the supervisor again beside it), and this module
loads at the first problem found or read. Pure: no I/O, no logging.
"""
from __future__ import annotations

from typing import assert_never

import attrs

from config.errors import cut, show


@attrs.frozen(slots=True)
class DuplicateName:
    """Process `index` reuses the name of an earlier process."""

    index: int
    name: str


@attrs.frozen(slots=True)
class UnknownNames:
    """Constraint `index` names processes the task does not have."""

    index: int
    order: tuple[str, ...]
    unknown: tuple[str, ...]
    known: tuple[str, ...]


@attrs.frozen(slots=True)
class MixedStages:
    """Constraint `index` orders final and regular processes against each other."""

    index: int
    order: tuple[str, ...]


@attrs.frozen(slots=True)
class NeverDone:
    """Constraint `index` makes `after` wait for `before`, a daemon, or an ephemeral process
    while `after` is not one (`kind` says which): `after` could wait forever."""

    index: int
    order: tuple[str, ...]
    before: str
    after: str
    kind: str  # "daemon" or "ephemeral"


@attrs.frozen(slots=True)
class Cycle:
    """The constraints lead from `path[0]` back to itself."""

    path: tuple[str, ...]


OrderProblem = DuplicateName | UnknownNames | MixedStages | NeverDone | Cycle



def describe(problem: OrderProblem, task_path: str = "job.task") -> str:
    """The sentence for `problem`, naming the field under `task_path`."""
    match problem:
        case DuplicateName(index, name):
            return f"{task_path}.processes[{index}].name = {show(name)} is used by more than one process"
        case UnknownNames(index, order, unknown, known):
            return (f"{task_path}.constraints[{index}].order = {show(list(order))} names unknown "
                    f"processes: {cut(', '.join(unknown), 200)} "
                    f"(the task has: {cut(', '.join(known), 200) or 'none'})")
        case MixedStages(index, order):
            return (f"{task_path}.constraints[{index}].order = {show(list(order))} mixes final and "
                    "non-final processes, which run in different stages and cannot be ordered "
                    "against each other")
        case NeverDone(index, order, before, after, "daemon"):
            return (f"{task_path}.constraints[{index}].order = {show(list(order))} makes {show(after)} "
                    f"wait for {show(before)}, a daemon process: a daemon runs again after each "
                    f"success and never finishes, so {show(after)} would never start")
        case NeverDone(index, order, before, after, _):
            return (f"{task_path}.constraints[{index}].order = {show(list(order))} makes {show(after)} "
                    f"wait for {show(before)}, an ephemeral process: the task does not wait for "
                    f"ephemeral processes, so a process it waits for may not wait for one")
        case Cycle(path):
            return (f"{task_path}.constraints form a cycle, so none of these can ever start: "
                    + cut(" -> ".join(path), 400))
        case _:
            assert_never(problem)
