"""Small job configs for tests: write `.aurora` text to a directory, or build a Job in memory;
a loaded job as plain values, the error a config raises when loaded."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from config.bind import bind
from config.errors import ConfigError
from config.loader import load_job
from config.schema import (
    HealthCheckerConfig,
    Job,
    Process,
    Resources,
    ShellHealthChecker,
    Task,
    TcpHealthChecker,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.aurora"))
# What a task needs at least (Aurora requires resources), as `.aurora` text.
RESOURCES = "resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)"
# A service (role %(role)s) whose process and shell check each write the umask they started with.
UMASKS = """
    work = Process(name='work', cmdline='umask > run-umask; exec sleep 600')
    jobs = [Service(cluster='devcluster', role='%(role)s', environment='test', name='work',
                    task=Task(processes=[work], resources=Resources(cpu=0.1, ram=8*MB, disk=8*MB)),
                    health_check_config=HealthCheckConfig(
                      health_checker=HealthCheckerConfig(shell=ShellHealthChecker(
                        shell_command='umask > check-umask')),
                      initial_interval_secs=2.0, interval_secs=0.1))]
"""


def write_config(directory: Path, text: str, name: str = "job.aurora") -> Path:
    """Writes dedented `text` to `directory/name` (parents created) and returns the path."""
    path = Path(directory) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def process(name: str = "web", cmdline: str = "echo hi", **fields: Any) -> Any:
    return Process(name=name, cmdline=cmdline, **fields)


def task(*processes: Any, **fields: Any) -> Any:
    fields.setdefault("resources", Resources(cpu=0.1, ram=1024 * 1024, disk=1024 * 1024))
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


def plain(obj: Any) -> Any:
    """A loaded pystachio object as plain JSON values."""
    return json.loads(obj.json_dumps())


def error_of(path: Path, jobkey: str | None = None) -> str:
    """The ConfigError's message that loading `path` (and selecting `jobkey`) raises."""
    with pytest.raises(ConfigError) as info:
        load_job(path, jobkey)
    return str(info.value)


# What a task's start gives bind() besides its ports.
BIND = dict(instance=3, task_id="task-7", hostname="host.example", user="alice")


def bound(j: Any, **ports: int) -> Any:
    """`j` bound with BIND and the given ports."""
    return bind(j, ports=ports, **BIND)


# A process that serves on the `health` port, and the two health checkers that are not HTTP.
HEALTH_PORT = process("web", "serve {{thermos.ports[health]}}")
SHELL = HealthCheckerConfig(shell=ShellHealthChecker(shell_command="probe {{thermos.ports[health]}} {{thermos.task_id}}"))
TCP = HealthCheckerConfig(tcp=TcpHealthChecker())
