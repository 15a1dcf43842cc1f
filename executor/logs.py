"""`log_event()`: one state change as one log line, `event key=value ...`, for every layer.

How lines are rendered (text, or one JSON object per line with `--log-format json`) is
configured only by the CLI (`executor/cli/logsetup.py`); modules only call `log_event()`
or their logger.

`stoker run`'s console keeps a live view on the terminal's last line, without a newline.
It registers it here (`keep_screen_line`), and the log handler writes each record inside
`above_screen_line()`: the view is cleared first and drawn again after, under one lock the
console's own writes take too (`screen_lock`), so a record (text or JSON) never starts on
the view's line and no two writers interleave on the terminal.

Never pass a secret (the agent's auth token) to a logger: nothing here can scrub it.
"""
from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any, Protocol

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


class ScreenLine(Protocol):
    """A line kept at the bottom of the terminal (the console's live view)."""

    def hide(self) -> None: ...

    def show(self) -> None: ...


# Held by whoever writes to the terminal the screen line is on. Re-entrant: the console may
# log (a lost stdout) while it holds it.
screen_lock = threading.RLock()
_screen_line: ScreenLine | None = None


def keep_screen_line(line: ScreenLine | None) -> None:
    """`line` is now at the bottom of the terminal (None: no line any more)."""
    global _screen_line
    with screen_lock:
        _screen_line = line


@contextlib.contextmanager
def above_screen_line() -> Iterator[None]:
    """Write something of your own to the terminal: the screen line is cleared before and
    drawn again after, and nobody else writes meanwhile."""
    with screen_lock:
        line = _screen_line
        if line is not None:
            line.hide()
        try:
            yield
        finally:
            if line is not None:
                line.show()
