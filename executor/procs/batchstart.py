"""Starting a batch of runs (`Supervisor.spawn_many`: a task's start): each run's log
directory and files are made on the calling thread while the runs before it fork on the fork
thread (`Reaper.beside`), instead of all of them first and the forks after.

Why: a run's fork is a vfork whose parent waits, the interpreter's lock released, until the
child has exec'd bash (most of a millisecond), and a run's log directory and its two files
take about half that (two opens relative to `.logs`, two mkdirs, two exclusive creates; the
Python around them). Made first, they added up before the first fork; made meanwhile, they
take the time the forking thread waits anyway, on the other core.

Order and results are as before: one result per run, in order, its pid or its SpawnError (a
run whose directory or files could not be made is not forked; the others are). The hand-off
is a queue; the caller's batch (`fdlimit.SPAWN_BATCH`) still bounds the runs prepared and not
yet forked, so the descriptors they hold. Where no second thread can be had (a full pids
cgroup), or for a single run (a restart: one fork, where a thread hop would only add to
it), the batch goes as before: made ready, then forked.

Should the preparing side fail with anything but a SpawnError (a bug), the runs it handed
over are still forked (the supervisor knows them and kills them at its close) and the error
goes on up; should the forking side, the runs after it are not forked, their files closed,
and its error is raised to the caller. Raises nothing of its own; no logging.
"""
from __future__ import annotations

import queue
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from executor.procs.spawn import PreparedRun

if TYPE_CHECKING:
    from executor.procs.reaper import Reaper

T = TypeVar("T")  # a run to start
P = TypeVar("P")  # a run made ready (or what stands for it: its error, an adopted run's pid)
R = TypeVar("R")  # a run's result
_END = object()


def start(reaper: Reaper | None, runs: Sequence[T], ready: Callable[[T], P],
          fork: Callable[[P], R]) -> list[R]:
    """`fork(ready(run))` for each run, in order, every fork off the main thread: `ready`
    here, `fork` on the fork thread as each is ready (`pipelined`); for one run, or where
    that cannot be, each run made ready first, then forked (`Reaper.on_fork_thread`)."""
    if len(runs) > 1 and reaper is not None:
        results = pipelined(reaper, runs, ready, fork)
        if results is not None:
            return results
    prepared = [ready(run) for run in runs]

    def forks() -> list[R]:
        return [fork(item) for item in prepared]

    return reaper.on_fork_thread(forks) if reaper is not None else forks()


def pipelined(reaper: Reaper, runs: Sequence[T], ready: Callable[[T], P],
              fork: Callable[[P], R]) -> list[R] | None:
    """`fork(ready(run))` for each run, in order: `ready` here, `fork` on the fork thread as
    each is ready. None, having done nothing, when no fork thread can be had."""
    feed: queue.SimpleQueue[P | object] = queue.SimpleQueue()
    wait = reaper.beside(lambda: _forks(feed, fork))
    if wait is None:
        return None
    try:
        for run in runs:
            feed.put(ready(run))
    finally:
        feed.put(_END)
    return wait()


def _forks(feed: queue.SimpleQueue[P | object], fork: Callable[[P], R]) -> list[R]:
    """The fork thread's side: each item forked as it comes, until the end."""
    results: list[R] = []
    failure: BaseException | None = None
    while (item := feed.get()) is not _END:
        if failure is not None:
            if isinstance(item, PreparedRun):
                item.stdio.discard()
            continue
        try:
            results.append(fork(item))  # type: ignore[arg-type]  # not _END
        except BaseException as exc:  # the caller's to see, once the queue is drained
            failure = exc
    if failure is not None:
        raise failure
    return results
