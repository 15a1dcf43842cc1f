"""The checkpoint's compaction, as a file: what `CheckpointWriter` does once its file passes
its threshold (`executor/task/checkpoint.py` says when, and what a crash at each step leaves).

`FileCompaction` holds a `compaction.Compactor` (the pure part: which records to keep, the
rest rolled into summary records), fed once with every record of the file (read as the
readers read it: `stream_records`), then with each batch the writer writes.
`replace` writes the kept records to `checkpoint.jsonl.compact` beside the checkpoint, fsyncs
it, renames it over the checkpoint and fsyncs the directory. Loaded with the compactor, at
the first compaction (or the first batch after a failed sync of the directory, which makes
the file's name again by a compaction): a task that never writes 64 KiB loads neither.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from executor.host.sandbox import CHECKPOINT_FILE
from executor.logs import log_event
from executor.procs import saferead
from executor.procs.sandboxfs import unlink_if_there, write_all
from executor.task import records as rec
from executor.task.checkpoint import (
    COMPACT_FILE,
    json_line,
    open_append,
    sync_error,
    wrote_line,
)
from executor.task.compaction import Compactor

logger = logging.getLogger(__name__)


class FileCompaction:
    """The compactor of one writer's checkpoint, fed every record the file holds."""

    def __init__(self, fd: int, longest: int = 0) -> None:
        """Fed every record in the checkpoint open as `fd` (the writer's: O_APPEND, so the
        offset this read moves is not where its writes go), a line of up to `longest` bytes
        (the longest this process wrote) read too: a header past the readers' cap (thousands of
        processes) was dropped, and `stoker status` said no header came first, not why."""
        self._compactor = Compactor()
        self.feed(stream_records(fd, os.fstat(fd).st_size, longest))

    def feed(self, docs: Iterable[Mapping[str, Any]]) -> None:
        """The records written since (those the format does not know are not kept)."""
        for doc in docs:
            record = rec.parse(doc)
            if record is not None:
                self._compactor.add(record)

    def replace(self, dir_fd: int, before: int, label: str) -> tuple[int, OSError | None]:
        """Write the kept records to `COMPACT_FILE` in `dir_fd` (`.stoker`), fsync it, rename
        it over the checkpoint, then sync the directory: the new file's fd (the caller's to
        close) and that sync's error, or None. Raises OSError before the rename (nothing
        changed; the `.compact` file removed). `before`: the old file's size, logged."""
        fd = open_append(dir_fd, COMPACT_FILE, truncate=True)
        try:
            kept = self._compactor.kept()
            lines = [json_line(r.to_json()).encode() for r in kept]
            wrote_line(max(map(len, lines), default=0))
            write_all(fd, b"".join(lines))
            os.fsync(fd)
            os.rename(COMPACT_FILE, CHECKPOINT_FILE, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError:
            os.close(fd)
            unlink_if_there(dir_fd, COMPACT_FILE)
            raise
        failed = sync_error(dir_fd)
        log_event(logger, logging.DEBUG, "checkpoint_compacted", task=label,
                  bytes_before=before, bytes_after=os.fstat(fd).st_size, records=len(kept))
        return fd, failed


def stream_records(fd: int, size: int, longest: int = 0) -> Iterator[dict[str, Any]]:
    """The records in the first `size` bytes of the open file, read as the readers read it
    (`saferead.iter_lines`: linear in the bytes read, a line past its cap skipped, but one of
    up to `longest` bytes, the longest this process wrote) and its holes stepped over: a task
    may have appended a line without end (joining it block by block was quadratic, all of it
    in memory) or a sparse terabyte. The writer's own appends are O_APPEND: the offset this
    moves is not where they go."""
    os.lseek(fd, 0, os.SEEK_SET)
    yield from rec.iter_parsed(saferead.iter_lines(fd, size, max(saferead.MAX_LINE_BYTES, longest), skip_holes=True))
