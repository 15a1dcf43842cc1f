"""The bound on a process's run log directories: its first run's and its last `KEEP_RUNS`.

A process that restarts for as long as its task lives (a daemon, a `min_duration` of 5 s:
17,280 runs a day) would otherwise leave one `.logs/PROCESS/RUN` directory per run for
ever: inodes, and a longer listing for every `stoker tail` and observer page. When run k
starts, run k - KEEP_RUNS is due for removal (never run 0: where the process's trouble
began), done when the owner is next idle, off the restart path. `stoker status` shows the
same last runs (executor/task/replay.RUNS_KEPT).

Safety is `spawn.LogRoot`'s: `.logs/PROCESS` is opened by its checked walk, and the run's
directory is removed through that descriptor by `shutil.rmtree` with `dir_fd` (a symlink
at any level is unlinked, never followed); an entry that is not a directory is left alone.
A follower of a removed run (`stoker tail -f`, the observer) holds its descriptors. Not
thread-safe (the supervisor calls it under its log lock); no logging: a removal that fails
leaves a directory behind, nothing else.
"""
from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # `stoker tail` reads KEEP_RUNS without loading the supervisor's modules
    from executor.procs.spawn import LogRoot

KEEP_RUNS = 20


class RunPrune:
    def __init__(self, root: LogRoot) -> None:
        self._root = root
        self._due: list[tuple[str, int]] = []

    def started(self, process: str, run: int) -> None:
        """Run `run` of `process` started: the one KEEP_RUNS before it is due (never run 0)."""
        if run - KEEP_RUNS >= 1:
            self._due.append((process, run - KEEP_RUNS))

    def prune_due(self) -> None:
        if not self._due:
            return
        import shutil  # (with bz2, lzma, zlib: only once a run is due)

        from executor.procs.spawn import SpawnError  # loaded already: the supervisor's

        due, self._due = self._due, []
        for process, run in due:
            try:
                fd = self._root.process_dir(process)
            except SpawnError:
                continue
            try:
                if stat.S_ISDIR(os.lstat(str(run), dir_fd=fd).st_mode):
                    shutil.rmtree(str(run), dir_fd=fd)
            except OSError:
                pass  # gone already, or the task's to keep
            finally:
                os.close(fd)
