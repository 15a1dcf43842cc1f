"""Writing a small file whole: to a temporary name beside it, then renamed over it, so that
a reader sees the old content or the new, never part of either; and the directories such
files go in.

The host registry's entries and the plan cache's files are written so. Standard library
only: the early start's modules may load it before anything else of Stoker's.

- `trusted_path`, `untrusted_level`: whether another user could change where a path leads,
  and which level of it. A directory Stoker writes in for itself (the registry's root, the
  plan cache) must not be one another user can redirect: with a level they own, or may
  write (a sticky directory such as /tmp aside: no one else can rename what is ours in it;
  the user's own group aside), a symlink planted there would lead root's writes anywhere
  (`/etc/cron.d`).
- `portable_path`, `local_path`: a path as such files keep it (its bytes as UTF-8, surrogate
  escapes for the others), and back as this process names the same bytes.
- `make_dirs`: a path none of whose levels it makes others may write, whatever the umask;
  `writable_by_others`: a directory open to them (a sandbox must not be, sticky or not).
"""
from __future__ import annotations

import errno
import os
import stat
import sys

TYPE_CHECKING = False  # not `typing`'s: the early start's modules load neither typing nor collections
if TYPE_CHECKING:
    from collections.abc import Iterable

TEMP_SUFFIX = ".tmp"  # a temporary's name: `.NAME.RANDOM.tmp`, in NAME's directory


def replace_file(name: str, data: bytes | Iterable[bytes], *, dir_fd: int | None = None) -> None:
    """`data` (bytes, or chunks of them written in turn) as the file `name` (0600; relative
    to `dir_fd` when given). The temporary is created with O_EXCL under a random name (a
    regular file this call made: nothing planted there is opened) and removed when its write
    (a full disk) or the rename fails. Raises OSError."""
    temp = _written(name, data, dir_fd)
    try:
        os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:  # a failed rename: no temporary stays
        _remove(temp, dir_fd)
        raise


def create_file(name: str, data: bytes | Iterable[bytes], *, dir_fd: int | None = None) -> None:
    """As `replace_file`, but never over a file there: FileExistsError when `name` is, also
    where two writers make it at once (the temporary linked as `name`, atomic on NFS too)."""
    temp = _written(name, data, dir_fd)
    try:
        os.link(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    finally:
        _remove(temp, dir_fd)


def _written(name: str, data: bytes | Iterable[bytes], dir_fd: int | None) -> str:
    """A new temporary beside `name` holding `data`; its name. Raises OSError (none stays)."""
    head, tail = os.path.split(name)
    temp = os.path.join(head, f".{tail}.{os.urandom(4).hex()}{TEMP_SUFFIX}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    try:
        try:
            for chunk in (data,) if isinstance(data, bytes) else data:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    except BaseException:  # a full disk (ENOSPC, EFBIG): no temporary stays
        _remove(temp, dir_fd)
        raise
    return temp


_FS_UTF8 = sys.getfilesystemencoding() == "utf-8"  # then both below change nothing


def portable_path(path: str) -> str:
    """`path` (a name as this process's file system encoding decoded it) as the registry
    keeps it: its bytes as UTF-8, with surrogate escapes for those that are not."""
    if _FS_UTF8:
        return path
    try:
        return os.fsencode(path).decode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # not a name this process decoded: text already
        return path


def local_path(path: str) -> str:
    """The registry's `path` as this process names the same bytes."""
    return path if _FS_UTF8 else os.fsdecode(path.encode("utf-8", "surrogateescape"))


def _remove(name: str, dir_fd: int | None) -> bool:
    """Unlink `name`; False when it could not be (the rename's error is the one to report)."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        return False
    return True


def trusted_path(path: str, euid: int | None = None, egid: int | None = None) -> bool:
    """Whether no other user can change what `path` leads to (`untrusted_level`)."""
    return untrusted_level(path, euid, egid) == ""


def untrusted_level(path: str, euid: int | None = None, egid: int | None = None) -> str:
    """The first level of `path` another user could change, and why; '' when none: every
    level that exists, as the kernel walks it (each symlink on the way, and each level of
    where it leads, a link to a link too), belongs to `euid` or root, and no one else may
    write it: not others (but in a sticky directory, /tmp: no one else can rename what is
    ours in it), nor a group other than `egid` (the user's own: a umask of 002 makes
    `~/.local` group-writable, for a group only the user is in where each user has one, and
    lists no other member). A symlink planted in a user's directory would else lead root's
    writes anywhere."""
    euid = os.geteuid() if euid is None else euid
    egid = os.getegid() if egid is None else egid
    # the next level last; `..` as the kernel takes it, after the link before it (not abspath's)
    rest = [part for part in (path if os.path.isabs(path) else os.path.join(os.getcwd(), path)).split("/")
            if part][::-1]
    level, hops = "/", 0
    while True:
        try:
            info = os.lstat(level)
        except FileNotFoundError:
            return ""  # the rest is made by this user
        except OSError as exc:
            return f"{level}: {exc.strerror}"
        if info.st_uid not in (euid, 0):
            return f"{level} belongs to {user_name(info.st_uid)}"
        if stat.S_ISLNK(info.st_mode):
            hops += 1
            if hops > _MAX_HOPS:
                return f"{level}: too many levels of symbolic links"
            try:
                target = os.readlink(level)
            except OSError as exc:  # replaced since: another user's doing, or ours
                return f"{level}: {exc.strerror}"
            rest.extend([part for part in target.split("/") if part][::-1])
            level = "/" if target.startswith("/") else os.path.dirname(level)
        elif _open_to_others(info, egid, level, euid):
            return f"{level} may be written by {_writers(info, egid, euid)}"
        level = _next_level(level, rest)
        if level == "":
            return ""


_MAX_HOPS = 40  # the kernel's ELOOP limit for one lookup


def _next_level(level: str, rest: list[str]) -> str:
    """The level after `level` (a directory, or where a link's target is read from), taking
    the next part of `rest` (`..` goes up, `.` stays); '' when none is left."""
    while rest:
        part = rest.pop()
        if part == "..":
            level = os.path.dirname(level)
        elif part != ".":
            return os.path.join(level, part)
    return ""


def user_name(uid: int) -> str:
    """`uid`'s name in the password database with its number (`alice (uid 1000)`), else `uid N`;
    the kernel's overflow uid where this process's user namespace maps no id to it, as what it
    stands for, and where it maps one but not every id, as both (Docker's userns-remap: its own
    `nobody`, or the host's root on a bind mount). Was: under `unshare -r`, `/ belongs to
    nobody (uid 65534)`, though nobody owns it (real root does, and any other user outside
    the namespace shows so too)."""
    outside = f"a user outside this user namespace (shown as uid {uid})"
    uid_map = _uid_map() if uid == _overflow_uid() else None
    if uid_map is not None and not maps(uid_map, uid):
        return outside
    import pwd  # only to say why a path is refused, or whose a process is

    try:
        named = f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        named = f"uid {uid}"
    return named if uid_map is None or maps_every_id(uid_map) else f"{named}, or {outside}"


def _overflow_uid() -> int:
    """The uid the kernel shows for an owner a user namespace does not map (65534 by default)."""
    try:
        with open("/proc/sys/kernel/overflowuid") as file:
            return int(file.read())
    except (OSError, ValueError):
        return 65534


def _uid_map() -> str | None:
    """This process's user namespace's `uid_map`, checked; None when it cannot be read."""
    try:
        with open("/proc/self/uid_map") as file:
            uid_map = file.read()
        lines = [[int(word) for word in line.split()] for line in uid_map.splitlines()]
    except (OSError, ValueError):
        return None
    return uid_map if all(len(line) == 3 for line in lines) else None


def maps_every_id(uid_map: str) -> bool:
    """Whether `uid_map` maps every uid (the host's namespace: `0 0 4294967295`; its ranges never
    overlap), so that the overflow uid is no other owner's stand-in."""
    return sum(int(line.split()[2]) for line in uid_map.splitlines()) >= 4294967295


def maps(uid_map: str, uid: int) -> bool:
    """Whether `uid_map` (`/proc/PID/uid_map`: lines of `INSIDE OUTSIDE COUNT`; the host's
    maps every uid) maps `uid`, an id inside. Raises ValueError on a line that is not three numbers."""
    for line in uid_map.splitlines():
        inside, _outside, count = (int(word) for word in line.split())
        if inside <= uid < inside + count:
            return True
    return False


def _writers(info: os.stat_result, egid: int, euid: int) -> str:
    """Who besides its owner may write the directory `info` is, and its mode: others, or
    (a group's project directory) the group, named."""
    mode = stat.S_IMODE(info.st_mode)
    if info.st_mode & stat.S_IWOTH:
        return f"others (mode {mode:o})"
    if info.st_gid == egid and not _others_in_group(egid, euid):
        return f"others (mode {mode:o}, an ACL)"
    import grp  # only to say why a path is refused

    try:
        group = f"{grp.getgrgid(info.st_gid).gr_name} (gid {info.st_gid})"
    except KeyError:
        group = f"gid {info.st_gid}"
    return f"the group {group}, mode {mode:o}"


def _open_to_others(info: os.stat_result, egid: int, path: str, euid: int) -> bool:
    if info.st_mode & stat.S_ISVTX:  # /tmp: others may add their names, never rename ours
        return False
    return writable_by_others(info, egid, path, euid)


def writable_by_others(info: os.stat_result, egid: int, path: str | None = None,
                       euid: int | None = None) -> bool:
    """Whether users other than its owner may write in it: all others, or a group other than
    `egid` (the user's own), or `egid` when it lists a member but `euid` (`usermod -aG alice
    bob`), or, by the access ACL of `path` (the file `info` is), a named user or another
    group."""
    mode = info.st_mode
    if mode & stat.S_IWOTH or (mode & stat.S_IWGRP and info.st_gid != egid):
        return True
    if not mode & stat.S_IWGRP:
        return False
    return _others_in_group(egid, os.geteuid() if euid is None else euid) or \
        (path is not None and _acl_lets_others_write(path, egid))


def _others_in_group(gid: int, euid: int) -> bool:
    """Whether group `gid` lists a member but `euid`'s user (its supplementary members; who
    has it as their own primary group the group database does not say)."""
    import grp  # only for a directory its group may write
    import pwd

    try:
        members = grp.getgrgid(gid).gr_mem
    except KeyError:  # a gid no database names: it lists no one
        return False
    try:
        me = pwd.getpwuid(euid).pw_name
    except KeyError:  # a user no database names is listed in no group
        return bool(members)
    return any(name != me for name in members)


ACL_ACCESS = "system.posix_acl_access"
_ACL_USER, _ACL_GROUP, _ACL_WRITE = 0x02, 0x08, 0x02  # <linux/posix_acl_xattr.h>


def _acl_lets_others_write(path: str, egid: int) -> bool:
    """Whether `path`'s access ACL lets a named user, or a named group but `egid`, write.
    With an ACL the mode's group bits are its mask, so `setfacl -m u:bob:rwx DIR` reads as
    a directory the owner's group may write (drwxrwxr-x+). The ACL as the kernel keeps it:
    a 4-byte version, then 8-byte entries (tag, permissions, id; little-endian)."""
    try:
        blob = os.getxattr(path, ACL_ACCESS, follow_symlinks=False)
    except OSError:  # none, or a file system without ACLs
        return False
    for at in range(4, len(blob) - 7, 8):
        tag, perm = int.from_bytes(blob[at:at + 2], "little"), int.from_bytes(blob[at + 2:at + 4], "little")
        ident = int.from_bytes(blob[at + 4:at + 8], "little")
        if perm & _ACL_WRITE and (tag == _ACL_USER or (tag == _ACL_GROUP and ident != egid)):
            return True
    return False


def make_dirs(path: str, mode: int) -> None:
    """Make `path` and each missing level above it with `mode` (the umask narrows it):
    `os.makedirs` gives the levels above 0777 less the umask, so a umask of 0 would leave
    `~/.local/state` or a sandbox's parents open to every user's writes. Raises OSError: a
    level there that is no directory, NotADirectoryError saying which and what it is
    (`--root /dev/null` said "File exists (EEXIST)", a file above it "Not a directory")."""
    head = os.path.dirname(path)
    if head and head != path and not os.path.lexists(head):
        make_dirs(head, mode)
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        if not os.path.isdir(path):
            if not os.path.exists(path):  # a symlink to nothing: the caller says where it points
                raise
            raise _not_a_directory(path) from None
    except NotADirectoryError:
        raise _not_a_directory(path) from None


_KINDS = ((stat.S_ISREG, "a regular file"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))


def _not_a_directory(path: str) -> OSError:
    """ENOTDIR, its text naming the first level of `path` that is there and no directory
    (a symlink to one is one) and what it is: `/dev/null is a character device, not a directory`."""
    level = "/" if path.startswith("/") else ""
    for part in filter(None, path.split("/")):
        level = os.path.join(level, part)
        try:
            mode = os.stat(level).st_mode
        except OSError:
            break
        if not stat.S_ISDIR(mode):
            what = next((words for test, words in _KINDS if test(mode)), "not a directory")
            return NotADirectoryError(errno.ENOTDIR, f"{level} is {what}, not a directory")
    return NotADirectoryError(errno.ENOTDIR, f"{path} is not a directory")
