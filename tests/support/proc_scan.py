"""Finding and killing a test's processes by what they carry, for the fault suite.

Owns reading `/proc/PID/environ` and `/proc/PID/stat` from a test: which live processes
carry an exact environment entry (a task's `STOKER_TASK_MARKER=...`, or a marker a test put
into a command's environment), the task marker of a known pid, a process's children, pid files, and a cleanup
that SIGKILLs every process carrying an entry until none is left. Zombies count as gone
(`executor/procs/pidsignal.py`: one whose first thread exited while others run lives).
It only ever signals processes that carry the exact entry it was given (or pids a test
names), so it never touches anything outside the test: the pids it reads (pid files,
children) are `pidnames.Named`, judged and signalled only as the process they named, since
the suite wraps the pid space (pid_max 32768) and a pid learned earlier may be another's.
"""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

from tests.support import pidnames

TASK_MARKER = "STOKER_TASK_MARKER"


def read_bytes(path: str) -> bytes:
    """A whole /proc (or other) file, b"" when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def is_live(pid: int) -> bool:
    """True when `pid` exists and is not a zombie; a `pidnames.Named` (a pid file's:
    `read_pid_files`) only while it is the process named."""
    return pidnames.is_live(pid)


def live(pids: Iterable[int]) -> set[int]:
    return pidnames.live(pids)


_SIGKILL_BIT = 1 << (signal.SIGKILL - 1)
_PF_EXITING = 0x4  # in /proc/PID/stat's flags: the process is in exit(), past its pending SIGKILL


def is_exiting(pid: int) -> bool:
    data = read_bytes(f"/proc/{pid}/stat")
    fields = data[data.rfind(b")") + 2:].split()
    return len(fields) > 6 and bool(int(fields[6]) & _PF_EXITING)


def is_killed(pid: int) -> bool:
    """True when `pid` is gone, or has a SIGKILL pending: killed, and not yet scheduled to
    exit (a loaded machine can take a while), or exiting (the SIGKILL taken, not a zombie
    yet). It runs none of its own code again; the kernel refuses it a fork."""
    if not is_live(pid) or is_exiting(pid):
        return True
    for line in read_bytes(f"/proc/{pid}/status").splitlines():
        name, _, value = line.partition(b":")
        if name in (b"SigPnd", b"ShdPnd") and int(value.strip() or b"0", 16) & _SIGKILL_BIT:
            return True
    return not is_live(pid)


def children(pid: int) -> list[int]:
    """Every child of `pid`, whichever of its threads forked it, from the kernel's lists
    (`/proc/PID/task/TID/children`), each named (`pidnames.named`); [] when it is gone. A test's own reading, not the
    product's (`executor/procs/proctree.py`), so that it checks what the product finds."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    return [pidnames.named(int(c)) for tid in tids for c in read_bytes(f"/proc/{pid}/task/{tid}/children").split()]


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
        if want in environ(int(name)) and (pid := pidnames.named(int(name))).start is not None:
            found.add(pid)  # named as it carries `entry` (one read of /proc/PID/stat per match)
    return found


def task_pids_by_marker(marker: str) -> set[int]:
    return pids_carrying(f"{TASK_MARKER}={marker}")


def read_pid_files(paths: Iterable[Path]) -> set[int]:
    """Pids written one per line into each existing file, each named as its process started
    by the file's last write (`pidnames.pid_file`): one that took the pid since is not it."""
    return {pid for path in paths for pid in pidnames.pid_file(path)}


def kill_carrying(entry: str | bytes, pids: Iterable[int] = (), timeout_secs: float = 10.0) -> None:
    """Cleanup: SIGKILL the given pids and every process carrying `entry`, until none is
    left or `timeout_secs` passed. Never raises."""
    extra = set(pids)
    deadline = time.monotonic() + timeout_secs
    while True:
        targets = pids_carrying(entry) | live(extra)
        if not targets or time.monotonic() > deadline:
            return
        for pid in targets:
            pidnames.kill(pid)
        time.sleep(0.01)


def hopper_quiet(pid_file: Path, quiet_secs: float = 0.1, within_secs: float = 0.0) -> bool:
    """True when a fork-hopper (`fake_task.py --fork-hop`) is gone: the last pid it wrote is
    gone or killed (`is_killed`: it forks no more) or no generation of it any more, and it
    writes no new one for `quiet_secs` (it writes one per generation). With `within_secs`,
    asked again until then: a generation SIGKILLed in the middle of writing its pid (a
    rename blocked on the file system's journal) finishes that write after the kill, once;
    a hopper that lives writes on and is never quiet."""
    deadline = time.monotonic() + within_secs
    while True:
        before = read_bytes(str(pid_file))
        if all(_hopper_killed(pid, pid_file) for pid in read_pid_files([pid_file])):
            time.sleep(quiet_secs)  # the question is about time: does a new generation show up?
            if read_bytes(str(pid_file)) == before:
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def hopper_hops(pid_file: Path, generations: int = 3, timeout_secs: float = 10.0) -> bool:
    """True once a fork-hopper writes `generations` new pids to `pid_file` (one per
    generation); False when it does not within `timeout_secs`, a generous bound. The
    event-driven way to ask whether it lives: `not hopper_quiet(...)` waits a fixed quiet
    time, and a live hopper a loaded host does not schedule for that long looks stopped."""
    seen = read_bytes(str(pid_file))
    hops = 0
    deadline = time.monotonic() + timeout_secs
    while time.monotonic() < deadline:
        now = read_bytes(str(pid_file))
        if now != seen:
            seen, hops = now, hops + 1
            if hops >= generations:
                return True
        time.sleep(0.001)
    return False


def hopper_writing(pid: int) -> Path | None:
    """The pid file the fork-hopper `pid` writes (its `--hop-pid-file`, resolved against
    its working directory); None when `pid` is no hopper now (gone, exiting, or another
    command)."""
    argv = read_bytes(f"/proc/{pid}/cmdline").split(b"\0")
    if b"--fork-hop" not in argv or b"--hop-pid-file" not in argv[:-1]:
        return None
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None
    return Path(os.path.realpath(os.path.join(cwd, os.fsdecode(argv[argv.index(b"--hop-pid-file") + 1]))))


def _is_hopper_of(pid: int, pid_file: Path) -> bool:
    return hopper_writing(pid) == Path(os.path.realpath(pid_file))


def _hopper_killed(pid: int, pid_file: Path) -> bool:
    """`is_killed`, or the pid is no generation of the hopper writing `pid_file` now: a
    hopper runs through the pid space, and a host shared with other suites runs theirs,
    whose generations carry `--fork-hop` too (only this one's name this pid file)."""
    return is_killed(pid) or not _is_hopper_of(pid, pid_file)


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


def stop_hopper(pid_file: Path, stop_file: Path, timeout_secs: float = 10.0) -> None:
    """Cleanup: ask a hopper to stop (its next generation exits) and wait until it is quiet,
    SIGKILLing the last pid it wrote meanwhile. Never raises."""
    try:
        stop_file.touch()
    except OSError:
        pass
    deadline = time.monotonic() + timeout_secs
    while time.monotonic() < deadline and not hopper_quiet(pid_file, 0.05):
        for pid in live(read_pid_files([pid_file])):
            if not _is_hopper_of(pid, pid_file):
                continue  # not this hopper any more: its pid was reused (by another's, maybe)
            pidnames.kill(pid)
