"""A supervisor's run logs: where each run's stdout and stderr go, from its fork to close.

Owns, for one task: `SANDBOX/.logs`, kept open between spawns (`spawn.LogRoot`); each run's
log directory and its stdout/stderr (`spawn.open_stdio`), or the ones made ahead of time for
a process that restarted (`executor/procs/logstage.py`, loaded, as `runprune.py`, when the
owner is first idle after a task's first restart, and staged then), or for the runs of the
task's first step while the owner waits for the task's cgroup (`ready_ahead`: under their own
names, no rename to pay, each stdout marked `sandboxfs.READIED` until its spawn takes it, so
that what a supervisor killed -9 meanwhile leaves is no run to a reader; what no spawn took
is removed at the next idle moment, with `.logs` itself when nothing else is in it); the log pump
(`executor/procs/logpump.py`, started before the fork of the first run whose logger needs
copying, so that a thread that cannot start fails that run's spawn); and closing them all.
Its lock keeps `close()` from closing `.logs` under a spawn, and nothing is opened once it is
closed; nor kept: a run readied as `close()` ran on another thread is removed by its
`ready_ahead` (the owner calls both on its thread today; the lock makes either order safe).

No policy and no logging: the supervisor (`executor/procs/supervisor.py`) says when, and a
file system error reaches it as the `SpawnError` of the run that needed it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from config.spec import ProcessSpec
from executor.logs import log_event
from executor.procs import fdlimit, sandboxfs, spawn
from executor.procs.spawn import LogDir, RunStdio, SpawnError

if TYPE_CHECKING:
    from executor.procs.exitby import ExitBy
    from executor.procs.logpump import LogPump
    from executor.procs.logstage import LogStage
    from executor.procs.runprune import RunPrune

logger = logging.getLogger(__name__)

LOG_DRAIN_SECS = 0.5  # the longest a close waits for the log pipes (a file system that hangs)


class RunLogs:
    def __init__(self, sandbox: Path, label: str) -> None:
        self._label = label
        self._root = spawn.LogRoot(sandbox)  # SANDBOX/.logs, kept open between spawns
        self._lock = threading.Lock()  # so close() never closes it under a spawn
        self._stage: LogStage | None = None  # the next runs' log directories, from the first restart
        self._prune: RunPrune | None = None  # the runs' directories past the bound, from the first restart
        self._pump: LogPump | None = None
        self._restarted: list[tuple[ProcessSpec, int]] = []  # forked runs >= 1, noted when idle
        self._ahead: dict[tuple[str, int], tuple[LogDir, RunStdio]] = {}  # made before the first step
        self._closed = False

    def open(self, process: ProcessSpec, run: int, devnull_fd: int) -> RunStdio | None:
        """The stdout and stderr of run `run`, in its new log directory (staged, readied ahead,
        or made now); None once closed. Raises SpawnError."""
        with self._lock:
            if self._closed:  # closed meanwhile: open nothing more
                return None
            staged = self._stage.take(process.name, run) if self._stage is not None else None
            readied = None if staged else self._ahead.pop((process.name, run), None)
            staged = staged or readied
            directory = staged[0] if staged else self._root.run_dir(process.name, run)
        label = f"task={self._label} process={process.name} run={run}"
        try:
            if readied is not None and not _started(readied[1]):  # its files given up: made now
                _unmake(directory, readied[1])
                staged = None
            stdio = staged[1] if staged else spawn.open_stdio(directory, process.logger, devnull_fd, label)
        finally:
            directory.close()
        if stdio.pumped:
            self._pump_for(stdio, label)
        return stdio

    def ready_ahead(self, runs: list[tuple[ProcessSpec, int]], fd_ceiling: int) -> None:
        """Make the log directories and files of `runs` now, each for its `open` to take: the
        runs the first step will start, while the owner waits for the task's containment. Only
        a plain logger's (two files: no pipe, no pump thread before the fork), and only where
        neither file is there yet: one not taken by the next `idle` is removed (a kill came
        before the first step), which must never be an earlier attempt's log (a `.logs` that
        could not be archived), which `open` appends to. One that cannot be made is left to
        `open`, which says why. None once the next would take a descriptor numbered
        `fd_ceiling` or more (`fdlimit.ready_ceiling`): the rest are made by their spawns."""
        for process, run in runs:
            if not spawn.stageable(process.logger):
                continue
            with self._lock:
                if self._closed:
                    return
                if (process.name, run) in self._ahead:
                    continue
                try:
                    directory = self._root.run_dir(process.name, run)
                except SpawnError:
                    continue
            stdio = _new_plain_stdio(directory)
            if stdio is None:
                directory.close()
                continue
            with self._lock:
                if self._closed:  # closed meanwhile, off this thread: nothing of it stays
                    self._give_up([(directory, stdio)], [(process.name, run)])
                    return
                self._ahead[(process.name, run)] = (directory, stdio)
            if max(directory.fd, *stdio.close_after_fork) + fdlimit.PLAIN_START >= fd_ceiling:
                return

    def check_ahead(self) -> None:
        """Give up the runs made ahead when `.logs` is no longer the one they were made in
        (removed or replaced since: `LogRoot.current`): their spawns make their own, as they
        did before `ready_ahead`, and their output is not lost in a removed directory. Before
        each batch of spawns: one lstat while any is left, none once they are taken."""
        with self._lock:
            if self._ahead and not self._root.current():
                self._give_up_ahead()

    def _give_up_ahead(self) -> None:
        """Remove what was made ahead for runs no spawn took: their files, their directories,
        their processes' and `.logs` when nothing else is in them (a kill before the first
        step leaves the sandbox as a task that started nothing). Hold the lock."""
        if self._ahead:
            self._give_up(list(self._ahead.values()), list(self._ahead))
            self._ahead.clear()

    def _give_up(self, made: list[tuple[LogDir, RunStdio]], runs: list[tuple[str, int]]) -> None:
        """Remove `made`, the files of `runs`, and then their directories that are empty. Hold
        the lock."""
        for directory, stdio in made:
            _unmake(directory, stdio)
            directory.close()
        self._root.close()  # opened again, or made again, by the next spawn
        with contextlib.suppress(OSError):  # gone, replaced or not empty: left as it is
            _remove_empty(self._root.path, runs)

    def _pump_for(self, stdio: RunStdio, label: str) -> None:
        """The log pump, started before the fork of the first run it copies: a thread that
        cannot start (a full pids cgroup, no memory) fails that run, not the task."""
        try:
            self._log_pump()
        except (RuntimeError, OSError) as e:
            stdio.discard()
            reason = spawn.describe_os_error(e) if isinstance(e, OSError) else str(e)
            raise SpawnError(f"cannot start the log pump that copies the output of {label}: "
                             f"{reason}") from None

    def forked(self, process: ProcessSpec, run: int, stdio: RunStdio) -> None:
        """The run is forked: close our copies of its ends and pump what is piped. A process
        that restarted is noted for the next `idle` (its runs' bound, its next run's staging):
        that bookkeeping, 30 us of a kill -9's restart, is not on the way to its report."""
        for fd in stdio.close_after_fork:
            os.close(fd)
        if stdio.pumped:
            pump = self._log_pump()
            for read_fd, file, console, stream_label in stdio.pumped:
                pump.add(read_fd, file, console, stream_label)
        if run >= 1:
            with self._lock:
                self._restarted.append((process, run))

    def _note_restarted(self) -> None:
        """Each process that restarted since the last look: its runs' directories may pass the
        bound, and it may restart again: its next run's directory is wanted. Hold the lock."""
        restarted, self._restarted = self._restarted, []
        if not restarted or not self._load_bookkeeping(restarted):
            return
        for process, run in restarted:
            if self._prune is not None:  # made just now, or before
                self._prune.started(process.name, run)
            if self._stage is not None and spawn.stageable(process.logger):
                self._stage.want(process.name, run + 1)

    def _load_bookkeeping(self, restarted: list[tuple[ProcessSpec, int]]) -> bool:
        """Make the pruner, and the stager for a restarted process whose logs are staged, both
        loaded when idle after a task's first restart, maybe weeks after its start: after an
        upgrade in place the new version's files, which may not load (raised, they failed the
        task). These restarts' bookkeeping is then said skipped; the next restart tries again."""
        try:
            if self._prune is None:
                from executor.procs.runprune import RunPrune
                self._prune = RunPrune(self._root)
            if self._stage is None and any(spawn.stageable(process.logger) for process, _ in restarted):
                from executor.procs import logstage
                self._stage = logstage.LogStage(self._root)
        except (ImportError, SyntaxError) as exc:  # an upgrade's file (no memory: the host's, raised)
            log_event(logger, logging.WARNING, "run_logs_not_loaded", reason=f"{type(exc).__name__}: {exc}",
                      runs=", ".join(f"{process.name}[{run}]" for process, run in restarted))
            return False
        return True

    def idle(self) -> None:
        """Note the processes that restarted, make the log directories wanted for the runs
        that may come next, and remove the runs' past the bound (`executor/procs/runprune.py`)."""
        with self._lock:
            if self._closed:
                return
            self._give_up_ahead()
            self._note_restarted()
            if self._prune is not None:
                self._prune.prune_due()
            if self._stage is not None:
                self._stage.stage_wanted()

    def stop_pump(self, exit_by: ExitBy, drain_secs: float = LOG_DRAIN_SECS) -> None:
        """`LogPump.stop`: the pipes drained and closed within `drain_secs` and `exit_by`'s time."""
        with self._lock:
            pump = self._pump
        if pump is not None:
            pump.stop(drain_secs, exit_by)

    def close(self) -> None:
        """Remove what is still staged and close `.logs`. Idempotent."""
        with self._lock:
            self._closed = True
            self._give_up_ahead()
            if self._stage is not None:
                self._stage.close()
            self._root.close()

    def _log_pump(self) -> LogPump:
        from executor.procs.logpump import LogPump  # loaded already: open_stdio made the pipes

        with self._lock:
            if self._pump is None:
                self._pump = LogPump(self._label)
            return self._pump


def _remove_empty(logs: Path, runs: list[tuple[str, int]]) -> None:
    """Remove each (process, run)'s directory under `logs`, then its process's, then `logs`,
    each only if empty, by the descriptor of the level above (never through a symlink)."""
    sandbox = sandboxfs.open_dir(logs.parent, follow=True)  # the operator's path, not the task's
    try:
        top = sandboxfs.open_dir(logs.name, dir_fd=sandbox)
        try:
            for name, run in runs:
                with contextlib.suppress(OSError):  # an earlier run's, or the task's: kept
                    process = sandboxfs.open_dir(name, dir_fd=top)
                    try:
                        os.rmdir(str(run), dir_fd=process)
                    finally:
                        os.close(process)
                    os.rmdir(name, dir_fd=top)
        finally:
            os.close(top)
        os.rmdir(logs.name, dir_fd=sandbox)
    finally:
        os.close(sandbox)


def _unmake(directory: LogDir, stdio: RunStdio) -> None:
    """Close and remove the stdout and stderr `_new_plain_stdio` made in `directory`."""
    stdio.discard()
    for stream in ("stdout", "stderr"):
        with contextlib.suppress(OSError):  # gone: the task may remove what is in its sandbox
            os.unlink(stream, dir_fd=directory.fd)


def _started(stdio: RunStdio) -> bool:
    """Clear the mark of a run readied ahead (`sandboxfs.READIED`) from its stdout, before
    its fork: from here on readers count it as a run. False when it cannot be cleared."""
    assert stdio.stdout is not None
    try:
        mode = os.fstat(stdio.stdout).st_mode
        os.fchmod(stdio.stdout, stat.S_IMODE(mode) & ~sandboxfs.READIED)
    except OSError:
        return False
    return True


def _new_plain_stdio(directory: LogDir) -> RunStdio | None:
    """A plain logger's stdout and stderr in `directory`, both made by this call (O_EXCL: never
    a file, or a symlink, already there), the stdout marked as readied (`sandboxfs.READIED`)
    until its spawn takes it; None, and nothing of this call left, when either cannot be made."""
    stdio = RunStdio(stdout=None, stderr=None)
    made: list[str] = []
    try:
        for stream in ("stdout", "stderr"):
            mode = 0o644 | (sandboxfs.READIED if stream == "stdout" else 0)
            fd = os.open(stream, sandboxfs.LOG_FLAGS | os.O_EXCL | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC,
                         mode, dir_fd=directory.fd)
            made.append(stream)
            stdio.close_after_fork.append(fd)
        stdio.stdout, stdio.stderr = stdio.close_after_fork
        return stdio
    except OSError:
        stdio.discard()
        for stream in made:
            with contextlib.suppress(OSError):  # gone already
                os.unlink(stream, dir_fd=directory.fd)
        return None
