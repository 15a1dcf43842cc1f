"""The host registry's settings (docs/contract.md §8): where it is, how long it keeps ended tasks.

Owns `RegistrySettings`, read like every setting (`config/sourced.py`: a flag wins over its
variable, which wins over the default), for `stoker run`, `stoker executor` and the
commands that read the registry (`ps`, and `status`, `kill`, `restart`, `tail` given a task
id), and `registry_root`, its default: /var/run/stoker for root, else $XDG_STATE_HOME/stoker,
else ~/.local/state/stoker in a home this user owns, else /tmp/stoker-UID. Never logs.
"""
from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Mapping

import attrs

from config.settings import parse_secs
from config.sourced import Sourced, setting

DEFAULT_RETENTION_SECS = 7 * 86400.0


def registry_root(environ: Mapping[str, str], euid: int | None = None) -> str:
    """The registry's default root: /var/run/stoker for root, else $XDG_STATE_HOME/stoker,
    else HOME/.local/state/stoker, HOME being $HOME or the user's home in the password
    database, whichever is an absolute path to a directory this user owns (an executor the
    agent started as a task's user may have inherited the agent's HOME=/root), else
    /tmp/stoker-UID (a user with no home of its own: no password entry, /nonexistent, a
    system user's root-owned home). A relative path is never used: the root would change
    with the working directory."""
    euid = os.geteuid() if euid is None else euid
    if euid == 0:
        return "/var/run/stoker"
    state = environ.get("XDG_STATE_HOME", "")
    if os.path.isabs(state):
        return os.path.join(state, "stoker")
    for home in (environ.get("HOME", ""), _passwd_home(euid)):
        if os.path.isabs(home) and _owned_by(home, euid):
            return os.path.join(home, ".local", "state", "stoker")
    return f"/tmp/stoker-{euid}"


def _passwd_home(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_dir
    except KeyError:  # a uid with no entry (a container's arbitrary uid)
        return ""


def _owned_by(path: str, uid: int) -> bool:
    try:
        info = os.stat(path)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == uid


@attrs.frozen(kw_only=True)
class RegistrySettings(Sourced):
    """The host registry (`stoker ps`): where it is and how long it keeps ended tasks."""

    registry_root: str = setting(
        env=("STOKER_ROOT",), flag="--root", default_from=registry_root, metavar="DIR",
        help="the host registry of tasks (default /var/run/stoker for root, else "
             "$XDG_STATE_HOME/stoker, ~/.local/state/stoker or /tmp/stoker-UID)")
    registry_retention_secs: float = setting(
        env=("STOKER_REGISTRY_RETENTION",), flag="--registry-retention", parse=parse_secs,
        default=DEFAULT_RETENTION_SECS, metavar="SECS",
        help="how long the registry lists a task after it ended (default 7days)")
