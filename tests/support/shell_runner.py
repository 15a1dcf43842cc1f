"""A RunCommand for tests that exercise a ShellChecker without a Stoker supervisor.

`subprocess_runner(cwd, env)` runs `/bin/bash -c COMMAND` with `subprocess.Popen` and waits
for it itself. The product never does that: inside Stoker the one reaper waits for every
child, and the supervisor's `run_command` is the only runner (`make_checker` requires one).
This stand-in keeps the same promises (own process group, output in a file, the whole group
and every marked descendant SIGKILLed when the command ends or times out, never raises), so
checker and health-loop tests can run real commands on their own.
"""
from __future__ import annotations

import os
import select
import signal
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

import psutil

from healthcheck.base import QUOTE_CHARS
from healthcheck.shell import CommandResult, RunCommand


def subprocess_runner(cwd: Path, env: Mapping[str, str]) -> RunCommand:
    """The standalone RunCommand: `/bin/bash -c COMMAND` in `cwd` with exactly `env`.

    The command gets its own session and process group, and writes stdout and stderr to a
    temporary file rather than a pipe, so a grandchild that keeps the output open cannot hang
    the check. When the command ends or times out, whatever is left of its process group is
    SIGKILLed (on a timeout, every descendant found too), so checks never leave processes
    behind. Never raises.
    """
    cwd = Path(cwd)
    env = dict(env)

    def run(command: str, timeout_secs: float) -> CommandResult:
        try:
            return _run_once(command, timeout_secs, cwd, env)
        except Exception as exc:
            return CommandResult(error=f"{type(exc).__name__}: {exc}")

    return run


MARKER_VARIABLE = "STOKER_HEALTH_CHECK_MARKER"


def _kill_marked(entry: bytes) -> None:
    """SIGKILL every process whose environment carries `entry` (NAME=value): what a command
    daemonized (setsid, re-parented away) is in neither its group nor its tree."""
    for _ in range(5):  # a forking process may add more while we look
        found = False
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/environ", "rb") as fh:
                    if entry not in fh.read().split(b"\0"):
                        continue
                os.kill(int(name), signal.SIGKILL)
                found = True
            except (OSError, ValueError):
                continue
        if not found:
            return


def _run_once(command: str, timeout_secs: float, cwd: Path, env: dict[str, str]) -> CommandResult:
    marker = os.urandom(8).hex()
    env = {**env, MARKER_VARIABLE: marker}
    try:
        return _run_marked(command, timeout_secs, cwd, env)
    finally:
        _kill_marked(f"{MARKER_VARIABLE}={marker}".encode())


def _run_marked(command: str, timeout_secs: float, cwd: Path, env: dict[str, str]) -> CommandResult:
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.Popen(
                ["/bin/bash", "-c", command],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            return CommandResult(
                error=f"cannot run /bin/bash in {cwd}: {exc.strerror or exc} (errno {exc.errno})"
            )
        try:
            exited = _wait_exited(proc, timeout_secs)
            descendants: list = []
            if not exited:
                try:
                    descendants = psutil.Process(proc.pid).children(recursive=True)
                except psutil.Error:
                    pass
            # The command is still a zombie (not yet reaped) when it exited, so its pid, the
            # group id, cannot have been reused: killing the group is safe.
            _kill_group(proc.pid)
            for child in descendants:
                try:
                    child.kill()
                except Exception:  # psutil.Error: it is gone already
                    pass
        finally:
            proc.wait()
        code = proc.returncode
        return CommandResult(
            exit_code=code if code >= 0 else None,
            signal=-code if code < 0 else None,
            timed_out=not exited,
            output=_read_tail(out),
        )


def _wait_exited(proc: subprocess.Popen, timeout_secs: float) -> bool:
    """Wait until `proc` exits, without reaping it; False when `timeout_secs` passed."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        try:
            proc.wait(timeout=timeout_secs)  # no pidfd: reaps, the group kill is best effort
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        readable, _, _ = select.select([pidfd], [], [], max(timeout_secs, 0.0))
        return bool(readable)
    finally:
        os.close(pidfd)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _read_tail(out) -> str:
    out.seek(0, os.SEEK_END)
    size = out.tell()
    out.seek(max(0, size - QUOTE_CHARS))
    return out.read(QUOTE_CHARS).decode("utf-8", errors="replace")
