"""A launcher that puts glibc's two reserved signals, 32 and 33, back to their default
action, then execs the rest of its command line (standard library only: run as a script).

A process that glibc's `posix_spawn` started has them ignored, and an ignored signal stays
ignored across exec: GNU make (4.3 and later) starts its recipes so, `make test` among
them, and every process of such a run inherits them ignored. A test that tells a run
`posix_spawn` started (both ignored) from one Popen forked (as Stoker had them) starts
Stoker through this. glibc's `sigaction` refuses to name the two: the raw system call does.
"""
from __future__ import annotations

import ctypes
import os
import platform
import signal
import sys

RESERVED = (32, 33)
_RT_SIGACTION = {"x86_64": 13, "aarch64": 134}  # as tests/support/seccomp.py's tables say


class _KernelSigaction(ctypes.Structure):
    """The kernel's `struct sigaction`: all zero is SIG_DFL, no flags, an empty mask."""

    _fields_ = [("handler", ctypes.c_void_p), ("flags", ctypes.c_ulong), ("restorer", ctypes.c_void_p),
                ("mask", ctypes.c_ulong)]


def launcher() -> list[str]:
    """The command prefix that runs the rest of a command line with 32 and 33 at their defaults."""
    return [sys.executable, os.path.abspath(__file__), "--"]


def main(argv: list[str]) -> int:
    number = _RT_SIGACTION.get(platform.machine())
    if number is None or argv[1:2] != ["--"] or len(argv) < 3:
        print(f"usage: {argv[0]} -- PROGRAM ARGS (on {', '.join(_RT_SIGACTION)})", file=sys.stderr)
        return 2
    libc = ctypes.CDLL(None, use_errno=True)
    default = _KernelSigaction()
    for sig in RESERVED:
        if libc.syscall(number, sig, ctypes.byref(default), None, 8) != 0:
            print(f"rt_sigaction({sig}): {os.strerror(ctypes.get_errno())}", file=sys.stderr)
            return 3
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores them, and exec would keep them so
        signal.signal(sig, signal.SIG_DFL)
    os.execv(argv[2], argv[2:])
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv))
