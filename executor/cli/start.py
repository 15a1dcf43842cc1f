"""`stoker`'s entry point, the console script's and `python -m executor`'s. For `stoker run`
it first tries the early start (`executor/cli/launch.py`: a kept plan's first processes
started before anything else of Stoker's is loaded); with no kept plan, it forks the child
that plans a first run once the code cache is in, before `executor.cli.main` is imported
(`launchfirst.fork_ahead`: attrs, `typing` and the plan's modules loaded once, for
both; `executor.cli.main`'s own, 3-10 ms, the child never needs). Between the two it installs
the attrs code cache for the command about to run (`executor.codecache`: `run`, `executor` and
`observe` have a file each, the short commands share one) before any of Stoker's modules
defines a class, then runs `executor.cli.main.run`, which saves the cache before the
process ends.

First of all it makes the standard streams safe to use (`_standard_streams`): a descriptor
0, 1 or 2 that was closed (`stoker ps >&-`) is /dev/null, so that no file Stoker opens
later takes its number and a child that writes to it (a process whose logger is the
console) writes nowhere instead of failing with EBADF; and a stream whose encoding cannot
write a character (a legacy 8-bit locale, or a C locale with Python's UTF-8 mode off, and
Stoker's `→`) writes it out (`\u2192`) instead of failing.

Before anything reads the environment it undoes Python's locale coercion
(`exec_locale`): with no LC_ALL and a C or POSIX LC_CTYPE locale (`LANG=C`, or no locale
variable at all), the interpreter sets LC_CTYPE=C.UTF-8 (or C.utf8, UTF-8) in its own
environment as it starts (PEP 538), and every process Stoker starts would inherit a locale
the operator (or the agent) never gave. The environment as it was at exec is in
/proc/self/environ, which setenv(3) does not change; LC_CTYPE is put back to what it was
there, or removed when it was not there. Python's own streams keep the UTF-8 they chose.
It also takes out what systemd gives the main process of a unit and no other
(`take_systemd`: `NOTIFY_SOCKET`, `WATCHDOG_USEC`, `WATCHDOG_PID`): every process of a task
inherited them, and one that speaks sd_notify(3) itself (a daemon built for systemd) would
have told systemd READY=1 or STOPPING=1 as the unit, or fed its watchdog (with
`NotifyAccess=all`; with the default `main`, each message was a warning in the journal).
`stoker run` and `stoker observe` send their own notifications with them
(`executor/host/sdnotify.py`).

Then it puts back what a supervisor cannot work with, and would pass on to every process
it starts (`_signals_as_a_supervisor`): SIGCHLD ignored by whoever started Stoker (the kernel
then reaps its children itself, so no exit status of a run ever reaches it, and every task
process would inherit the ignored SIGCHLD, which exec keeps on Linux) goes back to its
default, and no signal stays blocked (a run inherits the mask of the thread that forks it,
and a blocked SIGTERM would reach neither the task's processes nor Stoker). Other ignored
signals are left as found: nohup's SIGHUP is meant to be ignored.

As the first process of a PID namespace (`docker run IMAGE stoker run job.aurora`, `unshare
--pid --fork`), `stoker run` is its init, and the kernel drops every signal an init has no
handler for: a `docker stop` (SIGTERM) sent while Stoker loads, before its signal relay is
up, would be lost, the task would start and run on until the SIGKILL 10 s later, leaving it
LOST. So there the stop signals are recorded from the first line on
(`executor/host/early.py`, `defer_stop_signals`) and acted on once the relay is up, as an
early start's are. Only the interpreter's own start (some 20 ms) comes before. A /proc that
is not this namespace's (`unshare --pid --fork` without `--mount-proc`) is refused first
(`_own_proc`): the task's processes are found there. Right after it, `stoker executor` takes
the agent's token out of its environment and makes itself undumpable
(`executor/procs/hardening.py`, `hide_early`): until then any process of its user may read
the token in /proc/PID/environ, so nothing else loads first.

Then, before anything else of Stoker's is loaded, it has every module loaded from then on
compiled without its docstrings (`executor/nodocs.py`: about 0.8 MiB less of a supervisor
that holds them all its life), from `.pyc` files of their own. For `stoker run` and `stoker
executor` it then asks the C library for one heap for all the supervisor's threads, before
the first of them starts (`earlyfork.one_heap`: each had an arena of its own, 20 KiB in all
for `stoker run`'s five, 0.29 MiB of USS for the executor's, its driver's among them).
Before attrs and `pathlib` load (the code cache imports them), `inspect`, `locale`, `tokenize`,
`token`, `ipaddress` and `platform` are made to load at their first use (`executor/deferred.py`):
attrs, `subprocess`, `linecache` and `urllib.parse` (`pathlib`'s) import them and a supervisor
never reads them (attrs' one question to `platform` is answered without it), and they (with
the `ast`, `dis` and `opcode` `inspect` imports) were 1.4 MiB of every supervisor; so are
`urllib.parse`, `ntpath` and `fnmatch`, which `pathlib` reads only for what a supervisor
never asks it (0.1 MiB).

For `stoker executor` it also loads `http.client` first, without `ssl`
(`healthcheck/plainhttp.py`: `ssl` with OpenSSL is 2.6 MiB of every executor, and only one
whose agent has libprocess SSL on loads it, `executor/mesos/agenttls.py`), while the process
has no second thread.
"""
from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # CPython's: `signal` adds enums (1.3 ms) for nothing here
import _weakref  # the interpreter's own, loaded at its start (`weakref` is not yet)
import os
import sys

import executor

TYPE_CHECKING = False  # not `typing`'s: importing typing costs `stoker run` 18 ms before its first fork
if TYPE_CHECKING:
    from collections.abc import Callable, MutableMapping
    from typing import NoReturn, TextIO

COERCED = ("C.UTF-8", "C.utf8", "UTF-8")  # what CPython's locale coercion may set LC_CTYPE to
SYSTEMD_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")  # the service manager's, for us only
from_systemd: dict[str, str] = {}  # those this process was started with (`take_systemd`)


# What a stop signal does while a command loads, before its own handling is up: what it
# does once that is up (docs/contract.md §9). `stoker run` takes SIGTERM, SIGHUP and SIGQUIT
# as it takes a Ctrl-C then (what it holds is let go, nothing of the run is left) and exits
# 128 + the signal's number; `stoker executor` exits 3 on SIGTERM (never subscribed: as a
# SIGTERM before the agent answered, `executor/mesos/process.py`) and ignores SIGHUP and
# SIGQUIT (None: it has no terminal); `stoker observe` exits 0 on SIGTERM and SIGHUP. A signal ignored
# when Stoker started stays ignored (nohup's SIGHUP), but SIGTERM, which each of the three
# stops on once running whatever it started with (a supervisor that no SIGTERM stops is left
# LOST by the SIGKILL that follows). Every other command keeps the defaults, as it does once
# running; SIGINT is Python's KeyboardInterrupt everywhere (exit 130 while loading).
# A stop that comes while the one raised is still on its way out is not raised again: the
# way out is the stop (once running, a second stop hurries it and the sandbox is still let
# go), and raised in a `finally` that lets the sandbox go, it left the registry entry LOST
# (systemd's SendSIGHUP=yes sends SIGHUP right after its SIGTERM; a second Ctrl-\ or kill).
# The stray signals (STRAYS) `stoker run` and `stoker executor` ignore once running, with a
# line, are ignored while they load too (a task's `kill -USR1 $PPID` as its supervisor
# starts again: its default ended the executor, exit 138), by a handler (not SIG_IGN: their
# relay then takes them, and their runs get them at their defaults, as exec resets it).
# `executor.host.signals.STRAY_SIGNALS` (a test checks), without the `signal` module's enums.
# A stop raised inside a finalizer or a weakref callback, which Python drops, is sent again
# once the command's signal relay (the observer's loop) is up (`note_dropped`).
STRAYS = (_signal.SIGUSR1, _signal.SIGUSR2, _signal.SIGALRM, _signal.SIGVTALRM, _signal.SIGPROF,
          _signal.SIGIO, _signal.SIGPWR, _signal.SIGTRAP, _signal.SIGSYS, _signal.SIGSTKFLT,
          _signal.SIGXCPU, *range(_signal.SIGRTMIN, _signal.SIGRTMAX + 1))
WHILE_LOADING: dict[str, dict[int, int | None]] = {
    "run": {_signal.SIGTERM: 143, _signal.SIGHUP: 129, _signal.SIGQUIT: 131, **dict.fromkeys(STRAYS)},
    "executor": {_signal.SIGTERM: 3, _signal.SIGHUP: None, _signal.SIGQUIT: None, **dict.fromkeys(STRAYS)},
    "observe": {_signal.SIGTERM: 0, _signal.SIGHUP: 0},
}
_statuses: dict[int, int | None] = {}  # this command's WHILE_LOADING, as installed
_raised: list[_weakref.ref] = []  # the Stopped raised last, weakly: alive while on its way out
_unraisable = sys.unraisablehook  # the hook `_dropped_or_not` hands every exception on to


class Stopped(KeyboardInterrupt):
    """A stop signal that came while the command loaded (WHILE_LOADING): handled wherever
    a Ctrl-C is, and the process exits with `status`."""

    def __init__(self, status: int, signum: int = 0) -> None:
        super().__init__(status)
        self.status = status
        self.signum = signum


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """The status a KeyboardInterrupt ends the process with: 130 (Ctrl-C), or a `Stopped`'s."""
    return interrupt.status if isinstance(interrupt, Stopped) else 130


def run() -> NoReturn:
    """Load the command (`_load`) and run it. A Ctrl-C at any moment of either, from this
    function's first line on, ends the process as one once running does: exit 130, no
    traceback (the command's own handling takes it once it is running; this one before, and
    after, should one reach past it: `leave_interrupted`); a stop signal does what
    WHILE_LOADING says. An early start's watchdog ends its runs."""
    try:
        _stop_while_loading(sys.argv[1] if len(sys.argv) > 1 else "")
        _load()()
    except KeyboardInterrupt as interrupt:
        leave_interrupted(interrupt)


def leave_interrupted(interrupt: KeyboardInterrupt) -> NoReturn:
    """End the process as `interrupt` ends it (`exit_status`), what `stoker run` spooled
    written first, as `executor.cli.main.run`'s normal end does (was: a Ctrl-C as it ended,
    its code cache saved, could lose its last lines). Nothing is spooled before
    `executor.logs` is loaded, and it is not loaded for this."""
    modes = sys.modules.get("executor.host.terminalmodes")
    if modes is not None:  # `stoker run`'s terminal, as it found it (`LocalRun` says so, when it gets there)
        modes.put_back()
    logs = sys.modules.get("executor.logs")
    if logs is not None:
        logs.drain_spool()
    executor.leave(exit_status(interrupt))


def _stop_while_loading(command: str) -> None:
    """WHILE_LOADING's handlers for `command`, for each of its signals still at its default,
    and SIGTERM even when ignored (see WHILE_LOADING). The command's own handling replaces
    them; what it puts back as it ends is them."""
    for signum, status in WHILE_LOADING.get(command, {}).items():
        if signum == _signal.SIGTERM or _signal.getsignal(signum) == _signal.SIG_DFL:
            _statuses[signum] = status
            _signal.signal(signum, _stopped)
    if _statuses:
        global _unraisable
        _unraisable = sys.unraisablehook
        sys.unraisablehook = _dropped_or_not


def _dropped_or_not(unraisable: sys.UnraisableHookArgs) -> None:
    """The hook of an exception Python could not raise (in a finalizer or a weakref callback),
    until the log's (`logsetup._ignored`, which calls `note_dropped` too). A stop dropped so is
    one plain line, not Python's "Exception ignored" and a traceback: an ordinary SIGTERM."""
    signum = note_dropped(unraisable.exc_value)
    if signum:
        from executor.host.signals import say_dropped_while_loading  # only for a stop dropped so

        say_dropped_while_loading(signum, __name__)
        return
    _unraisable(unraisable)


def hook_outside(hook: Callable[[sys.UnraisableHookArgs], object]) -> Callable[[sys.UnraisableHookArgs], object]:
    """`hook`, or, when it is this module's (`_dropped_or_not`), the one it hands every other
    exception on to (the hook installed before Stoker's: a `sitecustomize`'s, or Python's)."""
    return _unraisable if hook is _dropped_or_not else hook


def note_dropped(exc: object) -> int:
    """A `Stopped` a finalizer or a weakref callback dropped: raised by the handler inside it
    (importlib's module lock callback, as 40 runs were stopped at once), it was reported and
    nothing stopped the run, which ran on. Noted (`executor.DROPPED_STOPS`), it is sent again
    once the command's signal relay (the observer's loop) is up. So is a SIGINT's KeyboardInterrupt dropped so.
    The stop signal `exc` is (its number), or 0 for any other exception."""
    signum = _dropped_signal(exc)
    if signum and signum not in executor.DROPPED_STOPS:
        executor.DROPPED_STOPS.append(signum)
    return signum


def _dropped_signal(exc: object) -> int:
    """The stop signal whose exception `exc` is; 0 for any other. A KeyboardInterrupt while
    SIGINT has Python's own handler is that handler's (Stoker raises none of its own while it
    loads): dropped, a `kill -INT` (a container's STOPSIGNAL) was lost as a SIGTERM was. Only
    in a command that sends such a stop again (WHILE_LOADING's: its relay, `stoker observe`'s
    raise); in another (`stoker status`, `tail`) nothing would, and "acted on once the signal
    relay is up" hid a Ctrl-C lost in an INFO line: it is said as an ignored exception."""
    if isinstance(exc, Stopped):
        return exc.signum
    if type(exc) is KeyboardInterrupt and _statuses and _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
        return int(_signal.SIGINT)
    return 0


def _stopped(signum: int, _frame: object) -> None:
    status = _statuses.get(signum)
    if status is None or (_raised and _raised[0]() is not None):  # ignored, as once running; or
        return  # a stop is on its way out (one that ended, or that a finalizer dropped, is not)
    raise _noted_stop(status, signum)


def _noted_stop(status: int, signum: int) -> Stopped:
    """A Stopped, weakly in `_raised` (made here: no frame of its traceback holds it, so that
    it dies once handled or dropped, not at the collector's next pass)."""
    stop = Stopped(status, signum)
    _raised[:] = [_weakref.ref(stop)]
    return stop


def _one_heap(command: str) -> None:
    """A supervisor's threads share one C heap (`earlyfork.one_heap`): asked before the
    supervisor's (and the driver's) first thread."""
    if command in ("run", "executor"):
        from executor.procs import earlyfork  # (the early start's, the spawns': loaded anyway)

        earlyfork.one_heap()


def _keep_terminal_modes(command: str) -> None:
    """`stoker run` on a terminal keeps its modes, before any process of the task starts (the
    early start's too)."""
    if command == "run" and _on_a_terminal():
        from executor.host import terminalmodes

        terminalmodes.keep()


def _start_early(command: str) -> None:
    """`stoker run`'s early start (`launch.begin`), then the modules from here to its first
    report from one file."""
    if command == "run":
        from executor.cli import launch

        launch.begin(sys.argv[1:], os.environ)
        from executor import codebundle

        codebundle.install()


def _load() -> Callable[[], NoReturn]:
    """Everything the module docstring says, in its order; the command's `run`."""
    executor.forget_relative_pythonpath()  # done as `executor` loaded, but in stoker.pyz (its argv[0])
    _signals_as_a_supervisor()
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    _own_proc(command)
    if command == "executor":  # the agent's token out of /proc/PID/environ before anything loads
        from executor.procs import hardening

        hardening.hide_early(os.environ)
    _owner_umask(command)
    if command == "run" and os.getpid() == 1:  # a container's main process: see the docstring
        from executor.host.early import defer_stop_signals

        defer_stop_signals()
    exec_locale(os.environ, _exec_environ())
    take_systemd(os.environ)
    _standard_streams()
    _keep_terminal_modes(command)
    from executor import nodocs

    nodocs.install()  # every module from here on without its docstrings
    _one_heap(command)
    _start_early(command)
    from executor import deferred

    if nodocs.installed():  # STOKER_CODE_CACHE=off: every module as Python loads it
        deferred.defer()  # `inspect` (attrs imports it) and others a supervisor never reads
    from executor import codecache  # (after: it imports pathlib, and with it `ipaddress`)

    codecache.install(command if command in codecache.PROFILES else "cli")
    _before_main(command)
    from executor.cli.main import run as main

    return main


def _before_main(command: str) -> None:
    """The last of `_load` before `executor.cli.main` is imported: `stoker executor`'s plain
    HTTP client loaded, and `stoker run`'s first run's planning child forked ahead."""
    if command == "executor":
        from healthcheck import plainhttp

        plainhttp.load()
    if command == "run":
        from executor.cli import launch

        first = launch.first_run()
        if first is not None:  # a first run's planning child, with attrs and the rest it shares loaded,
            first.fork_ahead()  # not `executor.cli.main`'s own modules (its settings, logging's set-up)


def _on_a_terminal() -> bool:
    """Whether descriptor 0, 1 or 2 is a terminal (`executor/host/terminalmodes.py` is loaded
    only then)."""
    return any(os.isatty(fd) for fd in (0, 1, 2))


def _own_proc(command: str) -> None:
    """`stoker run` and `stoker executor` find their task's processes in /proc: a /proc of
    another PID namespace (`unshare --pid --fork` without `--mount-proc`) shows other processes
    under the numbers this one's have, and their children as its orphans, which it would take
    for the task's leftovers and signal by those numbers. Refused before anything starts
    (exit 2), saying what to do, with SIGTTOU blocked as every error line is (a background
    job under `stty tostop` was stopped on it); one `readlink` otherwise."""
    if command not in ("run", "executor"):
        return
    try:
        link = os.readlink("/proc/self")
    except OSError as error:
        problem = f"/proc cannot be read here ({error.strerror})"
    else:
        if link == str(os.getpid()):
            return
        problem = (f"/proc is another PID namespace's (its /proc/self is {link}, this process is "
                   f"{os.getpid()})")
    _signal.pthread_sigmask(_signal.SIG_BLOCK, {_signal.SIGTTOU})  # `stty tostop`: see config.logline
    sys.stderr.write(f"stoker {command}: {problem}: Stoker finds its task's processes there; mount "
                     "this namespace's own (`unshare --pid --fork --mount-proc`, as a container "
                     "runtime does)\n")
    executor.leave(2)


def _owner_umask(command: str) -> None:
    """`stoker run` under a umask that takes one of the owner's own permissions (0277, 0200):
    it made its sandbox, `.stoker` and the registry without the owner's write, then called
    its sandbox "not writable" (and left the registry so for the next run). Refused before
    anything is made (exit 2), as `_own_proc` refuses, not worked around: the task keeps the
    umask (as under Thermos), and its own files would be as unwritable to it. Not as root:
    root reads, writes and enters what it owns whatever the modes, and its tasks (run as
    root) ran under `umask 0277` or a unit's `UMask=0277` before the refusal."""
    if command != "run" or os.geteuid() == 0:
        return
    mask = os.umask(0o022)  # (no other thread yet: none makes a file meanwhile)
    os.umask(mask)
    if not mask & 0o700:
        return
    _signal.pthread_sigmask(_signal.SIG_BLOCK, {_signal.SIGTTOU})  # `stty tostop`: see config.logline
    sys.stderr.write(f"stoker run: the umask {mask:04o} takes the owner's own permissions ({mask & 0o700:04o}): "
                     "the sandbox, its .stoker and .logs, and the task's own files would not be "
                     "writable by their owner; use one that leaves the owner's (umask 022, or 077)\n")
    executor.leave(2)


def _signals_as_a_supervisor() -> None:
    """SIGCHLD at its default and no signal blocked (see the module docstring)."""
    _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, ())


def exec_locale(environ: MutableMapping[str, str], at_exec: bytes | None) -> None:
    """LC_CTYPE in `environ` as it was in `at_exec` (the environment block at exec, NUL
    separated) when Python's coercion changed it to one of COERCED; None: not known."""
    now = environ.get("LC_CTYPE")
    if at_exec is None or now not in COERCED:
        return
    for entry in at_exec.split(b"\0"):
        if entry.startswith(b"LC_CTYPE="):
            given = os.fsdecode(entry[len(b"LC_CTYPE="):])
            if given != now:
                environ["LC_CTYPE"] = given
            return
    del environ["LC_CTYPE"]


def take_systemd(environ: MutableMapping[str, str]) -> None:
    """Move SYSTEMD_VARIABLES from `environ` to `from_systemd` (see the module docstring)."""
    for name in SYSTEMD_VARIABLES:
        value = environ.pop(name, None)
        if value is not None:
            from_systemd[name] = value


def _exec_environ() -> bytes | None:
    """The environment block this process was exec'd with (None without /proc), read only
    when LC_CTYPE holds what the coercion sets."""
    if os.environ.get("LC_CTYPE") not in COERCED:
        return None
    try:
        with open("/proc/self/environ", "rb") as block:
            return block.read()
    except OSError:
        return None


def _standard_streams() -> None:
    """Descriptors 0, 1 and 2 open (a closed one: /dev/null) and their streams there; what
    the terminal's encoding lacks is written out, not an error."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:  # closed: the lowest free descriptor is this one
            os.set_inheritable(os.open(os.devnull, os.O_RDWR), True)
        if getattr(sys, name) is None:  # Python found it closed; in the locale's encoding
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", closefd=False))
        if fd and _fails_to_write(getattr(sys, name)):
            getattr(sys, name).reconfigure(errors="backslashreplace")


def _fails_to_write(stream: TextIO) -> bool:
    """Whether `stream` raises on a character its encoding lacks: `strict`, and Python's
    `surrogateescape` of a C locale's stdout in an encoding that is not UTF-8 (`LC_ALL=C`
    with `PYTHONUTF8=0`: ASCII, where `stoker ps` raised on a job named `café`)."""
    if stream.errors == "strict":
        return True
    return stream.errors == "surrogateescape" and stream.encoding.lower().replace("_", "-") not in ("utf-8", "utf8")
