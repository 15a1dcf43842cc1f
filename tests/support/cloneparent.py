"""A run that starts a sibling of itself: `clone(CLONE_PARENT | SIGCHLD)` makes a process
whose parent is the run's own parent (the Stoker thread that forked the run), not the run.
The sibling leaves the run's session and group (`setsid`) and its marker (`sleep` with an
empty environment), appends its pid to PID_FILE, and this process exits with EXIT_CODE once
the sibling has escaped (or, with `stay`, runs `sleep 1000` itself, keeping its own).

    python cloneparent.py PID_FILE EXIT_CODE|stay
"""
from __future__ import annotations

import ctypes
import os
import sys
import time

SYS_CLONE = {"x86_64": 56, "aarch64": 220}
CLONE_PARENT = 0x00008000
SLEEP = "/bin/sleep"


def clone_parent() -> int:
    """The sibling's pid here, 0 in the sibling (a raw clone: a fork with another parent)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    pid = libc.syscall(SYS_CLONE[os.uname().machine], CLONE_PARENT | 17, None, None, None, None)
    if pid < 0:
        raise OSError(ctypes.get_errno(), "clone(CLONE_PARENT)")
    return pid


def escaped(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f, open(f"/proc/{pid}/environ", "rb") as e:
            return f.read().startswith(b"/bin/sleep") and e.read() == b""
    except OSError:
        return False


def main(pid_file: str, code: str) -> int:
    pid = clone_parent()
    if pid == 0:
        os.setsid()
        os.execve(SLEEP, [SLEEP, "1000"], {})
    with open(pid_file, "a") as f:
        f.write(f"{pid}\n")
    while not escaped(pid):
        time.sleep(0.01)
    if code == "stay":
        os.execv(SLEEP, [SLEEP, "1000"])
    return int(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
