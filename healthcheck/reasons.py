"""What every checker shares: the Checker protocol, limits, and reason formatting.
No I/O here."""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Protocol

from healthcheck.policy import Attempt

logger = logging.getLogger("healthcheck.checkers")

MAX_BODY_BYTES = 64 * 1024  # HTTP bodies are read up to this much, then the check stops reading
QUOTE_CHARS = 1024  # a reason quotes at most this much of a body or of a command's output


class Checker(Protocol):
    def check(self) -> Attempt:
        """Run one attempt; never raises."""
        ...

    def describe(self) -> str:
        """What is checked, e.g. "HTTP GET http://localhost:31000/health"."""
        ...


def _secs(value: float) -> str:
    return str(round(float(value), 3))


def _quote(text: str, limit: int = QUOTE_CHARS) -> str:
    """One line, at most `limit` characters of `text` (the head), marked when cut."""
    text = text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")
    if len(text) > limit:
        return text[:limit] + f"... ({len(text) - limit} more characters)"
    return text


def _tail_quote(text: str, limit: int = QUOTE_CHARS) -> str:
    """One line, at most the last `limit` characters of `text`, marked when cut."""
    text = text.strip().replace("\r", "\\r").replace("\n", "\\n")
    if not text:
        return "(no output)"
    if len(text) > limit:
        return "..." + text[-limit:]
    return text


def _never_raises(check: Callable[..., Attempt]) -> Callable[..., Attempt]:
    @functools.wraps(check)
    def wrapper(self: object) -> Attempt:
        try:
            return check(self)
        except Exception as exc:
            logger.error(
                "health_check_internal_error check=%r error=%s: %s",
                getattr(self, "describe", lambda: "?")(),
                type(exc).__name__,
                exc,
                exc_info=True,
            )
            return Attempt.failed(f"internal health check error: {type(exc).__name__}: {exc}")

    return wrapper

