"""The watchdog: a tiny /bin/sh process that kills the task if the Stoker process dies.

Owns: how the shell script (`watchdogsh.py`) is started, and keeping it (`WatchdogKeeper`: started with the
supervisor, restarted if it dies while the task lives, let go at close and waited for).
One watchdog per Supervisor, in its own session,
with a minimal environment WITHOUT the task markers (so it never matches itself), ignoring
SIGINT/SIGTERM/SIGHUP, and outside the task's cgroup (it is started before the Stoker process
moves in; one started later moves itself back out first). Its stdin is the read end of a
pipe whose write end only the supervisor holds (non-inheritable, and every task process is
started with close_fds). The script blocks reading that pipe; EOF means the supervisor died
(even by SIGKILL) or closed it. (The one line `retire` ends it at once, killing nothing: how
the watchdog of an early start, `executor/cli/launch.py`, steps down once the supervisor's
own runs. The line `cgroup HOW DIR`, `announce`, names the task's cgroup: first with HOW
empty, before the supervisor makes it (the supervisor's watchdog starts first, so that no
moment exists when the cgroup is made and no watchdog knows it: at EOF it then only removes
it, if empty, as nothing entered it yet), then with how to kill it once made, or with both
empty when it was not made: a directory someone else made first is never the task's.) At EOF:

1. With a task cgroup (arguments 2 and 3: its directory and how to kill it), it kills every
   member through the cgroup: `cgroup.kill` (v2), or freeze, SIGKILL the members listed
   in it and in the cgroups below it, thaw (`cgroup.freeze`; v1: each `freezer.state` of the subtree), and
   removes the cgroup (and those a member made below it, bottom up) once it is empty: once
   `cgroup.events` says `populated 0` (v1: no pid listed there or below), looked at with shell builtins
   10 ms, then 100 ms apart, for 10 s at most (a SIGKILLed member leaves it only once it has
   exited: 0.5 s to free 8 GB, and a request a FUSE server holds unanswered keeps it in D
   state until answered; a shell has no poll() to wait for the file's change itself). Nothing forked meanwhile escapes: the kernel kills it too
   (`cgroup.kill`) or it cannot fork while frozen. On a normal close the supervisor has
   already removed the cgroup, and this step finds nothing.
2. Then, repeatedly, it lists every process whose /proc/PID/environ holds the entry
   `STOKER_TASK_MARKER=<marker>` (one `grep -lzxF` per pass), SIGSTOPs them all (so none can
   fork away), then their children level by level (/proc/PID/task/TID/children: a stopped
   parent's children cannot change; this reaches a daemon that cleared its environment but
   whose parent is still a marked process), SIGKILLs them all, and stops after two passes in
   a row that find none (at most 40 passes: a process read mid-exec shows no environment, so
   one empty pass may have missed it). This catches what left the cgroup (root can), or
   everything it can when there is no cgroup. Zombies have an empty environ, so killed
   processes stop matching at once.
3. In the same passes, the processes the supervisor *held* it (`WatchdogKeeper.hold`: the
   task's orphans and daemons, `handover.py`, which the marker scan may not see), each by
   pid and start time: one whose `/proc/PID/stat` shows another start time (a reused pid),
   a zombie, or one it may not signal (a setuid program's, that took another user's id), is
   left alone; the others are SIGSTOPped, checked again (one that changed
   meanwhile is SIGCONTed and left), and killed with their descendants as above.

The held list travels on a second pipe, read only at EOF, so it costs the watchdog no
wakeup: the supervisor writes the whole list as one line, then reads back (it keeps the
read end too) the line it replaces, so the pipe holds one list (two, the union, if it dies
in between). The list is capped at half the pipe's capacity, so a write never blocks or
splits; what does not fit is logged once and not held.

A shell and one grep per pass cost no Python interpreter: the watchdog idles as one
blocked `sh`. It never reads or writes anything else. Exit status: 0 when the task is gone,
1 when processes were still found after the last pass, or its cgroup was not empty in 10 s. The keeper logs its start at DEBUG,
and at ERROR a watchdog that could not start, died while the task lives, or did not exit
(at WARNING, `watchdog_left`, one this process could not wait for: `stoker executor` must exit
within the agent's shutdown grace, and the watchdog outlives it).
One a task's process stops (`kill -STOP`, as Stoker's own user) is continued as soon as it
stops: the reaper hears the stop (`waitid` with `WSTOPPED`), and the keeper sends SIGCONT
and logs a WARNING line (`watchdog_continued`: the 1st, 10th, 100th... time). One that could not start (no process to be had: a full pids cgroup, `ulimit -u`) is tried
again each time the task is next idle (`ensure`), with no further line until it starts:
then one INFO line says after how many tries.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from executor.events import ExitStatus
from executor.logs import log_event
from executor.procs.earlyfork import POPEN_DEFAULTS, unnamed
from executor.procs.exitby import ExitBy
from executor.procs.reaper import Reaper, Watcher
from executor.procs.watchdogsh import CGROUP_SECS, WATCHDOG_COMMAND, WATCHDOG_ENV, WATCHDOG_NAME

logger = logging.getLogger(__name__)

WATCHDOG_EXIT_SECS = 1.0  # a close waits this long for the watchdog it let go (`wait_gone`)


@attrs.define
class Watchdog:
    pid: int
    write_fd: int  # closing it (or our death) wakes the watchdog
    list_fd: int = -1  # the held list's write end (non-blocking)
    drain_fd: int = -1  # its read end, kept to read back the list a new one replaces
    room: int = 0  # the longest list that fits: half the pipe's capacity
    listed: int = 0  # the bytes in the list's pipe now
    popen: Any = None  # `_popen`'s, referenced until reaped (None: started by posix_spawn)

    def hand(self, line: bytes) -> bool:
        """Make `line` (at most `room` bytes) the list it holds; False when it could not."""
        if self.list_fd < 0:
            return False
        try:
            written = os.write(self.list_fd, line)
            self.listed += written
            old = self.listed - written
            while old > 0:  # the lists before it, first in the pipe
                taken = len(os.read(self.drain_fd, old))
                old, self.listed = old - taken, self.listed - taken
        except OSError:
            return False
        return written == len(line)

    def close_pipe(self) -> None:
        """Close the list's ends first: the watchdog reads the list to its end at EOF."""
        for name in ("list_fd", "drain_fd", "write_fd"):
            fd = getattr(self, name)
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(self, name, -1)


def start_watchdog(marker: str, cgroup: str = "", how: str = "", home: str = "") -> Watchdog:
    """Fork the watchdog (call inside `Reaper.forking()` and register its pid). `cgroup` and
    `how`: the task's cgroup and how to kill it (`kill`, `freeze`, `freezer`); `home`: the
    cgroup it must move itself to first (when it is born inside the task's). Raises OSError."""
    read_fd, write_fd = os.pipe()  # both non-inheritable; the spawn dup2s read_fd onto stdin
    try:
        list_read, list_fd = os.pipe()  # the held list: list_read passed on, and kept
    except BaseException:
        _close(read_fd, write_fd)
        raise
    try:
        pid, popen = _start([marker, cgroup, how, home], read_fd, list_read)
    except BaseException:
        _close(write_fd, list_read, list_fd)
        raise
    finally:
        os.close(read_fd)
    os.set_blocking(list_fd, False)
    os.set_blocking(list_read, False)  # the watchdog reopens it (/proc/self/fd): blocking there
    room = fcntl.fcntl(list_fd, fcntl.F_GETPIPE_SZ) // 2
    return Watchdog(pid=pid, write_fd=write_fd, list_fd=list_fd, drain_fd=list_read, room=room, popen=popen)


def _start(args: list[str], stdin: int, list_read: int) -> tuple[int, Any]:
    """The watchdog's pid, and its Popen (None: `_spawn`'s). Raises OSError, Popen's too: a
    function of its own, so that the caller's cleanup sees Popen's error (raised inside the
    handler of posix_spawn's NotImplementedError, it passed a clause beside that handler:
    the pipes were left open, 3 descriptors at every try)."""
    try:
        return _spawn(args, stdin, list_read), None
    except NotImplementedError:  # this Python's posix_spawn cannot start a session
        popen = _popen(args, stdin, list_read)
        return popen.pid, popen


def _spawn(args: list[str], stdin: int, list_read: int) -> int:
    """`/bin/sh -c WATCHDOG_COMMAND stoker-watchdog ARGS N` by posix_spawn, as Popen started
    it (`_popen`) without loading `subprocess` (0.1 MiB of every supervisor): `stdin` its
    stdin, stdout and stderr /dev/null, `list_read` its descriptor N (3; 4 when `list_read`
    is 3 here: a dup2 onto itself leaves it close-on-exec in C libraries before glibc 2.29),
    in a session of its own, SIGPIPE and SIGXFSZ at their defaults (Popen's
    `restore_signals`), and no other descriptor: every one this process opens is
    close-on-exec (PEP 446; those it inherited are made so, `earlyfork.shut_inherited`),
    as Popen's `close_fds` closed them. posix_spawn has no working directory of its own: the
    script moves to / itself, first (`watchdogsh`). Raises OSError (naming no file for a
    fork refused, as Popen's: `earlyfork.unnamed`), and NotImplementedError where this
    Python's posix_spawn cannot start a session."""
    target = 4 if list_read == 3 else 3
    actions = [(os.POSIX_SPAWN_DUP2, stdin, 0),
               (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
               (os.POSIX_SPAWN_DUP2, 1, 2),
               (os.POSIX_SPAWN_DUP2, list_read, target)]
    try:
        return os.posix_spawn("/bin/sh", ["/bin/sh", "-c", WATCHDOG_COMMAND, WATCHDOG_NAME, *args, str(target)],
                              WATCHDOG_ENV, file_actions=actions, setsid=True, setsigdef=POPEN_DEFAULTS)
    except OSError as e:  # a fork refused names no file (`watchdog_failed` blamed /bin/sh)
        raise unnamed(e) from None


def _popen(args: list[str], stdin: int, list_read: int) -> Any:
    """`_spawn`'s watchdog by Popen (`subprocess` loaded then alone). Raises OSError."""
    import subprocess

    return subprocess.Popen(["/bin/sh", "-c", WATCHDOG_COMMAND, WATCHDOG_NAME, *args, str(list_read)],
                            stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/",
                            env=WATCHDOG_ENV, close_fds=True, pass_fds=(list_read,), start_new_session=True)


def _signame(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _close(*fds: int) -> None:
    for fd in fds:
        os.close(fd)


def held_line(held: Mapping[int, int], room: int) -> tuple[bytes, int]:
    """The list line of `held` (pid → start time) in at most `room` bytes, and how many
    processes did not fit."""
    words: list[str] = []
    size = 1
    for pid, start in sorted(held.items()):
        word = f"{pid}:{start}"
        if size + len(word) + 1 > room:
            return (" ".join(words) + "\n").encode(), len(held) - len(words)
        words.append(word)
        size += len(word) + 1
    return (" ".join(words) + "\n").encode(), 0


class WatchdogKeeper:
    """One supervisor's watchdog, kept while the task lives. `cgroup`: the task's cgroup
    arguments for `start_watchdog` at each start; `keep`: whether the supervisor still runs
    the task (asked on the reaper thread when the watchdog exits: if not, it was let go)."""

    def __init__(self, *, reaper: Reaper, marker: str, label: str,
                 cgroup: Callable[[], tuple[str, str, str]], keep: Callable[[], bool],
                 restarted: Callable[[int], None] = lambda pid: None, exit_by: ExitBy | None = None) -> None:
        self._reaper = reaper
        self._exit_by = exit_by if exit_by is not None else ExitBy()  # `wait_gone` ends by it
        self._restarted = restarted  # a new one's pid, after one died (on the reaper's thread)
        self._marker = marker
        self._label = label
        self._cgroup = cgroup
        self._keep = keep
        self._watchdog: Watchdog | None = None
        self._gone = threading.Event()
        # the reaper thread (`_exited`, `hold`) and the owner's (`ensure`, `hold`, `let_go`)
        self._starting = threading.Lock()
        self._failed = 0  # starts that failed since one last succeeded
        self._held: dict[int, int] = {}  # pid → start time: killed too when we die
        self._announced = ("", "")  # the task's cgroup and how to kill it (`announce`)
        self._unheld = 0  # how many the last list left out (logged once when it starts to)
        self._continued = 0  # how many times a stopped watchdog was continued

    @property
    def pid(self) -> int | None:
        return self._watchdog.pid if self._watchdog is not None else None

    def running(self) -> int | None:
        """Its pid while it runs (not reaped), None when none does: it could not start, or
        it exited (and was not started again: the task closing)."""
        dog = self._watchdog
        if dog is None:
            return None
        with self._reaper.lock:
            return dog.pid if self._reaper.is_registered(dog.pid) else None

    def start(self) -> None:
        """Fork the watchdog; one that cannot start is logged (once until one starts), and the
        task runs unprotected until `ensure` starts one."""
        with self._starting:
            try:
                with self._reaper.forking():
                    dog = start_watchdog(self._marker, *self._cgroup())
                    self._reaper.register(dog.pid, Watcher(on_reaped=self._exited, on_stopped=self._stopped))
            except OSError as e:
                self._watchdog = None
                self._failed += 1
                if self._failed == 1:
                    log_event(logger, logging.ERROR, "watchdog_failed", task=self._label,
                              error=f"{type(e).__name__}: {e}",
                              consequence="the task is not protected against the supervisor's death "
                                          "until it starts; tried again whenever the task is idle")
                return
            self._watchdog, failed, self._failed = dog, self._failed, 0
            if self._announced[0]:
                self._tell()
            if self._held:
                self._hand()
        if failed:
            log_event(logger, logging.INFO, "watchdog_started", task=self._label, pid=dog.pid,
                      reason=f"after {failed} failed {'start' if failed == 1 else 'starts'}")
        else:
            log_event(logger, logging.DEBUG, "watchdog_started", task=self._label, pid=dog.pid)

    def announce(self, directory: str, how: str) -> None:
        """Name the task's cgroup `directory` to the watchdog (and to one started later):
        with `how` "" before it is made (should this process die as it makes it, the watchdog
        removes it if empty), then how to kill it once made; ("", ""): none was made."""
        with self._starting:
            self._announced = (directory, how)
            self._tell()

    def _tell(self) -> None:
        """Hold `_starting`. One that died meanwhile is restarted, and told, by `start`."""
        dog, (directory, how) = self._watchdog, self._announced
        if dog is not None and dog.write_fd >= 0 and "\n" not in directory:
            with contextlib.suppress(OSError):
                os.write(dog.write_fd, f"cgroup {how} {directory}\n".encode())

    def hold(self, held: Mapping[int, int]) -> None:
        """Make `held` (pid → start time) what the watchdog kills besides the task's marker
        and cgroup, in place of what it held; a watchdog started later gets it too."""
        with self._starting:
            self._held = dict(held)
            self._hand()

    def _hand(self) -> None:
        """Hold `_starting`."""
        dog = self._watchdog
        if dog is None or dog.list_fd < 0:
            return
        line, unheld = held_line(self._held, dog.room)
        if not dog.hand(line):
            unheld = len(self._held)
        if unheld and not self._unheld:
            log_event(logger, logging.ERROR, "watchdog_list_full", task=self._label, pid=dog.pid,
                      reason=f"{unheld} of the {len(self._held)} processes to hold did not fit in "
                             f"its list ({dog.room} bytes)",
                      consequence="those survive the supervisor's death unless their marker is seen")
        self._unheld = unheld
        log_event(logger, logging.DEBUG, "watchdog_holds", task=self._label, pid=dog.pid,
                  pids=" ".join(str(p) for p in sorted(self._held)) or "none")

    def ensure(self) -> None:
        """Start the watchdog again if it could not start, while the task lives."""
        if self._failed and self._keep():
            self.start()

    def let_go(self) -> None:
        """Close its pipe: it makes two passes, finds nothing, exits. Not during a hand-over
        (`hold`, on the reaper thread as orphans are reaped): the write would go to a closed
        descriptor, or to whatever file got its number since. And SIGCONT: one a task's
        process stopped (`kill -STOP`, as Stoker's own user) would never read the end of its
        pipe, and would stay behind, stopped, once this process has exited."""
        with self._starting:
            if self._watchdog is not None:
                self._watchdog.close_pipe()
                with self._reaper.lock:  # unreaped while registered: the pid is still its
                    if self._reaper.is_registered(self._watchdog.pid):
                        with contextlib.suppress(OSError):
                            os.kill(self._watchdog.pid, signal.SIGCONT)

    def wait_gone(self, within_secs: float = WATCHDOG_EXIT_SECS, cut: bool = False,
                  busy: bool = False) -> None:
        """Wait for a watchdog let go to exit; one that does not is logged. `cut`: the close
        left the task's cgroup to it at its deadline, which it kills and removes first, as
        long as its own bound for that (`CGROUP_SECS`, 10 s): waited for that much longer.
        `busy`: the close left it the cgroup with a member that would not die (D state):
        not waited for longer (no wait makes it die sooner), and one not gone then is still
        at work within that bound, not stuck: it goes on alone (a WARNING line).
        The wait ends sooner at this process's exit time (`exitby.ExitBy`: `stoker executor`
        after SHUTDOWN, the agent's shutdown grace, set before the wait or during it): the
        watchdog, which outlives this process, goes on alone (one WARNING line)."""
        dog = self._watchdog
        if dog is None:
            return
        whole, began = within_secs + (CGROUP_SECS if cut else 0), time.monotonic()
        if self._exit_by.wait(self._gone.is_set, whole):
            return
        if busy or ((exit_by := self._exit_by()) is not None and exit_by < began + whole):
            finish = f": it kills what is left of the task's cgroup {self._announced[0]} and removes it"
            log_event(logger, logging.WARNING, "watchdog_left", task=self._label, pid=dog.pid,
                      reason=self._why_left(busy, time.monotonic() - began),
                      consequence="it goes on alone, outliving this process" + (finish if cut or busy else ""))
            return
        log_event(logger, logging.ERROR, "watchdog_stuck", task=self._label,
                  pid=dog.pid, reason=f"it did not exit within {whole} s of close")

    @staticmethod
    def _why_left(busy: bool, waited: float) -> str:
        if busy:
            return (f"the task's cgroup holds a member that would not die (in D state), which no wait "
                    f"makes die sooner; the watchdog removes it once it can, within its own {CGROUP_SECS} s")
        return f"this process must exit within the grace it was given (the watchdog was waited for {waited:.1f} s of it)"

    def _stopped(self, pid: int, signum: int) -> None:
        """On the reaper's thread, as the watchdog stops (a task's process of Stoker's own
        user sent it SIGSTOP): continued at once, since a stopped watchdog would not act on the
        supervisor's death. The pid is still the watchdog's: the reaper has not reaped it.
        Logged the 1st, 10th, 100th... time: a process that stops it in a loop would
        otherwise write a line for each stop, without end."""
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGCONT)
        self._continued += 1  # (on the reaper thread alone)
        if str(self._continued).rstrip("0") == "1":
            log_event(logger, logging.WARNING, "watchdog_continued", task=self._label, pid=pid,
                      times=self._continued,
                      reason=f"it was stopped ({_signame(signum)}), by a process of the task's user")

    def _exited(self, pid: int, status: int) -> None:
        if self._watchdog is not None and self._watchdog.pid == pid and self._watchdog.popen is not None:
            self._watchdog.popen.returncode = os.waitstatus_to_exitcode(status)  # subprocess must never wait on it
        if not self._keep():
            self._gone.set()
            self._exit_by.wake()  # a `wait_gone` looks again
            return
        log_event(logger, logging.ERROR, "watchdog_exited", task=self._label, pid=pid,
                  status=ExitStatus.from_wait_status(status).describe(), action="restarting it")
        with self._starting:
            if self._watchdog is not None:
                self._watchdog.close_pipe()
        self.start()
        if not self._failed and self._watchdog is not None:
            self._restarted(self._watchdog.pid)
