"""The checkpoint: fsync'd JSON lines under SANDBOX/.stoker/.

Owns: the file `SANDBOX/.stoker/checkpoint.jsonl`, its writer (`CheckpointWriter`: one JSON
object per line, each written with one `write`, then flushed and fsync'd, unlike Thermos,
which only flushes), and its reader (`read_records`, which skips a torn or garbled line
instead of failing, as a crash or a full disk mid-write leaves one; asked to, it hands such
a line on as an `UnreadableLine`, so that `stoker status` can say it skipped one). A record
always starts on a fresh line: after a write that failed (ENOSPC cuts a write short) or a
crash, the writer ends the torn line before its next record, so that record stays whole.

The writer and the reader never interpret records: their format (the kinds and fields)
is `executor/task/records.py`, and `executor/task/replay.py` folds them into the state
`stoker status` shows. Every record has "kind", and the writer adds "wall" =
time.time() when a record comes without one.

The task's processes can change the sandbox, so `.stoker` is opened relative to the sandbox
and never through a symlink, and the file itself only when it is a regular file, without
ever blocking (`executor/procs/sandboxfs.py`): a FIFO or a symlink planted there (say, before
a `stoker run` restart) is refused with `CheckpointError`, which names what was found;
`open_writer` then logs it and gives the task a sink that drops its records.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from executor.logs import log_event
from executor.procs import sandboxfs
from executor.task.records import UnreadableLine

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = ".stoker"
CHECKPOINT_FILE = "checkpoint.jsonl"


def checkpoint_path(sandbox: Path) -> Path:
    return Path(sandbox) / CHECKPOINT_DIR / CHECKPOINT_FILE


class CheckpointError(OSError):
    """The checkpoint cannot be opened; the message names the path and the reason."""


def _open(sandbox: Path, flags: int, create: bool) -> int:
    """The checkpoint's fd, opened safely (see the module docstring); when `create`, the
    sandbox and `.stoker` are made and the new entry synced. Raises CheckpointError, or
    FileNotFoundError (only when not `create`)."""
    path = checkpoint_path(sandbox)
    try:
        if create:
            os.makedirs(sandbox, exist_ok=True)  # the operator's path: may be reached by symlinks
        top = sandboxfs.open_dir(sandbox, follow=True)
        try:
            directory = sandboxfs.open_dir(CHECKPOINT_DIR, dir_fd=top, create=create)
        except sandboxfs.UnsafePath as e:
            raise CheckpointError(f"cannot open the checkpoint {path}: {path.parent}: {e}") from None
        finally:
            sandboxfs.close(top)
        try:
            fd = sandboxfs.open_regular(CHECKPOINT_FILE, flags, dir_fd=directory)
            if create:
                _sync(directory)  # make the file's creation itself durable
            return fd
        finally:
            sandboxfs.close(directory)
    except CheckpointError:
        raise
    except FileNotFoundError as e:
        if not create:
            raise
        raise CheckpointError(f"cannot open the checkpoint {path}: "
                              f"{sandboxfs.describe_os_error(e)}") from None
    except OSError as e:
        raise CheckpointError(f"cannot open the checkpoint {path}: "
                              f"{sandboxfs.describe_os_error(e)}") from None


def _sync(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError:
        pass


class CheckpointWriter:
    """Appends records to the sandbox's checkpoint; raises OSError when it cannot write,
    CheckpointError (an OSError) when it cannot open it."""

    def __init__(self, sandbox: Path) -> None:
        self.path = checkpoint_path(sandbox)
        self._lock = threading.Lock()
        self._fd = _open(sandbox, os.O_RDWR | os.O_CREAT | os.O_APPEND, create=True)
        self._maybe_torn = True  # a crash may have cut the last write short

    def _fresh_line(self) -> bytes:
        """What starts the next write on a fresh line: b"\n" after a torn line, else b""."""
        size = os.fstat(self._fd).st_size
        if size and os.pread(self._fd, 1, size - 1) != b"\n":
            return b"\n"
        return b""

    def append(self, record: Mapping[str, Any]) -> None:
        """Write one record (adding "wall" when missing), synced before returning."""
        self.append_many((record,))

    def append_many(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Write records in order with one write and one sync: the owner batches the
        records of one step, so a restart costs one disk sync, not one per line."""
        now = time.time()
        lines = []
        for record in records:
            doc = dict(record)
            doc.setdefault("wall", now)
            lines.append(json.dumps(doc, separators=(",", ":"), default=str) + "\n")
        if not lines:
            return
        data = "".join(lines).encode()
        with self._lock:
            if self._fd < 0:
                raise ValueError(f"checkpoint {self.path} is closed")
            try:
                if self._maybe_torn:
                    data = self._fresh_line() + data
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view):]
                os.fsync(self._fd)
            except OSError:
                self._maybe_torn = True  # part of it may be on disk: the next write checks
                raise
            self._maybe_torn = False

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


class NoCheckpoint:
    """The sink of a task whose checkpoint could not be opened: records are dropped."""

    def append_many(self, records: Iterable[Mapping[str, Any]]) -> None:
        pass

    def close(self) -> None:
        pass


def open_writer(sandbox: Path, task: str) -> CheckpointWriter | NoCheckpoint:
    """The task's checkpoint writer. Like a failed write, a checkpoint that cannot be opened
    (a task planted a symlink or a FIFO there before a `stoker run` restart) costs the
    checkpoint, not the supervision: one ERROR line, and the task runs without one."""
    try:
        return CheckpointWriter(sandbox)
    except CheckpointError as exc:
        log_event(logger, logging.ERROR, "checkpoint_unavailable", task=task,
                  reason=f"{exc}; the task runs without a checkpoint")
        return NoCheckpoint()


def read_records(sandbox: Path, keep_unreadable: bool = False) -> list[Any]:
    """Every readable record in order; [] when there is no checkpoint. Bad lines are skipped,
    or, with `keep_unreadable`, handed on in their place as `UnreadableLine`s. Raises
    CheckpointError when it cannot be read (e.g. a FIFO or a symlink is there)."""
    try:
        fd = _open(sandbox, os.O_RDONLY, create=False)
    except FileNotFoundError:
        return []
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    except OSError as e:
        raise CheckpointError(f"cannot read the checkpoint {checkpoint_path(sandbox)}: "
                              f"{sandboxfs.describe_os_error(e)}") from None
    finally:
        os.close(fd)
    return parse_lines(b"".join(chunks).split(b"\n"), keep_unreadable)


def parse_lines(lines: Iterable[bytes | str], keep_unreadable: bool = False) -> list[Any]:
    records: list[Any] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            doc = None  # torn (a crash or a full disk mid-write) or garbled
        if isinstance(doc, dict) and isinstance(doc.get("kind"), str):
            records.append(doc)
        elif keep_unreadable:
            text = line if isinstance(line, str) else line.decode("utf-8", errors="replace")
            records.append(UnreadableLine(text[:60] + ("..." if len(text) > 60 else "")))
    return records


__all__ = ["CheckpointError", "CheckpointWriter", "NoCheckpoint", "checkpoint_path", "open_writer",
           "parse_lines", "read_records"]
