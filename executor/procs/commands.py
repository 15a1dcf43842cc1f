"""Shell commands for health checks, run and reaped by the supervisor's machinery.

Owns `CommandRunner.run(command, timeout_secs) -> CommandResult`: `/bin/bash -c COMMAND`
in the sandbox with the task's environment (markers included, so the watchdog covers it),
in its own session, stdout and stderr into one unlinked temp file (not a pipe: a command
that fills a pipe nobody reads would hang), reaped by the one reaper thread. On timeout its
process group and every process carrying its marker are SIGKILLed. It exists because no
code in a Stoker process may wait for children itself (see `executor/procs/reaper.py`).

Thread-safe (the health loop calls it from its own thread); never raises: a command that
cannot be started gives a result whose `error` says why, in words.
"""
from __future__ import annotations

import itertools
import os
import signal
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

from executor.events import ExitStatus
from executor.procs import proctree, spawn
from executor.procs.reaper import Reaper, Watcher
from healthcheck.checkers import CommandResult

OUTPUT_TAIL_BYTES = 1024
KILL_WAIT_SECS = 1.0


class CommandRunner:
    def __init__(self, *, sandbox: Path, env: Mapping[str, str], task_marker: str,
                 reaper: Reaper, stdin_fd: int) -> None:
        self._sandbox = sandbox
        self._env = dict(env)
        self._task_marker = task_marker
        self._reaper = reaper
        self._stdin_fd = stdin_fd
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._live: dict[int, spawn.Child] = {}

    def live(self) -> list[spawn.Child]:
        """Commands still running (for signal_all / task_pids)."""
        with self._lock:
            return list(self._live.values())

    def run(self, command: str, timeout_secs: float) -> CommandResult:
        marker = f"{self._task_marker}/.command/{next(self._seq)}"
        env = dict(self._env)
        env[spawn.RUN_MARKER] = marker
        with tempfile.TemporaryFile(prefix="stoker-command-") as out:
            try:
                child = self._fork(command, env, marker, out)
            except OSError as e:
                where = f" in {e.filename}" if e.filename else ""
                return CommandResult(error=f"cannot start /bin/bash for the health command"
                                           f"{where}: {spawn.describe_os_error(e)}")
            finished = child.done.wait(timeout_secs)
            if not finished:
                self._kill(child)
                child.done.wait(KILL_WAIT_SECS)
            return _result(child, not finished, out)

    def _fork(self, command: str, env: Mapping[str, str], marker: str,
              out: BinaryIO) -> spawn.Child:
        with self._reaper.forking():
            popen = spawn.fork_exec(command, cwd=self._sandbox, env=env, stdin=self._stdin_fd,
                                    stdout=out.fileno(), stderr=out.fileno())
            child = spawn.Child(pid=popen.pid, popen=popen, marker=marker)
            with self._lock:
                self._live[child.pid] = child
            self._reaper.register(child.pid, Watcher(
                on_exit=lambda pid: self._kill_leftovers(pid, child),
                on_reaped=lambda pid, status: self._exited(child, status)))
        return child

    @staticmethod
    def _kill_leftovers(pid: int, child: spawn.Child) -> None:
        proctree.kill_leftovers(pid, child.marker_entry)

    def _exited(self, child: spawn.Child, status: int) -> None:
        with self._lock:
            self._live.pop(child.pid, None)
        child.reaped(status)

    def _kill(self, child: spawn.Child) -> None:
        with self._reaper.lock:  # registered = unreaped: the group id is still its own
            if self._reaper.is_registered(child.pid):
                proctree.signal_group(child.pid, signal.SIGKILL)
        proctree.kill_until_gone(proctree.Scope(markers=(child.marker_entry,)))


def _result(child: spawn.Child, timed_out: bool, out: BinaryIO) -> CommandResult:
    size = out.seek(0, os.SEEK_END)
    out.seek(max(0, size - OUTPUT_TAIL_BYTES))
    output = out.read().decode("utf-8", errors="replace")
    exit_code = sig = None
    if child.status is not None:
        status = ExitStatus.from_wait_status(child.status)
        exit_code, sig = status.exit_code, status.signal
    return CommandResult(exit_code=exit_code, signal=sig, timed_out=timed_out, output=output)
