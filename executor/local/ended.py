"""How one attempt of `stoker run` ended, and what the run says of it: its own state
changes (a line on stdout and its event on the log) and an attempt that Stoker's own error
ended (`crashed`: the run ends with EX_SOFTWARE, not the task's status).
"""
from __future__ import annotations

import logging
from typing import Any

import attrs

from executor.local.console import ConsoleReporter
from executor.logs import log_event
from executor.task.status import Update

logger = logging.getLogger("executor.local.run")  # the run's lines, as they always were

EXIT_INTERNAL_ERROR = 70  # sysexits' EX_SOFTWARE: Stoker's own error ended the run, not the task's


@attrs.frozen(slots=True, kw_only=True)
class Ended:
    """How one attempt ended, and the console it printed to."""

    update: Update
    uptime_secs: float
    console: ConsoleReporter
    error: Exception | None = None  # an internal error ended it (the owner's FAILED update)


# The run's own state changes: a line on stdout, and its event on the log (where a text log
# drops it, main.RUN_PRINTED_EVENTS: the line says it).
def said(ended: Ended, event: str, reason: str, line: str | None = None,
         level: int = logging.INFO, **fields: Any) -> None:
    update = ended.update
    log_event(logger, level, event, task=ended.console.label, state=update.state.value, **fields,
              reason=reason)
    ended.console.line("stoker", line if line is not None else f"{update.state.value}: {reason}")


def crashed(ended: Ended) -> int:
    """Stoker's own error (a bug; a module that no longer fits, after an upgrade in place)
    ended the attempt: its owner logged the traceback and stopped every process. Nothing
    Stoker holds can be trusted to supervise a next one: the run ends, with its own status."""
    error = ended.error
    text = (f"executor internal error: {type(error).__name__}: {error}; no restart: Stoker itself "
            "failed (the traceback is in its log)")
    said(ended, "run_ended", text, level=logging.ERROR, exit=EXIT_INTERNAL_ERROR,
         line=f"{ended.update.state.value}: {text} (exit {EXIT_INTERNAL_ERROR})")
    return EXIT_INTERNAL_ERROR
