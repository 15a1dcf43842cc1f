"""One record written to a task's checkpoint while no task writes it: `stoker run` between
two attempts (the restart it scheduled, RESTARTING). Loaded only then: a run that never
restarts does not import it."""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from executor.logs import log_event
from executor.procs import sandboxfs
from executor.task.checkpoint import CheckpointWriter

logger = logging.getLogger(__name__)


def append_between(sandbox: Path, record: Mapping[str, Any], task: str,
                   stoker_dir: Callable[[], int] | None = None) -> None:
    """One record written while no task writes the checkpoint (`stoker run` between two
    attempts: the restart it scheduled), in the `.stoker` whose new fd `stoker_dir()` gives
    (the host session's: `HostSession.stoker_dir`) when given. A failure costs the record:
    one WARNING line."""
    try:
        dir_fd = None if stoker_dir is None else stoker_dir()
        try:
            writer = CheckpointWriter(sandbox, label=task, stoker_dir=dir_fd)
        finally:
            if dir_fd is not None:
                os.close(dir_fd)
    except (OSError, ValueError) as exc:
        reason = sandboxfs.describe_os_error(exc) if type(exc) is OSError else str(exc)
        log_event(logger, logging.WARNING, "checkpoint_unavailable", task=task, reason=reason,
                  records_lost=1)
        return
    try:
        writer.append(record)
    except OSError as exc:
        log_event(logger, logging.WARNING, "checkpoint_write_failed", task=task,
                  error=sandboxfs.describe_os_error(exc), records_lost=1)
    finally:
        writer.close()
