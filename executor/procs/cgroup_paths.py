"""Where a per-task cgroup can go, read from /proc/self/cgroup and /proc/self/mountinfo. PURE.

Owns the parsing of the two files' text and the choice of candidate places, strongest
first; `executor/procs/cgroups.py` reads the files, makes the cgroup and moves processes.
No I/O, no clock, no logging: text in, values out.

The kinds, in the order they are tried:

- `V2`: the cgroup-v2 (unified) hierarchy. The task's cgroup is killed with one write to
  `cgroup.kill` (Linux ≥ 5.14: the kernel kills every member and whatever they fork
  meanwhile), or frozen with `cgroup.freeze` and then killed (Linux 5.2–5.13).
- `V1_FREEZER`: the cgroup-v1 `freezer` hierarchy: `freezer.state` FROZEN, SIGKILL every
  member, THAWED (a frozen process cannot fork, so none slips out between the list and the
  kill).

The place for a kind is the cgroup this process is in (`/proc/self/cgroup`), as a directory
under the mount point that shows it (`/proc/self/mountinfo`; a mount whose root is not `/`,
as in a container with a cgroup namespace or a bind mount, shows only its subtree). With
`parent` given (a delegated subtree, by the `STOKER_CGROUPS` setting), that directory is
used instead, for the kind of the mount it is under.
"""
from __future__ import annotations

import enum
import posixpath
import re

import attrs

from executor.procs.oomcount import below


class CgroupKind(enum.Enum):
    V2 = "cgroup2"
    V1_FREEZER = "cgroup1-freezer"


@attrs.frozen(slots=True)
class Mount:
    """One cgroup file system mount: where it is, which cgroup it shows as its root."""

    mountpoint: str
    root: str  # the cgroup path shown at the mount point ("/" unless namespaced or bound)
    kind: CgroupKind | None  # None: a v1 hierarchy without the freezer


@attrs.frozen(slots=True)
class Place:
    """A cgroup: its kind, its directory, and its path as /proc/PID/cgroup shows it."""

    kind: CgroupKind
    directory: str
    path: str

    def child(self, name: str) -> Place:
        return Place(self.kind, posixpath.join(self.directory, name),
                     posixpath.join(self.path, name))


_ESCAPE = r"\\([0-7]{3})"  # compiled at its first use (`re`'s cache): most mount tables have none


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (`\\040`); a field
    without a backslash is as written (a start reads some 40 fields, seldom one escaped)."""
    if "\\" not in field:
        return field
    return re.sub(_ESCAPE, lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """The cgroup and cgroup2 mounts in /proc/self/mountinfo text, in order; lines that are
    not cgroup mounts, or are malformed, are skipped, and so is a mount hidden by a later one
    (of any type) on the same mount point or on a directory above it: what the path shows is
    the later one's (the kernel lists a namespace's mounts in the order they were made). A
    mount on `/` hides none below it: a process's root stays the mount it was."""
    mounts: dict[str, Mount] = {}  # by mount point, in the order they were mounted
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 1:
            continue
        mountpoint = _unescape(fields[4])
        _hide(mounts, mountpoint)
        fstype = tail[0]
        if fstype == "cgroup2":
            kind: CgroupKind | None = CgroupKind.V2
        elif fstype == "cgroup":
            options = tail[2].split(",") if len(tail) > 2 else []
            kind = CgroupKind.V1_FREEZER if "freezer" in options else None
        else:
            continue
        mounts[mountpoint] = Mount(mountpoint=mountpoint, root=_unescape(fields[3]), kind=kind)
    return list(mounts.values())


def _hide(mounts: dict[str, Mount], mountpoint: str) -> None:
    """Drop the mounts a new mount on `mountpoint` hides: one on it, and any under it."""
    mounts.pop(mountpoint, None)
    if mountpoint != "/":
        under = mountpoint.rstrip("/") + "/"
        for hidden in [p for p in mounts if p.startswith(under)]:
            del mounts[hidden]


def parse_proc_cgroup(text: str) -> dict[CgroupKind, str]:
    """This process's cgroup path for each kind, from /proc/self/cgroup text
    (`0::/path` for v2, `N:freezer:/path` or `N:cpu,freezer:/path` for v1)."""
    paths: dict[CgroupKind, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or not parts[2].startswith("/"):
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            paths[CgroupKind.V2] = path
        elif "freezer" in controllers.split(","):
            paths[CgroupKind.V1_FREEZER] = path
    return paths


def own_places(proc_cgroup: str, mountinfo: str) -> list[Place]:
    """The cgroups this process is in, as directories, strongest kind first (V2, then
    V1_FREEZER); a kind is left out when no mount shows our cgroup. In a cgroup namespace a
    cgroup outside it is shown as `/../x`: on a mount made inside it (rooted at `/`) it is on
    none, never `MOUNT/../x` (a directory outside the cgroup file system)."""
    paths = parse_proc_cgroup(proc_cgroup)
    places = []
    for kind in CgroupKind:
        path = paths.get(kind)
        if path is None or path.endswith(" (deleted)"):
            continue
        for mount in parse_mountinfo(mountinfo):
            if mount.kind is not kind:
                continue
            rest = below(path, mount.root)
            if rest is not None and ".." not in rest.split("/"):  # `..`: outside the mount's root
                directory = posixpath.join(mount.mountpoint, rest).rstrip("/") or "/"
                places.append(Place(kind, directory, path))
                break
    return places


def place_of(directory: str, mountinfo: str) -> Place | None:
    """`directory` (absolute, normalised) as a Place: the kind of the cgroup mount it is
    under; None when it is under none (or under a v1 hierarchy without the freezer)."""
    best: Mount | None = None
    for mount in parse_mountinfo(mountinfo):
        if below(directory, mount.mountpoint) is None:
            continue
        if best is None or len(mount.mountpoint) > len(best.mountpoint):
            best = mount
    if best is None or best.kind is None:
        return None
    rest = below(directory, best.mountpoint) or ""
    return Place(best.kind, directory.rstrip("/") or "/", posixpath.join(best.root, rest).rstrip("/") or "/")
