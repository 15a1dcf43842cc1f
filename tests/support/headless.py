"""A process whose first thread exited (`pthread_exit` in `main`) while another runs: its
/proc/PID/stat reads state Z, as a zombie's, with more than one thread. It lives until
killed; each reader of /proc must count it alive (`executor/procs/pidsignal.live_fields`).
"""
from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.support.waiting import wait_for

# Its first thread exits once a byte comes on its stdin: the test may first move it (a cgroup).
PROGRAM = ("import ctypes, sys, threading, time; threading.Thread(target=time.sleep, args=(600,)).start(); "
           "sys.stdin.buffer.read(1); ctypes.CDLL(None).pthread_exit(None)")


def state(pid: int) -> str:
    """The state letter in /proc/PID/stat ('' when gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return ""


def running_threads(pid: int) -> int:
    """How many threads of `pid` run (0: gone, or a zombie)."""
    try:
        return sum(1 for tid in Path(f"/proc/{pid}/task").iterdir()
                   if (tid / "stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX")
    except (FileNotFoundError, ProcessLookupError):  # gone before the look, or as it read
        return 0


@contextlib.contextmanager
def headless(first: Callable[[int], bool] = lambda pid: True) -> Iterator[subprocess.Popen[bytes]]:
    """A child of this process, headless (state Z, one thread running) once yielded, after
    `first(pid)` (e.g. a cgroup's `take_in`) held while its first thread still ran;
    SIGKILLed and reaped after, also when the test fails."""
    proc = subprocess.Popen([sys.executable, "-c", PROGRAM], stdin=subprocess.PIPE)
    try:
        assert first(proc.pid), f"{first} refused {proc.pid}"
        assert proc.stdin is not None
        proc.stdin.write(b"x")
        proc.stdin.close()
        wait_for(lambda: state(proc.pid) == "Z" and running_threads(proc.pid) == 1, 10,
                 message="its first thread gone, the other running")
        yield proc
    finally:
        proc.kill()
        proc.wait()
