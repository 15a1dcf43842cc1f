"""The runs an early start forked (`earlyfork.py`), from the supervisor's start until each is
adopted or given up; and its watchdog, until the supervisor's own is up.

A supervisor given early runs makes each a `RunChild` at its start (claimed, watched by the
reaper, its exit held back: `adopted` is False). When the planner asks for a run, `claim`
says whether the early one is that run: the same command, the same environment as the
spawn would give it (the same task env, to which both add the run's marker; the early start
adds no `BASH_ENV`: its sandbox is new, and a profile a run wrote since is for later runs),
started as this process's user. A run that is the one asked for is
adopted (its exit, even one that came first, is posted as any run's); one that is not, or
that the first step did not ask for at all (`rest`), is given up: killed with its process
group, its exit never posted. A run whose top the reaper took already (it exited first)
is given up by the members of its group that carry its run's marker, each through a pidfd
checked again: its pid, and so its group's id once no member is left, may be another
process's by then, and a killpg reached whichever process took it and leads a group of its
own (any `setsid`). Not thread-safe: the owner's thread calls it (start, spawns, idle).
"""
from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from config.spec import ProcessSpec
from executor.logs import log_event
from executor.procs import proctree, runenv, watchdogsh
from executor.procs.earlyfork import EarlyRun
from executor.procs.reaper import Watcher
from executor.procs.spawn import RunChild

if TYPE_CHECKING:
    from executor.procs.reaper import ChildWatcher, Reaper

logger = logging.getLogger("executor.procs.supervisor")  # its lines read as the supervisor's


class EarlyRuns:
    def __init__(self, runs: Sequence[EarlyRun], task_marker: str, *,
                 runs_by_key: dict[tuple[str, int], RunChild], lock: threading.Lock,
                 post_exit: Callable[[RunChild, int], None], label: str,
                 watchdog: tuple[int, int] | None = None,
                 reaper: Callable[[], Reaper | None] = lambda: None) -> None:
        """`runs_by_key`, `lock`, `post_exit`, `label`: the supervisor's runs (under its lock),
        how it posts a run's exit, and its task's name for the log. `watchdog`: the early
        start's (pid, write end of its pipe), retired once the supervisor's own is up.
        `reaper`: the supervisor's, once it has started (None before: no one reaps a run)."""
        self._reaper = reaper
        self._watchdog = watchdog
        self._runs = runs_by_key
        self._lock = lock
        self._post_exit = post_exit
        self._label = label
        self._waiting: dict[tuple[str, int], tuple[RunChild, EarlyRun]] = {}
        self._ended = False  # `give_up_rest` called: the first step is over
        for early in runs:
            child = RunChild(pid=early.pid, popen=None, marker=runenv.run_marker(task_marker, early.process, early.run),
                             process=early.process, run=early.run, adopted=False,
                             oom_kills=early.oom_kills)
            self._waiting[(early.process, early.run)] = (child, early)

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def children(self) -> list[RunChild]:
        """Every early run not adopted or given up yet."""
        return [child for child, _ in self._waiting.values()]

    def watchers(self, watch: Callable[[RunChild], ChildWatcher]) -> dict[int, ChildWatcher]:
        """At the supervisor's start: the reaper's watchers of the early runs (`watch`; each
        one the supervisor's run from now) and of the early watchdog (reaped as it retires)."""
        found: dict[int, ChildWatcher] = {child.pid: watch(child) for child in self.children()}
        if self._watchdog is not None:
            found[self._watchdog[0]] = Watcher()
        with self._lock:
            self._runs.update({(child.process, child.run): child for child in self.children()})
        return found

    def retire_watchdog(self) -> None:
        """The supervisor's watchdog is up: the early start's steps down."""
        if self._watchdog is not None:
            with contextlib.suppress(OSError):
                watchdogsh.retire(self._watchdog[1])

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

    def adopt(self, process: ProcessSpec, run: int, task_env: Mapping[str, str], same_user: bool) -> int | None:
        """The early run `run` of `process`, adopted: its pid (its exit, if it came first, is
        posted now). One that is not that run is given up; None then, or when there is none."""
        child, why = self.claim(process, run, task_env, same_user)
        if child is None:
            return None
        if why is not None:
            self.give_up(child, why)
            return None
        with self._lock:
            child.adopted = True
            status = child.status  # it may have exited already: its exit is posted here
        log_event(logger, logging.DEBUG, "process_adopted", task=self._label, process=process.name,
                  run=run, pid=child.pid)
        if status is not None:
            self._post_exit(child, status)
        return child.pid

    def give_up(self, child: RunChild, why: str) -> None:
        """Kill an early start's run the task does not take; its exit is not reported."""
        with self._lock:
            if self._runs.get((child.process, child.run)) is child:
                del self._runs[(child.process, child.run)]
        log_event(logger, logging.WARNING, "early_run_killed", task=self._label, process=child.process,
                  run=child.run, pid=child.pid, reason=why)
        reaper = self._reaper()
        with reaper.lock if reaper is not None else contextlib.nullcontext():
            if reaper is None or reaper.is_registered(child.pid):  # unreaped: it keeps the group's id
                proctree.signal_group(child.pid, signal.SIGKILL)
                return
        pgid, entry = child.pid, child.marker_entry  # reaped: its group's members that carry its marker
        members = [pid for pid, info in proctree.scan_markers((entry,)).items() if info.pgrp == pgid]
        proctree.send_checked(members, signal.SIGKILL,
                              lambda info, ours: info.pgrp == pgid and proctree.has_marker(info.environ, (entry,)))

    def give_up_rest(self, why: str) -> bool:
        """Give up every early run never asked for; True the first time (the start's end)."""
        first, self._ended = not self._ended, True
        for child in self.rest():
            self.give_up(child, why)
        return first
