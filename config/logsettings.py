"""How a command that only serves (`stoker observe`) logs: `--log-format` and `--log-level`,
read like every setting (`config/sourced.py`: a flag wins over its variable, which wins
over the default). `stoker run` and `stoker executor` have the same two among their own.
Never logs.
"""
from __future__ import annotations

import attrs

from config.settings import (
    LOG_FORMATS,
    LOG_LEVELS,
    parse_log_format,
    parse_log_level,
)
from config.sourced import Sourced, setting


@attrs.frozen(kw_only=True)
class LogSettings(Sourced):
    """The stderr log of a command: its format and level."""

    log_format: str = setting(env=("STOKER_LOG_FORMAT",), flag="--log-format", default="text",
                              parse=parse_log_format, choices=LOG_FORMATS,
                              help="log lines as text or json (default text)")
    log_level: str = setting(env=("STOKER_LOG_LEVEL",), flag="--log-level", default="INFO",
                             parse=parse_log_level,
                             help=f"stderr log level: {', '.join(LOG_LEVELS)} (default INFO)")
