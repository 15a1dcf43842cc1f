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
An older Stoker's (`stoker-` and the marker's first 16 characters: a checkpoint it wrote,
read by this one) is only thawed (`older_cgroups`, `thaw_older`), where the attempt's
processes are: the stale sweep removes it once empty.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import time
from collections.abc import Callable, Iterable

from executor.procs import cgroups, cgroupwalk
from executor.procs.cgroup_paths import own_places, parse_proc_cgroup, place_of
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
    found = {os.path.join(home.directory, name) for home in own_places(texts[0], mountinfo)}
    found |= _holding(name, pids, mountinfo)
    if recorded and os.path.basename(recorded) == name and place_of(recorded, mountinfo) is not None:
        found.add(recorded)
    return {d for d in found if _made_here(d)}


def in_task_cgroup(marker: str, pid: int, owner: int) -> bool:
    """`pid` is in the task cgroup of `marker`'s attempt (`stoker-MARKER`, a whole marker), or
    below it, where `owner` made it (`_made_here`): the task's, whatever its user, since no
    other user may move a process into `owner`'s cgroup (`stoker status`, the observer: a
    root task's daemon that dropped privileges is its leftover, as a re-run kills it)."""
    if not _WHOLE_MARKER.fullmatch(marker):
        return False
    try:
        mountinfo = cgroups.read("/proc/self", "mountinfo")
    except OSError:
        return False
    return bool(_holding(cgroups.task_name(marker), [pid], mountinfo, owner))


def _holding(name: str, pids: Iterable[int], mountinfo: str, owner: int | None = None) -> set[str]:
    """The directories of the cgroups named `name` that `pids` are in, or below (as
    /proc/PID/cgroup shows them; any kind: `_made_here` judges them, `owner`'s)."""
    found = set()
    for pid in pids:
        try:
            text = cgroups.read(f"/proc/{pid}", "cgroup")
        except OSError:
            continue
        for place in own_places(text, mountinfo):
            parts = place.directory.split("/")
            if name in parts:
                found.add("/".join(parts[:len(parts) - parts[::-1].index(name)]))
    return {d for d in found if _made_here(d, owner)}


def older_cgroups(marker: str, pids: Iterable[int]) -> list[str]:
    """The cgroups an older Stoker named `stoker-` and the first 16 characters of `marker`
    (a whole one) that `pids` are in (this user's: read before they are killed)."""
    if not _WHOLE_MARKER.fullmatch(marker):
        return []
    try:
        mountinfo = cgroups.read("/proc/self", "mountinfo")
    except OSError:
        return []
    return sorted(_holding(f"stoker-{marker[:16]}", pids, mountinfo))


def thaw_older(directories: Iterable[str]) -> list[str]:
    """Thaw `older_cgroups`, so that the SIGKILL of the processes an older Stoker's attempt
    left FROZEN in the v1 freezer (its watchdog killed as its kill had frozen them) is
    delivered. Not removed: the stale sweep removes them once empty (16 characters may name
    another task's, made and not yet entered: design §9). Those that were frozen."""
    frozen = []
    for directory in directories:
        with contextlib.suppress(OSError):
            if cgroups.read(directory, "freezer.state").strip() != "THAWED":
                frozen.append(directory)
        with contextlib.suppress(cgroupwalk.WalkCut):  # out of descriptors: as much as it could
            cgroupwalk.thaw(directory)
    return frozen


def holding(directories: Iterable[str]) -> Callable[[int], bool]:
    """Whether a process is in one of `directories` (`lost_cgroups`'), or below one, by
    /proc/PID/cgroup as it reads when asked (a kill's re-check through its pidfd). Only its
    task's processes can be: no other user may move a process into a cgroup of this user's
    (cgroup.procs is its owner's to write), and a process is born in its parent's."""
    try:
        mountinfo = cgroups.read("/proc/self", "mountinfo")
    except OSError:
        mountinfo = ""
    places = [p for d in directories if (p := place_of(d, mountinfo)) is not None]

    def holds(pid: int) -> bool:
        try:
            paths = parse_proc_cgroup(cgroups.read(f"/proc/{pid}", "cgroup"))
        except OSError:
            return False
        return any((path := paths.get(p.kind)) is not None
                   and (path == p.path or path.startswith(p.path.rstrip("/") + "/")) for p in places)
    return holds


def _made_here(directory: str, owner: int | None = None) -> bool:
    """`directory` is a cgroup this user (or `owner`) made, reached without a symlink or a
    `..` (and a path a file can have: no NUL, no lone surrogate, which the header may hold)."""
    try:
        if not os.path.isabs(directory) or os.path.normpath(directory) != directory \
                or os.path.realpath(directory) != directory:
            return False
        info = os.lstat(directory)
    except (OSError, ValueError):  # UnicodeEncodeError is one
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == (os.geteuid() if owner is None else owner)


def remove_emptied(directory: str, timeout_secs: float) -> str | None:
    """Remove a lost attempt's cgroup (and those below it) once the processes killed in it
    have left, never killing through it (the kill was by marker); None when this removed
    it, ALREADY_GONE when another had (the attempt's own watchdog), else why not, in words.
    Thawed first: left frozen (v1), the killed stayed, for good."""
    deadline = time.monotonic() + timeout_secs
    with contextlib.suppress(cgroupwalk.WalkCut):  # out of descriptors: the removal says what is left
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
        cgroupwalk.wait_emptied(directory, deadline)
