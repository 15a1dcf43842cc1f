"""Following a rotated log from file to file: which file was written after the one held.

A rotate-mode logger (`executor/procs/`'s log pump) renames `NAME.N-1` to `NAME.N` ..
`NAME` to `NAME.1` and starts a new `NAME`, so a reader that holds one file (its device and
inode, `Ident`) finds it again as `NAME.K`, and the file written after it is `NAME.K-1`
(`NAME` itself for `.1`), however many rotations a burst made since it looked. Both
followers use this: `stoker tail -f` (`executor/cli/tail.py`, holding the file open) and the
observer's follow mode (`executor/observe/reader.py`, holding the identity the page sent).
Every file is opened as `saferead` opens a sandbox's files, in the run directory `rdir`.

A follower that holds only the identity (the observer's page) also names the inode's
generation where the file system keeps one (`generation`: ext4, XFS, btrfs): ext4 gives a
dropped backup's inode to the next file made, at once, so `(device, inode)` alone took a
newer file for the held one and went on inside it at the held offset, the files between
never shown, with nothing said. A file whose generation differs is another file.
"""
from __future__ import annotations

import array
import fcntl
import os
import stat

from executor.procs import saferead

Ident = tuple[int, int]  # (device, inode)
FS_IOC_GETVERSION = 0x80087601  # _IOR('v', 1, long): the inode's generation
ROTATION_TRIES = 100  # looks for a file while rotations go on under the look
MAX_BACKUPS = 1000  # a logger keeps at most this many (the job's loader checks it)


def ident(st: os.stat_result) -> Ident:
    return st.st_dev, st.st_ino


def ident_at(name: str, rdir: int) -> Ident | None:
    """The identity of the file `name` in `rdir` now; None when there is none."""
    try:
        return ident(os.stat(name, dir_fd=rdir, follow_symlinks=False))
    except FileNotFoundError:
        return None


def generation(fd: int) -> int | None:
    """The generation of the open file's inode; None where the file system keeps none
    (tmpfs: its inode numbers are not given again soon)."""
    found = array.array("l", [0])
    try:
        fcntl.ioctl(fd, FS_IOC_GETVERSION, found, True)
    except OSError:
        return None
    return found[0] & 0xFFFFFFFF


def is_held(fd: int, held: Ident, held_generation: int | None = None) -> bool:
    """Whether the open file `fd` is the one held: its identity, and its generation when
    one is held and the file system keeps them."""
    if ident(os.fstat(fd)) != held:
        return False
    return held_generation is None or generation(fd) in (None, held_generation)


def _held_here(name: str, rdir: int, held: Ident, held_generation: int | None) -> bool | None:
    """Whether the file `name`, whose identity was the held one's at a look, is the held
    file: None when it moved under the look (a rotation), False when it is a newer file on
    the held one's inode (its generation another). Raises OSError."""
    if held_generation is None:
        return True
    try:
        fd = saferead.open_file(name, rdir)
    except FileNotFoundError:
        return None
    try:
        if ident(os.fstat(fd)) != held:
            return None
        return generation(fd) in (None, held_generation)
    finally:
        os.close(fd)


def backup_number(rdir: int, stream: str, held: Ident, held_generation: int | None = None) -> int | None:
    """K where `stream.K` is the file `held` (of `held_generation`, when given); None when no
    backup is (two numbers in a row missing end the search: one may be missing for a moment,
    mid-rotation). Raises OSError."""
    k, missing = 1, 0
    while missing < 2:
        name = f"{stream}.{k}"
        found = ident_at(name, rdir)
        if found == held and (here := _held_here(name, rdir, held, held_generation)) is not None:
            return k if here else None
        missing = missing + 1 if found is None else 0
        k += 1
    return None


def open_successor(rdir: int, stream: str, held: Ident, dropped: bool = False,
                   held_generation: int | None = None) -> int | None:
    """The file written after the one `held`, open; None while a rotation is under way.
    `dropped`: the held file has no name left (rotated past the last backup since it was
    read: a burst rotated it more times than the logger keeps backups), so every file there
    now was written after it and the oldest of them comes next (was: the newest, `stream`,
    and each backup still there between them never printed). Raises OSError."""
    for _ in range(ROTATION_TRIES):  # each try that fails saw another rotation
        k = backup_number(rdir, stream, held, held_generation)
        try:
            fd = open_first(rdir, stream) if k is None and dropped else _open_newer(rdir, stream, k)
        except FileNotFoundError:
            continue
        if k is None or ident_at(f"{stream}.{k}", rdir) == held:
            return fd  # no rotation came between the look and the open
        os.close(fd)
    return None


def _open_newer(rdir: int, stream: str, k: int | None) -> int:
    """The file written after `stream.K`, open: `stream.K-1` (`stream` itself after `.1`, or
    when the held file is no backup and still has a name: moved by another tool); a backup that is no plain
    file there (a directory the task put among the backups, which the rotation goes on past:
    `executor/procs/logpump.py`) passed over for the next newer one, as `open_first` passes
    it (was: an UnsafePath error that ended `tail -f`). Raises OSError."""
    newer = [f"{stream}.{n}" for n in range(k - 1, 0, -1)] if k is not None else []
    for name in newer:
        try:
            return saferead.open_file(name, rdir)
        except saferead.UnsafeEntry:
            continue
    return saferead.open_file(stream, rdir)


def open_backup(rdir: int, stream: str, held: Ident, held_generation: int | None = None) -> int | None:
    """The file `held` (of `held_generation`, when given), open, found among the backups;
    None when it is not one (any more). Raises OSError."""
    for _ in range(ROTATION_TRIES):
        k = backup_number(rdir, stream, held, held_generation)
        if k is None:
            return None
        try:
            fd = saferead.open_file(f"{stream}.{k}", rdir)
        except FileNotFoundError:
            continue
        if is_held(fd, held, held_generation):
            return fd
        os.close(fd)  # rotated once more between the look and the open
    return None


def open_first(rdir: int, stream: str) -> int:
    """The oldest file of a run's log, open: its oldest backup (a run followed only now may
    have been rotated already) with none missing or not a plain file between it and `stream`
    (as `stoker tail -n` reads them: a directory the task put among the backups ends them;
    was: an error, for a backup that is no log), else `stream`. Raises OSError
    (FileNotFoundError: none)."""
    k = 1
    while k <= MAX_BACKUPS and _plain_file(f"{stream}.{k}", rdir):
        k += 1
    for name in [f"{stream}.{n}" for n in range(k - 1, 0, -1)] + [stream]:
        try:
            return saferead.open_file(name, rdir)
        except FileNotFoundError:
            continue  # rotated on under the look: the next newer one
        except saferead.UnsafeEntry:
            if name == stream:
                raise
            continue  # replaced under the look by what is no log: the next newer one
    raise FileNotFoundError(f"no {stream} log")


def _plain_file(name: str, rdir: int) -> bool:
    try:
        return stat.S_ISREG(os.stat(name, dir_fd=rdir, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False
