"""A directory's mount tree copied onto itself through descriptors only: `open_tree(2)` and
`move_mount(2)` (Linux >= 5.2), which `imagefs` seals the task's image with.

`clone_onto(fd)` is `mount --rbind DIR DIR` for the directory FD holds, the copy attached
where FD leads, whatever its name is by then, and returned as a descriptor of the new
mount's root: nothing is looked up by name, before the mount or after it. With mount(2)
the new mount can be named only by a path (a `/proc/self/fd/N` of the directory leads to
the mount below it), which the task owner, who owns the sandbox, may have moved meanwhile.

It gives -1 where the kernel has no such call (ENOSYS) or a seccomp profile denies it
(EPERM): the caller then uses mount(2). The numbers are the generic table's, every
architecture's since Linux 5.1 but alpha's.

`seal(fd)` makes the mount whose root FD holds, and every mount below it (the image's
own submounts, which the recursive copy copied), nosuid, nodev and private (so that no
mount propagated into it later comes unsealed): by mount_setattr(2) with AT_RECURSIVE
(Linux >= 5.12), else each one by mount(2), reached from FD by its path in
/proc/self/mountinfo (`_tree`), the table then checked again (`first_unsealed`: a mount
a task's process can reach that is still not sealed fails the seal).

`proc_fds_shown(dir)` says whether `/proc/self/fd` leads to this process's descriptors
here, which every remount and detach needs (umount2(2) takes a path only).

Loaded only for a filesystem-image task; no logging.
"""
from __future__ import annotations

import ctypes
import errno
import os
import re
from pathlib import Path

SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442
OPEN_TREE_CLONE, AT_EMPTY_PATH, AT_RECURSIVE = 1, 0x1000, 0x8000
MOVE_MOUNT_F_EMPTY_PATH, MOVE_MOUNT_T_EMPTY_PATH = 0x4, 0x40
UNSUPPORTED = (errno.ENOSYS, errno.EPERM)  # no such call, or a seccomp profile's refusal of it
MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV = 0x2, 0x4
MS_BIND, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_RELATIME = 0x1000, 0x2, 0x4, 0x20, 0x200000
MS_REC, MS_PRIVATE = 0x4000, 0x40000
KEPT_FLAGS = os.ST_RDONLY | os.ST_NOEXEC | os.ST_NOATIME | os.ST_NODIRATIME  # the same bits as MS_*
ST_NOSYMFOLLOW, MS_NOSYMFOLLOW = 0x2000, 0x100  # (Linux >= 5.10; not the same bits; Python names neither)


def clone_onto(fd: int) -> int:
    """A descriptor (O_PATH-like, close-on-exec) of the root of a recursive copy of FD's
    mount tree, attached on FD's directory; -1 where the calls are missing (UNSUPPORTED).
    Raises OSError; nothing stays attached or open when it does."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    flags = OPEN_TREE_CLONE | os.O_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE
    tree = libc.syscall(ctypes.c_long(SYS_OPEN_TREE), ctypes.c_int(fd), b"", ctypes.c_uint(flags))
    if tree < 0:
        err = ctypes.get_errno()
        if err in UNSUPPORTED:
            return -1
        raise OSError(err, os.strerror(err))
    moved = libc.syscall(ctypes.c_long(SYS_MOVE_MOUNT), ctypes.c_int(tree), b"", ctypes.c_int(fd), b"",
                         ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH))
    if moved < 0:
        err = ctypes.get_errno()
        os.close(tree)  # a detached copy: gone with its last descriptor
        raise OSError(err, os.strerror(err))
    return tree


def proc_fds_shown(directory: Path) -> bool:
    """Whether `/proc/self/fd/N` leads to what descriptor N holds (DIRECTORY's, opened for
    the look): what `imagefs` names each mount by to remount and detach it (umount2(2) and
    a remount take a path only). False where procfs is not mounted at /proc."""
    try:
        fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return True  # (said by the next step, which opens it too)
    try:
        return os.path.samestat(os.stat(f"/proc/self/fd/{fd}"), os.fstat(fd))
    except OSError:
        return False
    finally:
        os.close(fd)


class MountAttr(ctypes.Structure):
    """`struct mount_attr` as mount_setattr(2) takes it (MOUNT_ATTR_SIZE_VER0, 32 bytes)."""
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def seal(top: int) -> str:
    """The mount whose root TOP holds, and every mount below it, made nosuid and nodev (their
    other flags kept) and private: a setuid program or a device of any of them would work for
    the task otherwise, and so would one in a mount propagated in later (the copy is a peer,
    or a slave, of the agent's `taskfs` mount where that is shared: what the agent mounts
    there after the seal would arrive with its own flags; and what the executor binds into
    the image would show in the agent's). At once by mount_setattr(2) with AT_RECURSIVE
    (Linux >= 5.12); where that is UNSUPPORTED, the tree made private, then each of its
    mounts remounted by itself (`_remount_each`). The way, in words. Raises OSError, whose
    message names the mount left with its setuid bits working."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
    attr = MountAttr(attr_set=MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, propagation=MS_PRIVATE)
    done = libc.syscall(ctypes.c_long(SYS_MOUNT_SETATTR), ctypes.c_int(top), b"",
                        ctypes.c_uint(AT_EMPTY_PATH | AT_RECURSIVE), ctypes.byref(attr), ctypes.sizeof(attr))
    if done == 0:
        return "mount_setattr, recursively"
    err = ctypes.get_errno()
    if err not in UNSUPPORTED:
        raise OSError(err, os.strerror(err))
    return _remount_each(top, libc)


def _remount_each(top: int, libc: ctypes.CDLL) -> str:
    """`seal` without mount_setattr: TOP's tree made private (no mount propagated into it
    after the table is read arrives unsealed), TOP's mount remounted, then each mount below
    it in /proc/self/mountinfo, reached from TOP by its path below TOP's mount point (no
    symlink followed) and remounted through that descriptor; then the table read again: a
    mount of the tree a task's process can reach that is not nosuid,nodev (`first_unsealed`)
    is an error naming it, and why it was left."""
    if libc.mount(None, os.fsencode(f"/proc/self/fd/{top}"), None, MS_REC | MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), f"cannot make it private: {os.strerror(ctypes.get_errno())}")
    _remount(libc, top)
    tree = _tree(mount_id(top))
    left: dict[int, str] = {}  # a mount id: why it was not remounted
    for mount in tree[1:]:
        try:
            fd = _open_below(top, mount.point, tree[0].point)
        except OSError as exc:
            left[mount.id] = f"it could not be reached by its path ({exc.strerror})"
            continue
        try:
            if mount_id(fd) in {m.id for m in tree}:  # (never another mount than the tree's)
                _remount(libc, fd)
            else:
                left[mount.id] = "its path leads to a mount outside the image's"
        except OSError as exc:
            left[mount.id] = f"its remount by its path failed ({exc.strerror})"
        finally:
            os.close(fd)
    tree = _tree(tree[0].id)
    unsealed = first_unsealed(tree)
    if unsealed is not None:
        why = left.get(unsealed.id, "it could not be remounted by its path")
        raise OSError(errno.EPERM, f"the mount at {unsealed.point} is still {','.join(sorted(unsealed.options))}: "
                                   f"mount_setattr(2) is missing or denied here, and {why}")
    return f"mount(2), each of {len(tree)} mounts"


def first_unsealed(tree: list[Mount]) -> Mount | None:
    """The first mount of TREE (its top first, each mount's parent before it) that a process
    entering the top's mount point can reach and that is not nosuid,nodev; None if none. Out
    of reach: a mount with another stacked on it (a child on its own mount point), and every
    mount below it but that stacked one, which is what is reached there."""
    by_id = {m.id: m for m in tree}
    reached = {tree[0].id}
    covered = {m.parent for m in tree if m.parent in by_id and m.point == by_id[m.parent].point}
    for mount in tree[1:]:
        parent = by_id.get(mount.parent)
        if parent is not None and parent.id in reached and (mount.point == parent.point or parent.id not in covered):
            reached.add(mount.id)
    for mount in tree:
        if mount.id in reached and mount.id not in covered and not {"nosuid", "nodev"} <= mount.options:
            return mount
    return None


def _remount(libc: ctypes.CDLL, fd: int) -> None:
    """The mount whose root FD holds remounted nosuid,nodev, its other flags kept (a bind
    remount sets them all: one not given is cleared, but for the atime ones)."""
    kept = os.fstatvfs(fd).f_flag
    flags = MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | kept & KEPT_FLAGS | (
        MS_RELATIME if kept & os.ST_RELATIME else 0) | (MS_NOSYMFOLLOW if kept & ST_NOSYMFOLLOW else 0)
    if libc.mount(None, os.fsencode(f"/proc/self/fd/{fd}"), None, flags, None) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


def mount_id(fd: int) -> int:
    """The id (/proc/self/mountinfo's first field) of the mount FD's file is on."""
    with open(f"/proc/self/fdinfo/{fd}", encoding="ascii") as info:
        for line in info:
            if line.startswith("mnt_id:"):
                return int(line.split()[1])
    raise OSError(errno.ENOENT, f"no mnt_id in /proc/self/fdinfo/{fd}")


class Mount:
    """One line of /proc/self/mountinfo: the mount's id, its parent's, its mount point (a
    path in this process's root) and its per-mount options (`nosuid`, `nodev`, ...)."""

    def __init__(self, line: str) -> None:
        fields = line.split()
        self.id, self.parent = int(fields[0]), int(fields[1])
        self.point = _unescaped(fields[4])
        self.options = set(fields[5].split(","))


def _tree(top: int) -> list[Mount]:
    """The mount TOP (first) and every mount below it, as /proc/self/mountinfo has them now."""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as table:
        mounts = [Mount(line) for line in table]
    tree = [m for m in mounts if m.id == top]
    if not tree:
        raise OSError(errno.ENOENT, f"mount {top} is not in /proc/self/mountinfo")
    for mount in tree:  # grows as it goes: each mount's children after it
        tree.extend(m for m in mounts if m.parent == mount.id and m.id != mount.id)
    return tree


def _unescaped(field: str) -> str:
    """A mountinfo path: a space, tab, newline and backslash are written as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda code: chr(int(code[1], 8)), field)


def _open_below(top: int, point: str, top_point: str) -> int:
    """An O_PATH descriptor of POINT (a path in this process's root below TOP_POINT, where
    the mount TOP holds the root of is), opened from TOP one name at a time, no symlink
    followed: the image's names are the job submitter's."""
    fd = os.dup(top)
    try:
        for name in os.path.relpath(point, top_point).split("/"):
            inner = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd
