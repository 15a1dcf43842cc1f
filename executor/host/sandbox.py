"""The sandbox's `.stoker/` directory: the names in it, and opening it safely.

`.stoker/` holds what the supervisor keeps for itself (docs/contract.md §4): the checkpoint
(`checkpoint.jsonl`, written by `executor/task/checkpoint.py`), the lock that makes one
supervisor per sandbox (`supervisor.lock`, `executor/host/lock.py`) and the control socket
(`control.sock`, `executor/host/control.py`) and the bound task it runs (`task.json`,
`executor/task/definition.py`). The directory is made owner-only (0700): the
socket needs nothing more to be reachable by its owner alone.

The task's processes share the sandbox and may have replaced `.stoker` with a symlink, a
FIFO or anything else: it is opened without following a symlink and without blocking
(`executor/procs/saferead.py`), and everything in it is reached through its directory fd,
never by path. `log_end` reads the end of a run's log the same way (for `stoker run`'s
console, which shows a failed run's last stderr lines). No logging, no threads.
"""
from __future__ import annotations

import itertools
import os
import stat
from pathlib import Path

from executor.procs import saferead, sandboxfs

STOKER_DIR = ".stoker"
CHECKPOINT_FILE = "checkpoint.jsonl"
LOCK_FILE = "supervisor.lock"
CONTROL_SOCKET = "control.sock"
TASK_FILE = "task.json"  # the bound task as it runs (`executor/task/definition.py`)
HELD_FILE = "held.json"  # what the watchdog holds by pid (`executor/task/heldfile.py`)
USAGE_FILE = "usage.json"  # the reservation and the last disk sample (`executor/task/usagefile.py`)
DIR_MODE = 0o700


def open_stoker_dir(sandbox: str | os.PathLike[str], *, create: bool = False, pinned: str = "",
                    sandbox_fd: int | None = None) -> int:
    """A directory fd of SANDBOX/.stoker (made 0700 when `create`; an existing one of this
    user is narrowed to 0700), in the directory `sandbox_fd` when given (the caller opened
    the sandbox). Raises OSError (`saferead.UnsafeEntry` when it is not a directory, not
    the one `pinned` names: a registry entry's `stoker_dir`, or, when `create`, another
    user's: a root supervisor of a task run as its role would otherwise keep its files in
    a directory the role made first and may change under it)."""
    root = saferead.open_root(sandbox) if sandbox_fd is None else os.dup(sandbox_fd)
    try:
        if create:
            try:
                os.mkdir(STOKER_DIR, DIR_MODE, dir_fd=root)
            except FileExistsError:
                pass
        fd = saferead.open_dir(STOKER_DIR, root)
    finally:
        os.close(root)
    try:
        sandboxfs.check_pinned(fd, pinned, f"{os.fspath(sandbox)}/{STOKER_DIR}")
    except OSError:
        os.close(fd)
        raise
    if create:
        try:
            st = os.fstat(fd)
            if st.st_uid != os.geteuid():
                raise sandboxfs.UnsafePath(_foreign(sandbox, st.st_uid))
            if stat.S_IMODE(st.st_mode) != DIR_MODE:
                os.fchmod(fd, DIR_MODE)
        except OSError:
            os.close(fd)
            raise
    return fd


def _foreign(sandbox: str | os.PathLike[str], uid: int) -> str:
    """Why a supervisor keeps nothing in a `.stoker` another user made: that user may
    plant a symlink in it (its control socket's name, between the bind and the chmod) and
    make this one, root, change a file outside the sandbox."""
    return (f"{os.fspath(sandbox)}/{STOKER_DIR} belongs to uid {uid}, not to this supervisor's user "
            f"(uid {os.geteuid()}): a supervisor keeps its lock, checkpoint and control socket only "
            f"in a {STOKER_DIR} of its own; remove that directory (or rename it) and start again")


_REPLACED = (TASK_FILE, HELD_FILE, USAGE_FILE)  # each written to `.NAME.RANDOM.tmp`, renamed over NAME


def remove_stale_temps(stoker_dir: int) -> list[str]:
    """Remove the temporaries (`.task.json.RANDOM.tmp`, ...: `replacefile`'s names) a writer
    killed between its write and its rename left in `.stoker`, and return their names. Only
    for the supervisor that holds the sandbox's lock (no other writes there): else a later
    run kept each for ever. Regular files alone; one it cannot remove is left. Raises OSError
    when `.stoker` cannot be listed."""
    removed = []
    for name in temporaries(stoker_dir) or ():
        try:
            os.unlink(name, dir_fd=stoker_dir)
        except OSError:
            continue
        removed.append(name)
    return removed


def temporaries(stoker_dir: int, names_at_most: int | None = None) -> list[str] | None:
    """The temporaries (regular files) in `.stoker`, by name: a writer's between its write
    and its rename, or one a writer killed then left; None when it holds more than
    `names_at_most` names (a reader's bound: the task may fill it, under `stoker run`, where
    it is the task's user's). Raises OSError."""
    found, looked = [], 0
    with os.scandir(stoker_dir) as scan:
        for entry in scan if names_at_most is None else itertools.islice(scan, names_at_most + 1):
            looked += 1
            if _is_temp(entry.name) and entry.is_file(follow_symlinks=False):
                found.append(entry.name)
    return None if names_at_most is not None and looked > names_at_most else sorted(found)


def _is_temp(name: str) -> bool:
    head, _, random = name.removesuffix(".tmp").rpartition(".")
    return (name.endswith(".tmp") and head.startswith(".") and head[1:] in _REPLACED and len(random) == 8
            and all(c in "0123456789abcdef" for c in random))


def checkpoint_mtime(sandbox: str | os.PathLike[str], pinned: str = "") -> float | None:
    """When the sandbox's checkpoint was last written; None when there is no regular file
    (or `.stoker` is not the one `pinned` names)."""
    try:
        fd = open_stoker_dir(sandbox, pinned=pinned)
    except OSError:
        return None
    try:
        st = os.stat(CHECKPOINT_FILE, dir_fd=fd, follow_symlinks=False)
    except OSError:
        return None
    finally:
        os.close(fd)
    return st.st_mtime if stat.S_ISREG(st.st_mode) else None


def log_end(sandbox: str | os.PathLike[str], process: str, run: int, stream: str,
            max_bytes: int) -> tuple[bytes, int] | None:
    """The last `max_bytes` of run `run`'s `stream` log (`.logs/PROCESS/RUN/STREAM`), reaching
    into its last rotated part (`STREAM.1`) while the file holds fewer, and the size of what
    they hold; None when there is no log, or what is there is not a regular file reached
    without a symlink (a failed run may have swapped its log for a FIFO, which an open would
    wait on for ever, or for a symlink to a file outside the sandbox)."""
    try:
        root = saferead.open_root(sandbox)
        try:
            rdir = saferead.walk(root, [".logs", process, str(run)], file=False)
        finally:
            os.close(root)
    except (OSError, ValueError):
        return None
    try:
        end = _file_end(rdir, stream, max_bytes)
        if end is None or end[1] >= max_bytes:
            return end
        before = _file_end(rdir, f"{stream}.1", max_bytes - end[1])  # rotated a moment ago
        return end if before is None else (before[0] + end[0], before[1] + end[1])
    finally:
        os.close(rdir)


def _file_end(rdir: int, name: str, max_bytes: int) -> tuple[bytes, int] | None:
    try:
        fd = saferead.open_file(name, rdir)
    except OSError:
        return None
    try:
        size = os.fstat(fd).st_size
        return os.pread(fd, max_bytes, max(0, size - max_bytes)), size
    except OSError:
        return None
    finally:
        os.close(fd)


def sandbox_path(sandbox: str | os.PathLike[str]) -> Path:
    """The absolute path the registry and the checkpoint record for a sandbox."""
    return Path(os.path.abspath(sandbox))


def moved_to(sandbox: str | os.PathLike[str], stoker_dir: int) -> str | None:
    """None while SANDBOX/.stoker is still the directory `stoker_dir` is (the one a
    supervisor opened, locked and writes in); else where that directory is now, as the
    kernel names it (`.../.stoker.moved`, `... (deleted)`): a task's processes share the
    sandbox and may rename or remove it. One `lstat`: cheap enough for every step."""
    if _still_there(sandbox, stoker_dir):
        return None
    try:
        return os.readlink(f"/proc/self/fd/{stoker_dir}")
    except OSError:
        return "a name it cannot tell"


def _still_there(sandbox: str | os.PathLike[str], stoker_dir: int) -> bool:
    try:
        here = os.stat(os.path.join(os.fspath(sandbox), STOKER_DIR), follow_symlinks=False)
        held = os.fstat(stoker_dir)
    except OSError:  # no .stoker by that name any more, or one it may not look at
        return False
    return (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino)
