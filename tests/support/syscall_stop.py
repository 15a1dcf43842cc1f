"""Run a Python snippet traced (ptrace, as a debugger does) and act at one of its system calls.

A test that has to land something in a window between two system calls (swap a name for a
symlink after a check, before the use) does not race for it: `traced(code, args, SYS_X,
then)` runs `code` in a child, which stops itself at `STOP_TO_BE_TRACED`; the test steps it
from one system call's stop to the next until it enters SYS_X (`returning=True`: until SYS_X
returns), calls `then()`, lets it go on, and gives back what it printed. Where ptrace is
not allowed the test is skipped. x86-64 only (it reads the registers' layout).
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.support.stoker_proc import REPO

# The child's part, after whatever it sets up untraced: ask to be traced, then stop until
# the test has attached its options.
STOP_TO_BE_TRACED = """
if ctypes.CDLL(None, use_errno=True).ptrace(0, 0, 0, 0) != 0:  # PTRACE_TRACEME
    print("untraceable", flush=True)
    sys.exit(0)
os.kill(os.getpid(), signal.SIGSTOP)
"""

SYS_CONNECT, SYS_BIND = 42, 49  # x86-64

PTRACE_SYSCALL, PTRACE_GETREGS, PTRACE_DETACH, PTRACE_SETOPTIONS = 24, 12, 17, 0x4200
PTRACE_O_TRACESYSGOOD, PTRACE_O_EXITKILL = 0x1, 0x100000
ORIG_RAX = 15  # its index in struct user_regs_struct (27 words)


def traced(code: str, args: list[str], syscall: int, then: Callable[[], None], *, returning: bool = False) -> str:
    """What `code` (run as `python -c code *args`, stopping at STOP_TO_BE_TRACED) printed,
    `then()` called as it entered `syscall` (`returning`: as that call returned)."""
    child = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
    try:
        _, status = os.waitpid(child.pid, os.WUNTRACED)
        if not os.WIFSTOPPED(status):  # not traceable here: it said so and exited
            out = child.communicate()[0].decode()
            pytest.skip(f"ptrace is not allowed here ({out.strip() or os.waitstatus_to_exitcode(status)})")
        libc = ctypes.CDLL(None, use_errno=True)
        libc.ptrace(PTRACE_SETOPTIONS, child.pid, 0, PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL)
        _until(libc, child.pid, syscall, returning)
        then()
        assert libc.ptrace(PTRACE_DETACH, child.pid, 0, 0) == 0
        return child.communicate(timeout=10)[0].decode().strip()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def _until(libc: ctypes.CDLL, pid: int, syscall: int, returning: bool) -> None:
    """Step the traced `pid` from one system call's stop to the next, until it enters
    `syscall` (`returning`: until that call returns)."""
    regs = (ctypes.c_ulonglong * 27)()
    entering, inside = True, False
    while True:
        assert libc.ptrace(PTRACE_SYSCALL, pid, 0, 0) == 0, ctypes.get_errno()
        _, status = os.waitpid(pid, 0)
        assert os.WIFSTOPPED(status), status
        if os.WSTOPSIG(status) != signal.SIGTRAP | 0x80:
            continue  # a signal, not a system call
        if entering:
            assert libc.ptrace(PTRACE_GETREGS, pid, 0, ctypes.byref(regs)) == 0
            inside = regs[ORIG_RAX] == syscall
            if inside and not returning:
                return
        elif inside:
            return
        entering = not entering
