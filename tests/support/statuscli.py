"""What the `stoker status` and observer tests share: running the command in process, a
checkpoint written through the product's own writer from records given as dicts, a registry
entry of task web-0-1 (`entry_for`), a sandbox registered as a gone supervisor's task, a task
registered as a supervisor leaves it (`registered_task`: running, LOST or ended), and a
second supervisor running a task in a process of its own (`supervisor_elsewhere`: another
framework's task that took an id)."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from config.registry import RegistrySettings
from executor.cli.main import main
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.identity import boot_secs, own_identity
from executor.host.registry import Registry
from executor.procs import sandboxfs
from executor.task.checkpoint import CheckpointWriter
from tests.support.stoker_proc import REPO

GONE = own_identity().pid + 1_000_000  # a supervisor that is not running

# A second supervisor, in a process of its own, whose running task has the id argv[2].
_ELSEWHERE = """
import sys, time
from executor.host.session import HostSession
s = HostSession.open(sys.argv[1])
s.task_started(task_id=sys.argv[2], job_key="c/r/e/other", label="other.0", marker="m2", post=lambda e: None)
print("ready", flush=True)
time.sleep(30)
"""


@contextlib.contextmanager
def supervisor_elsewhere(sandbox: Path, task_id: str) -> Iterator[subprocess.Popen]:
    """A supervisor of task `task_id` in `sandbox`, registered in the registry the environment
    names (STOKER_ROOT), running in a child until the block ends (then killed and reaped)."""
    other = subprocess.Popen([sys.executable, "-c", _ELSEWHERE, str(sandbox), task_id], stdout=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert other.stdout is not None and other.stdout.readline() == b"ready\n"
        yield other
    finally:
        other.kill()
        other.wait()
        if other.stdout is not None:
            other.stdout.close()


def status(capsys, *args) -> tuple[int, str, str]:
    code = main(["status", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def write(sandbox, records) -> None:
    writer = CheckpointWriter(sandbox)
    writer.append_many(records)
    writer.close()


def entry_for(sandbox: Path, pid: int | None = None, start: int | None = None, **fields) -> RegistryEntry:
    """A `stoker run` registry entry of task web-0-1 in `sandbox` (registered at 1234.5), its
    supervisor this process unless `pid` and `start` name another; `fields` replace any."""
    me = own_identity()
    return RegistryEntry(sandbox=str(sandbox), supervisor_pid=me.pid if pid is None else pid,
                         supervisor_start=me.start_ticks if start is None else start, supervisor_boot=me.boot_id,
                         front_end=FrontEnd.RUN, **{"registered_wall": 1234.5, "task_id": "web-0-1", **fields})


def header(pid, start, marker="m4rk3r", wall=1000.0):
    return {"kind": "header", "task": "web.0", "job_key": "c/r/e/web", "task_id": "web-0-1",
            "sandbox": "/sb", "ports": {}, "supervisor_pid": pid, "supervisor_start": start,
            "supervisor_boot": own_identity().boot_id, "marker": marker, "processes": ["web"],
            "health": "none", "wall": wall}


RUNNING = [{"kind": "task", "from": "NEW", "to": "STARTING", "reason": "launched", "wall": 1000.0},
           {"kind": "process", "process": "web", "run": 2, "from": "WAITING", "to": "RUNNING",
            "reason": "starting run 2", "pid": 4242, "wall": 1001.0},
           {"kind": "task", "from": "STARTING", "to": "RUNNING", "reason": "processes started",
            "wall": 1002.0}]


def registered_as_web_0_1(tmp_path, monkeypatch, sandbox, me) -> None:
    """`sandbox` registered as task web-0-1 of `stoker run` whose supervisor is `me` (its start
    100 ticks later: gone), in a registry of the test's own (STOKER_ROOT)."""
    root = tmp_path / "root"
    Registry(RegistrySettings(registry_root=str(root), registry_retention_secs=60.0)).write(
        RegistryEntry(sandbox=str(sandbox), supervisor_pid=me.pid, supervisor_start=me.start_ticks + 100,
                      supervisor_boot=me.boot_id, front_end=FrontEnd.RUN,
                      registered_wall=time.time(), task_id="web-0-1"))
    monkeypatch.setenv("STOKER_ROOT", str(root))


def registered_task(settings: RegistrySettings, sandbox: Path, name: str, records: list[dict], *, alive: bool,
                    ended: bool = False, marked: bool = True, marker: str = "", ended_state: str = "") -> None:
    """Task `name` in `sandbox`, its checkpoint the header and `records`, registered as its
    supervisor leaves it: `alive`, this process is it; else a gone one of this boot. Its
    marker (`marker-NAME` unless given) is in its registry entry and (`marked`) in its
    checkpoint's header; `ended_state`, the entry's (the end its owner recorded)."""
    me = own_identity()
    marker = marker or f"marker-{name}"
    os.makedirs(settings.registry_root, mode=0o700, exist_ok=True)
    pid, start = (me.pid, me.start_ticks) if alive else (GONE, len(os.listdir(settings.registry_root)))
    stamped = {} if alive else {"boot": boot_secs() - 60}  # as a supervisor stamps it, after it took its lock
    write(sandbox, [dict(header(pid, start, marker=marker if marked else ""), **stamped), *records])
    (sandbox / ".stoker/supervisor.lock").touch()  # as a supervisor leaves it
    fd = os.open(sandbox / ".stoker", os.O_RDONLY | os.O_DIRECTORY)
    try:
        pinned = sandboxfs.dir_id(fd)
    finally:
        os.close(fd)
    Registry(settings).write(RegistryEntry(
        sandbox=str(sandbox), supervisor_pid=pid, supervisor_start=start, supervisor_boot=me.boot_id,
        front_end=FrontEnd.RUN, registered_wall=time.time(), task_id=name, marker=marker,
        ended_wall=time.time() if ended else None, stoker_dir=pinned, ended_state=ended_state), prune=False)
