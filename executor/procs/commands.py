"""Shell commands for health checks, run and reaped by the supervisor's machinery.

Owns `CommandRunner.run(command, timeout_secs) -> CommandResult`: `/bin/bash -c COMMAND`
in the sandbox with the task's environment (markers included, so the watchdog covers it;
`BASH_ENV` when `.thermos_profile` exists) as the task's user, in its own session, reaped
by the one reaper thread. It is contained as a run is (`executor/procs/containment.py`): on
timeout its tree (group, descendants, marker) is SIGKILLed, and when it exits its group and
every unclaimed process of the task (a daemon it left behind with `setsid` and `env -i`
included) are. It exists because no code in a Stoker process may wait for children itself
(see `executor/procs/reaper.py`). A filesystem-image task's commands go through its
containerizer (`spawn.Wrap`), which enters the image and becomes the command's user.

Output: stdout and stderr go into one pipe that the calling thread reads while it waits, in
64 KiB reads, keeping only the last `OUTPUT_TAIL_BYTES` in memory: a command that writes
gigabytes costs no disk (no file outside the sandbox, unlike a temp file) and no memory,
and one that fills the pipe never blocks, since the pipe is always read. The wait ends when
the command's top process exits (its pidfd), the pipe reaches EOF, or the deadline; then
what is still in the pipe is read, bounded by `DRAIN_LIMIT_BYTES` (a descendant that
escaped the kill may write on).

Thread-safe (the health loop calls it from its own thread); never raises: a command that
cannot be started gives a result whose `error` says why, in words, and `run_command` (the
supervisor's) makes a bug on the way a result too, logged.
"""
from __future__ import annotations

import itertools
import logging
import os
import pwd
import select
import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from executor.events import ExitStatus
from executor.logs import log_event
from executor.procs import earlyfork, spawn
from executor.procs.containment import Containment
from executor.procs.identity import RunAs
from executor.procs.reaper import Reaper, Watcher
from healthcheck.base import STALL_SECS
from healthcheck.checkers import CommandResult

logger = logging.getLogger("executor.procs.supervisor")  # its lines read as the supervisor's

OUTPUT_TAIL_BYTES = 1024
READ_BYTES = 64 * 1024
DRAIN_LIMIT_BYTES = 1024 * 1024
KILL_WAIT_SECS = 1.0
REAP_WAIT_SECS = 1.0  # a command seen to exit is waited for this long at least, for the reaper
STOPPING = "the task is stopping: no health command starts"  # after `CommandRunner.stop`


def run_command(runner: Callable[[], CommandRunner | None], command: str, timeout_secs: float,
                label: str) -> CommandResult:
    """`runner().run(...)`, never raising: the supervisor's (`Supervisor.run_command`), whose
    `runner` makes its runner at the first command and gives None once it is closed; a bug
    on the way is logged and is the command's result."""
    try:
        commands = runner()
        if commands is None:
            return CommandResult(error=f"the supervisor of task {label} is closed")
        return commands.run(command, timeout_secs)
    except Exception as e:
        log_event(logger, logging.ERROR, "command_failed", task=label,
                  error=f"{type(e).__name__}: {e}", exc_info=True)
        return CommandResult(error=f"internal error: {type(e).__name__}: {e}")


class CommandRunner:
    def __init__(self, *, sandbox: Path, env: Mapping[str, str], task_marker: str,
                 reaper: Reaper, containment: Containment, stdin_fd: int,
                 run_as: RunAs | None = None, check_as: RunAs | None = None,
                 wrap: spawn.Wrap | None = None) -> None:
        """`run_as`: the user the task's processes run as (None: this process's), and the
        commands too, unless `check_as` is another (a root executor's
        `--nosetuid-health-checks`): they then run as `check_as` with its own HOME, USER and
        LOGNAME, and never the sandbox's `.thermos_profile`. The sandbox is the role's: root
        would run what its processes wrote in that profile, or read the `.curlrc` or
        `.gitconfig` they left in a HOME that is the sandbox."""
        other = check_as is not None and check_as.uid != (os.geteuid() if run_as is None else run_as.uid)
        self._sandbox = sandbox
        self._wrap = wrap  # a filesystem-image task's containerizer: it switches to the user
        self._run_as = check_as if other else run_as
        self._as_task = not other
        self._env = _own_env(env, check_as) if other else dict(env)
        self._task_marker = task_marker
        self._reaper = reaper
        self._containment = containment
        self._stdin_fd = stdin_fd
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._live: dict[int, spawn.CommandChild] = {}
        self._stopped = False  # `stop`: no command starts after it

    def live(self) -> list[spawn.CommandChild]:
        """Commands still running (for signal_all / task_pids)."""
        with self._lock:
            return list(self._live.values())

    def stop(self, within_secs: float) -> bool:
        """No command starts after this; each one running is SIGKILLed (its tree) and waited
        for (its reap, after its leftovers were killed) up to `within_secs`. True when none
        is left. A fork under way holds the lock until its command is registered: the stop
        waits for it and kills that command too; a fork after it sees `_stopped`."""
        with self._lock:
            self._stopped = True
            live = list(self._live.values())
        deadline = time.monotonic() + within_secs
        for child in live:
            self._kill(child)
        return all(child.done.wait(max(0.0, deadline - time.monotonic())) for child in live)

    def run(self, command: str, timeout_secs: float) -> CommandResult:
        if self._stopped:
            return CommandResult(error=STOPPING)
        marker = f"{self._task_marker}/.command/{next(self._seq)}"
        env = spawn.with_profile(dict(self._env), self._sandbox) if self._as_task else dict(self._env)
        env[spawn.RUN_MARKER] = marker
        try:
            read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        except OSError as e:  # no descriptor left (ulimit -n): a failed attempt, not a bug
            return CommandResult(error=f"no pipe for its output: {spawn.describe_os_error(e)}")
        try:
            try:
                child = self._fork(command, env, marker, write_fd)
            except OSError as e:
                where = earlyfork.failed_in(e)
                return CommandResult(error=f"cannot start /bin/bash for the health command"
                                           f"{where}: {spawn.describe_os_error(e)}")
            finally:
                os.close(write_fd)  # the command holds the only write end: EOF when it is gone
            if child is None:
                return CommandResult(error=STOPPING)
            # From the command's start (bash exec'd), not before the fork: the fork of this
            # process, and waiting for another thread's, are not the command's time. In a
            # container whose task fills its CPU quota they took 100-400 ms (docs/benchmarks.md).
            deadline = time.monotonic() + timeout_secs
            tail = _Tail(OUTPUT_TAIL_BYTES)
            finished = _follow(read_fd, child, tail, deadline, again_secs=timeout_secs)
            if not finished:
                self._kill(child)
                child.done.wait(KILL_WAIT_SECS)
            _drain(read_fd, tail)
            return _result(child, not finished, tail.text())
        finally:
            os.close(read_fd)

    def _fork(self, command: str, env: Mapping[str, str], marker: str,
              out_fd: int) -> spawn.CommandChild | None:
        """The command forked and registered; None once `stop` came (nothing forked). The lock
        is held from that look to the registration: a `stop` meanwhile waits, then sees it."""
        with self._reaper.forking(), self._lock:
            if self._stopped:
                return None
            popen = spawn.fork_exec(command, cwd=self._sandbox, env=env, stdin=self._stdin_fd,
                                    stdout=out_fd, stderr=out_fd, run_as=self._run_as, wrap=self._wrap)
            child = spawn.CommandChild(pid=popen.pid, popen=popen, marker=marker)
            self._live[child.pid] = child
            self._reaper.register(child.pid, Watcher(
                on_exit=lambda pid, exit_code: self._kill_leftovers(pid, child),
                on_reaped=lambda pid, status: self._exited(child, status)))
        return child

    def _kill_leftovers(self, pid: int, child: spawn.CommandChild) -> None:
        self._containment.kill_leftovers(pid, child.marker_entry)

    def _exited(self, child: spawn.CommandChild, status: int) -> None:
        with self._lock:
            self._live.pop(child.pid, None)
        child.reaped(status)

    def _kill(self, child: spawn.CommandChild) -> None:
        """Its tree now; what is left once it exits goes with its leftovers."""
        self._containment.signal([child], (child.marker_entry,), signal.SIGKILL, whole_task=False)


class _Tail:
    """The last `limit` bytes of what was added."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._data = bytearray()

    def add(self, data: bytes) -> None:
        self._data += data[-self._limit:]
        del self._data[:-self._limit]

    def text(self) -> str:
        return self._data.decode("utf-8", errors="replace")


def _open_pidfd(child: spawn.CommandChild) -> int:
    """A pidfd that becomes readable when the command's top process exits; -1 when there is
    none (no pidfd support, or reaped already). Only a wake-up: the pipe's EOF and the
    deadline end the wait too, so a pid reused after the reap costs time, never a result."""
    if child.done.is_set():
        return -1
    try:
        return os.pidfd_open(child.pid)
    except (OSError, AttributeError):
        return -1


def _own_env(env: Mapping[str, str], user: RunAs | None) -> dict[str, str]:
    """`env` as `user` (None: this process's) would have it: its home, its name."""
    uid = os.geteuid() if user is None else user.uid
    try:
        entry = pwd.getpwuid(uid)
        home, name = entry.pw_dir, entry.pw_name
    except KeyError:  # a uid no password entry names
        home, name = "/", str(uid)
    return {**env, "HOME": home, "USER": name, "LOGNAME": name}


def _follow(read_fd: int, child: spawn.CommandChild, tail: _Tail, deadline: float,
            again_secs: float = 0.0) -> bool:
    """Reads the command's output until its top process exits, the pipe reaches EOF or the
    deadline passes; then waits (until the deadline) for the reaper. True when reaped.

    Past the deadline it still looks once whether the top process has exited: a supervisor
    stopped (SIGSTOP, a debugger) past the deadline wakes with the command long done, and
    that command is waited for (REAP_WAIT_SECS at most: the reaper woke at the same moment),
    not killed and called timed out. One that wakes more than STALL_SECS past the deadline,
    reading or waiting for the reaper, was not running at it, and the command, paused with
    it (a VM paused, the task's cgroup frozen), may have its work still to do: it gets
    `again_secs` more, once, from then (`_Due`; as the HTTP check does)."""
    due = _Due(deadline, again_secs)
    pidfd = _open_pidfd(child)
    poller = select.poll()
    poller.register(read_fd, select.POLLIN)
    if pidfd >= 0:
        poller.register(pidfd, select.POLLIN)
    exited = False
    try:
        while True:
            left = due.left()
            ready = dict(poller.poll(max(0.0, left) * 1000))
            exited = pidfd >= 0 and bool(ready.get(pidfd))  # the reaper kills what is left
            if ready.get(read_fd):
                data = os.read(read_fd, READ_BYTES)
                if not data:
                    break  # every writer is gone (or the command sent its output elsewhere)
                tail.add(data)
            if exited or left <= 0:
                break
    finally:
        if pidfd >= 0:
            os.close(pidfd)
    while not child.done.wait(max(due.left(), REAP_WAIT_SECS if exited else 0.0)):
        if due.left() <= 0:  # past it, and not for a pause during the wait
            return False
    return True


class _Due:
    """A command's deadline, given `again_secs` more once, from the moment this process is
    found more than STALL_SECS past it (it was not running at it: stopped, paused, starved)."""

    def __init__(self, at: float, again_secs: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._at = at
        self._again_secs = again_secs
        self._clock = clock

    def left(self) -> float:
        """Seconds left (<= 0: passed), the deadline first moved on if this process was not
        running at it."""
        now = self._clock()
        if now - self._at > STALL_SECS and self._again_secs > 0:
            _resumed(now - self._at, self._again_secs)
            self._at, self._again_secs = now + self._again_secs, 0.0
        return self._at - now


def _resumed(late_secs: float, timeout_secs: float) -> None:
    """Logs, as the HTTP check's stall is, that a command's runner was not running at its
    deadline (it woke `late_secs` past it): the command gets `timeout_secs` from now."""
    log_event(logger, logging.INFO, "health_check_stalled", check="shell",
              timeout_secs=timeout_secs, late_secs=round(late_secs, 3),
              reason="this process was not running at the command's deadline (stopped, paused "
                     "or starved): the command gets its timeout again")


def _drain(read_fd: int, tail: _Tail) -> None:
    """Reads what is left in the pipe without blocking, at most DRAIN_LIMIT_BYTES."""
    os.set_blocking(read_fd, False)
    for _ in range(DRAIN_LIMIT_BYTES // READ_BYTES):
        try:
            data = os.read(read_fd, READ_BYTES)
        except BlockingIOError:
            return
        if not data:
            return
        tail.add(data)


def _result(child: spawn.CommandChild, timed_out: bool, output: str) -> CommandResult:
    exit_code = sig = None
    if child.status is not None:
        status = ExitStatus.from_wait_status(child.status)
        exit_code, sig = status.exit_code, status.signal
    return CommandResult(exit_code=exit_code, signal=sig, timed_out=timed_out, output=output)
