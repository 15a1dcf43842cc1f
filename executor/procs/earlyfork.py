"""Starting runs before the supervisor is loaded (the early start), with the standard
library only: the subreaper flag, a run and a watchdog started by `posix_spawn`, and the
record of each run for the supervisor that adopts it; and `die_with`, for the child that
plans a first run meanwhile (and `stoker inspect`'s).

`executor/cli/launch.py` uses these in the first milliseconds of a `stoker run` whose plan
was kept (README "Start-up"); the supervisor (`supervisor.py`) adopts the runs, and the
watchdog's keeper replaces the early watchdog (`retire`). They start processes exactly as
`spawn.fork_exec` and `watchdog.start_watchdog` do: `/bin/bash -c CMDLINE` (or the
watchdog's `/bin/sh`) in a session of its own, stdin /dev/null, stdout and stderr the run's
log files, SIGPIPE and SIGXFSZ back to their defaults (Python ignores them), and no
descriptor but those three: every descriptor this process opened is close-on-exec, and one
it inherited open for exec is closed in the child (`inherited_fds`).

A run also gets Stoker's stop signals (`STOP_SIGNALS`) at their defaults: the supervisor
handles them, so the runs it forks get them so (a handled signal is reset by exec) even when
Stoker was started with them ignored (a background job of a script ignores SIGINT); an
ignored one would stay ignored across exec. Any other signal ignored when Stoker started
stays ignored, for its runs as for these. One difference is glibc's: its posix_spawn leaves
the child's two signals it reserves for itself (32 and 33, below SIGRTMIN) ignored, and
`setsigdef` cannot name them. Programs do not use those two (glibc's and musl's threads,
and Go's runtime, install their own handlers for them); forking instead would cost each
early run some milliseconds.

`posix_spawn` has no working directory of its own: the caller moves this process into the
sandbox around the runs' spawns, and `spawn_watchdog` into `/` around its own. Raises
OSError; no logging.
"""
from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # CPython's: `signal` adds enums (1.3 ms) for nothing here
import os

from executor.procs.runenv import exec_text
from executor.procs.watchdogsh import WATCHDOG_COMMAND, WATCHDOG_ENV, WATCHDOG_NAME

TYPE_CHECKING = False  # not `typing`'s: the early start's modules load neither typing nor collections
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_PDEATHSIG = 1
_DEFAULT_SIGNALS = (_signal.SIGPIPE, _signal.SIGXFSZ)  # what Popen's restore_signals resets
# What `stoker run` handles (`executor/local/run.py`, `_relay_signals`; SIGHUP only when it
# is not ignored, so an ignored one stays ignored for every run alike).
STOP_SIGNALS = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGTSTP)


class EarlyRun:
    """One run the early start forked: what the supervisor checks before adopting it. Its
    environment is `runenv.run_env(task_env, marker, process, run)`; `task_env` is one dict
    shared by the runs started together (a copy each would be garbage left under the
    supervisor's modules: 0.4 MiB for 100 runs)."""

    __slots__ = ("process", "run", "pid", "cmdline", "task_env", "oom_kills")

    def __init__(self, process: str, run: int, pid: int, cmdline: str, task_env: dict[str, str],
                 oom_kills: int | None = None) -> None:
        self.oom_kills = oom_kills  # its memory cgroup's OOM kills as it was forked (`oomcount.py`)
        self.process = process
        self.run = run
        self.pid = pid
        self.cmdline = cmdline
        self.task_env = task_env


def set_subreaper() -> None:
    """Make this process a child subreaper (prctl). Raises OSError."""
    prctl, get_errno = _prctl()
    if prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = get_errno()
        raise OSError(err, os.strerror(err))


def die_with(parent: int) -> None:
    """Make this process get SIGKILL when its parent ends, and end it now when `parent`
    already ended (it was re-parented before the call). Where prctl is denied (a container
    runtime's seccomp profile), a thread ends it instead, within 0.1 s of its parent's end."""
    try:
        prctl, get_errno = _prctl()
        if prctl(_PR_SET_PDEATHSIG, _signal.SIGKILL, 0, 0, 0) != 0:
            err = get_errno()
            raise OSError(err, os.strerror(err))
    except OSError:
        _watch_parent(parent)
    if os.getppid() != parent:
        os._exit(1)


def _watch_parent(parent: int) -> None:
    """A thread that ends this process (status 1) once its parent pid is no longer `parent`."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.1)
        os._exit(1)

    threading.Thread(target=watch, name="stoker-parent-watch", daemon=True).start()


def _prctl() -> tuple[Callable[..., int], Callable[[], int]]:
    """The C library's prctl and errno. Through `_ctypes`, the C module under `ctypes`:
    `ctypes` itself costs `stoker run` 4 ms before its first fork; the few lines of it
    needed here are these (and `ctypes` where they do not work). Raises OSError."""
    try:
        import _ctypes

        class _Int(_ctypes._SimpleCData):
            _type_ = "i"

        class _Function(_ctypes.CFuncPtr):
            _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
            _restype_ = _Int

        address = _ctypes.dlsym(_ctypes.dlopen(None, os.RTLD_NOW), "prctl")  # type: ignore[arg-type]
        return _Function(address), _ctypes.get_errno
    except (ImportError, AttributeError, TypeError):
        return _prctl_by_ctypes()
    except OSError as exc:  # dlsym: no prctl in this C library
        raise OSError(f"prctl: {exc}") from None


def _prctl_by_ctypes() -> tuple[Callable[..., int], Callable[[], int]]:
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl, ctypes.get_errno
    except AttributeError as exc:
        raise OSError(f"prctl: {exc}") from None


def inherited_fds() -> list[int]:
    """This process's descriptors from 3 up that an exec would pass on (inherited open for
    exec from whoever started it): each child closes them."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd < 3:
            continue
        try:
            if os.get_inheritable(fd):
                found.append(fd)
        except OSError:
            continue  # the listing's own descriptor, closed by now
    return found


def spawn_run(cmdline: str, env: Mapping[str, str], *, stdin: int, stdout: int, stderr: int,
              close: list[int]) -> int:
    """`/bin/bash -c CMDLINE` in a session of its own, in this process's working directory
    (the caller's `os.fchdir` into the sandbox, once for the runs started together). Its pid."""
    actions = [(os.POSIX_SPAWN_DUP2, stdin, 0), (os.POSIX_SPAWN_DUP2, stdout, 1),
               (os.POSIX_SPAWN_DUP2, stderr, 2)] + [(os.POSIX_SPAWN_CLOSE, fd) for fd in close]
    return os.posix_spawn("/bin/bash", ["/bin/bash", "-c", exec_text(cmdline)], env, file_actions=actions,
                          setsid=True, setsigdef=_DEFAULT_SIGNALS + STOP_SIGNALS)


def spawn_watchdog(marker: str, *, root_fd: int, home_fd: int, close: list[int]) -> tuple[int, int]:
    """The watchdog of `marker`'s task, without a cgroup (the supervisor's own watchdog,
    started once the cgroup exists, takes over): its pid and the write end of its pipe."""
    read_fd, write_fd = os.pipe()  # both close-on-exec: the child gets read_fd as its stdin
    actions = [(os.POSIX_SPAWN_DUP2, read_fd, 0),
               (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
               (os.POSIX_SPAWN_DUP2, 1, 2)] + [(os.POSIX_SPAWN_CLOSE, fd) for fd in close]
    os.fchdir(root_fd)
    try:
        pid = os.posix_spawn("/bin/sh", ["/bin/sh", "-c", WATCHDOG_COMMAND, WATCHDOG_NAME, marker,
                                         "", "", ""], WATCHDOG_ENV, file_actions=actions,
                             setsid=True, setsigdef=_DEFAULT_SIGNALS)
    except BaseException:
        os.close(write_fd)
        raise
    finally:
        os.fchdir(home_fd)
        os.close(read_fd)
    return pid, write_fd


def retire(write_fd: int) -> None:
    """Tell a watchdog to end without killing anything, and close its pipe."""
    try:
        os.write(write_fd, b"retire\n")
    finally:
        os.close(write_fd)
