"""The supervisor adapter: forks a task's runs, watches their exits, logs and kills them.

Owns, for one task: the runs it forked (top pid, process group, markers), the watchdog (its
`WatchdogKeeper`), the runs' logs (its `RunLogs`), and shell commands run for health checks.
It is a thin shell: it decides nothing about restarts or states (the planner and the owner
do), it only does what it is told and posts one event per run, `ProcessExited`, from the reaper
(`draining.ExitPost`).

How it keeps the task contained (docs/design.md §5), and which module does each part of it:
the package's docstring (`executor/procs/__init__.py`).

Its own life (`SupervisorState`): NEW → STARTED (start(), or the first spawn or command) →
CLOSING (close() is killing what is left) → CLOSED; close() before start() goes from NEW
straight to CLOSED. Spawns and commands are refused once it is CLOSING.

Never raises out of the reaper thread; `spawn` raises only `SpawnError`, `run_command`
never raises. Logs one DEBUG line per spawn and per exit (the owner logs state changes at
INFO), and ERROR for adapter failures; every line names the task.
"""
from __future__ import annotations

import enum
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from config.spec import ProcessSpec
from config.words import quoted
from executor.events import DaemonsExited, WatchdogRestarted
from executor.logs import log_event
from executor.procs import earlyfork, fdlimit, oomcount, spawn
from executor.procs.adoption import EarlyRuns
from executor.procs.cgroups import SETTING_AUTO, task_name
from executor.procs.containment import Containment
from executor.procs.draining import Drains, DrainsWhenMade, ExitPost, RunWatcher
from executor.procs.earlyfork import EarlyRun
from executor.procs.exitby import ExitBy, close_step, close_task
from executor.procs.handover import next_look_in
from executor.procs.identity import RunAs
from executor.procs.reaper import Reaper
from executor.procs.runlogs import RunLogs
from executor.procs.spawn import Child, PreparedRun, RunChild, SpawnError, describe_os_error
from executor.procs.watchdog import WatchdogKeeper

if TYPE_CHECKING:
    from executor.procs.commands import CommandRunner
    from healthcheck.shell import CommandResult

__all__ = ["SpawnError", "Supervisor"]

logger = logging.getLogger(__name__)
CLOSE_KILL_SECS = 1.0


class SupervisorState(enum.Enum):
    NEW = "new"
    STARTED = "started"
    CLOSING = "closing"
    CLOSED = "closed"


class Supervisor:
    def __init__(self, *, sandbox: Path, task_label: str, env: Mapping[str, str],
                 post: Callable[[object], None], marker: str | None = None,
                 run_as: RunAs | None = None, check_as: RunAs | None = None, cgroups: str = SETTING_AUTO,
                 early_runs: Sequence[EarlyRun] = (), early_watchdog: tuple[int, int] | None = None,
                 wrap: spawn.Wrap | None = None, inherited: frozenset[tuple[int, int]] = frozenset(),
                 exit_by: ExitBy | None = None) -> None:
        """`early_runs`, `early_watchdog`: what an early start forked with `marker` before
        this supervisor existed (`earlyfork.py`), adopted or given up (`adoption.py`). `wrap`:
        what every run and command goes through (a filesystem-image task's containerizer).
        `exit_by`: when this process must be gone (None: never bound), set before its close
        or during it: each of the close's waits ends by it (`exitby.py`)."""
        self._sandbox, self._exit_by = Path(sandbox), exit_by if exit_by is not None else ExitBy()
        self._wrap, self._run_as = wrap, run_as  # run_as None: as this process
        self._check_as = check_as  # the health commands' user, when another (--nosetuid-health-checks)
        self._cgroups, self._label = cgroups, task_label
        self._marker = marker or os.urandom(16).hex()
        self._env = spawn.task_env(env, self._sandbox, self._marker)
        self._profile = spawn.profile_path(self._sandbox)
        self._post, self._lock = post, threading.Lock()  # the lock guards _runs, _commands and _state
        self._runs: dict[tuple[str, int], RunChild] = {}
        self._reaper: Reaper | None = None
        # a run's exit, posted to the owner (`draining.ExitPost`: it holds the OOM count too)
        self._post_exit = ExitPost(post, task_label, lambda: self._state is SupervisorState.CLOSED)
        self._commands: CommandRunner | None = None
        self._held: frozenset[int] = frozenset()  # commands SIGKILLed and waited for, not gone (`stop_commands`)
        self._commands_stopped = False  # the health checks are over: no command starts
        self._containment: Containment | None = None
        self._drains: Drains | None = None
        self._drains_of = DrainsWhenMade()  # one every run's watcher shares; made by start()
        self._containment_logged = False
        self._watchdog: WatchdogKeeper | None = None
        self._logs, self._devnull = RunLogs(self._sandbox, self._label), -1
        self._state = SupervisorState.NEW
        self._early = EarlyRuns(early_runs, self._marker, runs_by_key=self._runs, lock=self._lock,
                                post_exit=self._post_exit, label=self._label,
                                watchdog=early_watchdog, reaper=lambda: self._reaper)  # not adopted yet
        self._stopping = False  # `stop_begun`: no room is kept for the stop from then
        self._inherited = inherited  # (pid, start) of the children an early start found: not the task's
        self._spawned_at: float | None = None  # the latest fork of a run (monotonic)

    @property
    def marker(self) -> str:
        return self._marker

    @property
    def run_uid(self) -> int:
        """The real uid the task's runs start as (`spawn`: a RunAs that is this user is no switch)."""
        return self._run_as.uid if self._run_as is not None and not self._run_as.is_self else os.getuid()

    @property
    def watchdog_pid(self) -> int | None:
        return self._watchdog.pid if self._watchdog is not None else None

    @property
    def containment(self) -> str:
        """The mechanism in force, in words ("" before start)."""
        return self._contained().describe() if self._containment is not None else ""

    @property
    def cgroup(self) -> str | None:
        """The task's cgroup directory while there is one."""
        cg = self._containment.cgroup if self._containment is not None else None
        return cg.directory if cg is not None else None

    # ---- lifecycle ----

    def start(self) -> None:
        """Become a child subreaper, start the reaper thread and the watchdog. Idempotent."""
        with self._lock:
            if self._state is not SupervisorState.NEW:
                return
            self._state = SupervisorState.STARTED
        self._devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        earlyfork.shut_inherited()  # no run gets them (posix_spawn's, as Popen's close_fds)
        self._post_exit.oom = oomcount.open_counter()  # before any run can be OOM-killed
        self._reaper = Reaper.acquire(self._early.watchers(self._watch))  # the early start's runs are ours
        self._reaper.shield = oomcount.shield()  # the OOM killer takes a run before this process
        self._containment = Containment(reaper=self._reaper, task_marker=self._marker, label=self._label,
                                        cgroup_setting=self._cgroups, live_children=self._live_children)
        self._drains = Drains(self._containment, self._runs, self._lock, self._post_exit, self._label)
        self._drains_of.hold(self._drains)
        self._watchdog = WatchdogKeeper(reaper=self._reaper, marker=self._marker, label=self._label,
                                        cgroup=self._containment.watchdog_cgroup,
                                        keep=lambda: self._state is SupervisorState.STARTED,
                                        restarted=lambda pid: self._post(WatchdogRestarted(pid, time.monotonic())),
                                        exit_by=self._exit_by)
        self._watchdog.start()  # outside the cgroup, so that it can kill it; told it before it is made
        self._containment.prepare(task_name(self._marker), early=bool(self._early), inherited=self._inherited,
                                  announce=self._watchdog.announce)  # (else a kill meanwhile left it)
        # an early run's exit waits for `prepare` (its walks): judged before, a daemonizer's daemon
        # was not kept (no walk yet), then killed as unclaimed at the task's next exit
        self._drains_of.ready()
        self._reaper.on_orphans(self._orphan_reaped)
        self._containment.hand_over_to(self._watchdog.hold)
        self._early.retire_watchdog()  # ours is up
        # under way until `_contained`: the first fork waits for it; early runs follow it in
        self._containment.enter([child.pid for child in self._early.children()])

    def _watch(self, child: RunChild) -> RunWatcher:
        """A run's exit and reap (reaper thread) go to the drains (`draining.py`)."""
        return RunWatcher(self._drains_of, child)

    def _contained(self) -> Containment:
        """The containment, this process in the task's cgroup (if any) by now; logged once."""
        assert self._containment is not None
        self._containment.settle()
        if not self._containment_logged:
            self._containment_logged = True
            log_event(logger, logging.INFO, "containment", task=self._label,
                      mechanism=self._containment.mechanism, how=self._containment.describe())
        return self._containment

    # ---- spawning ----

    def spawn(self, process: ProcessSpec, run: int) -> int:
        """Fork run `run` of `process` now; returns its pid. Raises SpawnError."""
        (result,) = self._spawn_batch([(process, run)])
        if isinstance(result, SpawnError):
            raise result
        return result

    def ready_ahead(self, runs: list[tuple[ProcessSpec, int]]) -> None:
        """The log files of the first `fdlimit.SPAWN_BATCH` of `runs` (fewer when the descriptor limit would keep
        less than `fdlimit.OWN` free), made while the move into the task's cgroup goes on (`RunLogs.ready_ahead`);
        none for an early start's runs (adopted with theirs). Never raises."""
        if not self._early and self._state is SupervisorState.STARTED:
            self._logs.ready_ahead(runs[:fdlimit.SPAWN_BATCH], fdlimit.ready_ceiling())

    def spawn_many(self, runs: list[tuple[ProcessSpec, int]]) -> list[int | SpawnError]:
        """Fork several runs, `fdlimit.SPAWN_BATCH` at a time: each batch's log directories and files first, then
        its forks back to back, so the file system work does not compete for the CPU with the runs starting (made
        beside the forks by a second thread, a start of 100 was slower: docs/design.md §5). A batch bounds the
        descriptors held at once (`fdlimit.py`). One result per run, in order: its pid or SpawnError."""
        results: list[int | SpawnError] = []
        for at in range(0, len(runs), fdlimit.SPAWN_BATCH):
            results += self._spawn_batch(runs[at:at + fdlimit.SPAWN_BATCH])
        return results

    def _spawn_batch(self, runs: list[tuple[ProcessSpec, int]]) -> list[int | SpawnError]:
        self._logs.check_ahead()  # what was made ahead is still where a reader finds it
        prepared: list[PreparedRun | SpawnError | int] = []
        for process, run in runs:
            try:
                adopted = self._adopt(process, run)
                prepared.append(adopted if adopted is not None else self._prepare(process, run))
            except SpawnError as exc:
                prepared.append(exc)
        bash_env = spawn.profile_now(self._profile)  # one stat for the runs started together
        def forks() -> list[int | SpawnError]:  # off the main thread (`Reaper.on_fork_thread`)
            return spawn.fork_each(prepared, lambda item: self._fork(item, bash_env))
        return self._reaper.on_fork_thread(forks) if self._reaper is not None else forks()

    def _adopt(self, process: ProcessSpec, run: int) -> int | None:
        """The early start's run `run` of `process`, adopted (`adoption.py`); its pid. One that
        is not that run is killed (None: the caller forks the run as ever)."""
        if not self._early:
            return None
        if self._state is SupervisorState.NEW:
            self.start()
        pid = self._early.adopt(process, run, self._env, self._run_as is None or self._run_as.is_self)
        if pid is not None:
            self._spawned_at = time.monotonic()
        return pid

    def idle(self) -> float | None:
        """The owner has nothing to do now: kill the early start's runs its first step did not take, make the log
        directories of the runs that may come next (`executor/procs/logstage.py`: a process that restarted
        once may again), start the watchdog again if it could not start, and hand it the orphans adopted
        since; returns when to look again (`handover.next_look_in`; None: not before a step)."""
        if self._early.give_up_rest("the task did not start it first"):
            earlyfork.start_ended(stopping=self._stopping)
        if self._state is not SupervisorState.STARTED:
            return None
        self._logs.idle()
        if self._watchdog is not None:
            self._watchdog.ensure()  # one that could not start
        if self._containment is not None:
            self._containment.look()
        return next_look_in(self._spawned_at, time.monotonic())

    def _prepare(self, process: ProcessSpec, run: int) -> PreparedRun:
        if self._state is SupervisorState.NEW:
            self.start()
        if self._state is not SupervisorState.STARTED:
            raise self._closed(process, run)
        key = (process.name, run)
        with self._lock:
            if key in self._runs:
                raise SpawnError(f"process {quoted(process.name)} run {run} is already running "
                                 f"(pid {self._runs[key].pid})")
        if "\0" in process.name or "\0" in process.cmdline:
            raise SpawnError(f"process {quoted(process.name)} run {run}: its name or cmdline "
                             f"contains a NUL byte, which no command line can carry")
        stdio = self._logs.open(process, run, self._devnull)
        if stdio is None:  # closed meanwhile
            raise self._closed(process, run)
        return PreparedRun(process=process, run=run, stdio=stdio)

    def _closed(self, process: ProcessSpec, run: int) -> SpawnError:
        return SpawnError(f"the supervisor of task {self._label} is closed; cannot start "
                          f"process {quoted(process.name)} run {run}")

    def _fork(self, prepared: PreparedRun, bash_env: str | None) -> int:
        process, run, stdio = prepared.process, prepared.run, prepared.stdio
        key = (process.name, run)
        marker = spawn.run_marker(self._marker, process.name, run)
        assert self._reaper is not None
        self._contained()  # born inside the task's cgroup
        oom = self._post_exit.oom
        oom_kills = oom.mark() if oom is not None else None  # so far, in its cgroup
        try:
            with self._reaper.forking():
                pid, popen = spawn.fork_run(
                    process.cmdline, cwd=self._sandbox, stdin=self._devnull,
                    env=spawn.run_env(self._env, self._marker, process.name, run, bash_env), stdout=stdio.stdout,
                    stderr=stdio.stderr, run_as=self._run_as, wrap=self._wrap)
                child = RunChild(pid=pid, popen=popen, marker=marker, process=process.name, run=run,
                                 oom_kills=oom_kills)
                with self._lock:
                    self._runs[key] = child
                self._reaper.register(child.pid, self._watch(child))
        except OSError as e:
            stdio.discard()
            where = earlyfork.failed_in(e)
            raise SpawnError(f"cannot start /bin/bash for process {quoted(process.name)} run {run}"
                             f"{where}: {describe_os_error(e)}") from None
        self._logs.forked(process, run, stdio)
        self._spawned_at = time.monotonic()
        log_event(logger, logging.DEBUG, "process_spawned", task=self._label,
                  process=process.name, run=run, pid=child.pid)
        return child.pid

    # ---- exits (reaper thread) ----

    def _orphan_reaped(self) -> None:
        """Draining runs may be over; a daemon a run left may be gone: the owner looks again;
        the watchdog holds the orphan no more."""
        assert self._drains is not None and self._containment is not None
        self._drains.check()
        self._containment.orphan_reaped()
        if self._containment.daemons_kept and self._state is SupervisorState.STARTED:
            self._post(DaemonsExited(at=time.monotonic()))

    # ---- signals ----

    def _live_children(self) -> list[Child]:
        with self._lock:
            children: list[Child] = list(self._runs.values())
        if self._commands is not None:
            children += self._commands.live()
        return children

    def signal_run(self, process: str, run: int, sig: int) -> int:
        """Signal the whole tree of one run; returns how many processes were signalled."""
        return self.signal_runs([(process, run)], sig)

    def signal_runs(self, runs: list[tuple[str, int]], sig: int) -> int:
        """Signal the trees of several runs with one look at the task's processes (a
        task-wide SIGTERM to 100 runs costs one, not 100); returns how many were signalled."""
        if self._containment is None or not runs:
            return 0
        children = self._drains_of().signalled(runs, sig)  # a SIGTERMed run keeps its grace
        entries = tuple(f"{spawn.RUN_MARKER}={spawn.run_marker(self._marker, p, r)}".encode() for p, r in runs)
        if sig == signal.SIGKILL:  # a debugger may hold its end (`unsignalled.py`)
            from executor.procs.unsignalled import say_traced
            say_traced(self._label, ((c.process, c.run, c.pid) for c in children))
        return len(self._containment.signal(children, entries, sig, whole_task=False))

    def signal_all(self, sig: int) -> int:
        """Signal every process of the task (unclaimed ones included); returns how many."""
        return self._containment.signal_task(sig) if self._containment is not None else 0

    def daemons(self) -> bool:
        """Whether a daemon one of the task's runs left (`daemons.py`) still lives."""
        return self._containment is not None and self._containment.daemons_alive()

    def signal_daemons(self, sig: int) -> int:
        """Signal the daemons the task's runs left; returns how many were signalled."""
        return self._containment.signal_daemons(sig) if self._containment is not None else 0

    def held(self) -> dict[int, int]:
        """What the watchdog holds by pid: pid → start time (`handover.py`)."""
        return self._containment.held() if self._containment is not None else {}

    def left_running(self) -> str:
        """What of the task still lives, in words ("" when nothing): at its end, what the
        task SIGKILLed that cannot die yet (D state: a FUSE or NFS request held)."""
        if self._containment is None or not (left := self.task_pids()):
            return ""
        from executor.procs.unsignalled import not_gone
        return not_gone(sorted(left))

    def task_pids(self) -> set[int]:
        """Live (non-zombie) processes of the task."""
        return self._containment.pids(self._live_children()) if self._containment is not None else set()

    # ---- shell commands for health checks ----

    def run_command(self, command: str, timeout_secs: float) -> CommandResult:
        """`/bin/bash -c COMMAND` in the sandbox with the task env (through `wrap`, if any);
        thread-safe, never raises."""
        from executor.procs.commands import run_command

        return run_command(self._command_runner, command, timeout_secs, self._label)

    def stop_commands(self, within_secs: float) -> bool:
        """No shell command starts after this; each one running is killed (`CommandRunner.stop`).
        Those not gone are the close's `held`: its kill does not wait for them again."""
        with self._lock:
            self._commands_stopped, commands = True, self._commands
        if commands is None or commands.stop(within_secs):
            return True
        self._held = frozenset(child.pid for child in commands.live())
        return False

    def _command_runner(self) -> CommandRunner | None:
        """The shell commands' runner, made at the first (starting the supervisor); None once closing."""
        from executor.procs.commands import CommandRunner

        if self._state is SupervisorState.NEW:
            self.start()
        with self._lock:
            if self._state is not SupervisorState.STARTED or self._commands_stopped:
                return None
            if self._commands is None:
                assert self._reaper is not None and self._containment is not None
                self._commands = CommandRunner(
                    sandbox=self._sandbox, env=self._env, task_marker=self._marker, reaper=self._reaper,
                    containment=self._containment, stdin_fd=self._devnull, run_as=self._run_as,
                    check_as=self._check_as, wrap=self._wrap)
            return self._commands

    # ---- close ----

    def stop_begun(self) -> None:
        """The task's stop begins: the room kept for it in the address space is let go
        (`earlyfork.keep_stop_room`), and none is kept from then: one begun before the start's
        end has all there is."""
        self._stopping = True
        earlyfork.let_go_stop_room()

    def close(self) -> None:
        """SIGKILL what is left of the task, stop the watchdog and threads. Idempotent. A step
        that raises cuts none after it short (the reaper released, the descriptors closed, the
        state CLOSED); the first error is raised at the end. Was: the close stopped there,
        CLOSING, and a second returned at once: in a test process the reaper, kept, went on
        reaping the worker's other children."""
        earlyfork.let_go_stop_room()  # a task that ended with no stop: its close has the room
        with self._lock:
            if self._state in (SupervisorState.CLOSING, SupervisorState.CLOSED):
                return
            containment = self._containment  # (made by a start only: None before, or if it failed first)
            self._state = SupervisorState.CLOSING if containment is not None else SupervisorState.CLOSED
        errors: list[BaseException] = []
        if containment is not None:  # each step bound by the exit time, even one set meanwhile (`exitby.close_task`)
            assert self._reaper is not None  # (taken before the containment was made)
            close_task(self._reaper, containment, self._contained, self._watchdog, self._logs,
                       CLOSE_KILL_SECS, self._exit_by, self._orphan_reaped, errors, self._held)
            self._state = SupervisorState.CLOSED
            close_step(errors, self._close_fds)
        else:  # or its start failed before its containment (no thread)
            self._drains_of.ready()  # none will be made: the exits of the runs given up wait for none
            close_step(errors, self._early.give_up_rest, "the supervisor could not start")  # the runs it was handed
            if self._reaper is not None:  # its start failed after the reaper's
                close_step(errors, self._reaper.release)
            close_step(errors, self._close_fds)
        if errors:
            raise errors[0]

    def _close_fds(self) -> None:
        self._logs.close()
        if self._devnull >= 0:
            os.close(self._devnull)
        self._devnull = -1
