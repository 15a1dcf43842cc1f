"""Whether a process is held frozen by its cgroup: cgroup v2's `cgroup.freeze` (written by
hand, `systemctl freeze UNIT`, `docker pause`, or a freeze of any cgroup above it) or the v1
freezer. A frozen supervisor runs no code, as a stopped one does, but the kernel shows it
sleeping (state S), not stopped (T), so `identity.is_stopped` cannot tell. Read only.
"""
from __future__ import annotations

import os

from executor.procs.cgroup_paths import CgroupKind, own_places


def frozen_cgroup(pid: int) -> str | None:
    """The directory of the cgroup that holds `pid` frozen: v2, its cgroup's `cgroup.events`
    says `frozen 1` (an ancestor's freeze sets it too); v1, its `freezer.state` is FROZEN or
    FREEZING (an ancestor's too). None when it is not frozen, or that cannot be read (the
    process gone, no cgroup file system mounted where this process looks)."""
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
            return place.directory
    return None


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read(1 << 20)
