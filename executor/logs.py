"""`log_event()`: one state change as one log line, `event key=value ...`, for every layer.

How lines are rendered (text, or one JSON object per line with `--log-format json`) is
configured only by the CLI (`executor/cli/logsetup.py`); modules only call `log_event()`
or their logger.

Never pass a secret (the agent's auth token) to a logger: nothing here can scrub it.
"""
from __future__ import annotations

import json
import logging
from typing import Any

_QUOTE_NEEDED = set(' "=\t\n')


def _render(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in _QUOTE_NEEDED for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


def log_event(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    """Log one state change: `event k=v k2="v 2"` (fields in the order given)."""
    if not logger.isEnabledFor(level):
        return
    parts = [event] + [f"{k}={_render(v)}" for k, v in fields.items() if v is not None]
    logger.log(level, " ".join(parts), extra={"stoker_event": event, "stoker_fields": fields})
