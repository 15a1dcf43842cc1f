"""`log_event()`: one state change as one log line, `event key=value ...`, for every layer
(`event_line` its text, for a record made by hand).

Every line Stoker logs goes through it, so that each has an event name and its fields:
the text format prints `event k=v k2="v 2"`, and `--log-format json` gives the event and
each field as keys of their own (`executor/cli/logsetup.py`). It lives in config/, the
bottom layer, so that the health checker (which imports config/ only) logs the same way
as the executor.

`to_journal`: under systemd a unit's stdout and stderr are streams to the journal, which
names the one it connected in `$JOURNAL_STREAM` (`DEVICE:INODE`, sd-daemon(3)); a stream is
the journal's when its descriptor is that file. The journal stamps every line itself, and
reads a `<N>` (syslog priority) prefix as the line's level: the log handler and `stoker run`'s
console write their lines for it then.

Never pass a secret (the agent's auth token) to it: nothing here can scrub it.
"""
from __future__ import annotations

import logging
import os
from typing import Any

_QUOTE_NEEDED = set(' "=')


def _render(value: Any) -> str:
    """A field's value as its line shows it: as it is when it is one plain word; else in double
    quotes, with `"` and `\\` escaped as JSON escapes them, and every control character, line
    separator and format character as `config.words.loggable` writes it (`\\n`, `\\x1b`,
    `\\u202e`), so that a name an operator or a config gave keeps its line one line, read
    in its order. A plain ASCII value is written as it always was (JSON's quoting)."""
    text = str(value)
    if not (text.isascii() and text.isprintable()):
        from config.words import loggable  # past ASCII, or a control: seldom

        if loggable(text) != text:
            return '"' + loggable(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'
    if text == "" or any(c in _QUOTE_NEEDED for c in text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def log_event(logger: logging.Logger, level: int, event: str, *,
              exc_info: bool | BaseException = False, **fields: Any) -> None:
    """Log one state change: `event k=v k2="v 2"` (fields in the order given, None ones
    left out); `exc_info`: with the traceback of the exception being handled (True) or of
    the one given."""
    if not logger.isEnabledFor(level):
        return
    logger.log(level, event_line(event, fields), exc_info=exc_info or None,
               stacklevel=2,  # the caller's line
               extra={"stoker_event": event, "stoker_fields": fields})


def event_line(event: str, fields: dict[str, Any]) -> str:
    """The text of one event's line: `event k=v k2="v 2"` (None fields left out)."""
    return " ".join([event] + [f"{k}={_render(v)}" for k, v in fields.items() if v is not None])


def to_journal(stream: object) -> bool:
    """Whether `stream` (a file object) writes to the journal stream systemd connected."""
    named = os.environ.get("JOURNAL_STREAM")
    if not named:
        return False
    try:
        st = os.fstat(stream.fileno())  # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):  # no descriptor (a test's StringIO), or closed
        return False
    return named == f"{st.st_dev}:{st.st_ino}"
