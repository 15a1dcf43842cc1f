"""What the observer reads for a request: the registry, a task's sandbox, a run's log.

The tasks are the host registry's (`executor/host/registry.py`: reading prunes what the
retention let go, as `stoker ps` does); each is inspected as `stoker ps` and `stoker
status` inspect it (`executor/task/inspection.py`). A task is found by its task id (a live
supervisor's entry first, else the newest); only a registered sandbox is ever read.

A log is `SANDBOX/.logs/PROCESS/RUN/STREAM`, opened one level at a time without following
a symlink or blocking (`executor/procs/saferead.py`): a symlink anywhere below the sandbox,
a FIFO or a device, a name that is not plain, or a missing file is `NotFound` with the
reason. At most `logrange.MAX_CHUNK_BYTES` are read for one request, and a run directory
is listed up to `MAX_LISTED` entries, whatever the task planted there.
"""
from __future__ import annotations

import os
from pathlib import Path

from config.registry import RegistrySettings
from executor.host.registry import Listed, Registry, find
from executor.observe.logrange import STREAM, LogQuery, trim, window
from executor.observe.model import LogChunk, TaskDetail, TaskSummary
from executor.observe.usage import RunRef, UsageSampler
from executor.procs import saferead
from executor.task.definition import read_definition
from executor.task.inspection import Inspection, inspect_sandbox, marker_of, row, status_json, with_leftovers

LOGS_DIR = ".logs"
MAX_LISTED = 10000


class NotFound(Exception):
    """Nothing to answer with (404); the message says why."""


class Reader:
    def __init__(self, settings: RegistrySettings, usage: UsageSampler | None = None) -> None:
        self.settings = settings
        self._usage = usage or UsageSampler()

    @property
    def root(self) -> str:
        return self.settings.registry_root

    def _listed(self) -> list[Listed]:
        return Registry(self.settings).entries()

    def tasks(self) -> list[TaskSummary]:
        entries = [item.entry for item in self._listed()]
        found = [inspect_sandbox(Path(e.sandbox), e) for e in entries]
        found = with_leftovers(found, [marker_of(i, e) for i, e in zip(found, entries)])
        return [TaskSummary(row(e, i), dict(i.view.ports) if i.view else {})
                for e, i in zip(entries, found)]

    def _entry(self, task_id: str) -> Listed:
        found = find(self._listed(), task_id) if task_id else None
        if found is None:
            raise NotFound(f"no task {task_id!r} in the registry {self.root}")
        return found

    def task(self, task_id: str) -> TaskDetail:
        entry = self._entry(task_id).entry
        inspection = inspect_sandbox(Path(entry.sandbox), entry)
        (inspection,) = with_leftovers([inspection], [marker_of(inspection, entry)])
        definition, problem = read_definition(entry.sandbox)
        if definition is not None and definition.get("task_id") not in (task_id, None):
            other = definition.get("task_id")
            definition, problem = None, f"the sandbox's task.json is of task {other!r}, a later attempt"
        return TaskDetail(row=row(entry, inspection), inspection=inspection,
                          usage=self._usage.sample(_running(inspection)),
                          definition=definition, definition_problem=problem,
                          status=status_json(inspection))

    def log(self, task_id: str, process: str, query: LogQuery) -> LogChunk:
        sandbox = self._entry(task_id).entry.sandbox
        where = f"{LOGS_DIR}/{process}"
        try:
            root = saferead.open_root(sandbox)
            try:
                pdir = saferead.walk(root, [LOGS_DIR, process], file=False)
            finally:
                os.close(root)
            try:
                runs = _runs(pdir)
                number = query.run if query.run is not None else (runs[-1] if runs else None)
                if number is None:
                    raise NotFound(f"process {process!r} has no log in {sandbox}/{LOGS_DIR}")
                where = f"{where}/{number}/{query.stream}"
                rdir = saferead.open_dir(str(number), pdir)
            finally:
                os.close(pdir)
            try:
                parts = _parts(rdir)
                fd = saferead.open_file(query.stream, rdir)
            finally:
                os.close(rdir)
        except ValueError as exc:
            raise NotFound(f"no such process: {exc}") from None
        except OSError as exc:
            raise NotFound(f"no log {where} in task {task_id!r}: {saferead.describe(exc)}") from None
        try:
            return _chunk(fd, query, task_id=task_id, process=process, run=number, runs=runs,
                          parts=parts)
        finally:
            os.close(fd)


def _running(inspection: Inspection) -> list[RunRef]:
    attempt = inspection.attempt
    if attempt is None or not inspection.truth.alive:
        return []
    refs = []
    for p in attempt.processes:
        run = p.current
        if run is not None and run.state == "RUNNING" and run.pid is not None:
            refs.append(RunRef(p.name, run.pid, run.started_wall))
    return refs


def _names(dir_fd: int) -> list[tuple[str, bool]]:
    """(name, is a directory) of up to MAX_LISTED entries; symlinks are neither."""
    found: list[tuple[str, bool]] = []
    with os.scandir(dir_fd) as scan:
        for entry in scan:
            if len(found) >= MAX_LISTED:
                break
            found.append((entry.name, entry.is_dir(follow_symlinks=False)))
    return found


def _runs(pdir: int) -> tuple[int, ...]:
    numbers = (saferead.run_number(n) for n, is_dir in _names(pdir) if is_dir)
    return tuple(sorted(n for n in numbers if n is not None))


def _parts(rdir: int) -> tuple[str, ...]:
    def order(name: str) -> tuple[str, int]:
        base, _, number = name.partition(".")
        return base, int(number or 0)
    return tuple(sorted((n for n, is_dir in _names(rdir) if not is_dir and STREAM.match(n)),
                        key=order))


def _chunk(fd: int, query: LogQuery, *, task_id: str, process: str, run: int,
           runs: tuple[int, ...], parts: tuple[str, ...]) -> LogChunk:
    stat = os.fstat(fd)
    size = stat.st_size
    win = window(size, query)
    data = bytearray()
    while win.start + len(data) < win.end:
        block = os.pread(fd, min(saferead.BLOCK_BYTES, win.end - win.start - len(data)),
                         win.start + len(data))
        if not block:
            break
        data += block
    skip, keep = trim(bytes(data), win)
    return LogChunk(task_id=task_id, process=process, run=run, stream=query.stream,
                    start=win.start + skip, end=win.start + keep, size=size,
                    data=bytes(data[skip:keep]).decode("utf-8", "replace"), capped=win.capped,
                    runs=runs, parts=parts, file=f"{stat.st_dev}:{stat.st_ino}")
