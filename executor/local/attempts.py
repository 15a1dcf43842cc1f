"""The logs of earlier attempts in a `stoker run` sandbox.

Each attempt of a run writes its processes' logs in `.logs`; before the next attempt (of
this run, or of a later run in the same sandbox) begins, they are kept as `.logs.attempt-N`,
N the first number not taken (run numbers restart at 0 in each attempt), where `stoker
tail`, `stoker status` and the observer still find them.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


def archive_logs(sandbox: Path) -> None:
    """.logs → .logs.attempt-N. A `.logs` that is not a directory (a symlink, say) is left alone."""
    logs = sandbox / ".logs"
    if not logs.is_dir() or logs.is_symlink():
        return
    number = 0
    while os.path.lexists(sandbox / f".logs.attempt-{number}"):
        number += 1
    try:
        logs.rename(sandbox / f".logs.attempt-{number}")
    except OSError as exc:
        logger.error("run could not archive %s: %s", logs, exc)
