"""A task's reservation and its last disk sample, kept beside the checkpoint:
`SANDBOX/.stoker/usage.json`.

The disk-limit check's samples (`executor/task/diskwatch.py`: every 60 s under `stoker
executor`) are the owner's; `stoker status` and `stoker observe` are other processes. A
sample is not a change of the task's state, so it is not a checkpoint record (the
checkpoint is replayed by every reader, and a record a minute would grow it for as long
as the task runs): the owner replaces this one small file whole instead (`UsageWriter`:
when the task starts, then at each sample), through `.stoker`'s fd, not synced (a figure
for people, as fresh as the last sample):

    {"marker": M, "boot": BOOT_ID, "cpu_reserved": 1.0, "ram_reserved": BYTES,
     "disk_reserved": BYTES, "disk_check_secs": 60.0 | null,
     "disk_sample": {"used_bytes": N, "files": N, "unreadable": N, "secs": S,
                     "wall": T, "boot_secs": B} | null,
     "disk_error": "why the last sample failed" | ""}

Reading (`read_usage`) trusts nothing: the task's processes share the sandbox. The file is
read only through `.stoker`'s fd (the one a registry entry pins), never through a symlink or
a FIFO, at most `MAX_USAGE_BYTES`, only when it belongs to the user `.stoker` belongs to (the
supervisor's) and no one else may write it, and only for the attempt whose marker it names.
Anything else is no figure, and the reason why. Read through a `.stoker` no registry entry
pins (`stoker status SANDBOX`), a record is shown as unverified unless the live supervisor
holds that `.stoker`'s lock: a task may rename `.stoker` and plant its own.
"""
from __future__ import annotations

import json
import logging
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config.spec import TaskSpec
from executor.events import DiskSampled
from executor.host import identity
from executor.host.replacefile import replace_file
from executor.host.sandbox import USAGE_FILE, open_stoker_dir
from executor.logs import log_event
from executor.procs import saferead
from executor.task.recordfields import finite

if TYPE_CHECKING:
    from executor.task.usagefigures import UsageRecord

logger = logging.getLogger(__name__)

MAX_USAGE_BYTES = 4096
NO_FILE = ("no usage record: the task's supervisor wrote none (a Stoker older than this one's, "
           "or it could not write .stoker/usage.json)")


class UsageWriter:
    """The owner's writer: `start` as the task starts, `sampled` with each disk sample (from
    the owner's thread), `close` once the task ended: all on the owner's thread (the sampling
    thread only posts `DiskSampled` to its queue, `diskwatch.py`), so `close` never closes
    `_dir` under a write. Given `.stoker`'s fd at `start` (the
    host session's: it keeps its own copy), it writes through that one, never by path. One
    WARNING when the file cannot be written, one INFO when it can again; a failure never
    touches the task. On `stoker run`'s path for every task: plain dicts, no attrs class
    (`executor/codecache.py`)."""

    def __init__(self, sandbox: Path, marker: str, label: str, task: TaskSpec, check_secs: float | None,
                 wall: Callable[[], float] = time.time) -> None:
        self._sandbox, self._label, self._wall = sandbox, label, wall
        self.doc: dict[str, Any] = {
            "marker": marker, "boot": identity.boot_id(), "cpu_reserved": task.cpu, "ram_reserved": task.ram_bytes,
            "disk_reserved": task.disk_bytes, "disk_check_secs": check_secs, "disk_sample": None,
            "disk_error": ""}
        self._failing = False
        self._dir: int | None = None  # `.stoker`'s fd given at `start`: None, opened by path
        self._closed = False
        self.after_sample: Callable[[], None] | None = None  # the checkpoint's say_if_moved

    def start(self, stoker_dir: int | None = None) -> None:
        if stoker_dir is not None and self._dir is None:
            try:
                self._dir = os.dup(stoker_dir)
            except OSError as exc:
                self._failed(exc)
                return
        self._write()

    def close(self) -> None:
        """Writes no more (a sample after the task's end is dropped)."""
        self._closed = True
        if self._dir is not None:
            os.close(self._dir)
            self._dir = None

    def sampled(self, sample: DiskSampled) -> None:
        if sample.used_bytes is None:
            self.doc["disk_error"] = sample.error or "the sample failed"
        else:
            self.doc["disk_sample"] = {
                "used_bytes": sample.used_bytes, "files": sample.files, "unreadable": sample.unreadable,
                "secs": round(sample.secs, 6), "wall": self._wall(), "boot_secs": identity.boot_secs()}
            self.doc["disk_error"] = ""
        self._write()
        if self.after_sample is not None and not self._closed:
            self.after_sample()

    def _write(self) -> None:
        if self._closed:
            return
        data = json.dumps(self.doc).encode()
        try:
            if self._dir is not None:
                replace_file(USAGE_FILE, data, dir_fd=self._dir)
            else:
                fd = open_stoker_dir(self._sandbox, create=True)
                try:
                    replace_file(USAGE_FILE, data, dir_fd=fd)
                finally:
                    os.close(fd)
        except (OSError, ValueError) as exc:
            self._failed(exc)
            return
        if self._failing:
            log_event(logger, logging.INFO, "usage_written", task=self._label,
                      reason=f"{self._sandbox}/.stoker/{USAGE_FILE} could be written again")
        self._failing = False

    def _failed(self, exc: OSError | ValueError) -> None:
        if not self._failing:
            reason = saferead.describe(exc) if isinstance(exc, OSError) else str(exc)
            log_event(logger, logging.WARNING, "usage_unwritten", task=self._label,
                      reason=f"cannot write {self._sandbox}/.stoker/{USAGE_FILE}: {reason}",
                      consequence="`stoker status` and the observer show no disk figure for the task")
        self._failing = True


def read_usage(sandbox: str | os.PathLike[str], marker: str, pinned: str = "",
               supervisor: identity.ProcessIdentity | None = None) -> tuple[UsageRecord | None, str]:
    """The record of `marker`'s attempt, or None and why (see the module docstring). Read
    through a `.stoker` no registry entry pins (`pinned` empty), it is `unverified` unless
    the live `supervisor` holds that `.stoker`'s lock."""
    import attrs

    from executor.task.usagefigures import usage_record  # a reader's (the writer needs none)

    where = f"{os.fspath(sandbox)}/.stoker/{USAGE_FILE}"
    try:
        dir_fd = open_stoker_dir(sandbox, pinned=pinned)
    except FileNotFoundError:
        return None, NO_FILE
    except OSError as exc:
        return None, f"cannot open {os.fspath(sandbox)}/.stoker: {saferead.describe(exc)}"
    try:
        data = _read(dir_fd, where)
        doubt = "" if pinned or isinstance(data, str) else _unheld(dir_fd, supervisor)
    finally:
        os.close(dir_fd)
    if isinstance(data, str):
        return None, data
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return None, f"{where} is damaged (not JSON): not read"
    if not isinstance(doc, dict) or doc.get("marker") != marker or not marker:
        return None, f"{where} is another attempt's: not read"
    _today(doc)
    record = usage_record(doc)
    if record is None:
        return None, f"{where} is damaged (a field of the wrong type): not read"
    return (attrs.evolve(record, unverified=doubt) if doubt else record), ""


def _unheld(dir_fd: int, supervisor: identity.ProcessIdentity | None) -> str:
    """'' when the live `supervisor` holds the lock of the `.stoker` `dir_fd` is (so it is
    the one it made and writes), else why the record may be another's: the task's processes
    share the sandbox, and may rename `.stoker` and plant their own, which only a registry
    entry's pin, or the lock, tells apart (as the checkpoint's readers do)."""
    from executor.host import lock

    if supervisor is not None and identity.is_alive(supervisor.pid, supervisor.start_ticks, supervisor.boot_id):
        if supervisor.pid in lock.lock_holders(dir_fd) or \
                lock.seen_here(dir_fd, supervisor.pid, supervisor.start_ticks, supervisor.boot_id) is not None:
            return ""
    return ("no registry entry pins this .stoker and no live supervisor holds its lock, so the task's "
            "processes may have written it (`stoker status TASK_ID` reads the one its supervisor made)")


def _read(dir_fd: int, where: str) -> bytes | str:
    """The file's bytes, or why they are not read."""
    try:
        fd = saferead.open_file(USAGE_FILE, dir_fd)
    except FileNotFoundError:
        return NO_FILE
    except OSError as exc:  # a symlink, a FIFO, a directory: refused
        return f"{where} is not read: {saferead.describe(exc)}"
    try:
        info, owner = os.fstat(fd), os.fstat(dir_fd).st_uid
        if info.st_uid != owner or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return (f"{where} is not trusted: owned by uid {info.st_uid} (mode {stat.S_IMODE(info.st_mode):o}), "
                    f"not only the supervisor's user's (uid {owner}): not read")
        data = os.read(fd, MAX_USAGE_BYTES + 1)
    except OSError as exc:
        return f"{where} is not read: {saferead.describe(exc)}"
    finally:
        os.close(fd)
    if len(data) > MAX_USAGE_BYTES:
        return f"{where} is larger than {MAX_USAGE_BYTES} bytes: not read"
    return data


def _today(doc: dict[str, Any]) -> None:
    """The sample's time in today's wall clock, from the boot clock when it is this boot's
    (a wall time recorded then is off by any step the clock took since)."""
    raw = doc.get("disk_sample")
    if not isinstance(raw, dict) or doc.get("boot") != identity.boot_id():
        return
    boot_secs = raw.get("boot_secs")
    if isinstance(boot_secs, (int, float)) and not isinstance(boot_secs, bool) \
            and finite(boot_secs) and boot_secs >= 0:
        raw["wall"] = identity.boot_to_wall(boot_secs)
