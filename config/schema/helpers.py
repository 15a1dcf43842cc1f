"""Thermos' helpers for building tasks: `order`, `SequentialTask`, `SimpleTask`, `Tasks`
(`combine_tasks`, `concat_tasks`), `Processes`, `Units` (resource sums and maxima, merges of
processes and constraints, finalization waits) and `Options` (`java_options`,
`python_options`: flags rendered as a command line). Orders are kept stable, never passed
through a set, so the same config always gives the same task. Never does I/O, never logs,
never reads the environment.
"""
from __future__ import annotations

import itertools
from functools import reduce
from typing import Any

from pystachio import Empty

from config.schema.thermos import GB, Constraint, Process, Resources, Task
from config.words import quoted

# Thermos: apache/thermos/config/schema_helpers.py


def _unique(items: list) -> list:
    kept: list = []
    for item in items:
        if not any(item == seen for seen in kept):
            kept.append(item)
    return kept


class Units:
    """Resource sums and maxima, finalization waits, and order-preserving merges of processes
    and constraints."""

    @classmethod
    def safe_get(cls, unit: Any) -> Any:
        return 0 if unit is Empty else unit.get()

    @classmethod
    def finalization_wait_sum(cls, waits: Any) -> Any:
        return sum(map(cls.safe_get, waits))

    @classmethod
    def finalization_wait_max(cls, waits: Any) -> Any:
        return max([0] + [cls.safe_get(unit) for unit in waits])

    @classmethod
    def optional_resources(cls, resources: Any) -> Resources:
        return Resources(cpu=0, ram=0, disk=0) if resources is Empty else resources

    @classmethod
    def _combine(cls, how, resources) -> Resources:
        def unit(value) -> Any:
            return 0 if value is Empty else value.get()

        def pair(r1, r2) -> Resources:
            return Resources(**{dim: how(unit(getattr(r1, dim)()), unit(getattr(r2, dim)()))
                                for dim in ("cpu", "ram", "disk", "gpu")})

        return reduce(pair, map(cls.optional_resources, resources), Resources(cpu=0, ram=0, disk=0))

    @classmethod
    def resources_sum(cls, *resources) -> Resources:
        return cls._combine(lambda a, b: a + b, resources)

    @classmethod
    def resources_max(cls, resources) -> Resources:
        return cls._combine(max, list(resources))

    @classmethod
    def processes_merge(cls, tasks) -> list:
        return _unique(list(itertools.chain.from_iterable(t.processes() for t in tasks)))

    @classmethod
    def constraints_merge(cls, tasks) -> list:
        return _unique(list(itertools.chain.from_iterable(t.constraints() for t in tasks)))


def _process_name(process: Any) -> str:
    if isinstance(process, Process):
        return process.name().get()
    if isinstance(process, str):
        return process
    raise ValueError(f"order() takes Process objects or process names, not {quoted(process)}")


def order(*processes: Any) -> list:
    """`order(p1, p2, p3)`: one Constraint running them in that order; lists concatenate."""
    return [Constraint(order=[_process_name(p) for p in processes])]


class Processes:
    @classmethod
    def order(cls, *processes: Any) -> list:
        return order(*processes)


class Options:
    """Flags as a command line: `java_options('a', b=2)` is '-a -b 2', `python_options`
    renders long names with '--'."""

    @classmethod
    def render_option(cls, short_prefix: str, long_prefix: str, option: str, value: Any = None) -> str:
        option = f"{short_prefix if len(option) == 1 else long_prefix}{option}"
        return f"{option} {value}" if value else option

    @classmethod
    def render_options(cls, short_prefix: str, long_prefix: str, *options: Any, **kw_options: Any) -> list:
        renders = []
        for option in options:
            if isinstance(option, str):
                renders.append(cls.render_option(short_prefix, long_prefix, option))
            elif isinstance(option, dict):
                renders.extend(cls.render_option(short_prefix, long_prefix, k, v) for k, v in option.items())
            else:
                raise ValueError(f"Got an unexpected argument to render_options: {quoted(option)}")
        renders.extend(cls.render_option(short_prefix, long_prefix, k, v) for k, v in kw_options.items())
        return renders

    @classmethod
    def java(cls, *options: Any, **kw_options: Any) -> str:
        return " ".join(cls.render_options("-", "-", *options, **kw_options))

    @classmethod
    def python(cls, *options: Any, **kw_options: Any) -> str:
        return " ".join(cls.render_options("-", "--", *options, **kw_options))


class Tasks:
    SIMPLE_CPU = 1.0
    SIMPLE_RAM = 1 * GB
    SIMPLE_DISK = 1 * GB

    @classmethod
    def combine(cls, *tasks, **kw) -> Task:
        """All processes in parallel; resources summed, the longest finalization_wait; other
        fields from the last task."""
        if not tasks:
            return Task()
        base = tasks[-1](processes=Units.processes_merge(tasks))
        return base(resources=Units.resources_sum(*(t.resources() for t in tasks)),
                    constraints=Units.constraints_merge(tasks),
                    finalization_wait=Units.finalization_wait_max(t.finalization_wait() for t in tasks),
                    **kw)

    @classmethod
    def concat(cls, *tasks, **kw) -> Task:
        """Every process of task k runs before any process of task k+1; resources are the
        maxima, finalization_wait the sum."""
        if not tasks:
            return Task()
        base = tasks[-1](processes=Units.processes_merge(tasks),
                         resources=Units.resources_max(t.resources() for t in tasks))
        constraints = Units.constraints_merge(tasks)
        for t1, t2 in zip(tasks[:-1], tasks[1:]):
            for p1 in t1.processes():
                for p2 in t2.processes():
                    if p1 != p2:
                        constraints.extend(order(p1, p2))
        return base(constraints=constraints,
                    finalization_wait=Units.finalization_wait_sum(t.finalization_wait() for t in tasks),
                    **kw)

    @classmethod
    def simple(cls, name: str, command: str) -> Task:
        return Task(name=name, processes=[Process(name=name, cmdline=command)],
                    resources=Resources(cpu=cls.SIMPLE_CPU, ram=cls.SIMPLE_RAM, disk=cls.SIMPLE_DISK))

    @classmethod
    def sequential(cls, task: Task) -> Task:
        if task.constraints() is not Empty and len(task.constraints().get()) > 0:
            raise ValueError("Cannot turn a Task with existing constraints into a SequentialTask.")
        if task.processes() is Empty:
            return task
        return task(constraints=order(*task.processes()))


def SimpleTask(name: str, command: str) -> Task:
    """A task with one process and 1 CPU, 1 GiB RAM, 1 GiB disk."""
    return Tasks.simple(name, command)


def SequentialTask(*args, **kw) -> Task:
    """A Task whose processes run one after another, in list order."""
    return Tasks.sequential(Task(*args, **kw))


combine_tasks = Tasks.combine
concat_tasks = Tasks.concat
java_options = Options.java
python_options = Options.python
