"""The one family of configuration errors.

Owns `ConfigError` and its subclasses, and how a message shows a value (`show`, `cut`) and
lists several problems (`join_problems`). Every problem with a `.aurora` file, a task document,
a template binding or the settings is one of these, with a message that names the file and
line, the job key, the field and the value where they are known. Never raises anything else
and does no I/O.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from config.words import quoted


class ConfigError(Exception):
    """A job, task document or setting is invalid; the message says where and why."""

    def __init__(self, message: str, problems: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        # Each problem as its own sentence, for callers that list them one per line.
        self.problems: tuple[str, ...] = tuple(problems) or (message,)

    def __str__(self) -> str:
        return self.message


class ConfigTimeout(BaseException):
    """The config's code ran past the time it is given (raised into it by whoever bounds
    it). A BaseException, so that the config's own `except Exception` cannot swallow it;
    the loader turns it into a ConfigError naming the line that was running."""


def in_file(exc: ConfigError, source: str) -> ConfigError:
    """`exc` (same class, same details) with a message that starts with `source`: for an
    error raised where the file it came from is not known."""
    named = copy.copy(exc)
    named.message = f"{source}: {exc.message}"
    named.args = (named.message,)
    return named


class BindError(ConfigError):
    """Binding a job for one run left references unbound or ports missing."""

    def __init__(
        self,
        message: str,
        unbound: Iterable[str] = (),
        missing_ports: Iterable[str] = (),
    ) -> None:
        super().__init__(message)
        self.unbound: tuple[str, ...] = tuple(unbound)
        self.missing_ports: tuple[str, ...] = tuple(missing_ports)


class TaskDocumentError(ConfigError):
    """The TaskInfo.data task document is malformed."""


class SettingsError(ConfigError):
    """A flag or an environment variable is missing or invalid."""


# The problems one message lists at most, the rest counted: a task document of 20,000 bad
# processes (770 KB) made a 4.8 MB message, the TASK_FAILED's the scheduler keeps.
MAX_LISTED_PROBLEMS = 20


def join_problems(prefix: str, problems: list[str]) -> str:
    """One message for one or more problems, in the order they were found (the first
    MAX_LISTED_PROBLEMS, then how many more)."""
    if len(problems) == 1:
        return f"{prefix}: {problems[0]}"
    listed = "; ".join(problems[:MAX_LISTED_PROBLEMS])
    if len(problems) > MAX_LISTED_PROBLEMS:
        listed += f"; and {len(problems) - MAX_LISTED_PROBLEMS} more"
    return f"{prefix}: {len(problems)} problems: {listed}"


def show(value: Any) -> str:
    """A value for a message: its repr, cut to 80 characters."""
    text = quoted(value)
    return text if len(text) <= 80 else text[:77] + "..."


def cut(text: str, limit: int = 64) -> str:
    """`text` for a message: at most `limit` characters, "..." marking a cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
