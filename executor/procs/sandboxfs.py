"""Opening files and directories in a sandbox that the task's processes can change under us.

A task shares its sandbox with the Stoker process and may replace any entry in it at any
moment: with a FIFO (an open for writing blocks until a reader comes, so the thread that
opens it would hang for ever), with a socket or a device, or with a symlink (to make us
write, rename or delete outside the sandbox). So every file Stoker opens in a sandbox (the
run logs at spawn and at rotation, the checkpoint) is opened here, one level at a time:

- `open_dir(name, dir_fd=...)`: `O_DIRECTORY | O_NOFOLLOW` relative to the parent's fd, so
  no level of a path is ever a symlink, and a directory renamed away later still names the
  same directory (operate on it with `dir_fd=`, never by path). `create=True` makes it first.
  `new_dir` is the same for a directory most likely not there yet (mkdir first).
- `open_regular(name, flags, dir_fd=...)`: `O_NONBLOCK | O_NOFOLLOW | O_NOCTTY`, so the open
  itself cannot block, follow a final symlink or take a terminal; then `fstat`: anything
  but a regular file is closed and refused, and so is a file with more than one hard link
  (where hard links are not protected, `fs.protected_hardlinks=0`, a task's user may link
  any file of the sandbox's file system into it, one it may not read or write included);
  then O_TRUNC is applied (never at the open, before the checks) and O_NONBLOCK cleared
  again (the fd may become a child's stdout). A file it creates (O_CREAT | O_EXCL
  succeeded) needs none of it.

The sandbox directory itself is the operator's (or the agent's) path and may be reached
through symlinks; only what is below it is the task's. What is found where a regular file
or a directory should be raises `UnsafePath` (an OSError whose message says what is there:
"it is a FIFO, not a regular file"); every other failure is the OSError of the call.
`describe_os_error` puts either into words. No logging, no threads; nothing here blocks.

A task that owns its sandbox (it runs as its role's user) may also rename a directory
Stoker made there and put one of its own in its place, files and all. `dir_id(fd)` names a
directory for good (device and inode); `check_pinned(fd, pinned, what)` raises
`UnsafePath` when the directory opened is not the one pinned, for a reader that knows from
elsewhere (the host registry, which the task cannot write) which one it should be.
"""
from __future__ import annotations

import errno
import os
import stat

import executor

LOG_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND  # a run's log file; open_regular adds the safety flags
# The mark of a run readied ahead and not started (`executor/procs/runlogs.py`): its stdout is
# made with the sticky bit, which Linux ignores on a file, and its spawn clears it before the
# fork. A supervisor killed -9 before its first step leaves such runs behind: `readied` tells
# readers (`stoker tail`, the observer) and the next `stoker run` in the sandbox that they are none.
READIED = stat.S_ISVTX
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
describe_os_error = executor.describe_os_error  # (its callers' name for it; the words are every layer's)
_SAFE_FLAGS = os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC
# What an open of a wrong kind of entry fails with: a symlink (ELOOP with O_NOFOLLOW,
# ENOTDIR with O_DIRECTORY), a FIFO without a reader or a socket (ENXIO), a device (ENODEV...).
_WRONG_KIND = {errno.ELOOP, errno.ENOTDIR, errno.ENXIO, errno.ENODEV, errno.EOPNOTSUPP}

Name = str | os.PathLike[str]


class UnsafePath(OSError):
    """The entry is not of the kind Stoker may open there; the message says what it is."""


def dir_id(fd: int) -> str:
    """'DEV:INO' of an open directory: the same directory for as long as it exists."""
    st = os.fstat(fd)
    return f"{st.st_dev}:{st.st_ino}"


def check_pinned(fd: int, pinned: str, what: str) -> None:
    """Raise UnsafePath unless the directory `fd` is the one `pinned` names ('' pins nothing)."""
    if pinned and dir_id(fd) != pinned:
        raise UnsafePath(f"{what} is not the directory its supervisor made (the task may have put "
                         f"another in its place); nothing in it is trusted")


def kind_of(mode: int) -> str:
    """'a FIFO', 'a symlink', ...: what an lstat mode is, in words."""
    for test, words in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"),
                        (stat.S_ISLNK, "a symlink"),
                        (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                        (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return words
    return f"of an unknown kind (mode {mode:o})"


def _refuse_wrong_kind(e: OSError, name: Name, dir_fd: int | None, wanted: str) -> None:
    """Raise UnsafePath when `e` came from an entry of the wrong kind; else return."""
    if e.errno not in _WRONG_KIND:
        return
    try:
        mode = os.lstat(name, dir_fd=dir_fd).st_mode
    except OSError:
        return  # gone, or a level above it is the problem: the original error says so
    if wanted == "a directory" and stat.S_ISDIR(mode):
        return
    if wanted == "a regular file" and stat.S_ISREG(mode):
        return
    why = " (Stoker follows no symlink inside a sandbox)" if stat.S_ISLNK(mode) else ""
    raise UnsafePath(f"it is {kind_of(mode)}, not {wanted}{why}") from None


def open_dir(name: Name, *, dir_fd: int | None = None, create: bool = False, follow: bool = False) -> int:
    """An `O_DIRECTORY` fd of `name` (relative to `dir_fd`), made first when `create`.

    A symlink is never followed unless `follow` (only for the sandbox root, which is not the
    task's). Raises UnsafePath when `name` is not a directory, OSError otherwise.
    """
    flags = _DIR_FLAGS if not follow else _DIR_FLAGS & ~os.O_NOFOLLOW
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        if not create:
            raise
    except OSError as e:
        _refuse_wrong_kind(e, name, dir_fd, "a directory")
        raise
    try:
        os.mkdir(name, 0o755, dir_fd=dir_fd)
    except FileExistsError:
        pass  # made meanwhile (by another spawn, or by the task): the open below judges it
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except OSError as e:
        _refuse_wrong_kind(e, name, dir_fd, "a directory")
        raise


def new_dir(name: Name, *, dir_fd: int | None = None) -> int:
    """`open_dir(name, create=True)` for a directory that is most likely not there yet
    (a new run's): mkdir first, then one open judges whatever is there."""
    try:
        os.mkdir(name, 0o755, dir_fd=dir_fd)
    except FileExistsError:
        pass
    return open_dir(name, dir_fd=dir_fd)


def open_regular(name: Name, flags: int, *, dir_fd: int | None = None, mode: int = 0o644) -> int:
    """A blocking, close-on-exec fd of the regular file `name` (relative to `dir_fd`),
    opened with `flags` (e.g. O_WRONLY | O_CREAT | O_APPEND) without ever blocking or
    following a symlink. Raises UnsafePath for any other kind of entry, OSError otherwise.

    With O_CREAT it first tries O_CREAT | O_EXCL: when that succeeds the file is a regular
    file this call just made (O_EXCL fails on anything already there, a symlink included),
    so it needs no check (one syscall instead of four); when the name exists, the checked
    open below runs."""
    if flags & os.O_CREAT:
        try:
            return os.open(name, flags | os.O_EXCL | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC, mode,
                           dir_fd=dir_fd)
        except OSError:
            pass  # there already (or another failure): the checked open says what it is
    try:
        fd = os.open(name, (flags & ~os.O_TRUNC) | _SAFE_FLAGS, mode, dir_fd=dir_fd)
    except OSError as e:
        _refuse_wrong_kind(e, name, dir_fd, "a regular file")
        raise
    try:
        found = os.fstat(fd)
        if not stat.S_ISREG(found.st_mode):
            raise UnsafePath(f"it is {kind_of(found.st_mode)}, not a regular file")
        if found.st_nlink > 1:
            raise UnsafePath(f"it is a regular file with {found.st_nlink} hard links (Stoker opens "
                             f"no file in a sandbox that may also be one outside it)")
        if flags & os.O_TRUNC:
            os.ftruncate(fd, 0)  # only now: an open with O_TRUNC would have cut whatever was there
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def readied(run: int, process_fd: int) -> bool:
    """Whether the directory of run `run` of the process whose `.logs/PROCESS` is `process_fd`
    holds a run readied ahead that never started: an empty stdout marked `READIED` beside an
    empty, unmarked stderr, as `runlogs` made them. Not a run whose task set the bit on its
    own logs (`chmod -R 1777 .`: both marked) or that wrote (its files not empty)."""
    try:
        out, err = (os.stat(f"{run}/{s}", dir_fd=process_fd, follow_symlinks=False) for s in ("stdout", "stderr"))
    except OSError:
        return False
    empty = all(stat.S_ISREG(s.st_mode) and s.st_size == 0 for s in (out, err))
    return empty and bool(out.st_mode & READIED) and not err.st_mode & READIED


def close(fd: int) -> None:
    """Close, ignoring errors (for cleanup paths)."""
    try:
        os.close(fd)
    except OSError:
        pass


def write_all(fd: int, data: bytes) -> None:
    """All of `data` written to `fd`, however many writes it takes."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def unlink_if_there(dir_fd: int, name: str) -> None:
    """`name` in `dir_fd` unlinked; none there is no error."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:  # (not contextlib.suppress: this module loads early, without `collections`)
        return
