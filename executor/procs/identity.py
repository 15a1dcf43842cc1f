"""Who a task's processes run as, and a sandbox that user owns.

Owns `RunAs` (a Unix user: name, uid, gid, supplementary groups), `user_named(name)` and
`current_user()` (from the password and group databases), and `give_sandbox(sandbox, user)`:
Thermos' directory sandbox, chowned to the user and made 0700. The supervisor starts every
run and every shell health command with the RunAs it is given (`subprocess.Popen`'s `user`,
`group` and `extra_groups`: set in the child between fork and exec) and stays itself, so it
can still read every process's /proc entries and signal it; the watchdog stays with it.

A missing user is `UnknownUser`, whose message names it; a sandbox that cannot be given is
`OSError`. No logging.

`keep_logs_readable()`: under a root executor the supervisor makes the task's logs (root's,
in the role's sandbox); an agent's umask of 077 or 027 would keep the role from reading
them, which it can under Thermos (its logs are its own). It keeps only the write bits of
this process's umask and returns the old one, which the task's processes start with
(`RunAs.umask`), as Thermos' do.
"""
from __future__ import annotations

import os
import pwd
from pathlib import Path

import attrs

from config.words import quoted


class UnknownUser(LookupError):
    """There is no such user on this machine."""


@attrs.frozen(slots=True)
class RunAs:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...] = ()  # supplementary groups, the primary one included
    umask: int = -1  # the umask its processes start with; -1: this process's

    @property
    def is_self(self) -> bool:
        """Running as this user needs no switch (the process already is it)."""
        return self.uid == os.geteuid() and self.gid == os.getegid()


def user_named(name: str) -> RunAs:
    """The user `name` with its groups (as `initgroups` gives them). Raises UnknownUser."""
    try:
        entry = pwd.getpwnam(name)
    except (KeyError, ValueError):  # ValueError: a name with a NUL byte
        raise UnknownUser(f"there is no user {quoted(name)} on this machine") from None
    try:
        groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
    except OSError:
        groups = (entry.pw_gid,)
    return RunAs(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid, groups=groups)


def current_user() -> RunAs:
    """This process's user: its name from the password database, else `uid N`."""
    uid, gid = os.geteuid(), os.getegid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = f"uid {uid}"
    return RunAs(name=name, uid=uid, gid=gid, groups=tuple(os.getgroups()))


def give_sandbox(sandbox: Path, user: RunAs) -> None:
    """Thermos' directory sandbox: owned by `user`, mode 0700 (the task's processes create
    their files there; the supervisor, root, still reaches everything). Raises OSError."""
    os.chown(sandbox, user.uid, user.gid)
    os.chmod(sandbox, 0o700)


def keep_logs_readable() -> int:
    """Keep only the write bits of this process's umask (the files it makes keep their read
    bits: the logs 0644, their directories 0755, in a sandbox only the role may enter) and
    return the umask it had."""
    old = os.umask(0o077)  # meanwhile stricter, never looser, than either
    os.umask(old & 0o022)
    return old
