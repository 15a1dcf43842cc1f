"""Forking one run: its environment, its log files or pipes, and the fork+exec itself.

Owns: the per-run environment (`runenv.py`'s: the task env plus `HOME`, the two markers,
and `BASH_ENV` when `SANDBOX/.thermos_profile` exists at the run's launch, looked for once
for the runs a `spawn_many` starts together, so bash sources it first, as in Thermos; the
early start computes it with the same functions), the user a run
starts as (`RunAs`: uid, gid, groups and umask set in the child just before exec), the log layout
`SANDBOX/.logs/PROCESS/RUN/{stdout,stderr}` and keeping it inside the sandbox (each level and
each log file is opened through `executor/procs/sandboxfs.py`: relative to the level above,
never through a symlink, and never blocking on a FIFO a task planted; `LogRoot` keeps
`.logs` open between a supervisor's spawns and checks before each use that it is still
`SANDBOX/.logs`), choosing the child's stdout/stderr for each logger destination and mode,
what a prepared run carries to its fork (`PreparedRun`), the children the supervisor
watches (`Child`: a run's `RunChild`, a command's `CommandChild`), and the fork: a run as
this process by `posix_spawn` (`fork_run`, through the early start's `earlyfork.spawn_in`,
which says when it cannot), any other run and every command by `subprocess.Popen` without
`preexec_fn` (`fork_exec`), which uses vfork+exec on Python 3.11 to 3.13 (cwd, a new session
and close_fds are done in the child by C code, no Python runs there; with another user to
switch to it is fork+exec, since setuid in a vfork child is not safe). Nothing on this path
imports, sleeps or scans /proc, so a restart costs about one fork+exec. A
filesystem-image task's runs and commands go through a `Wrap` (its command line and the
environment as seen inside the image), forked as this process: the wrapper switches user.

Every OSError becomes `SpawnError` with the errno put into words and the path named. Never
waits for a child: the reaper (`executor/procs/reaper.py`) does that.
"""
from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from config.spec import LogDestination, LoggerSpec, LogMode, ProcessSpec
from config.words import quoted
from executor.procs import earlyfork, sandboxfs
from executor.procs.identity import RunAs
from executor.procs.runenv import (  # noqa: F401  (re-exported: spawn's callers use them here)
    PROFILE,
    RUN_MARKER,
    TASK_MARKER,
    exec_text,
    profile_now,
    profile_path,
    run_env,
    run_marker,
    seen_through,
    task_env,
    with_profile,
)
from executor.procs.sandboxfs import LOG_FLAGS, describe_os_error

if TYPE_CHECKING:
    import subprocess
    from typing import Protocol

    from executor.procs.logpump import LogFile

    class Wrap(Protocol):
        """What a command line is started through instead of `/bin/bash -c` directly: a
        filesystem-image task's `mesos-containerizer launch` (`executor/mesos/containerizer.py`),
        which enters the image and switches to the user itself."""

        def argv(self, cmdline: str, user: RunAs | None) -> list[str]: ...

        def env(self, env: Mapping[str, str]) -> dict[str, str]: ...


__all__ = ["Child", "CommandChild", "LogDir", "LogRoot", "PreparedRun", "RunChild", "RunStdio",
           "SpawnError", "describe_os_error", "fork_exec", "fork_run", "log_dir", "open_stdio", "profile_now",
           "profile_path", "run_env", "run_marker", "task_env", "with_profile"]


class SpawnError(Exception):
    """A run could not be started; the message is the reason in words."""


@attrs.define(eq=False)
class Child:
    """One forked child the supervisor watches: a run (RunChild) or a health command
    (CommandChild). Slotted and small: a task of 500 processes keeps 500 of them."""

    pid: int
    popen: subprocess.Popen | None  # referenced until reaped (None: started by the early start)
    marker: str  # its STOKER_RUN_MARKER value
    status: int | None = None  # the wait status, once reaped
    # a run the task SIGTERMed whose top exited while processes of its tree still run: they
    # keep the rest of their grace, and the run ends once they are gone (or SIGKILLed)
    draining: bool = False

    @property
    def marker_entry(self) -> bytes:
        return f"{RUN_MARKER}={self.marker}".encode()

    def reaped(self, status: int) -> None:
        self.status = status
        if self.popen is not None:
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
    adopted: bool = attrs.field(kw_only=True, default=True)  # False: an early start's, not yet taken
    termed: bool = attrs.field(kw_only=True, default=False)  # SIGTERMed by the task, not SIGKILLed
    signalled: bool = attrs.field(kw_only=True, default=False)  # by the task: it keeps no daemons
    oom_kills: int | None = attrs.field(kw_only=True, default=None)  # its memory cgroup's, as forked


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


class LogRoot:
    """`SANDBOX/.logs` of one supervisor, kept open between spawns, so a run's log directory
    costs one check, one open of `PROCESS` and one mkdir+open of `RUN` (not a walk from
    the sandbox). Before each use the fd is checked against what `SANDBOX/.logs` is now
    (lstat: the same directory, not a symlink); when a task replaced or removed it, or
    `stoker run` archived it (renamed to `.logs.attempt-N`), or the cached walk fails with
    ENOENT/ESTALE, the fd is dropped and the full walk from the sandbox runs again. While
    the fd is open its inode cannot be reused, so an equal (st_dev, st_ino) is the same
    directory. Not thread-safe (the supervisor holds a lock around it); `close()` closes
    the fd."""

    def __init__(self, sandbox: Path) -> None:
        self._sandbox = Path(os.path.abspath(sandbox))
        self._root = self._sandbox / ".logs"  # the path is for lstat and messages only
        self._fd = -1
        self._id: tuple[int, int] | None = None  # (st_dev, st_ino) of the open `.logs`

    def run_dir(self, process: str, run: int) -> LogDir:
        """`SANDBOX/.logs/PROCESS/RUN`, created and opened; SpawnError when the name, or
        what a task process planted as `.logs`, `.logs/PROCESS` or `.logs/PROCESS/RUN` (a
        symlink, a file, a FIFO), would lead anywhere else. Each level is opened relative
        to the one above it and never through a symlink."""
        self._check_name(process)
        try:
            if self._still_there():
                try:
                    return self._below(process, run)
                except _Stale:
                    self.close()  # removed or replaced meanwhile: walk again from the sandbox
            self._open_root(process)
            return self._below(process, run)
        except _Stale as e:
            raise SpawnError(f"cannot create the log directory {e.path}: "
                             f"{describe_os_error(e.error)}") from None

    @property
    def path(self) -> Path:
        """`SANDBOX/.logs` (for messages)."""
        return self._root

    def process_dir(self, process: str) -> int:
        """An fd of `SANDBOX/.logs/PROCESS`, created if missing, by the same checks as
        `run_dir`; the caller closes it. SpawnError when it cannot be had safely."""
        self._check_name(process)
        try:
            if not self._still_there():
                self._open_root(process)
            return self._process_fd(process, likely_new=False)
        except _Stale as e:
            self.close()
            raise SpawnError(f"cannot create the log directory {e.path}: "
                             f"{describe_os_error(e.error)}") from None

    def current(self) -> bool:
        """Whether the open `.logs` is still what `SANDBOX/.logs` names (one lstat); when not, closed."""
        return self._still_there()

    def close(self) -> None:
        if self._fd >= 0:
            sandboxfs.close(self._fd)
        self._fd, self._id = -1, None

    def _check_name(self, process: str) -> None:
        if not process or "/" in process or process in (".", "..") or "\0" in process:
            raise SpawnError(f"process name {quoted(process)} would put its logs outside {self._root}; "
                             f"refusing to start it")

    def _still_there(self) -> bool:
        """True when the open `.logs` is what `SANDBOX/.logs` names now (one lstat)."""
        if self._fd < 0:
            return False
        try:
            found = os.lstat(self._root)
        except OSError:
            found = None
        if found is None or (found.st_dev, found.st_ino) != self._id or not stat.S_ISDIR(found.st_mode):
            self.close()
            return False
        return True

    def _open_root(self, process: str) -> None:
        try:
            sandbox = sandboxfs.open_dir(self._sandbox, follow=True)  # not the task's
        except OSError as e:
            raise SpawnError(f"cannot create the log directory {self._root}: {describe_os_error(e)}") from None
        try:
            fd = self._level(lambda: sandboxfs.open_dir(".logs", dir_fd=sandbox, create=True),
                             self._root, process)
        finally:
            sandboxfs.close(sandbox)
        try:
            found = os.fstat(fd)
        except OSError as e:
            sandboxfs.close(fd)
            raise SpawnError(f"cannot create the log directory {self._root}: {describe_os_error(e)}") from None
        self._fd, self._id = fd, (found.st_dev, found.st_ino)

    def _below(self, process: str, run: int) -> LogDir:
        """PROCESS/RUN under the open `.logs`; _Stale on ENOENT or ESTALE."""
        outer = self._process_fd(process, likely_new=run == 0)
        try:
            level = self._root / process / str(run)
            return LogDir(path=level, fd=self._level(lambda: sandboxfs.new_dir(str(run), dir_fd=outer),
                                                     level, process))
        finally:
            sandboxfs.close(outer)

    def _process_fd(self, process: str, likely_new: bool) -> int:
        """`.logs/PROCESS` under the open `.logs`, made if missing (with mkdir first when
        `likely_new`: a process's first run). _Stale on ENOENT or ESTALE."""
        level = self._root / process
        if likely_new:
            return self._level(lambda: sandboxfs.new_dir(process, dir_fd=self._fd), level, process)
        return self._level(lambda: sandboxfs.open_dir(process, dir_fd=self._fd, create=True), level, process)

    def _level(self, opener: Callable[[], int], path: Path, process: str) -> int:
        try:
            return opener()
        except sandboxfs.UnsafePath as e:
            raise SpawnError(f"process {quoted(process)} would put its logs outside {self._root}: "
                             f"{path}: {e}; refusing to start it") from None
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ESTALE):
                raise _Stale(path, e) from None
            raise SpawnError(f"cannot create the log directory {path}: {describe_os_error(e)}") from None


class _Stale(Exception):
    """A level of the cached walk was gone (ENOENT) or stale (ESTALE)."""

    def __init__(self, path: Path, error: OSError) -> None:
        super().__init__(str(path))
        self.path, self.error = path, error


def log_dir(sandbox: Path, process: str, run: int) -> LogDir:
    """`SANDBOX/.logs/PROCESS/RUN` by the full walk from the sandbox (`LogRoot.run_dir`
    with nothing kept open)."""
    root = LogRoot(sandbox)
    try:
        return root.run_dir(process, run)
    finally:
        root.close()


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
            stdio.stdout = open_log(directory, "stdout")
            stdio.close_after_fork.append(stdio.stdout)
            stdio.stderr = open_log(directory, "stderr")
            stdio.close_after_fork.append(stdio.stderr)
        else:  # ROTATE, or BOTH
            _pump(stdio, directory, spec, label)
        return stdio
    except BaseException:
        stdio.discard()
        raise


def _pump(stdio: RunStdio, directory: LogDir, spec: LoggerSpec, label: str) -> None:
    """The run's stdout and stderr as pipes the log pump reads into their files (rotated, or
    copied to the console too): each file, its pipe, in `stdio`. SpawnError on failure."""
    from executor.procs.logpump import LogFile, make_pipe  # only these loggers need it

    rotate = spec.mode is LogMode.ROTATE
    for name, console in (("stdout", 1), ("stderr", 2)):
        path = directory.path / name
        try:
            file = LogFile(directory.fd, name, path, spec.log_size_bytes if rotate else None, spec.backups,
                           f"{label} stream={name}")
        except OSError as e:
            raise SpawnError(f"cannot open the log file {path}: {describe_os_error(e)}") from None
        try:
            read_fd, write_fd = make_pipe()
        except OSError as e:
            file.close()
            raise SpawnError(f"cannot make a log pipe for {path}: {describe_os_error(e)}") from None
        stdio.pumped.append((read_fd, file, console if spec.destination is LogDestination.BOTH else None,
                             f"{label} stream={name}"))
        stdio.close_after_fork.append(write_fd)
        if name == "stdout":
            stdio.stdout = write_fd
        else:
            stdio.stderr = write_fd


def stageable(logger: LoggerSpec) -> bool:
    """Whether a run with this logger can start in a directory made ahead of time
    (`executor/procs/logstage.py`): the plain logger's, two files."""
    return logger.destination is LogDestination.FILE and logger.mode is LogMode.STANDARD


def open_log(directory: LogDir, name: str) -> int:
    """One of a run's plain log files (`stdout`, `stderr`) in `directory`; SpawnError."""
    try:
        return sandboxfs.open_regular(name, LOG_FLAGS, dir_fd=directory.fd)
    except OSError as e:
        raise SpawnError(f"cannot open the log file {directory.path / name}: "
                         f"{describe_os_error(e)}") from None


def fork_run(cmdline: str, *, cwd: Path, env: Mapping[str, str], stdin: int, stdout: int | None,
             stderr: int | None, run_as: RunAs | None, wrap: Wrap | None) -> tuple[int, subprocess.Popen | None]:
    """A run forked: its pid, and its Popen, None when started by posix_spawn
    (`earlyfork.spawn_in`; the caller made what it inherited close-on-exec,
    `earlyfork.shut_inherited`): a run as this process, with its umask (a root role's under a
    root executor, `RunAs.umask`: when it is the forking thread's, an agent's 022), not wrapped, every
    descriptor to dup from 3 up (Popen reorders lower ones), on a thread whose directory can
    be its own. Any other by `fork_exec`. Raises OSError."""
    if (wrap is None and (run_as is None or run_as.is_self)
            and all(fd is None or fd >= 3 for fd in (stdin, stdout, stderr))):
        pid = earlyfork.spawn_in(str(cwd), cmdline, env, stdin=stdin, stdout=stdout, stderr=stderr,
                                 umask=run_as.umask if run_as is not None else -1)
        if pid is not None:
            return pid, None
    popen = fork_exec(cmdline, cwd=cwd, env=env, stdin=stdin, stdout=stdout, stderr=stderr, run_as=run_as,
                      wrap=wrap)
    return popen.pid, popen


def fork_exec(cmdline: str, *, cwd: Path, env: Mapping[str, str], stdin: int,
              stdout: int | None, stderr: int | None, run_as: RunAs | None = None,
              wrap: Wrap | None = None) -> subprocess.Popen:
    """`/bin/bash -c CMDLINE` in its own session, as `run_as` (None: as this process), with
    its umask (also when it is this process's user: a root executor's root role);
    raises OSError (Popen's) on failure. With `wrap`, its command line instead, forked as
    this process (with `run_as`'s umask): the wrapper switches to the user and execs bash,
    so the pid, the session and the markers are the command's. `subprocess` is loaded here,
    at the first run that needs it: a supervisor whose runs are all posix_spawn's (and whose
    watchdog is, `watchdog._spawn`) never holds it."""
    import subprocess

    if wrap is not None:
        return subprocess.Popen(wrap.argv(cmdline, run_as), cwd=cwd, env=seen_through(env, wrap.env), stdin=stdin,
                                stdout=stdout, stderr=stderr, close_fds=True, start_new_session=True,
                                umask=run_as.umask if run_as is not None else -1)
    who = run_as if run_as is not None and not run_as.is_self else None
    return subprocess.Popen(
        ["/bin/bash", "-c", exec_text(cmdline)],
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
        umask=run_as.umask if run_as is not None else -1,
    )


def fork_each(prepared: Sequence[PreparedRun | SpawnError | int],
              fork: Callable[[PreparedRun], int]) -> list[int | SpawnError]:
    """Each of `prepared`, in order, forked by `fork` (which raises only SpawnError): one
    result each, its pid or SpawnError; an error, or an early start's run adopted (its pid),
    is its own result."""
    results: list[int | SpawnError] = []
    for item in prepared:
        try:
            results.append(item if isinstance(item, (SpawnError, int)) else fork(item))
        except SpawnError as exc:
            results.append(exc)
    return results
