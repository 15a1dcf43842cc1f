"""What the journal tests feed a `Journal` (`executor/task/journal.py`): a task's checkpoint
header, and a run of process `web` started (its pid 1000 + the run's number, its reason 100
bytes longer than a short one, so that a filled disk is reached in few steps)."""
from __future__ import annotations

from executor.events import ProcessState, ProcessTransition
from executor.task.journal import Journal
from executor.task.records import HeaderRecord

WALL = 1_700_000_000.0
HEADER = HeaderRecord(task="web.0", job_key="c/r/e/web", task_id="web-0-1", sandbox="/sb",
                      ports={}, supervisor_pid=4000, processes=("web",), wall=WALL)


def start_run(journal: Journal, run: int) -> None:
    journal.transition(ProcessTransition("web", run, ProcessState.WAITING, ProcessState.RUNNING,
                                         f"starting run {run} " + "x" * 100), pid=1000 + run)
