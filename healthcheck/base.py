"""What every checker shares: the `Checker` protocol, the limits on what a check reads and
quotes, the reason formatting, and `never_raises`, which turns a checker's unexpected
exception into a failed attempt (logged here at ERROR, with the traceback: it is a bug).

Also `signal_name`, the one spelling of a signal in a reason ("SIGKILL", or "signal 77" for
a number the platform does not name), shared with `executor.events`. No I/O here apart from
that one log line.
"""
from __future__ import annotations

import errno
import functools
import logging
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

from config.logline import log_event

if TYPE_CHECKING:  # executor.events imports this module for signal_name alone
    from typing import Protocol

    from healthcheck.policy import Attempt

    class Checker(Protocol):
        def check(self) -> Attempt:
            """Run one attempt; never raises."""
            ...

        def describe(self) -> str:
            """What is checked, e.g. "HTTP GET http://localhost:31000/health"."""
            ...

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024  # HTTP bodies are read up to this much, then the check stops reading
QUOTE_CHARS = 1024  # a reason quotes at most this much of a body or of a command's output
# A step of a check that ends more than this after the check's deadline was not running at
# the deadline: the supervisor was stopped (SIGSTOP, a debugger, a VM paused, its cgroup
# frozen) or starved of CPU, and so was the check. Such a check gets its timeout again, once
# (the TCP and HTTP checks' `loopback.Deadline`, the shell check's runner, `executor/procs/commands.py`).
STALL_SECS = 0.05


def secs(value: float) -> str:
    """Seconds for a reason: at most 3 decimals, "1.0" and "0.25" as written."""
    return str(round(float(value), 3))


def quote(text: str, limit: int = QUOTE_CHARS) -> str:
    """One line, at most `limit` characters of `text` (the head), marked when cut."""
    text = text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")
    if len(text) > limit:
        return text[:limit] + f"... ({len(text) - limit} more characters)"
    return text


def tail_quote(text: str, limit: int = QUOTE_CHARS) -> str:
    """One line, at most the last `limit` characters of `text`, marked when cut."""
    text = text.strip().replace("\r", "\\r").replace("\n", "\\n")
    if not text:
        return "(no output)"
    if len(text) > limit:
        return "..." + text[-limit:]
    return text


def signal_name(signum: int) -> str:
    """The name of signal `signum` ("SIGTERM" for 15), or "signal 77" for an unnamed one."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def never_raises(check: Callable[..., Attempt]) -> Callable[..., Attempt]:
    """Wraps a checker's `check`: an exception becomes a failed attempt whose reason starts
    with "internal health check error:" (how that counts: `healthcheck.policy`'s docstring)."""
    from healthcheck.policy import Attempt  # when a checker's class is made, before any check

    @functools.wraps(check)
    def wrapper(self: Checker) -> Attempt:
        try:
            return _no_thread_is_a_failure(check, self)
        except Exception as exc:
            log_event(logger, logging.ERROR, "health_check_internal_error",
                      check=self.describe(),
                      error=f"{type(exc).__name__}: {exc}", exc_info=True)
            return Attempt.failed(f"internal health check error: {type(exc).__name__}: {exc}")

    return wrapper


def _no_thread_is_a_failure(check: Callable[..., Attempt], self: Checker) -> Attempt:
    """`check(self)`; a thread that cannot be started (the task's process limit is reached:
    the Mesos pids isolator's limit covers the executor too), or no file descriptor left
    (`ulimit -n`: a shell check's runner's module, loaded at its first command; an HTTP or TCP
    check says its own, `loopback.NoSocket`), is a failed attempt with one WARNING line and a
    reason saying so, not a traceback per attempt."""
    from healthcheck.policy import Attempt

    try:
        return check(self)
    except RuntimeError as exc:
        if "can't start new thread" not in str(exc):
            raise
        error, why = f"RuntimeError: {exc}", "no thread could be started for the check (the task's process limit is reached)"
    except OSError as exc:
        if (known := _FD_LIMITS.get(exc.errno)) is None:
            raise
        error = f"{exc.strerror}, {known[0]}"
        why = f"no file descriptor was left for the check ({error}: {known[1]}, is reached)"
    log_event(logger, logging.WARNING, "health_check_internal_error",
              check=self.describe(), error=error)
    return Attempt.failed(f"internal health check error: {why}")


_FD_LIMITS: dict[int | None, tuple[str, str]] = {errno.EMFILE: ("EMFILE", "the supervisor's limit, ulimit -n"),
                                                  errno.ENFILE: ("ENFILE", "the host's limit, fs.file-max")}
