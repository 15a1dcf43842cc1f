"""Whether a process is held frozen by its cgroup: cgroup v2's `cgroup.freeze` (written by
hand, `systemctl freeze UNIT`, `docker pause`, or a freeze of any cgroup above it) or the v1
freezer. A frozen supervisor runs no code, as a stopped one does, but the kernel shows it
sleeping (state S), not stopped (T), so `identity.is_stopped` cannot tell. Read only.
"""
from __future__ import annotations

import os

from executor.procs.cgroup_paths import CgroupKind, own_places


def frozen_cgroup(pid: int) -> str | None:
    """The directory of the cgroup that holds `pid` frozen (`_freezing`): v2, its cgroup's
    `cgroup.events` says `frozen 1` (an ancestor's freeze sets it too); v1, its `freezer.state`
    is FROZEN or FREEZING (an ancestor's too). None when it is not frozen, or that cannot be
    read (the process gone, no cgroup file system mounted where this process looks)."""
    try:
        proc_cgroup = _read(f"/proc/{pid}/cgroup")
        mountinfo = _read("/proc/self/mountinfo")
    except OSError:
        return None
    for place in own_places(proc_cgroup, mountinfo):
        v2 = place.kind is CgroupKind.V2
        try:
            text = _read(os.path.join(place.directory, "cgroup.events" if v2 else "freezer.state"))
        except OSError:
            continue
        if ("frozen 1" in text.splitlines()) if v2 else text.strip() in ("FROZEN", "FREEZING"):
            return _freezing(place.directory, v2)
    return None


def _freezing(directory: str, v2: bool) -> str:
    """Of frozen `directory` and the cgroups above it, the nearest frozen by its own setting
    (v2 `cgroup.freeze` 1, v1 `freezer.self_freezing` 1): the one to thaw (was: `directory`,
    though an ancestor's freeze held it, `systemctl freeze` of the unit around a nested
    cgroup, and a thaw of `directory` thawed nothing). `directory` when none is found."""
    own = "cgroup.freeze" if v2 else "freezer.self_freezing"
    here = directory
    while True:
        try:
            if _read(os.path.join(here, own)).strip() == "1":
                return here
        except OSError:  # above the hierarchy's top (or its root, which cannot be frozen)
            return directory
        up = os.path.dirname(here)
        if up == here:
            return directory
        here = up


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read(1 << 20)
