"""`stoker inspect CONFIG` runs the config's code in a child process, so that code that ends
the process running it (`os._exit(0)`, a signal to itself) cannot end `stoker inspect` with
a status that says the job is valid, or with no `stoker: error:` line (docs/contract.md §1,
§9). The child does the whole command (load, check, print) and, once it has, writes one
byte on a pipe; a child that ends without it is a config that ended its process, one error
line and exit 2, as under `stoker run` (`executor/local/planning.py`).

Apart only when this process is `stoker` itself: one thread, and its own stdout and stderr
(a test that calls `main()` with its streams captured runs the command here, as does one
with other threads, which a fork would not copy). A fork that fails runs it here too.
Ctrl-C reaches both: the child ends with 130, and the parent kills and reaps it if it is
still there; the child dies with the parent (PR_SET_PDEATHSIG), however that ends. A stop
signal waits while the fork is made (blocked, as `executor/local/planning.py` forks): one
that reached the child as it was forked was raised before it knew it was the child, which
went on as `stoker inspect` and ended without its answer (exit 2, `the process running the
config ended (exit status 130)`, blaming the config); it lands in the child's handling now.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn, TypeVar

from config import warnfilters
from config.errors import ConfigError, ConfigTimeout
from executor import codecache
from executor.cli.start import exit_status
from executor.local.planahead import Slow, collect
from executor.procs.earlyfork import die_with

_DONE = b"d"
_T = TypeVar("_T")
LOAD_TIMEOUT_SECS = 60.0  # as `stoker run`'s planning child (executor/local/planning.PLAN_TIMEOUT_SECS)
_in_child = False  # set in the child: only there is the config's load bounded
_STOPS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT}  # held while the fork is made


def run_apart(command: Callable[[], int], source: str) -> int:
    """`command()` (which prints its own errors and returns the exit status) in a child
    process; ConfigError when the child ended before `command` returned."""
    if not warnfilters.alone() or sys.stdout is not sys.__stdout__ or sys.stderr is not sys.__stderr__:
        return command()
    for stream in (sys.stdout, sys.stderr):
        _flush(stream)
    read_end, write_end = os.pipe()
    parent = os.getpid()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
    try:
        pid = os.fork()
    except OSError:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(read_end)
        os.close(write_end)
        return command()
    if pid == 0:
        os.close(read_end)
        _child(command, write_end, parent, mask)
    os.close(write_end)
    slow = Slow(f"{source}: the job is still not loaded", "loading", LOAD_TIMEOUT_SECS)
    answer, status = collect(pid, read_end, mask, slow)  # Ctrl-C: the child is not left behind
    if answer != _DONE:
        raise ConfigError(f"{source}: the process running the config ended ({_ended(status)}) before "
                          "the job was loaded: does its code call os._exit() or kill its own process?")
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def _child(command: Callable[[], int], write_end: int, parent: int, mask: set) -> NoReturn:
    code = 1
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a stop held since the fork lands here
        die_with(parent)  # a `stoker inspect` killed leaves no config running
        global _in_child
        _in_child = True
        code = command()
    except KeyboardInterrupt as interrupt:  # a Ctrl-C before the command's own handling
        code = exit_status(interrupt)
    except BaseException:  # a bug: its traceback, as in the parent
        traceback.print_exc()
    finally:
        codecache.save()  # merged into the file, as the parent's own save is
        for stream in (sys.stdout, sys.stderr):
            _flush(stream)
        try:
            os.write(write_end, _DONE)
        finally:
            os._exit(code)


def load_bounded(source: str, load: Callable[[], _T]) -> _T:
    """`load()`, the config's load, in the child stopped after LOAD_TIMEOUT_SECS as `stoker
    run`'s planning is: `while True: pass` ran `stoker inspect` for ever. The loader names the
    line that was running; a file that never ends (a FIFO) has none to name. (A plain function,
    not a context manager: mutmut mutates no decorated function.)"""
    if not _in_child:
        return load()
    from executor.local.planning import bounded  # only for a config: `--task-info` loads none

    try:
        with bounded(LOAD_TIMEOUT_SECS):
            return load()
    except ConfigTimeout:
        raise ConfigError(f"{source}: the job was still not loaded after {LOAD_TIMEOUT_SECS:g} s (a config "
                          "file that never ends, such as a FIFO nobody writes to?), so loading was stopped") from None


def _flush(stream) -> None:
    with contextlib.suppress(OSError, ValueError, AttributeError):  # a reader gone, or no such stream
        stream.flush()


def _ended(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
