"""Deadline-bounded waiting for tests: poll a condition until it holds or time runs out.

Owns `wait_for`, the one way tests wait for something to happen. Never sleeps without a
deadline and never swallows the condition's own exceptions.
"""
from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    cond: Callable[[], T],
    timeout_secs: float = 5,
    interval_secs: float = 0.01,
    message: str | None = None,
) -> T:
    """Call `cond` every `interval_secs` until it returns something truthy; return that.

    Raises AssertionError naming the condition and the timeout when it stays falsy for
    `timeout_secs`. The condition is always tried once more at the deadline.
    """
    deadline = time.monotonic() + timeout_secs
    while True:
        value = cond()
        if value:
            return value
        now = time.monotonic()
        if now >= deadline:
            value = cond()
            if value:
                return value
            what = message or getattr(cond, "__name__", repr(cond))
            raise AssertionError(
                f"condition {what!r} still false after {timeout_secs} s (last value: {value!r})"
            )
        time.sleep(min(interval_secs, max(deadline - now, 0.0)))


def read_when_there(path: Path, timeout_secs: float = 10) -> str:
    """The text a task's process writes to `path`, stripped, once it is there and not empty:
    a task reported RUNNING (even healthy: its check may pass first) may not have run its
    first command yet."""
    return wait_for(lambda: path.read_text().strip() if path.exists() else None, timeout_secs)


def exit_code(pid: int, timeout_secs: float) -> int:
    """The exit code of this process's child `pid` (as Popen's `returncode`: -N for a
    signal), reaped once it exits; AssertionError when it has not within `timeout_secs`."""
    import os

    codes: list[int] = []

    def reaped() -> bool:
        if not codes:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                codes.append(os.waitstatus_to_exitcode(status))
        return bool(codes)

    wait_for(reaped, timeout_secs, message=f"the exit of child {pid}")
    return codes[0]


def stopped_whole(pid: int) -> bool:
    """Every thread of `pid` is stopped (`T`/`t` in its stat): a SIGSTOP is queued by
    kill(2), not done; until each thread has stopped, one of them may still act (a
    supervisor's reaper continuing the watchdog a test stops next)."""
    import os

    try:
        threads = os.listdir(f"/proc/{pid}/task")
        states = [open(f"/proc/{pid}/task/{t}/stat").read().rsplit(")", 1)[1].split()[0] for t in threads]
    except OSError:
        return False
    return bool(states) and all(state in "Tt" for state in states)


def readline_within(proc: subprocess.Popen, timeout_secs: float) -> str:
    """The next line of PROC's stdout (a text pipe), read on a thread given TIMEOUT_SECS: a
    child that prints nothing fails the test instead of hanging it."""
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout_secs)
    assert box and box[0], f"{proc.args!r} printed nothing within {timeout_secs} s"
    return box[0]


def log_pump_threads_ended(task_label: str, timeout_secs: float) -> None:
    """Wait for the threads of the log pump of `task_label` (its own, `stoker-logpump-LABEL`,
    and its console copy's, `stoker-logpump-console-LABEL`) to end; AssertionError when one
    outlives `timeout_secs`. A test that gave the pump descriptors of its own (a console
    pipe, a run directory) closes them only after this: a thread still writing queued copies
    after that close writes to whatever gets the number next (under load, a later test's
    `subprocess.Popen` read such copies from its exec error pipe as an exec error and waited
    for its child, a `sleep 600`, to exit)."""
    names = (f"stoker-logpump-{task_label}", f"stoker-logpump-console-{task_label}")
    threads = [t for t in threading.enumerate() if t.name in names]
    deadline = time.monotonic() + timeout_secs
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    left = [t.name for t in threads if t.is_alive()]
    assert not left, f"the log pump's threads {left} still ran after {timeout_secs} s"
