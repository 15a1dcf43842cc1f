"""The shell health check: `/bin/bash -c COMMAND`, exit 0 passes, past timeout_secs the
whole process group is killed. The command runs through an injected RunCommand (inside
Stoker, the supervisor's, which spawns and reaps it); `subprocess_runner` is the standalone
default. Never raises out of check().
"""
from __future__ import annotations

import os
import select
import signal
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import attrs

from healthcheck.policy import Attempt
from healthcheck.reasons import QUOTE_CHARS, _never_raises, _secs, _tail_quote

# ---- shell ----


@attrs.frozen(slots=True)
class CommandResult:
    """How one health command ended. `error` is set only when it could not be started."""

    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool = False
    output: str = ""  # the tail of stdout and stderr together
    error: str | None = None


RunCommand = Callable[[str, float], CommandResult]


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


@attrs.frozen(slots=True)
class ShellChecker:
    """`/bin/bash -c COMMAND`: exit status 0 passes. Spawning is injected (`run_command`)."""

    command: str
    timeout_secs: float
    run_command: RunCommand

    def describe(self) -> str:
        return f"shell: {self.command}"

    @_never_raises
    def check(self) -> Attempt:
        result = self.run_command(self.command, self.timeout_secs)
        output = _tail_quote(result.output)
        if result.error is not None:
            return Attempt.failed(f"health command could not be started: {result.error}")
        if result.timed_out:
            reason = (
                f"health command timed out after {_secs(self.timeout_secs)} s "
                f"(process group killed)"
            )
            return Attempt.failed(reason if not result.output.strip() else f"{reason}: {output}")
        if result.signal is not None:
            return Attempt.failed(
                f"health command was killed by {_signal_name(result.signal)}: {output}"
            )
        if result.exit_code == 0:
            return Attempt.passed("health command exited with status 0")
        return Attempt.failed(f"health command exited with status {result.exit_code}: {output}")


def subprocess_runner(cwd: Path, env: Mapping[str, str]) -> RunCommand:
    """The standalone RunCommand: `/bin/bash -c COMMAND` in `cwd` with exactly `env`.

    The command gets its own session and process group, and writes stdout and stderr to a
    temporary file rather than a pipe, so a grandchild that keeps the output open cannot hang
    the check. When the command ends or times out, whatever is left of its process group is
    SIGKILLed (on a timeout, every descendant found too), so checks never leave processes
    behind. Never raises. Not for use inside the executor, whose supervisor reaps every child.
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
                import psutil  # only the standalone runner needs it, and only on a timeout

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


