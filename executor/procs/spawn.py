"""Forking one run: its environment, its log files or pipes, and the fork+exec itself.

Owns: the per-run environment (the task env plus `HOME`, the two markers, and `BASH_ENV`
when `SANDBOX/.thermos_profile` exists at the run's launch, so bash sources it first, as
in Thermos), the user a run starts as (`RunAs`: uid, gid and groups set in the child just
before exec), the log layout
`SANDBOX/.logs/PROCESS/RUN/{stdout,stderr}` and keeping it inside the sandbox (each level and
each log file is opened through `executor/procs/sandboxfs.py`: relative to the level above,
never through a symlink, and never blocking on a FIFO a task planted), choosing the child's
stdout/stderr for each logger destination and mode, what a prepared run carries to its fork
(`PreparedRun`), the children the supervisor watches (`Child`: a run's `RunChild`, a command's
`CommandChild`), and the fork:
`subprocess.Popen` without `preexec_fn`, which uses vfork+exec on Python 3.11 (cwd, a new
session and close_fds are done in the child by C code, no Python runs there; with another
user to switch to it is fork+exec, since setuid in a vfork child is not safe). Nothing on
this path imports, sleeps or scans /proc, so a restart costs about one fork+exec.

Every OSError becomes `SpawnError` with the errno put into words and the path named. Never
waits for a child: the reaper (`executor/procs/reaper.py`) does that.
"""
from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path

import attrs

from config.spec import LogDestination, LoggerSpec, LogMode, ProcessSpec
from executor.procs import sandboxfs
from executor.procs.identity import RunAs
from executor.procs.logpump import LOG_FLAGS, LogFile, make_pipe
from executor.procs.sandboxfs import describe_os_error

__all__ = ["Child", "CommandChild", "LogDir", "PreparedRun", "RunChild", "RunStdio", "SpawnError",
           "describe_os_error", "fork_exec", "log_dir", "open_stdio", "run_env", "run_marker",
           "task_env", "with_profile"]

TASK_MARKER = "STOKER_TASK_MARKER"
RUN_MARKER = "STOKER_RUN_MARKER"
PROFILE = ".thermos_profile"  # sourced by every run's bash through BASH_ENV when it exists


class SpawnError(Exception):
    """A run could not be started; the message is the reason in words."""


def run_marker(task_marker: str, process: str, run: int) -> str:
    return f"{task_marker}/{process}/{run}"


def run_env(base: Mapping[str, str], task_marker: str, process: str, run: int,
            sandbox: Path | None = None) -> dict[str, str]:
    env = dict(base)
    env[RUN_MARKER] = run_marker(task_marker, process, run)
    return with_profile(env, sandbox) if sandbox is not None else env


def with_profile(env: dict[str, str], sandbox: Path) -> dict[str, str]:
    """`env` with `BASH_ENV` = SANDBOX/.thermos_profile when that file exists now (one stat:
    a process that writes it makes every later launch source it, as in Thermos)."""
    profile = os.path.join(os.path.abspath(sandbox), PROFILE)
    if os.path.exists(profile):
        env["BASH_ENV"] = profile
    return env


def task_env(env: Mapping[str, str], sandbox: Path, task_marker: str) -> dict[str, str]:
    """The env every run and health command starts from (entries with NUL bytes dropped)."""
    base = {k: v for k, v in env.items() if "\0" not in k and "\0" not in v and "=" not in k}
    base.setdefault("HOME", str(sandbox))
    base[TASK_MARKER] = task_marker
    base.pop(RUN_MARKER, None)  # set per run; never inherit one from our own parent
    return base


@attrs.define(eq=False)
class Child:
    """One forked child the supervisor watches: a run (RunChild) or a health command
    (CommandChild). Slotted and small: a task of 500 processes keeps 500 of them."""

    pid: int
    popen: subprocess.Popen  # referenced until reaped
    marker: str  # its STOKER_RUN_MARKER value
    status: int | None = None  # the wait status, once reaped

    @property
    def marker_entry(self) -> bytes:
        return f"{RUN_MARKER}={self.marker}".encode()

    def reaped(self, status: int) -> None:
        self.status = status
        self.popen.returncode = os.waitstatus_to_exitcode(status)  # subprocess must never wait on it


@attrs.define(eq=False)
class CommandChild(Child):
    """A shell command's top process: its caller waits for `done` (a run's exit is an event
    for the owner instead, so a run carries no Event)."""

    done: threading.Event = attrs.Factory(threading.Event)

    def reaped(self, status: int) -> None:
        super().reaped(status)
        self.done.set()


@attrs.define(eq=False)
class RunChild(Child):
    """A run's top process."""

    process: str = attrs.field(kw_only=True)
    run: int = attrs.field(kw_only=True)


@attrs.define
class LogDir:
    """A run's log directory: its path (for messages) and an O_DIRECTORY fd that every file
    of the run is opened relative to. The caller closes it."""

    path: Path
    fd: int

    def close(self) -> None:
        if self.fd >= 0:
            sandboxfs.close(self.fd)
            self.fd = -1


def log_dir(sandbox: Path, process: str, run: int) -> LogDir:
    """`SANDBOX/.logs/PROCESS/RUN`, created and opened; SpawnError when the name, or what a
    task process planted as `.logs`, `.logs/PROCESS` or `.logs/PROCESS/RUN` (a symlink, a
    file, a FIFO), would lead anywhere else. Each level is opened relative to the one above
    it and never through a symlink, so nothing can be swapped in between."""
    root = Path(os.path.abspath(sandbox)) / ".logs"  # for messages only: no syscalls
    if not process or "/" in process or process in (".", "..") or "\0" in process:
        raise SpawnError(f"process name {process!r} would put its logs outside {root}; refusing to start it")
    try:
        fd = sandboxfs.open_dir(sandbox, follow=True)  # the sandbox itself is not the task's
    except OSError as e:
        raise SpawnError(f"cannot create the log directory {root}: {describe_os_error(e)}") from None
    level = root.parent
    for name in (".logs", process, str(run)):
        level = level / name
        try:
            inner = sandboxfs.open_dir(name, dir_fd=fd, create=True)
        except sandboxfs.UnsafePath as e:
            raise SpawnError(f"process {process!r} would put its logs outside {root}: {level}: {e}; "
                             f"refusing to start it") from None
        except OSError as e:
            raise SpawnError(f"cannot create the log directory {level}: {describe_os_error(e)}") from None
        finally:
            sandboxfs.close(fd)
        fd = inner
    return LogDir(path=level, fd=fd)


@attrs.define
class RunStdio:
    """What the child gets as stdout/stderr, and what the parent must do after the fork."""

    stdout: int | None  # fd for the child; None = inherit ours
    stderr: int | None
    close_after_fork: list[int] = attrs.Factory(list)  # our copies of the child's ends
    pumped: list[tuple[int, LogFile | None, int | None, str]] = attrs.Factory(list)

    def discard(self) -> None:
        """The fork failed: close everything, including the pipes' read ends and files."""
        for fd in self.close_after_fork:
            sandboxfs.close(fd)
        for read_fd, file, _console, _label in self.pumped:
            sandboxfs.close(read_fd)
            if file is not None:
                file.close()
        self.close_after_fork.clear()
        self.pumped.clear()


@attrs.frozen
class PreparedRun:
    """A run whose log files are open, ready to be forked."""

    process: ProcessSpec
    run: int
    stdio: RunStdio


def open_stdio(directory: LogDir, spec: LoggerSpec, devnull_fd: int, label: str) -> RunStdio:
    """Open the run's log files (or pipes to the log pump) in `directory`; SpawnError on
    failure. The directory's fd stays the caller's."""
    dest, mode = spec.destination, spec.mode
    if dest is LogDestination.CONSOLE:
        return RunStdio(stdout=None, stderr=None)
    if dest is LogDestination.NONE:
        return RunStdio(stdout=devnull_fd, stderr=devnull_fd)
    stdio = RunStdio(stdout=None, stderr=None)
    try:
        if dest is LogDestination.FILE and mode is LogMode.STANDARD:
            stdio.stdout = _open_log(directory, "stdout")
            stdio.close_after_fork.append(stdio.stdout)
            stdio.stderr = _open_log(directory, "stderr")
            stdio.close_after_fork.append(stdio.stderr)
            return stdio
        # ROTATE, or BOTH: a pipe read by the log pump.
        rotate = mode is LogMode.ROTATE
        for name, console in (("stdout", 1), ("stderr", 2)):
            path = directory.path / name
            try:
                file = LogFile(directory.fd, name, path, spec.log_size_bytes if rotate else None,
                               spec.backups)
            except OSError as e:
                raise SpawnError(f"cannot open the log file {path}: {describe_os_error(e)}") from None
            try:
                read_fd, write_fd = make_pipe()
            except OSError as e:
                file.close()
                raise SpawnError(f"cannot make a log pipe for {path}: {describe_os_error(e)}") from None
            stdio.pumped.append((read_fd, file, console if dest is LogDestination.BOTH else None,
                                 f"{label} stream={name}"))
            stdio.close_after_fork.append(write_fd)
            if name == "stdout":
                stdio.stdout = write_fd
            else:
                stdio.stderr = write_fd
        return stdio
    except BaseException:
        stdio.discard()
        raise


def _open_log(directory: LogDir, name: str) -> int:
    try:
        return sandboxfs.open_regular(name, LOG_FLAGS, dir_fd=directory.fd)
    except OSError as e:
        raise SpawnError(f"cannot open the log file {directory.path / name}: "
                         f"{describe_os_error(e)}") from None


def fork_exec(cmdline: str, *, cwd: Path, env: Mapping[str, str], stdin: int,
              stdout: int | None, stderr: int | None, run_as: RunAs | None = None) -> subprocess.Popen:
    """`/bin/bash -c CMDLINE` in its own session, as `run_as` (None: as this process);
    raises OSError (Popen's) on failure."""
    who = run_as if run_as is not None and not run_as.is_self else None
    return subprocess.Popen(
        ["/bin/bash", "-c", cmdline],
        cwd=cwd,
        env=env,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        close_fds=True,
        start_new_session=True,
        user=who.uid if who else None,
        group=who.gid if who else None,
        extra_groups=list(who.groups) if who else None,
    )
