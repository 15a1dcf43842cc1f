"""The task as it runs, kept beside its checkpoint: `SANDBOX/.stoker/task.json`.

Thermos keeps the task it runs next to its checkpoint, and the observer shows it; Stoker's
checkpoint holds what happened, not the bound job. So when a task starts (each attempt of a
`stoker run` too), `write_definition` puts the fully bound `JobSpec` there as JSON (every
template expanded, every default applied, the resolved ports: what `stoker inspect` would
print, as the supervisor runs it), and `read_definition` gives it back to `stoker observe`.

- Writing is on a task's start path (before its first fork), so it is kept cheap: the JSON
  is one line, from json's C encoder (an indented one is the pure-Python encoder's, three
  times the cost); the observer's page indents it. It never stops a launch: it goes
  through `.stoker`'s directory fd to a temporary file (created exclusively, never through
  a symlink) renamed over the old one, and any failure is one WARNING line. The file holds
  no environment and no secret: the JobSpec has neither.
- Reading trusts nothing (the task's processes share the sandbox): only in the `.stoker`
  its supervisor made (pinned by its registry entry: the task may rename it and put its
  own in its place, a task.json of the task's id that says what it likes), the file is opened
  without following a symlink or blocking (`executor/procs/saferead.py`), at most
  `MAX_DEFINITION_BYTES` are read, and a document nested deeper than `MAX_DEFINITION_DEPTH`
  (Stoker writes 6 levels) is refused whatever the interpreter's parser reads: 3.11's
  `json.loads` stops at about 1,000 levels, 3.12's at 1,500, 3.13's at 10,000, and the
  observer's page printed a 1,200-level one with `json.dumps(indent=...)`, which recurses in
  Python on 3.12 (an error page and a traceback in its log).
- Without the file (or with another attempt's), the reader is told why from what `.stoker`
  holds and what it knows of the attempt (`Asked`: its supervisor runs, its checkpoint holds
  it): a temporary of the file says its supervisor is writing it, or was killed as it did;
  none, and nothing of the attempt recorded, that it is starting it or died before it wrote
  it (it writes the file before the attempt's first record), or let go of the sandbox (its
  registry entry ended: it could not write it, or stopped first); else that it did not keep it.
"""
from __future__ import annotations

import enum
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from config.spec import JobSpec
from config.words import quoted
from executor.host.replacefile import replace_file
from executor.host.sandbox import TASK_FILE, open_stoker_dir, temporaries
from executor.logs import log_event
from executor.procs import saferead

logger = logging.getLogger(__name__)

MAX_DEFINITION_BYTES = 4 * 1024 * 1024
MAX_DEFINITION_DEPTH = 100  # levels of objects and arrays
NAMES_LOOKED_AT = 64  # of `.stoker`, for a temporary of the file, at most (a supervisor's holds about 8)


def definition_json(job: JobSpec) -> dict[str, Any]:
    """The bound job as plain JSON values (enums by their value), with its key and label."""
    doc: dict[str, Any] = attrs.asdict(job, value_serializer=_plain)
    doc.update(key=job.key, label=job.label)
    return doc


def _plain(_inst: Any, _field: Any, value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def definition_chunks(job: JobSpec) -> Iterator[bytes]:
    """`json.dumps(definition_json(job), sort_keys=True)`, encoded, in pieces: the job without
    its processes, each process in its place, made as it is written. The whole document's
    values at once (a dictionary, list and string for each field of each process) were some
    200 KB of small objects for 100 processes, written once the supervisor had loaded: the
    allocator's pools they took stayed resident once freed, 0.1 MiB of every idle supervisor
    at N=100; one process's at a time reuse the same few."""
    # one line, by json's C encoder: with `indent` it is the pure-Python one, 2 of this call's 3 ms for
    # 100 processes, before the task's first fork (the observer's page indents it when it shows it)
    doc = definition_json(attrs.evolve(job, task=attrs.evolve(job.task, processes=())))
    place = doc["task"]["processes"] = f"processes {os.urandom(16).hex()}"  # unlike any other value
    head, tail = json.dumps(doc, sort_keys=True).split(json.dumps(place), 1)
    yield f"{head}[".encode()
    for i, process in enumerate(job.task.processes):
        text = json.dumps(attrs.asdict(process, value_serializer=_plain), sort_keys=True)
        yield (f", {text}" if i else text).encode()
    yield f"]{tail}".encode()


def write_definition(sandbox: Path, job: JobSpec, stoker_dir: int | None = None) -> bool:
    """Write `.stoker/task.json` for `job`, through `stoker_dir` (the host session's fd of
    `.stoker`, left open) when given; False (and one WARNING) when it cannot be."""
    try:
        if stoker_dir is not None:
            replace_file(TASK_FILE, definition_chunks(job), dir_fd=stoker_dir)
            return True
        fd = open_stoker_dir(sandbox, create=True)
        try:
            replace_file(TASK_FILE, definition_chunks(job), dir_fd=fd)
        finally:
            os.close(fd)
    except (OSError, ValueError) as exc:
        reason = saferead.describe(exc) if isinstance(exc, OSError) else str(exc)
        log_event(logger, logging.WARNING, "task_definition_unwritten", task=job.label,
                  reason=f"cannot write {sandbox}/.stoker/{TASK_FILE}: {reason}; "
                         "the task runs, `stoker observe` will not show its definition")
        return False
    return True


@attrs.frozen(slots=True)
class Asked:
    """The attempt whose definition is asked for, as its reader knows it (`stoker observe`:
    its registry entry and its checkpoint), to say truly why there is none."""

    task_id: str = ""  # its id ("": any: the file's is not checked)
    ids: tuple[str, ...] = ()  # its supervisor's task ids, oldest first (`stoker run`'s attempts)
    alive: bool = False  # its supervisor runs
    recorded: bool = True  # its checkpoint holds its attempt (a header)
    later: frozenset[str] = frozenset()  # the task ids of the supervisors that took its sandbox after it
    let_go: bool = False  # its supervisor marked its registry entry ended as it went (not killed)


def read_definition(sandbox: str | os.PathLike[str], asked: Asked = Asked(),
                    pinned: str = "") -> tuple[dict[str, Any] | None, str]:
    """(the definition, "") or (None, why there is none), never raising. A definition of
    another task than `asked`'s is none of its. `pinned`: the `.stoker` its supervisor made
    (its registry entry's `stoker_dir`): none other is read (the task, whose sandbox it
    is, may put one of its own in its place)."""
    where = f"{os.fspath(sandbox)}/.stoker/{TASK_FILE}"
    try:
        dir_fd = open_stoker_dir(sandbox, pinned=pinned)
    except OSError as exc:
        return None, f"cannot open {where}: {saferead.describe(exc)}"
    try:
        doc, problem = _read(dir_fd, where)
        other = doc.get("task_id") if doc is not None else None
        if problem == _MISSING:
            return None, f"no {where}: {_unwritten(dir_fd, asked, os.path.dirname(where))}"
        if other is None or not asked.task_id or other == asked.task_id:
            return doc, problem
        return None, _of_another(dir_fd, asked, other, os.path.dirname(where))
    finally:
        os.close(dir_fd)


_MISSING = "missing"


def _unwritten(dir_fd: int, asked: Asked, stoker: str) -> str:
    """Why the attempt has no definition, from what `.stoker` (`stoker`, open as `dir_fd`)
    holds: its supervisor writes it first (a temporary renamed over it), before the
    attempt's first record. Of a `.stoker` the task filled, its first names alone are looked
    at (`NAMES_LOOKED_AT`): each page of the observer asks."""
    try:
        listed = temporaries(dir_fd, NAMES_LOOKED_AT)
    except OSError:  # not listed: as if there were none
        listed = []
    if listed is None:
        return (f"why cannot be told: {stoker} holds more than {NAMES_LOOKED_AT} names (a supervisor's "
                "holds a few)")
    temps = [name for name in listed if name.startswith(f".{TASK_FILE}.")]
    if temps and asked.alive:
        return "its supervisor is writing it"
    if asked.let_go and not asked.recorded:  # (one that let go removed its temporary)
        return ("its supervisor let go of the sandbox before it recorded the attempt: it could not write it "
                "(`task_definition_unwritten` in its log), or stopped before it did")
    if temps:
        return (f"its supervisor was killed as it wrote it (it left {temps[0]}, which the next supervisor "
                "of this sandbox removes)")
    if not asked.recorded:  # (a later attempt's supervisor recorded the ones before)
        return ("its supervisor is starting the attempt: it writes it before the attempt's first record"
                if asked.alive else "its supervisor died before it wrote it (nor did it record the attempt in its "
                "checkpoint)")
    return ("its supervisor did not keep it: a Stoker from before task.json, or one that could not write it "
            "(`task_definition_unwritten` in its log), or it was removed since")


def _of_another(dir_fd: int, asked: Asked, other: Any, stoker: str) -> str:
    """The sandbox's definition is of task `other`, not `asked`'s: a later attempt's (of its
    supervisor, or of one that took the sandbox after it), or an earlier one's (this one's
    was not written over it): of its supervisor, or of a run before it in the sandbox (one
    whose id is neither its supervisor's nor a later one's: a registry entry names every
    supervisor from before a task.json is written until long after it ended)."""
    ids, named = asked.ids, quoted(str(other))
    if other in ids and asked.task_id in ids and ids.index(other) < ids.index(asked.task_id):
        return f"the sandbox's task.json is of task {named}, an earlier attempt; this attempt's: " + \
            _unwritten(dir_fd, asked, stoker)
    if other in ids or other in asked.later:
        return f"the sandbox's task.json is of task {named}, a later attempt"
    return f"the sandbox's task.json is of task {named}, an earlier run's in this sandbox; this attempt's: " + \
        _unwritten(dir_fd, asked, stoker)


def _read(dir_fd: int, where: str) -> tuple[dict[str, Any] | None, str]:
    """The definition in `.stoker` (open as `dir_fd`), or (None, why not): `_MISSING` when
    there is no file."""
    try:
        fd = saferead.open_file(TASK_FILE, dir_fd)
    except FileNotFoundError:
        return None, _MISSING
    except OSError as exc:
        return None, f"cannot open {where}: {saferead.describe(exc)}"
    try:
        data = _read_capped(fd)
    except OSError as exc:
        return None, f"cannot read {where}: {saferead.describe(exc)}"
    finally:
        os.close(fd)
    if data is None:
        return None, f"{where} is larger than {MAX_DEFINITION_BYTES} bytes: not shown"
    too_deep = f"{where} is nested deeper than {MAX_DEFINITION_DEPTH} levels: not shown"
    try:
        doc = json.loads(data)
    except ValueError as exc:
        return None, f"{where} is not JSON: {exc}"
    except RecursionError:  # nested deeper than this Python's json recurses (1,000 levels or more)
        return None, too_deep
    if not isinstance(doc, dict):
        return None, f"{where} holds a JSON {type(doc).__name__}, not an object"
    if _deeper_than(doc, MAX_DEFINITION_DEPTH):
        return None, too_deep
    return doc, ""


def _deeper_than(doc: Any, levels: int) -> bool:
    """Whether objects and arrays in `doc` nest more than `levels` deep (one level at a
    time, without recursing)."""
    level = [doc]
    for _ in range(levels):
        level = [child for value in level
                 for child in (value.values() if isinstance(value, dict) else value if isinstance(value, list) else ())]
        if not level:
            return False
    return any(isinstance(value, (dict, list)) for value in level)


def _read_capped(fd: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_DEFINITION_BYTES:
        block = os.read(fd, min(saferead.BLOCK_BYTES, MAX_DEFINITION_BYTES + 1 - size))
        if not block:
            return b"".join(chunks)
        chunks.append(block)
        size += len(block)
    return None
