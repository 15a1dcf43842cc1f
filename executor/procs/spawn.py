"""Forking one run: its environment, its log files or pipes, and the fork+exec itself.

Owns: the per-run environment (the task env plus `HOME` and the two markers), the log layout
`SANDBOX/.logs/PROCESS/RUN/{stdout,stderr}` and the check that it stays inside the sandbox,
choosing the child's stdout/stderr for each logger destination and mode, what a prepared run
carries to its fork (`PreparedRun`), the children the supervisor watches (`Child`,
`RunChild`), and the fork:
`subprocess.Popen` without `preexec_fn`, which uses vfork+exec on Python 3.11 (cwd, a new
session and close_fds are done in the child by C code, no Python runs there). Nothing on
this path imports, sleeps or scans /proc, so a restart costs about one fork+exec.

Every OSError becomes `SpawnError` with the errno put into words and the path named. Never
waits for a child: the reaper (`executor/procs/reaper.py`) does that.
"""
from __future__ import annotations

import errno
import os
import stat
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path

import attrs

from config.spec import LogDestination, LoggerSpec, LogMode, ProcessSpec
from executor.procs.logpump import LogFile, make_pipe

TASK_MARKER = "STOKER_TASK_MARKER"
RUN_MARKER = "STOKER_RUN_MARKER"
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW


class SpawnError(Exception):
    """A run could not be started; the message is the reason in words."""


def describe_os_error(e: OSError) -> str:
    """'No such file or directory (ENOENT)': an errno put into words."""
    if e.errno is None:
        return str(e)
    name = errno.errorcode.get(e.errno, str(e.errno))
    return f"{os.strerror(e.errno)} ({name})"


def run_marker(task_marker: str, process: str, run: int) -> str:
    return f"{task_marker}/{process}/{run}"


def run_env(base: Mapping[str, str], task_marker: str, process: str, run: int) -> dict[str, str]:
    env = dict(base)
    env[RUN_MARKER] = run_marker(task_marker, process, run)
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
    """One forked child the supervisor watches: a health command, or (RunChild) a run."""

    pid: int
    popen: subprocess.Popen  # referenced until reaped
    marker: str  # its STOKER_RUN_MARKER value
    status: int | None = None  # the wait status, once reaped
    done: threading.Event = attrs.Factory(threading.Event)

    @property
    def marker_entry(self) -> bytes:
        return f"{RUN_MARKER}={self.marker}".encode()

    def reaped(self, status: int) -> None:
        self.status = status
        self.popen.returncode = os.waitstatus_to_exitcode(status)  # subprocess must never wait on it
        self.done.set()


@attrs.define(eq=False)
class RunChild(Child):
    """A run's top process."""

    process: str = attrs.field(kw_only=True)
    run: int = attrs.field(kw_only=True)


def log_dir(sandbox: Path, process: str, run: int) -> Path:
    """`SANDBOX/.logs/PROCESS/RUN`, created; SpawnError when the name, or a symlink a task
    process planted (`.logs`, `.logs/PROCESS` or `.logs/PROCESS/RUN`), would lead anywhere
    else. Every level is made and then checked with lstat, so nothing is followed."""
    root = Path(os.path.abspath(sandbox)) / ".logs"  # no syscalls: each level is checked below
    if not process or "/" in process or process in (".", "..") or "\0" in process:
        raise SpawnError(f"process name {process!r} would put its logs outside {root}; refusing to start it")
    target = root / process / str(run)
    for level in (root, root / process, target):
        try:
            mode = os.lstat(level).st_mode  # usually there already: one syscall
        except FileNotFoundError:
            try:
                os.mkdir(level, 0o755)
                mode = os.lstat(level).st_mode
            except FileExistsError:
                mode = os.lstat(level).st_mode
            except OSError as e:
                raise SpawnError(f"cannot create the log directory {level}: {describe_os_error(e)}") from None
        except OSError as e:
            raise SpawnError(f"cannot create the log directory {level}: {describe_os_error(e)}") from None
        if not stat.S_ISDIR(mode):
            raise SpawnError(
                f"process {process!r} would put its logs outside {root}: {level} is not a directory "
                f"(a symlink or a file); refusing to start it")
    return target


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
            _close(fd)
        for read_fd, file, _console, _label in self.pumped:
            _close(read_fd)
            if file is not None:
                file.close()
        self.close_after_fork.clear()
        self.pumped.clear()


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


@attrs.frozen
class PreparedRun:
    """A run whose log files are open, ready to be forked."""

    process: ProcessSpec
    run: int
    stdio: RunStdio


def open_stdio(directory: Path, spec: LoggerSpec, devnull_fd: int, label: str) -> RunStdio:
    """Make the run's log directory and open its files/pipes; SpawnError on failure."""
    dest, mode = spec.destination, spec.mode  # `directory` exists: log_dir() made and checked it
    if dest is LogDestination.CONSOLE:
        return RunStdio(stdout=None, stderr=None)
    if dest is LogDestination.NONE:
        return RunStdio(stdout=devnull_fd, stderr=devnull_fd)
    stdio = RunStdio(stdout=None, stderr=None)
    try:
        if dest is LogDestination.FILE and mode is LogMode.STANDARD:
            stdio.stdout = _open_log(directory / "stdout")
            stdio.close_after_fork.append(stdio.stdout)
            stdio.stderr = _open_log(directory / "stderr")
            stdio.close_after_fork.append(stdio.stderr)
            return stdio
        # ROTATE, or BOTH: a pipe read by the log pump.
        rotate = mode is LogMode.ROTATE
        for name, console in (("stdout", 1), ("stderr", 2)):
            path = directory / name
            try:
                file = LogFile(path, spec.log_size_bytes if rotate else None, spec.backups)
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


def _open_log(path: Path) -> int:
    try:
        return os.open(path, _OPEN_FLAGS, 0o644)
    except OSError as e:
        raise SpawnError(f"cannot open the log file {path}: {describe_os_error(e)}") from None


def fork_exec(cmdline: str, *, cwd: Path, env: Mapping[str, str], stdin: int,
              stdout: int | None, stderr: int | None) -> subprocess.Popen:
    """`/bin/bash -c CMDLINE` in its own session; raises OSError (Popen's) on failure."""
    return subprocess.Popen(
        ["/bin/bash", "-c", cmdline],
        cwd=cwd,
        env=env,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        close_fds=True,
        start_new_session=True,
    )
