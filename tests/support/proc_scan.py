"""Finding and killing a test's processes by what they carry, for the fault suite.

Owns reading `/proc/PID/environ` and `/proc/PID/stat` from a test: which live processes
carry an exact environment entry (a task's `STOKER_TASK_MARKER=...`, or a marker a test put
into a command's environment), the task marker of a known pid, pid files, and a cleanup
that SIGKILLs every process carrying an entry until none is left. Zombies count as gone.
It only ever signals processes that carry the exact entry it was given (or pids a test
names), so it never touches anything outside the test.
"""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

TASK_MARKER = "STOKER_TASK_MARKER"


def read_bytes(path: str) -> bytes:
    """A whole /proc (or other) file, b"" when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def is_live(pid: int) -> bool:
    """True when `pid` exists and is not a zombie."""
    data = read_bytes(f"/proc/{pid}/stat")
    close = data.rfind(b")")
    if close < 0:
        return False
    fields = data[close + 2:].split()
    return bool(fields) and fields[0] not in (b"Z", b"X", b"x")


def live(pids: Iterable[int]) -> set[int]:
    return {pid for pid in pids if is_live(pid)}


_SIGKILL_BIT = 1 << (signal.SIGKILL - 1)


def is_killed(pid: int) -> bool:
    """True when `pid` is gone, or has a SIGKILL pending: killed, and not yet scheduled to
    exit (a loaded machine can take a while). It runs none of its own code again; the
    kernel refuses it a fork."""
    if not is_live(pid):
        return True
    for line in read_bytes(f"/proc/{pid}/status").splitlines():
        name, _, value = line.partition(b":")
        if name in (b"SigPnd", b"ShdPnd") and int(value.strip() or b"0", 16) & _SIGKILL_BIT:
            return True
    return not is_live(pid)


def environ(pid: int) -> list[bytes]:
    return [e for e in read_bytes(f"/proc/{pid}/environ").split(b"\0") if e]


def task_marker_of(pid: int) -> str | None:
    """The STOKER_TASK_MARKER value in `pid`'s environment, None when it has none."""
    prefix = f"{TASK_MARKER}=".encode()
    for entry in environ(pid):
        if entry.startswith(prefix):
            return entry[len(prefix):].decode()
    return None


def pids_carrying(entry: str | bytes) -> set[int]:
    """Every live process whose environment holds exactly `entry` ("NAME=value")."""
    want = entry.encode() if isinstance(entry, str) else entry
    me = os.getpid()
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        if want in environ(int(name)) and is_live(int(name)):
            found.add(int(name))
    return found


def task_pids_by_marker(marker: str) -> set[int]:
    return pids_carrying(f"{TASK_MARKER}={marker}")


def read_pid_files(paths: Iterable[Path]) -> set[int]:
    """Pids written one per line into each existing file."""
    pids: set[int] = set()
    for path in paths:
        try:
            pids.update(int(x) for x in Path(path).read_text().split())
        except (OSError, ValueError):
            pass
    return pids


def kill_carrying(entry: str | bytes, pids: Iterable[int] = (), timeout_secs: float = 3.0) -> None:
    """Cleanup: SIGKILL the given pids and every process carrying `entry`, until none is
    left or `timeout_secs` passed. Never raises."""
    extra = set(pids)
    deadline = time.monotonic() + timeout_secs
    while True:
        targets = pids_carrying(entry) | live(extra)
        if not targets or time.monotonic() > deadline:
            return
        for pid in targets:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.01)


def hopper_quiet(pid_file: Path, quiet_secs: float = 0.1) -> bool:
    """True when a fork-hopper (`fake_task.py --fork-hop`) is gone: the last pid it wrote is
    gone or killed (`is_killed`: it forks no more), and it writes no new one for
    `quiet_secs` (it writes one per generation)."""
    before = read_bytes(str(pid_file))
    if not all(_hopper_killed(pid) for pid in read_pid_files([pid_file])):
        return False
    time.sleep(quiet_secs)  # the question is about time: does a new generation show up?
    return read_bytes(str(pid_file)) == before and all(_hopper_killed(pid) for pid in read_pid_files([pid_file]))


def _hopper_killed(pid: int) -> bool:
    """`is_killed`, or the pid is another process's now: a hopper runs through the pid space
    (pid_max may be 32768), so its last pid can be reused soon after it died."""
    return is_killed(pid) or b"--fork-hop" not in read_bytes(f"/proc/{pid}/cmdline")


def describe(pids: Iterable[int]) -> str:
    """Each pid's state, pending signals, cgroup and command line, for a failure message."""
    parts = []
    for pid in sorted(pids):
        status = dict(line.partition(b":")[::2] for line in read_bytes(f"/proc/{pid}/status").splitlines())
        state, pending = (status.get(k, b"").strip().decode() for k in (b"State", b"ShdPnd"))
        cgroup = read_bytes(f"/proc/{pid}/cgroup").decode(errors="replace").strip().replace("\n", "; ")
        cmdline = read_bytes(f"/proc/{pid}/cmdline").replace(b"\0", b" ").decode(errors="replace").strip()
        parts.append(f"{pid} (state {state or 'gone'}, pending {pending}, cgroup {cgroup}, {cmdline!r})")
    return ", ".join(parts) or "no pid"


def stop_hopper(pid_file: Path, stop_file: Path, timeout_secs: float = 3.0) -> None:
    """Cleanup: ask a hopper to stop (its next generation exits) and wait until it is quiet,
    SIGKILLing the last pid it wrote meanwhile. Never raises."""
    try:
        stop_file.touch()
    except OSError:
        pass
    deadline = time.monotonic() + timeout_secs
    while time.monotonic() < deadline and not hopper_quiet(pid_file, 0.05):
        for pid in live(read_pid_files([pid_file])):
            if b"--fork-hop" not in read_bytes(f"/proc/{pid}/cmdline"):
                continue  # not the hopper any more: its pid was reused
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
