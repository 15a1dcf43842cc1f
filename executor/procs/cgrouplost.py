"""A lost attempt's task cgroup, as a `stoker run` re-run finds and removes it
(`executor/task/leftovers.py`), once the processes it killed have left it.

Found by its name, `stoker-` and the attempt's whole marker (`cgroups.task_name`), which
the checkpoint's header names: where the kernel shows the attempt's processes (this
user's, read before they are killed), below the cgroups this process is in (where an
attempt of the same session made it), and where the header says it was made (`cgroup`:
an attempt under another session's cgroup, or `STOKER_CGROUPS=DIR`, that left no process
to find it by). Each only when it is what an attempt of this user made: a directory of a
cgroup mount (never one a path with `..`, or a symlink, leads to), this user's (the one who
made it owns it), named by a whole marker (32 hex digits, as every supervisor makes one:
a planted 16-character one, which a cgroup made before this naming shows, names none). The
checkpoint may be the task's own writing, so the marker may be another live task's of
this user (it may kill that task anyway): its cgroup goes only if empty, never killed
through. Removal never kills: `remove_emptied` thaws, removes the cgroups below it and waits
for the killed to leave; the kernel refuses to remove a cgroup that holds a process.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import time
from collections.abc import Iterable

from executor.procs import cgroups, cgroupwalk
from executor.procs.cgroup_paths import own_places, place_of
from executor.procs.sandboxfs import describe_os_error

ALREADY_GONE = "already gone"
_WHOLE_MARKER = re.compile(r"[0-9a-f]{32}")


def lost_cgroups(marker: str, pids: Iterable[int], recorded: str = "") -> set[str]:
    """The directories of the task cgroup of the attempt whose marker is `marker`: where
    `pids` are in it, or below it (/proc/PID/cgroup: read before they are killed), below the
    cgroups this process is in, and `recorded` (the header's), each this user's, on a cgroup
    mount. None for a marker that is not a whole one."""
    if not _WHOLE_MARKER.fullmatch(marker):
        return set()
    name = cgroups.task_name(marker)
    try:
        mountinfo = cgroups.read("/proc/self", "mountinfo")
        texts = [cgroups.read("/proc/self", "cgroup")]
    except OSError:
        return set()
    for pid in pids:
        with contextlib.suppress(OSError):
            texts.append(cgroups.read(f"/proc/{pid}", "cgroup"))
    found = {os.path.join(home.directory, name) for home in own_places(texts[0], mountinfo)}
    for place in (p for text in texts[1:] for p in own_places(text, mountinfo)):
        parts = place.directory.split("/")
        if name in parts:
            found.add("/".join(parts[:len(parts) - parts[::-1].index(name)]))
    if recorded and os.path.basename(recorded) == name and place_of(recorded, mountinfo) is not None:
        found.add(recorded)
    return {d for d in found if _made_here(d)}


def _made_here(directory: str) -> bool:
    """`directory` is a cgroup this user made, reached without a symlink or a `..`."""
    if not os.path.isabs(directory) or os.path.normpath(directory) != directory \
            or os.path.realpath(directory) != directory:
        return False
    try:
        info = os.lstat(directory)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()


def remove_emptied(directory: str, timeout_secs: float) -> str | None:
    """Remove a lost attempt's cgroup (and those below it) once the processes killed in it
    have left, never killing through it (the kill was by marker); None when this removed
    it, ALREADY_GONE when another had (the attempt's own watchdog), else why not, in words.
    Thawed first: left frozen (v1), the killed stayed, for good."""
    deadline = time.monotonic() + timeout_secs
    cgroupwalk.thaw(directory)
    while True:
        cgroupwalk.remove_below(directory)
        try:
            os.rmdir(directory)
            return None
        except FileNotFoundError:
            return ALREADY_GONE
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() >= deadline:
                held = len(cgroupwalk.pids(directory))
                return f"cannot remove {directory}: {describe_os_error(e)} ({held} processes in it)"
        cgroups.wait_emptied(directory, deadline)
