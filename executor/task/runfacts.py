"""The pid and exit status of each process's runs, as the owner records them with each of
the run's transitions. PURE: no I/O, no clock.

Bounded: once a run of a process has ended (a transition with an outcome), the facts of its
earlier runs are dropped, so a process restarted 100,000 times (a daemon, a `min_duration`
of 0) holds at most two runs' facts: its current run's and the last ended one's (a later
transition may still name that one: WAITING → KILLED when the task stops before the next
run starts). They used to be kept for every run the task ever had: about 375 bytes of
supervisor memory per restart (docs/benchmarks.md, "Soak").
"""
from __future__ import annotations

from executor.events import ExitStatus


class RunFacts:
    def __init__(self) -> None:
        self._pids: dict[tuple[str, int], int] = {}
        self._exits: dict[tuple[str, int], ExitStatus] = {}
        self._last_ended: dict[str, int] = {}  # process → the run that ended last

    def __len__(self) -> int:
        """The runs it holds facts of."""
        return len(self._pids.keys() | self._exits.keys())

    def started(self, process: str, run: int, pid: int) -> None:
        self._pids[(process, run)] = pid

    def exited(self, process: str, run: int, status: ExitStatus) -> None:
        if run >= self._last_ended.get(process, run):  # not a run whose facts were dropped
            self._exits[(process, run)] = status

    def pid(self, process: str, run: int) -> int | None:
        return self._pids.get((process, run))

    def status(self, process: str, run: int) -> ExitStatus | None:
        return self._exits.get((process, run))

    def ended(self, process: str, run: int) -> None:
        """Run `run` of `process` ended: the facts of its earlier runs are not needed again."""
        before = self._last_ended.get(process)
        if before is not None and before < run:
            self._pids.pop((process, before), None)
            self._exits.pop((process, before), None)
        self._last_ended[process] = run if before is None else max(run, before)
