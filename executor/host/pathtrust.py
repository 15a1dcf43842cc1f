"""Whether another user could change where a path leads: `trusted_path`.

A directory Stoker writes in for itself, the host registry's root and the plan cache, must
not be one another user can redirect: with a level they own, or may write (a sticky
directory such as /tmp aside: no one else can rename what is ours in it; the user's own
group aside), a symlink
planted there would lead root's writes anywhere (`/etc/cron.d`). Standard library only:
the early start's modules may load it before anything else of Stoker's.
"""
from __future__ import annotations

import os
import stat


def trusted_path(path: str, euid: int | None = None, egid: int | None = None) -> bool:
    """Whether no other user can change what `path` leads to: every level of it that
    exists, as written and with its symlinks resolved, belongs to `euid` or root, and no one
    else may write it: not others (but in a sticky directory, /tmp: no one else can rename
    what is ours in it), nor a group other than `egid` (the user's own: a umask of 002
    makes `~/.local` group-writable, for a group only the user is in where each user has one).
    A symlink planted in a user's directory would else lead root's writes anywhere."""
    euid = os.geteuid() if euid is None else euid
    egid = os.getegid() if egid is None else egid
    for chain in (os.path.abspath(path), os.path.realpath(path)):
        parts = [part for part in chain.split("/") if part]
        for depth in range(len(parts) + 1):
            try:
                info = os.lstat("/" + "/".join(parts[:depth]))
            except FileNotFoundError:
                break  # the rest is made by this user
            except OSError:
                return False
            if info.st_uid not in (euid, 0) or (not stat.S_ISLNK(info.st_mode) and _open_to_others(info, egid)):
                return False
    return True


def _open_to_others(info: os.stat_result, egid: int) -> bool:
    mode = info.st_mode
    if mode & stat.S_ISVTX:  # /tmp: others may add their names, never rename ours
        return False
    return bool(mode & stat.S_IWOTH or (mode & stat.S_IWGRP and info.st_gid != egid))
