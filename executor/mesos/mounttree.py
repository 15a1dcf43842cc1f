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

`proc_fds_shown(dir)` says whether `/proc/self/fd` leads to this process's descriptors
here, which every remount and detach needs (umount2(2) takes a path only).

Loaded only for a filesystem-image task; no logging.
"""
from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

SYS_OPEN_TREE, SYS_MOVE_MOUNT = 428, 429
OPEN_TREE_CLONE, AT_EMPTY_PATH, AT_RECURSIVE = 1, 0x1000, 0x8000
MOVE_MOUNT_F_EMPTY_PATH, MOVE_MOUNT_T_EMPTY_PATH = 0x4, 0x40
UNSUPPORTED = (errno.ENOSYS, errno.EPERM)  # no such call, or a seccomp profile's refusal of it


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
