"""How a command that only serves (`stoker observe`) logs: `--log-format` and `--log-level`,
read like every setting (`config/settings.py`: a flag wins over its variable, which wins
over the default). `stoker run` and `stoker executor` have the same two among their own.
Never logs.
"""
from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

import attrs

from config.settings import (
    LOG_FORMATS,
    LOG_LEVELS,
    _from_sources,
    _namespace_values,
    parse_log_format,
    parse_log_level,
    setting,
)


@attrs.frozen(kw_only=True)
class LogSettings:
    """The stderr log of a command: its format and level."""

    log_format: str = setting(env=("STOKER_LOG_FORMAT",), flag="--log-format", default="text",
                              parse=parse_log_format, choices=LOG_FORMATS,
                              help="log lines as text or json (default text)")
    log_level: str = setting(env=("STOKER_LOG_LEVEL",), flag="--log-level", default="INFO",
                             parse=parse_log_level,
                             help=f"stderr log level: {', '.join(LOG_LEVELS)} (default INFO)")

    @classmethod
    def from_args(cls, args: argparse.Namespace, environ: Mapping[str, str]) -> LogSettings:
        """Raises SettingsError."""
        overrides: dict[str, Any] = _namespace_values(cls, args)
        return _from_sources(cls, environ, overrides)
