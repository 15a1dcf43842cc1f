"""Processes of a task's attempt as a supervisor leaves them: a real `sleep 600` carrying the
attempt's `STOKER_TASK_MARKER` (and a run's marker, `MARKER/web/2`), as every run a
supervisor spawns carries them (`executor/procs/spawn.py`); for the tests of what finds,
counts or kills a LOST attempt's leftovers. Each is killed and reaped on leaving, whatever
became of it."""
from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator

from executor.procs.spawn import RUN_MARKER, TASK_MARKER


@contextlib.contextmanager
def marked_sleeps(*markers: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    """A `sleep` carrying each marker, in order."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for marker in markers:
            env = {"PATH": os.environ["PATH"], TASK_MARKER: marker, RUN_MARKER: f"{marker}/web/2"}
            procs.append(subprocess.Popen(["sleep", "600"], env=env, stdin=subprocess.DEVNULL))
        yield procs
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(10)
