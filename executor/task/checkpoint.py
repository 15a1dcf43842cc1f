"""The checkpoint: fsync'd JSON lines under SANDBOX/.stoker/.

Owns: the file `SANDBOX/.stoker/checkpoint.jsonl`, its writer (`CheckpointWriter`: one JSON
object per line, each written with one `write`, then flushed and fsync'd, unlike Thermos,
which only flushes), and its reader (`read_records`, which skips a torn or garbled line
instead of failing, as a crash mid-write leaves one).

The writer and the reader never interpret records: their format (the kinds and fields)
is `executor/task/records.py`, and `executor/task/replay.py` folds them into the state
`stoker status` shows. Every record has "kind", and the writer adds "wall" =
time.time() when a record comes without one.
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

CHECKPOINT_DIR = ".stoker"
CHECKPOINT_FILE = "checkpoint.jsonl"


def checkpoint_path(sandbox: Path) -> Path:
    return Path(sandbox) / CHECKPOINT_DIR / CHECKPOINT_FILE


class CheckpointWriter:
    """Appends records to the sandbox's checkpoint; raises OSError when it cannot write."""

    def __init__(self, sandbox: Path) -> None:
        path = checkpoint_path(sandbox)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        self._sync_dir(path.parent)
        self._end_torn_line()

    def _end_torn_line(self) -> None:
        """After a crash mid-write, start on a fresh line so the next record stays whole."""
        size = os.fstat(self._fd).st_size
        if size and os.pread(self._fd, 1, size - 1) != b"\n":
            os.write(self._fd, b"\n")
            os.fsync(self._fd)

    @staticmethod
    def _sync_dir(directory: Path) -> None:
        """Make the file's creation itself durable."""
        try:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

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
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            os.fsync(self._fd)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def read_records(sandbox: Path) -> list[dict[str, Any]]:
    """Every readable record in order; [] when there is no checkpoint. Bad lines are skipped."""
    try:
        data = checkpoint_path(sandbox).read_bytes()
    except FileNotFoundError:
        return []
    return parse_lines(data.split(b"\n"))


def parse_lines(lines: Iterable[bytes | str]) -> list[dict[str, Any]]:
    records = []
    for line in lines:
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            continue  # torn (a crash mid-write) or garbled
        if isinstance(doc, dict) and isinstance(doc.get("kind"), str):
            records.append(doc)
    return records


__all__ = ["CheckpointWriter", "checkpoint_path", "parse_lines", "read_records"]
