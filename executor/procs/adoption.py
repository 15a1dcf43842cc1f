"""The runs an early start forked (`earlyfork.py`), from the supervisor's start until each is
adopted or given up.

A supervisor given early runs makes each a `RunChild` at its start (claimed, watched by the
reaper, its exit held back: `adopted` is False). When the planner asks for a run, `claim`
says whether the early one is that run: the same command, the same environment as the
spawn would give it (the same task env, to which both add the run's marker; the early start
adds no `BASH_ENV`: its sandbox is new, and a profile a run wrote since is for later runs),
started as this process's user. A run that is the one asked for is
adopted (its exit, even one that came first, is posted as any run's); one that is not, or
that the first step did not ask for at all (`rest`), is given up: killed with its process
group, its exit never posted. Not thread-safe: the owner's thread calls it (start, spawns,
idle).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from config.spec import ProcessSpec
from executor.procs import runenv
from executor.procs.earlyfork import EarlyRun
from executor.procs.spawn import RunChild


class EarlyRuns:
    def __init__(self, runs: Sequence[EarlyRun], task_marker: str) -> None:
        self._marker = task_marker
        self._waiting: dict[tuple[str, int], tuple[RunChild, EarlyRun]] = {}
        for early in runs:
            child = RunChild(pid=early.pid, popen=None, marker=runenv.run_marker(task_marker, early.process, early.run),
                             process=early.process, run=early.run, adopted=False)
            self._waiting[(early.process, early.run)] = (child, early)

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def children(self) -> list[RunChild]:
        """Every early run not adopted or given up yet."""
        return [child for child, _ in self._waiting.values()]

    def claim(self, process: ProcessSpec, run: int, task_env: Mapping[str, str],
              same_user: bool) -> tuple[RunChild | None, str | None]:
        """The early run `run` of `process`, if there is one, and why it is not that run
        (None: adopt it); (None, None) when there is none."""
        found = self._waiting.pop((process.name, run), None)
        if found is None:
            return None, None
        child, early = found
        if early.cmdline != process.cmdline:
            return child, "its command is not the task's"
        if early.task_env != task_env:
            return child, "its environment is not the task's"
        if not same_user:
            return child, "the task runs as another user"
        return child, None

    def rest(self) -> list[RunChild]:
        """The early runs never asked for; none is waiting after this."""
        children = self.children()
        self._waiting.clear()
        return children
