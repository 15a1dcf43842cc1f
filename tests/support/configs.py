"""Small job configs for tests: write `.aurora` text to a directory, or build a Job in memory."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from config.schema import Job, Process, Resources, Task

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.aurora"))
# What a task needs at least (Aurora requires resources), as `.aurora` text.
RESOURCES = "resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)"


def write_config(directory: Path, text: str, name: str = "job.aurora") -> Path:
    """Writes dedented `text` to `directory/name` (parents created) and returns the path."""
    path = Path(directory) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def process(name: str = "web", cmdline: str = "echo hi", **fields: Any) -> Any:
    return Process(name=name, cmdline=cmdline, **fields)


def task(*processes: Any, **fields: Any) -> Any:
    fields.setdefault("resources", Resources(cpu=0.1, ram=1024, disk=1024))
    return Task(processes=list(processes) or [process()], **fields)


def job(*processes: Any, task_fields: dict | None = None, **fields: Any) -> Any:
    """A valid Job c/r/e/<task name> with the given processes (default one `web`)."""
    fields.setdefault("cluster", "c")
    fields.setdefault("role", "r")
    fields.setdefault("environment", "e")
    return Job(task=task(*processes, **(task_fields or {})), **fields)


def job_text(processes: str = "[Process(name='web', cmdline='echo hi')]", extra: str = "",
             task_extra: str = "") -> str:
    """`.aurora` text for one job; `extra`/`task_extra` are added as keyword arguments."""
    return (
        f"jobs = [Job(task=Task(processes={processes}{task_extra}, {RESOURCES}),\n"
        f"            cluster='c', role='r', environment='e'{extra})]\n"
    )
