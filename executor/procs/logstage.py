"""Run log directories made ahead of time, so that a restart does not wait for the file system.

A process whose run k ≥ 1 has just started has restarted at least once, so it may again.
Once the owner is idle (its step done, the checkpoint synced), the supervisor makes
`.logs/PROCESS/.next-(k+1)` here, with its empty `stdout` and `stderr`, all three opened
and kept. When run k+1 starts, one rename in the process's directory puts the directory in
place as `.logs/PROCESS/(k+1)` and the kept descriptors become the run's stdout and stderr:
one system call on the restart path instead of seven (a check of `.logs`, two opens, a mkdir
and two file creations, a close). Only for the plain logger (`file` destination, `standard`
mode); a rotating or console logger takes the ordinary path.

Safety is the ordinary path's: the directory and its files are made by `spawn.LogRoot`'s
checked walk and `sandboxfs`, and the run writes only through the descriptors kept here, so
whatever a task does to `.next-N` meanwhile (remove it, rename it, put a symlink in its
place) moves no write outside its directory. A rename that fails (the task removed the
staged directory, or planted a non-empty `.logs/PROCESS/(k+1)`) gives the staged files up,
and the run takes the ordinary path, which refuses what it must.

Readers (`stoker tail`, the observer) list only numeric run directories, so a staged one is
never shown as a run; `close()` removes whatever is still staged. A supervisor killed with
-9 leaves an empty `.next-N` behind, which the next one making the same name reuses.
Not thread-safe: the supervisor calls it under its log lock. No logging: a staging that
fails only means the next run takes the ordinary path.
"""
from __future__ import annotations

import os

import attrs

from executor.procs import sandboxfs, spawn
from executor.procs.spawn import LogDir, LogRoot, RunStdio, SpawnError

STAGED_PREFIX = ".next-"
PER_IDLE = 2  # staged per idle moment: each costs 0.2–3 ms, which an event arriving meanwhile waits


@attrs.define
class _Staged:
    process_fd: int  # `.logs/PROCESS`, where the rename happens
    name: str  # `.next-RUN`
    directory: LogDir  # the staged directory itself
    identity: tuple[int, int]  # its (st_dev, st_ino)
    stdout: int
    stderr: int

    def discard(self, remove_dir: bool = True) -> None:
        """Remove the staged files and (`remove_dir`) the directory by its staged name, never
        through a symlink; close all."""
        for name in ("stdout", "stderr"):
            try:
                os.unlink(name, dir_fd=self.directory.fd)
            except OSError:
                pass  # already gone: the task may remove what is in its sandbox
        try:
            if remove_dir:
                os.rmdir(self.name, dir_fd=self.process_fd)
        except OSError:
            pass  # gone, renamed, replaced or not empty: the task's to keep
        for fd in (self.stdout, self.stderr, self.process_fd):
            sandboxfs.close(fd)
        self.directory.close()


class LogStage:
    """The staged next runs of one supervisor's processes, and the runs still to stage."""

    def __init__(self, root: LogRoot) -> None:
        self._root = root
        self._staged: dict[tuple[str, int], _Staged] = {}
        self._wanted: dict[str, int] = {}  # process → the run to stage for it

    def want(self, process: str, run: int) -> None:
        """Stage `run` of `process` at the next `stage_wanted` (replacing an earlier wish)."""
        self._wanted[process] = run

    def stage_wanted(self, limit: int = PER_IDLE) -> None:
        """Make up to `limit` wanted runs' directories and files (the rest at later idle
        moments: a hundred processes restarting together must not hold the owner up for a
        hundred file creations); one that cannot be made is skipped."""
        for _ in range(min(limit, len(self._wanted))):
            process, run = self._wanted.popitem()
            if (process, run) in self._staged:
                continue
            try:
                self._staged[(process, run)] = self._make(process, run)
            except (SpawnError, OSError):
                continue  # that run will take the ordinary path

    def take(self, process: str, run: int) -> tuple[LogDir, RunStdio] | None:
        """The staged directory of this run, renamed into place, and its stdio; None when
        there is none or the rename failed (the run then takes the ordinary path)."""
        staged = self._staged.pop((process, run), None)
        if staged is None:
            return None
        try:
            os.rename(staged.name, str(run), src_dir_fd=staged.process_fd, dst_dir_fd=staged.process_fd)
            found = os.stat(str(run), dir_fd=staged.process_fd, follow_symlinks=False)
        except OSError:
            staged.discard()
            return None
        if (found.st_dev, found.st_ino) != staged.identity:  # the task put something else there
            staged.discard(remove_dir=False)  # what is at RUN and at .next-N now is the task's
            return None
        sandboxfs.close(staged.process_fd)
        directory = LogDir(path=staged.directory.path.parent / str(run), fd=staged.directory.fd)
        stdio = RunStdio(stdout=staged.stdout, stderr=staged.stderr,
                         close_after_fork=[staged.stdout, staged.stderr])
        return directory, stdio

    def close(self) -> None:
        """Remove whatever is still staged; nothing more is staged after this."""
        self._wanted.clear()
        for staged in self._staged.values():
            staged.discard()
        self._staged.clear()

    def _make(self, process: str, run: int) -> _Staged:
        process_fd = self._root.process_dir(process)
        name = f"{STAGED_PREFIX}{run}"
        path = self._root.path / process / name
        try:
            directory = LogDir(path=path, fd=sandboxfs.new_dir(name, dir_fd=process_fd))
        except OSError:
            sandboxfs.close(process_fd)
            raise
        opened: list[int] = []
        try:
            found = os.fstat(directory.fd)
            for stream in ("stdout", "stderr"):
                opened.append(spawn.open_log(directory, stream))
        except (SpawnError, OSError):
            _Staged(process_fd, name, directory, (0, 0), *(opened + [-1, -1])[:2]).discard()
            raise
        return _Staged(process_fd, name, directory, (found.st_dev, found.st_ino), opened[0], opened[1])
