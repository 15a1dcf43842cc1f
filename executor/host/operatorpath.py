"""The sandbox an operator's path names, for the commands that act on a task (`stoker kill`,
`stoker restart`): symlinks followed, as the operator expects, but not another user's into
a third user's directory.

Root may control any user's task by its sandbox (`sudo stoker kill ~alice/sandbox-web`).
The path runs through directories alice owns, and a symlink of hers there
(`~alice/sandbox-web -> /srv/bob/sandbox`) led root's kill to bob's task. `open_sandbox`
resolves the path itself, one level at a time (each symlink read from the descriptor of
the link it follows, so none can be swapped between the check and the open), and refuses
a path that went through a symlink of a user other than the caller and root when the
directory it reached is not that user's: alice's links to her own sandboxes still work,
for root as for her. Standard library only; no logging.
"""
from __future__ import annotations

import errno
import os
import pwd
import stat
from collections import deque

MAX_LINKS = 40  # as the kernel's path walk (ELOOP)
_STEP = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


class ForeignLink(OSError):
    """The path went through another user's symlink to a directory not theirs."""


def open_sandbox(path: str | os.PathLike[str]) -> int:
    """An `O_DIRECTORY` read-only fd of the directory `path` leads to. Raises ForeignLink, or
    the OSError of the level that failed."""
    fd, links = _walk(os.fspath(path))
    try:
        owner = os.fstat(fd).st_uid
        me = os.geteuid()
        for level, uid in links:
            if uid not in (me, 0, owner):
                how = "is" if level == os.fspath(path) else f"is reached through {level},"
                raise ForeignLink(errno.EPERM, f"{path} {how} a symlink of {_user(uid)} to a "
                                  f"directory of {_user(owner)}: name the sandbox itself, by "
                                  f"a path of its owner's or root's")
        return os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
    finally:
        os.close(fd)


def _walk(path: str) -> tuple[int, list[tuple[str, int]]]:
    """An O_PATH fd of what `path` leads to, and each symlink followed on the way (the path
    it was met as, its owner)."""
    absolute = path.startswith("/")
    fd = os.open("/" if absolute else ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    todo = deque(path.split("/"))
    walked = "" if absolute else os.getcwd().rstrip("/")  # for the message only
    links: list[tuple[str, int]] = []
    try:
        while todo:
            name = todo.popleft()
            if name in ("", "."):
                continue
            step = os.open(name, _STEP, dir_fd=fd)
            try:
                info = os.fstat(step)
            except OSError:
                os.close(step)
                raise
            if not stat.S_ISLNK(info.st_mode):
                os.close(fd)
                fd, walked = step, f"{walked}/{name}"
                continue
            try:
                target = os.readlink("", dir_fd=step)  # the link this fd is: no swap since
            finally:
                os.close(step)
            links.append((f"{walked}/{name}", info.st_uid))
            if len(links) > MAX_LINKS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
            todo.extendleft(reversed(target.split("/")))
            if target.startswith("/"):
                os.close(fd)
                fd, walked = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC), ""
    except BaseException:
        os.close(fd)
        raise
    return fd, links


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"
