"""A task's cgroup and those below it, walked by directory descriptors (`openat`), never
by path (`executor/procs/cgroups.py` kills and removes through it).

A run may nest cgroups below its task's as deep as it likes (a container runtime makes a
few; a hostile run, thousands). The kernel looks a path up one name at a time, so reaching
each of N nested cgroups by its full path costs N²/2 lookups: 1,000 levels, 500,000 per
walk (1 s of a loaded core; a kill walked four times and its 10 s bound ran out, the tree
left behind); and one whose path is longer than PATH_MAX (4,096 bytes: some 2,000 levels
of one-letter names) was not reached at all (ENAMETOOLONG: its members were never killed).
Here each step is one name, from the descriptor of the cgroup above; at most two
descriptors are open at a time (one per level would run out at RLIMIT_NOFILE's 1,024): the
walk climbs back by `..`, and stops (ESTALE) where that is not the directory it came down from
(cgroupfs moves none to another parent; another file system would). A cgroup gone or not
ours to read meanwhile is left out.
"""
from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable

from executor.procs import cgroups  # (loaded already: this module is its walk, loaded by it)

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def walk(directory: str, visit: Callable[[int], None] = lambda fd: None,
         leave: Callable[[int, str], None] = lambda parent, name: None) -> None:
    """`visit(fd)` for `directory` and each cgroup below it, each before those below it, `fd`
    open on it; `leave(parent, name)` once the cgroup `name` and all below it were visited,
    `parent` open on the one above (bottom up: a removal). What `visit` and `leave` raise
    ends the walk and is raised."""
    try:
        fd = os.open(directory, _DIRECTORY)
    except OSError:
        return
    try:
        visit(fd)
        stack = [(_below(fd), "", _identity(fd))]  # per level: names not visited yet, own name, own inode
        while stack:
            names, name, _ = stack[-1]
            if names:
                child_name = names.pop()
                try:
                    child = os.open(child_name, _DIRECTORY, dir_fd=fd)
                except OSError:  # gone meanwhile: left out
                    continue
                os.close(fd)
                fd = child
                visit(fd)
                stack.append((_below(fd), child_name, _identity(fd)))
                continue
            stack.pop()
            if not stack:
                return
            parent = os.open("..", _DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = parent
            if _identity(fd) != stack[-1][2]:  # moved elsewhere meanwhile (cgroupfs cannot)
                raise OSError(errno.ESTALE, f"{directory}: a cgroup below it moved during the walk")
            leave(fd, name)
    finally:
        os.close(fd)


def _identity(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _below(fd: int) -> list[str]:
    try:
        with os.scandir(fd) as entries:
            return [e.name for e in entries if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def read_at(fd: int, name: str) -> str:
    """The file `name` of the cgroup open as `fd`."""
    return cgroups.read("", name, fd)


def write_at(fd: int, name: str, text: str) -> None:
    file = os.open(name, os.O_WRONLY | os.O_CLOEXEC, dir_fd=fd)
    try:
        os.write(file, text.encode())
    finally:
        os.close(file)


def pids_at(fd: int) -> list[int]:
    """The processes listed in the cgroup open as `fd` ([] when it cannot be read)."""
    return cgroups.read_pids("", fd)


def pids(directory: str) -> list[int]:
    """The processes in the cgroup `directory` and in those below it."""
    found: list[int] = []
    walk(directory, lambda fd: found.extend(pids_at(fd)))
    return found


def thaw(directory: str) -> None:
    """Thaw v1 freezer cgroup `directory` and each below it, top down: each that froze itself
    (`freezer.self_freezing` 1: as `directory` did, or a member's own, which stays frozen as
    its parent thaws); the others thaw with it. A frozen process dies only once thawed (v2's:
    by SIGKILL as well). Only those: each write walks all below it in the kernel."""
    def visit(fd: int) -> None:
        try:
            frozen_itself = read_at(fd, "freezer.self_freezing").strip() != "0"
        except OSError:  # unreadable: thawed all the same
            frozen_itself = True
        if frozen_itself:
            with contextlib.suppress(OSError):
                write_at(fd, "freezer.state", "THAWED")

    walk(directory, visit)


def remove_below(directory: str) -> bool:
    """Remove the cgroups below `directory`, bottom up (a task's root process may make its
    own: a container runtime does): True when there were some and all are gone. Each
    removal fails while a process is in it; the first that fails ends the walk."""
    removed: list[str] = []

    def leave(parent: int, name: str) -> None:
        os.rmdir(name, dir_fd=parent)
        removed.append(name)

    try:
        walk(directory, leave=leave)
    except OSError:
        return False
    return bool(removed)
