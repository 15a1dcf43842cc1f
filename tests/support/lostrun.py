"""A `stoker run` made LOST as a crash of the host makes it: the supervisor and its watchdog
both SIGKILLed, neither able to act on the other's death (the supervisor restarts a watchdog
that died, the watchdog kills the task once its supervisor is gone), so that what the task
ran is left running for `stoker status` and a re-run to find.
"""
from __future__ import annotations

import os
import signal

from tests.support import proc_scan
from tests.support.waiting import stopped_whole, wait_for


def watchdog_of(pid: int) -> int:
    """The watchdog child of the supervisor `pid`."""
    dogs = [k for k in proc_scan.children(pid) if b"stoker-watchdog" in proc_scan.read_bytes(f"/proc/{k}/cmdline")]
    assert len(dogs) == 1, f"stoker run {pid} has {len(dogs)} watchdogs"
    return dogs[0]


def kill_with_watchdog(pid: int) -> int:
    """SIGKILL the supervisor `pid` and its watchdog, each stopped first: the supervisor
    (every thread: a live one continues a stopped watchdog at once), then the watchdog.
    The watchdog's pid (the caller waits for the supervisor, its child)."""
    dog = watchdog_of(pid)
    os.kill(pid, signal.SIGSTOP)
    wait_for(lambda: stopped_whole(pid), 5, message="the supervisor stopped, every thread")
    os.kill(dog, signal.SIGSTOP)
    os.kill(pid, signal.SIGKILL)
    os.kill(dog, signal.SIGKILL)
    return dog
