"""Keeping the agent's token out of reach of the task's processes.

`stoker executor` runs its task's processes as its own user, and a process may read
/proc/PID/environ (and /proc/PID/task/TID/environ) of any process of its user that is
dumpable: the executor's among them, whose initial environment block still held
MESOS_EXECUTOR_AUTHENTICATION_TOKEN after Python had copied it into `os.environ`. With the
token, a task process could post status updates that the agent accepts as the executor's.

`hide_early(environ)` is the first thing `stoker executor`'s entry point does
(`executor/cli/start.py`, before the code cache, attrs and the command's modules load: from
`executor.cli.main`, after them, the token stayed readable 2 to 5 times longer; docs/mesos.md
§6 has the figures): it keeps the values it takes
(`taken`, for the settings) and what it achieved (`early`), and runs `hide_secrets`:

1. `prctl(PR_SET_DUMPABLE, 0)`: /proc/PID/environ, /proc/PID/mem and ptrace of the executor
   and of each of its threads are refused to every process without CAP_SYS_PTRACE, i.e. to
   every process of a non-root user. A child gets a dumpable memory image again when it
   execs, so the task's processes, shell health commands and the watchdog are unaffected (and
   the executor's /proc scans of them still work). No core dump of the executor is written
   either (it would hold the token).
2. (done first) Each `NAME=value` entry of `names` is removed from the C `environ` array and
   `os.environ` (no child started with the inherited environment gets it) and its bytes in
   the process's environment block are overwritten with NULs: /proc/PID/environ shows that
   memory, even to root, so the token is gone from it for every reader.

What it cannot do: a process with CAP_SYS_PTRACE (a task running as root) may still read
the executor's memory (/proc/PID/mem, ptrace) and find the token there; and the executor's
environment is readable during Python's start-up, before this runs (the interpreter's own
start and `executor.cli.start`'s import: docs/mesos.md §6 has the figures; before any of its
task's processes exists, but another process of the same user may read it then).

Never raises: returns what it managed (`Hidden`) for the caller to log. Linux, through
ctypes (glibc or musl). The standard library only (no attrs: it runs before the code cache
that serves attrs is installed).
"""
from __future__ import annotations

import ctypes
import os

TYPE_CHECKING = False  # (not `typing`'s: nothing loads before the secrets are hidden but what hides them)
if TYPE_CHECKING:  # on 3.12+ collections.abc loads `collections` and 5 modules of its own
    from collections.abc import Iterable, MutableMapping

# config.settings.SECRET_VARIABLES (config loads attrs; tests/unit/test_hardening.py keeps the two equal)
SECRET_VARIABLES = ("MESOS_EXECUTOR_AUTHENTICATION_TOKEN",)
taken: dict[str, str] = {}  # what `hide_early` took out of the environment, for the settings
early: Hidden | None = None  # what `hide_early` achieved; None when it did not run

_PR_GET_DUMPABLE = 3
_PR_SET_DUMPABLE = 4


class Hidden:
    """What `hide_secrets` achieved."""

    __slots__ = ("dumpable", "erased", "problems")

    def __init__(self, dumpable: bool | None, erased: int, problems: tuple[str, ...] = ()) -> None:
        self.dumpable = dumpable  # the process's flag afterwards (None: unknown); False is the goal
        self.erased = erased  # environment entries overwritten in memory
        self.problems = problems  # what failed, in words


def hide_early(environ: MutableMapping[str, str]) -> Hidden:
    """`hide_secrets` of SECRET_VARIABLES, first thing: their values kept in `taken`, the
    outcome in `early` (logged once logging is set up), and returned."""
    global early
    taken.update((name, environ[name]) for name in SECRET_VARIABLES if name in environ)
    early = hide_secrets(environ, SECRET_VARIABLES)
    return early


def hide_secrets(environ: MutableMapping[str, str], names: Iterable[str]) -> Hidden:
    """Make this process undumpable and erase the variables `names` from its environment
    (`environ` is normally `os.environ`); see the module docstring."""
    names = tuple(names)
    problems: list[str] = []
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError as e:
        for name in names:
            environ.pop(name, None)
        return Hidden(dumpable=None, erased=0, problems=(f"cannot load the C library: {e}",))
    erased = _erase(libc, environ, names, problems)
    dumpable = _undumpable(libc, problems)
    return Hidden(dumpable=dumpable, erased=erased, problems=tuple(problems))


def _undumpable(libc: ctypes.CDLL, problems: list[str]) -> bool | None:
    try:
        if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            problems.append(f"prctl(PR_SET_DUMPABLE, 0) failed: {os.strerror(ctypes.get_errno())}")
        return bool(libc.prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0))
    except AttributeError:
        problems.append("the C library has no prctl")
        return None


def _erase(libc: ctypes.CDLL, environ: MutableMapping[str, str], names: tuple[str, ...],
           problems: list[str]) -> int:
    prefixes = tuple(f"{name}=".encode() for name in names)
    found: list[tuple[int, int]] = []  # (address, length) of each entry to overwrite
    try:
        envp = ctypes.POINTER(ctypes.c_void_p).in_dll(libc, "environ")
        i = 0
        while envp[i]:
            address = envp[i]
            entry = ctypes.string_at(address)
            if entry.startswith(prefixes):
                found.append((address, len(entry)))
            i += 1
    except (ValueError, AttributeError) as e:
        problems.append(f"cannot read the C environment: {e}")
    for name in names:
        environ.pop(name, None)  # os.environ: also unsetenv(), out of the C array
        try:
            os.unsetenv(name)
        except OSError:
            pass
    # The entries are out of every array now. Only the bytes inside the environment block
    # the kernel shows as /proc/PID/environ are overwritten: that memory is never freed (an
    # entry set later may live in memory libc frees on unsetenv, and is not shown there).
    block = _environment_block(problems)
    erased = 0
    for address, length in found:
        if block is not None and block[0] <= address and address + length <= block[1]:
            ctypes.memset(address, 0, length)
            erased += 1
    return erased


def _environment_block(problems: list[str]) -> tuple[int, int] | None:
    """(env_start, env_end) of this process, from /proc/self/stat (fields 50 and 51)."""
    try:
        with open("/proc/self/stat", "rb") as f:
            data = f.read()
        fields = data[data.rfind(b")") + 2 :].split()  # fields[0] is field 3, the state
        return int(fields[47]), int(fields[48])
    except (OSError, ValueError, IndexError) as e:
        problems.append(f"cannot find the environment block in /proc/self/stat: {e}")
        return None
