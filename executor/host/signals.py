"""Stop signals as calls on one thread, whichever thread the kernel delivers them to.

The kernel gives a signal sent to the process (`kill PID`, Ctrl-C) to any one of its
threads that does not block it. CPython's own handler only notes it; the Python-level
handler runs in the main thread, the next time that thread runs bytecode. A supervisor's
main thread spends its idle time blocked in a queue wait (the task's owner with nothing to
do, the executor waiting for its task), and a lock wait does not end when the signal lands
on another thread (the reaper's, the control socket's, the agent connection's): the stop
would wait for the task's next event, and an idle task has none. So `stoker run` and
`stoker executor` never act in a Python-level signal handler.

`SignalRelay` installs a handler that does nothing for each stop signal, and a wakeup fd
(`signal.set_wakeup_fd`, the write end of a pipe): CPython's C handler writes the signal's
number there from whichever thread took it. The relay's daemon thread reads the pipe and
calls `on_signal(signum)`. Idle, it sleeps in read(2): no wakeups. `on_signal` runs on that
thread, so it may only do what is safe from any thread (set an Event, post to the owner's
queue); it is called once per signal received, in order (the kernel merges a signal sent
again before the first was delivered, as it always does).

Install it from the main thread (Python allows handlers and the wakeup fd only there);
`close()` puts back the handlers and wakeup fd it found (or the handlers a stand-in it
found had replaced: `put_back`, the early start's recorder) and ends the thread.

A process that starts no task processes (`stoker observe`, whose Python-level handler must
run in the main thread to stop its server) may instead keep the signals off its other
threads: `kept_from_new_threads` blocks them in every thread started inside it (a thread
inherits its creator's mask), so the kernel gives them to the main thread. Not for a
supervisor: a child inherits the mask of the thread that forked it.

A stop signal a finalizer dropped while a command loaded, before its logging is set up, is
said here too (`say_dropped_while_loading`, for `executor/cli/start.py`: this module is
loaded then only for it).
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import FrameType
from typing import Any

import executor
from executor.logs import log_event, start_thread

logger = logging.getLogger(__name__)

# How long the relay waits before it reads again after a MemoryError (ulimit -v).
MEMORY_RETRY_SECS = 0.1
_STOP = b"\0"  # no signal has number 0: close() writes it to end the thread

# Signals Stoker gives no meaning, whose default action would end a supervisor on the spot,
# its task left to the watchdog's SIGKILL and recorded as LOST: a task's `kill -USR1 $PPID`
# (a daemon telling its parent it is ready), a stray `kill -ALRM`, `kill -RTMIN+3`. The
# front-ends relay the ones at their default when they start (`strays`) and ignore them,
# with a line (`Strays`); relayed, not ignored, they are back at their defaults in every run
# (exec resets a handled signal). The real-time ones are all Python can handle: glibc keeps
# the two below SIGRTMIN for itself. SIGTRAP and SIGSYS are strays too: a handler is not
# told whether one was sent (kill) or raised by the supervisor itself, and Python raises
# neither (no breakpoints; a seccomp filter's SIGSYS then fails that one system call instead
# of ending the supervisor). Not the faults (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT): their
# handler returning would run the faulting instruction again. SIGPIPE and SIGXFSZ are
# ignored by Python itself (and reset in every run).
STRAY_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGVTALRM,
                 signal.SIGPROF, signal.SIGIO, signal.SIGPWR, signal.SIGTRAP, signal.SIGSYS,
                 signal.SIGSTKFLT, signal.SIGXCPU, *range(signal.SIGRTMIN, signal.SIGRTMAX + 1))


def signal_name(signum: int) -> str:
    """SIGUSR1; a real-time signal by its offset, as `kill -RTMIN+3` names it: SIGRTMIN+3."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        if signal.SIGRTMIN < signum < signal.SIGRTMAX:
            return f"SIGRTMIN+{signum - signal.SIGRTMIN}"
        return f"signal {signum}"


def say_dropped_while_loading(signum: int, logger_name: str) -> None:
    """The line of a stop signal a finalizer or a weakref callback dropped while the command
    loaded, before logging is set up (`executor/cli/start.py`, `_dropped_or_not`; `logsetup`
    says it as the `stop_deferred` event from then on): a plain line, or that event as one
    JSON object from `logger_name` where `--log-format json` is asked (`json_asked`)."""
    what = "came as a finalizer ran, which cannot raise it: acted on once Stoker has loaded"
    if json_asked():  # the `stop_deferred` event the log writes once it is set up
        import json

        sys.stderr.write(json.dumps({"ts": round(time.time(), 6), "level": "INFO", "logger": logger_name,
                                     "event": "stop_deferred", "signal": signal_name(signum),
                                     "reason": f"it {what}"}) + "\n")
    else:
        sys.stderr.write(f"stoker: {signal_name(signum)} {what}\n")


def json_asked() -> bool:
    """Whether the command line (its last `--log-format`, as the parser takes it), else
    STOKER_LOG_FORMAT, asks for `--log-format json`: read before logging is set up, for a
    stderr that must hold nothing but JSON objects (was: a plain line in it). As argparse,
    an abbreviation counts (`--log-form json`, `--log-f=json`: `--log-` is `--log-level`'s too)."""
    asked = os.environ.get("STOKER_LOG_FORMAT", "text")
    args = sys.argv[1:]
    for at, arg in enumerate(args):
        if arg == "--":
            break
        flag, equals, value = arg.partition("=")
        if not (len(flag) >= len("--log-f") and "--log-format".startswith(flag)):
            continue
        if equals:
            asked = value
        elif at + 1 < len(args):
            asked = args[at + 1]
    return asked == "json"


def strays(signums: Iterable[int] = STRAY_SIGNALS) -> list[int]:
    """The stray signals (of `signums`) not ignored now: one ignored at start stays ignored
    (the runs inherit it so, across exec; a handler is reset there). One the early start
    records (`executor/host/early.py`) is relayed too."""
    return [s for s in signums if signal.getsignal(s) is not signal.SIG_IGN]


class Strays:
    """Says that a stray signal was ignored: a WARNING the first time for each, DEBUG after
    (a process may send one in a loop). Called on the relay's thread only."""

    def __init__(self, command: str) -> None:
        self._command = command
        self._seen: set[int] = set()

    def ignored(self, signum: int) -> None:
        first = signum not in self._seen
        self._seen.add(signum)
        log_event(logger, logging.WARNING if first else logging.DEBUG, "signal_ignored",
                  signal=signal_name(signum),
                  reason=f"{self._command} gives it no meaning (its default would end the "
                         f"supervisor at once, and its task with it); ignored")


def _noted(_signum: int, _frame: FrameType | None) -> None:
    """The Python-level handler: the relay has acted already."""


class SignalRelay:
    """Calls `on_signal(signum)` on its own thread for each of `signums` received."""

    def __init__(self, signums: Iterable[int], on_signal: Callable[[int], None],
                 latest_only: Iterable[int] = (), recorded: Callable[[], Iterable[int]] = tuple) -> None:
        """`latest_only`: those of `signums` whose reaction needs only the latest of the
        ones read at once (SIGWINCH: the terminal's size now). A storm of them was one
        reaction each, slower than they came: the wakeup pipe filled, and a stop signal sent
        then was dropped. `recorded()`: signals a stand-in took before the relay was up,
        called once its handlers are, and handed on here, in order, ahead of any it reads
        (was: handed on after it was up, and a SIGTERM relayed at once went ahead of the
        SIGINT recorded before it: the second stop taken for the first)."""
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("SignalRelay must be installed from the main thread")
        self._signums = frozenset(int(s) for s in signums)
        self._latest_only = frozenset(int(s) for s in latest_only)
        self._on_signal = on_signal
        self._read, self._write = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(self._write, False)  # set_wakeup_fd requires it; a full pipe drops
        self._previous_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        self._previous: dict[int, Any] = {s: signal.signal(s, _noted) for s in sorted(self._signums)}
        for signum in [s for s in executor.DROPPED_STOPS if s in self._signums]:
            executor.DROPPED_STOPS.remove(signum)  # dropped by a finalizer as Stoker loaded: relayed now
            os.kill(os.getpid(), signum)
        for signum in recorded():
            self._call(signum)
        self._thread: threading.Thread | None = threading.Thread(
            target=self._relay, name="stoker-signals", daemon=True)
        start_thread(self._thread)

    def put_back(self, handlers: Mapping[int, Any]) -> None:
        """At close, put back `handlers` instead of the ones found at install (for the
        signals it relays): those found were a stand-in's for them."""
        self._previous.update((s, h) for s, h in handlers.items() if s in self._previous)

    def found(self, signum: int) -> Any:
        """The handler `close` puts back for `signum` (found at install, or `put_back`'s)."""
        return self._previous.get(signum, signal.getsignal(signum))

    def close(self, ignoring: Iterable[int] = ()) -> None:
        """Puts back the handlers and wakeup fd found at install (or `put_back`'s), and ends
        the thread. Those of `ignoring` it relays are left ignored instead (a process that
        forks nothing after: its strays while it writes its last lines)."""
        if self._thread is None:
            return
        ignored = frozenset(ignoring)
        for signum, handler in self._previous.items():
            signal.signal(signum, signal.SIG_IGN if signum in ignored else handler)
        signal.set_wakeup_fd(self._previous_fd)
        try:
            os.write(self._write, _STOP)
        except BlockingIOError:  # the pipe is full of signals: the thread reads on to the stop
            os.set_blocking(self._write, True)
            os.write(self._write, _STOP)
        self._thread.join()
        self._thread = None
        os.close(self._read)
        os.close(self._write)

    def _relay(self) -> None:
        """Read the signals' numbers and hand each on, in order. Short of memory (a
        MemoryError, ulimit -v), it waits a moment and goes on where it was: the numbers are
        read into a buffer made once (`readv` makes nothing once it has taken them, where
        `read` made their bytes after), and one is counted handed on once its reaction ran
        (was: a MemoryError anywhere but in the read, its error line's included, ended the
        thread, and every later SIGTERM and SIGINT was ignored: stoker run stopped only by
        kill -9)."""
        buffer = bytearray(4096)  # a storm's worth at once (the pipe holds 64 KiB)
        into = [buffer]
        got = handed = 0  # numbers in `buffer`, and of them handed on
        while True:
            try:
                if handed == got:
                    got = os.readv(self._read, into)
                    handed = 0
                    if not got:
                        return
                signum = buffer[handed]
                if signum == _STOP[0]:
                    return
                if signum in self._signums and not (  # the wakeup fd also carries others' signals
                        signum in self._latest_only and buffer.find(signum, handed + 1, got) >= 0):
                    self._call(signum)
                handed += 1
            except MemoryError:
                time.sleep(MEMORY_RETRY_SECS)

    def _call(self, signum: int) -> None:
        """`on_signal(signum)`; what it raised is logged, and the relay goes on (a MemoryError
        out of here: the reaction did not run)."""
        try:
            self._on_signal(signum)
        except Exception:  # a failing reaction must not end the relay for the next signal
            try:
                log_event(logger, logging.ERROR, "signal_reaction_failed",
                          signal=signal_name(signum), exc_info=True)
            except MemoryError:  # the line too found none: the reaction ran, and failed
                return


@contextlib.contextmanager
def kept_from_new_threads(signums: Iterable[int]) -> Iterator[None]:
    """Threads started inside block `signums` for good; the caller's mask is put back."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signums)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
