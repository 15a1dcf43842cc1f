"""Writing a small file whole: to a temporary name beside it, then renamed over it, so that
a reader sees the old content or the new, never part of either.

The host registry's entries and the plan cache's files are written so. Standard library
only: the early start's modules may load it before anything else of Stoker's.
"""
from __future__ import annotations

import os

TEMP_SUFFIX = ".tmp"  # a temporary's name: `.NAME.RANDOM.tmp`, in NAME's directory


def replace_file(name: str, data: bytes, *, dir_fd: int | None = None) -> None:
    """`data` as the file `name` (0600; relative to `dir_fd` when given). The temporary is
    created with O_EXCL under a random name and removed when its write (a full disk) or the
    rename fails. Raises OSError."""
    head, tail = os.path.split(name)
    temp = os.path.join(head, f".{tail}.{os.urandom(4).hex()}{TEMP_SUFFIX}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:  # a full disk (ENOSPC, EFBIG) or a failed rename: no temporary stays
        _remove(temp, dir_fd)
        raise


def _remove(name: str, dir_fd: int | None) -> bool:
    """Unlink `name`; False when it could not be (the rename's error is the one to report)."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        return False
    return True
