"""The host registry's settings (docs/contract.md §8): where it is, how long it keeps ended tasks.

Owns `RegistrySettings`, read like every setting (`config/settings.py`: a flag wins over its
variable, which wins over the default), for `stoker run`, `stoker executor` and the
commands that read the registry (`ps`, and `status`, `kill`, `restart`, `tail` given a task
id), and `registry_root`, its default: /var/run/stoker for root, else $XDG_STATE_HOME/stoker,
else ~/.local/state/stoker. Never logs.
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import Any

import attrs

from config.settings import _from_sources, _namespace_values, parse_secs, setting

DEFAULT_RETENTION_SECS = 7 * 86400.0


def registry_root(environ: Mapping[str, str], euid: int | None = None) -> str:
    """The registry's default root: /var/run/stoker for root, else $XDG_STATE_HOME/stoker,
    else ~/.local/state/stoker."""
    if (os.geteuid() if euid is None else euid) == 0:
        return "/var/run/stoker"
    state = environ.get("XDG_STATE_HOME") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "stoker")


@attrs.frozen(kw_only=True)
class RegistrySettings:
    """The host registry (`stoker ps`): where it is and how long it keeps ended tasks."""

    registry_root: str = setting(
        env=("STOKER_ROOT",), flag="--root", default_from=registry_root, metavar="DIR",
        help="the host registry of tasks (default /var/run/stoker for root, else "
             "$XDG_STATE_HOME/stoker or ~/.local/state/stoker)")
    registry_retention_secs: float = setting(
        env=("STOKER_REGISTRY_RETENTION",), flag="--registry-retention", parse=parse_secs,
        default=DEFAULT_RETENTION_SECS, metavar="SECS",
        help="how long the registry lists a task after it ended (default 7days)")

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> RegistrySettings:
        """Settings from `environ`; `overrides` (None = not given) win. Raises SettingsError."""
        return _from_sources(cls, environ, overrides)

    @classmethod
    def from_args(cls, args: argparse.Namespace, environ: Mapping[str, str]) -> RegistrySettings:
        return cls.from_env(environ, **_namespace_values(cls, args))
