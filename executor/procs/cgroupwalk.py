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
(cgroupfs moves none to another parent; another file system would). It never steps onto
another mount (its `mnt_id`: a bind mount of the same hierarchy below the task's has the
same st_dev; was: its members were listed and SIGKILLed, its empty cgroups removed, cgroups
outside the task's). A cgroup gone or not
ours to read meanwhile is left out; one that could not be opened or read for want of a
descriptor or memory (EMFILE, ENFILE, ENOMEM) is not: the walk stops with `WalkCut`, which
says so (was: that subtree was skipped in silence, its members never killed that pass), and
so does a walk given a `deadline` once it has passed (checked at each step, not only
between walks: a kill's one pass over 1,000 levels took 2.28 s of its 2 s on a loaded host).
`wait_emptied` is the wait, after a removal that failed, for the last member to leave
(`retry_after` after a kill that failed), and `left_at_deadline` says what that removal left
once its deadline came, in words.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import select
import signal
import time
from collections.abc import Callable

from executor.procs import cgroups  # (loaded already: this module is its walk, loaded by it)
from executor.procs.pidsignal import pidfd_signal
from executor.procs.sandboxfs import describe_os_error

_OCTAL = re.compile(rb"\\([0-7]{3})")  # mountinfo's escape of a space, tab, newline, backslash
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class WalkCut(OSError):
    """A walk that stopped short: cgroups below the top not visited (out of descriptors or
    memory, or its deadline passed), in words."""


class DeadlinePassed(WalkCut):
    """A walk its deadline stopped: nothing failed, the time was up (on a slow host, or a
    tree thousands of levels deep)."""


def walk(directory: str, visit: Callable[[int], None] = lambda fd: None,
         leave: Callable[[int, str], None] = lambda parent, name: None, deadline: float | None = None) -> None:
    """`visit(fd)` for `directory` and each cgroup below it, each before those below it, `fd`
    open on it; `leave(parent, name)` once the cgroup `name` and all below it were visited,
    `parent` open on the one above (bottom up: a removal). What `visit` and `leave` raise
    ends the walk and is raised; so does `WalkCut` (`deadline`: a `time.monotonic()`)."""
    try:
        fd = os.open(directory, _DIRECTORY)
    except OSError as e:
        _left_out(e, directory, 0)
        return
    try:
        visit(fd)
        mount = _mount(fd, directory, 1) if _mounts_below(fd) else None
        stack = [(_below(fd, directory, 0), "", _identity(fd))]  # per level: names not visited yet, own name, own inode
        while stack:
            names, name, _ = stack[-1]
            if names:
                child = _open_below(fd, names.pop(), directory, len(stack), deadline, mount)
                if child is not None:
                    os.close(fd)
                    fd, child_name = child
                    visit(fd)
                    stack.append((_below(fd, directory, len(stack)), child_name, _identity(fd)))
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


def _open_below(fd: int, name: str, directory: str, depth: int,
                deadline: float | None, mount: str | None) -> tuple[int, str] | None:
    """The cgroup `name` below the one open as `fd` (`depth` levels below `directory`), open,
    and its name; None when it is gone meanwhile, or another mount (`mount`: the top's; None:
    none below it) is there (left out). Raises `WalkCut`."""
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlinePassed(f"the walk of {directory} stopped {depth} levels down: its deadline passed")
    try:
        child = os.open(name, _DIRECTORY, dir_fd=fd)
    except OSError as e:
        _left_out(e, directory, depth + 1)
        return None
    try:
        if mount is None or _mount(child, directory, depth + 1) == mount:
            return child, name
    except WalkCut:
        os.close(child)
        raise
    os.close(child)
    return None


def _mounts_below(fd: int) -> bool:
    """Whether /proc/self/mountinfo shows a mount below the directory open as `fd` (True
    when it cannot say): if not, no step needs its mount told (an fdinfo read a step, 60 %
    more time a walk: 0.25 -> 0.40 s for 2,100 levels). One mounted there meanwhile is
    the work of root in this mount namespace, who may do anything to the task's cgroups."""
    try:
        top = os.readlink(f"/proc/self/fd/{fd}".encode()).rstrip(b"/") + b"/"
        with open("/proc/self/mountinfo", "rb") as info:
            points = [line.split()[4] for line in info]
    except (OSError, IndexError):
        return True
    return any(_OCTAL.sub(lambda m: bytes([int(m[1], 8)]), p).startswith(top) for p in points)


def _mount(fd: int, directory: str, depth: int) -> str:
    """The mount `fd` (`depth` levels below `directory`) is open on: its `mnt_id` (a bind
    mount of the same hierarchy has the same st_dev, not the same mnt_id), its st_dev where
    /proc is not there to say it. Raises `WalkCut` (depth: the level it leaves out)."""
    try:
        with open(f"/proc/self/fdinfo/{fd}", "rb") as info:
            for line in info:
                if line.startswith(b"mnt_id:"):
                    return line.split()[1].decode()
    except OSError as e:
        _left_out(e, directory, depth)
    return f"dev {os.fstat(fd).st_dev}"


def _left_out(e: OSError, directory: str, depth: int) -> None:
    """Return when `e` leaves a cgroup out of the walk (gone, not ours to read); raise
    `WalkCut` when it was for want of a descriptor or memory."""
    if e.errno in cgroups.SCARCE:
        where = f"a cgroup {depth} levels below {directory}, and those below it," if depth else directory
        raise WalkCut(f"{where} not walked: {describe_os_error(e)}") from e


def _identity(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _below(fd: int, directory: str, depth: int) -> list[str]:
    try:
        with os.scandir(fd) as entries:
            return [e.name for e in entries if e.is_dir(follow_symlinks=False)]
    except OSError as e:
        _left_out(e, directory, depth + 1)
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
    """The processes listed in the cgroup open as `fd` ([] when it is gone or not ours to
    read). Raises `WalkCut` for want of a descriptor or memory to read it with."""
    try:
        return cgroups.read_pids("", fd)
    except OSError as e:
        raise WalkCut(f"cannot read a cgroup's processes: {describe_os_error(e)}") from e


def pids(directory: str, whole: bool = False) -> list[int]:
    """The processes in the cgroup `directory` and in those below it: those it could read;
    `whole`: all or `WalkCut` (what kills, `walk` with `pids_at`, raises it too)."""
    found: list[int] = []
    try:
        walk(directory, lambda fd: found.extend(pids_at(fd)))
    except WalkCut:
        if whole:
            raise
    return found


def still_in(directory: str) -> str:
    """How many processes are in cgroup `directory` and below, in words (or why they could
    not be counted)."""
    try:
        return f"{len(pids(directory, whole=True))} processes still in it"
    except OSError as e:
        return f"its processes not counted: {describe_os_error(e)}"


def only(directory: str, stuck: frozenset[int]) -> bool:
    """Whether the processes in cgroup `directory` and below it are some of `stuck` (and
    some there are): what the close may stop waiting for (`TaskCgroup.kill_and_remove`)."""
    try:
        members = pids(directory, whole=True)
    except OSError:
        return False
    return bool(members) and stuck.issuperset(members)


def thaw(directory: str, deadline: float | None = None) -> None:
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
            try:
                write_at(fd, "freezer.state", "THAWED")
            except OSError as e:  # gone meanwhile: nothing to thaw; no descriptor: said
                if e.errno in cgroups.SCARCE:
                    raise WalkCut(f"cannot thaw a cgroup of {directory}: {describe_os_error(e)}") from e

    walk(directory, visit, deadline=deadline)


def remove_below(directory: str, deadline: float | None = None) -> bool:
    """Remove the cgroups below `directory`, bottom up (a task's root process may make its
    own: a container runtime does): True when there were some and all are gone. Each
    removal fails while a process is in it; the first that fails ends the walk."""
    removed: list[str] = []

    def leave(parent: int, name: str) -> None:
        os.rmdir(name, dir_fd=parent)
        removed.append(name)

    try:
        walk(directory, leave=leave, deadline=deadline)
    except OSError:
        return False
    return bool(removed)


def kill_listed(fd: int, batch: int = 64) -> None:
    """`TaskCgroup._kill_members` for the cgroup open as `fd`, `batch` pidfds open at a time."""
    listed = pids_at(fd)
    for start in range(0, len(listed), batch):
        pidfds = {}
        for pid in listed[start:start + batch]:
            try:
                pidfds[pid] = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            except OSError:
                pidfds[pid] = -1
        still = set(pids_at(fd))
        for pid, pidfd in pidfds.items():
            with contextlib.suppress(OSError):
                if pid in still and pidfd >= 0:
                    pidfd_signal(pidfd, pid, signal.SIGKILL)
                elif pid in still:
                    os.kill(pid, signal.SIGKILL)
            if pidfd >= 0:
                os.close(pidfd)


def wait_emptied(directory: str, deadline: float) -> bool:
    """Until no process is left in the cgroup, or the deadline: woken by the kernel as
    cgroup.events changes (v2: `populated 0`; poll() sees POLLPRI), not by a timer. A SIGKILLed
    member leaves only once it has exited: 0.5 s to free 8 GB, and a request a FUSE server
    holds unanswered keeps it in D state until answered. v1 (no cgroup.events): one look
    POLL_SECS later. True when it saw none left (or the cgroup gone). Here, not in
    `cgroups.py`: only a removal that failed waits (this module is loaded by then)."""
    try:
        fd = os.open(os.path.join(directory, "cgroup.events"), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        time.sleep(cgroups.POLL_SECS)
        return False
    try:
        watch = select.poll()
        watch.register(fd, select.POLLPRI)
        if b"populated 0" in os.pread(fd, 4096, 0):  # empty, not removed all the same: a look later
            time.sleep(cgroups.POLL_SECS)
        while b"populated 0" not in os.pread(fd, 4096, 0):
            if (left := deadline - time.monotonic()) <= 0:
                return False
            watch.poll(left * 1000)
    except OSError:  # removed meanwhile: nothing is left to wait for
        return True
    finally:
        os.close(fd)
    return True


def retry_after(directory: str, until: float) -> None:
    """Until `until`, or none left meanwhile where the kernel says so (v2: not v1's freezer)."""
    if not wait_emptied(directory, until):
        time.sleep(max(0.0, until - time.monotonic()))


def left_at_deadline(cg: cgroups.TaskCgroup, problem: str | None, cut: bool, error: OSError,
                     timeout_secs: float) -> str:
    """What `cg.kill_and_remove` left at its deadline (or before it: `stuck_left`): `CutShort`
    when the deadline alone stopped it (the kill's walk cut there, or no process left: the
    tree's removal unfinished), else the kill's failure and what it left. Here, not in
    `cgroups.py`: only a removal that failed says so (this module is loaded by then)."""
    still = still_in(cg.directory)
    frozen = f"; it is left FROZEN, its thaw failed: {cg.left_frozen}" if cg.left_frozen else ""
    if cut or (problem is None and still.startswith("0 ")):
        return cgroups.CutShort(f"its {'kill' if cut else 'removal'} stopped at its {timeout_secs} s deadline "
                                f"({still}){frozen}")
    when = ", SIGKILLed and not yet gone, named already: not waited for" if cg.stuck_left else \
        f" after {timeout_secs} s"
    left = f"cannot remove {cg.directory}: {describe_os_error(error)} ({still}{when})"
    return (f"{problem}; {left}" if problem else left) + frozen
