"""The checkpoint: fsync'd JSON lines under SANDBOX/.stoker/, kept small by compaction.

Owns: the file `SANDBOX/.stoker/checkpoint.jsonl`, its writer (`CheckpointWriter`: one JSON
object per line, each batch written with one `write`, then fsync'd, unlike Thermos, which
only flushes), its compaction, and its readers (`iter_records` streams it for
`stoker status`; `read_records` lists it), which skip a torn or garbled line instead of
failing, as a crash or a full disk mid-write leaves one; asked to, they hand such a line on
as an `UnreadableLine`, so that `stoker status` can say it skipped one. A record always
starts on a fresh line: a write that failed (ENOSPC cuts a write short) is cut back off
the file, so the caller may write the same records again; after a crash (or when that cut
fails) the writer ends the torn line before its next record, so that record stays whole.

Compaction: once the file first passes `compact_at` bytes (at least `COMPACT_MIN_BYTES`),
the writer reads it once into a `compaction.Compactor` (bounded: what the view shows), and
from then on feeds it every record it writes. At each threshold (then twice what the last
compaction left) it writes the compactor's records (the rest rolled into summary records) to
`checkpoint.jsonl.compact` beside it, fsyncs that, renames it over the checkpoint and fsyncs
the directory (`executor/task/checkpointcompact.py`), then appends to the new file. A crash
at any step leaves the old file or the new one, each whole; a stray `.compact` file is
removed by the next writer. While that directory sync (or the one of the file's creation)
fails, the name is made again (a compaction: a later sync of the directory may succeed
without writing what a failed one did not) and synced before each batch, which fails with it
(held by the caller, not encoded or written): none is called synced in a file a crash could
take the name of.
A compaction costs what is kept, not the file's length (only the first one reads the file,
64 KiB, or an old, long file once). So a task that runs for months keeps a checkpoint of
about a hundred KiB, and `stoker status` stays fast; a task that never writes 64 KiB never
loads the compactor, nor the file's compaction (a start that imports and feeds nothing it
does not need).

The writer and the readers never interpret records: their format (the kinds and fields)
is `executor/task/records.py`, and `executor/task/replay.py` folds them into the state
`stoker status` shows. Every record has "kind", and the writer adds "wall" =
time.time() when a record comes without one.

The task's processes can change the sandbox, so `.stoker` is opened relative to the sandbox
and never through a symlink, and the file itself only when it is a regular file, without
ever blocking (`executor/procs/sandboxfs.py`): a FIFO or a symlink planted there (say, before
a `stoker run` restart) is refused with `CheckpointError`, which names what was found;
`open_writer` then logs it and gives the task a sink that drops its records. A reader reads
at most `MAX_READ_BYTES`, streamed (`executor/procs/saferead.py`).
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from executor.host.replacefile import replace_file
from executor.host.sandbox import CHECKPOINT_FILE, STOKER_DIR, moved_to
from executor.logs import log_event
from executor.procs import saferead, sandboxfs
from executor.task.records import iter_parsed

if TYPE_CHECKING:
    from executor.task.checkpointcompact import FileCompaction

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = STOKER_DIR
COMPACT_FILE = CHECKPOINT_FILE + ".compact"
COMPACT_MIN_BYTES = 64 * 1024
# An ended task's checkpoint past this is folded once more as its writer closes (`close`)
ENDED_COMPACT_BYTES = 16 * 1024
MAX_READ_BYTES = 256 * 1024 * 1024  # a reader's cap: a planted huge file costs no more
# The longest line (newline included) a writer of this process, or its compaction, wrote: each
# compaction reads lines up to it, past the readers' 1 MiB (no more memory than writing it took).
# `stoker run`'s attempts and the restart record between two have writers of their own (was:
# each its own longest: the record between two compacted away their header of 10,000 processes).
_longest_written = 0


def checkpoint_path(sandbox: Path) -> Path:
    return Path(sandbox) / CHECKPOINT_DIR / CHECKPOINT_FILE


class CheckpointError(OSError):
    """The checkpoint cannot be opened; the message names the path and the reason."""


def _failed(sandbox: Path, e: OSError, where: Path | None = None) -> CheckpointError:
    where = checkpoint_path(sandbox) if where is None else where
    error = CheckpointError(f"cannot open the checkpoint {checkpoint_path(sandbox)}: "
                            f"{'' if where == checkpoint_path(sandbox) else f'{where}: '}"
                            f"{sandboxfs.describe_os_error(e)}")
    error.errno = e.errno  # EACCES: another user's (`inspection` says so); not in the message
    return error


def _open_dir(sandbox: Path, create: bool) -> int:
    """`.stoker`'s fd, never through a symlink; made (with the sandbox) when `create`.
    Raises CheckpointError, or FileNotFoundError (only when not `create`)."""
    try:
        if create:
            os.makedirs(sandbox, exist_ok=True)  # the operator's path: may be reached by symlinks
        top = sandboxfs.open_dir(sandbox, follow=True)
        try:
            return sandboxfs.open_dir(CHECKPOINT_DIR, dir_fd=top, create=create)
        except sandboxfs.UnsafePath as e:
            raise _failed(sandbox, e, checkpoint_path(sandbox).parent) from None
        finally:
            sandboxfs.close(top)
    except OSError as e:
        if isinstance(e, CheckpointError) or (isinstance(e, FileNotFoundError) and not create):
            raise
        raise _failed(sandbox, e) from None


def _dup(sandbox: Path, stoker_dir: int) -> int:
    try:
        return os.dup(stoker_dir)
    except OSError as e:
        raise _failed(sandbox, e) from None


def open_append(dir_fd: int, name: str, truncate: bool = False) -> int:
    flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
    return sandboxfs.open_regular(name, flags, dir_fd=dir_fd)


def sync_error(fd: int) -> OSError | None:
    try:
        os.fsync(fd)
    except OSError as exc:
        return exc
    return None


class CheckpointWriter:
    """Appends records to the sandbox's checkpoint; raises OSError when it cannot write
    (the batch is then not in the file: it may be written again), CheckpointError (an
    OSError) when it cannot open it. `stoker_dir`: the fd of the `.stoker` to write in (the
    host session's, pinned and locked; the writer keeps its own copy), not looked up by
    path again."""

    def __init__(self, sandbox: Path, *, label: str = "",
                 compact_min_bytes: int = COMPACT_MIN_BYTES, stoker_dir: int | None = None) -> None:
        self.path = checkpoint_path(sandbox)
        self._label = label
        self._lock = threading.Lock()
        self._dir = _open_dir(sandbox, create=True) if stoker_dir is None else _dup(sandbox, stoker_dir)
        try:
            sandboxfs.unlink_if_there(self._dir, COMPACT_FILE)  # a compaction that a crash interrupted
            self._fd = open_append(self._dir, CHECKPOINT_FILE)
        except OSError as e:
            sandboxfs.close(self._dir)
            raise _failed(sandbox, e) from None
        self._dir_synced = sync_error(self._dir) is None  # the file's creation, durable; else with the first records
        self._compact_min = compact_min_bytes
        self._compact_at = compact_min_bytes
        self._compaction: FileCompaction | None = None  # made at the first compaction
        self._maybe_torn = True  # a crash may have cut the last write short
        self._sandbox, self._moved = sandbox, False  # said once: `.stoker` renamed or removed under it

    def _loaded(self) -> FileCompaction:
        """The file's compaction (`checkpointcompact.py`, loaded then), its compactor fed every
        record of the file when it is made (at the first compaction; afterwards `append_many`
        feeds it what it writes)."""
        if self._compaction is None:
            from executor.task.checkpointcompact import FileCompaction

            self._compaction = FileCompaction(self._fd, _longest_written)
        return self._compaction

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
        records of one step, so a restart costs one disk sync, not one per line. Then
        compact, when the file has grown past the threshold."""
        with self._lock:
            if self._fd < 0:
                raise ValueError(f"checkpoint {self.path} is closed")
            if not self._dir_synced:  # else a crash may undo the file's name, and the records with it:
                self._name_again()  # raises before a record is encoded or written (held)
            now = time.time()
            docs = [_with_wall(record, now) for record in records]
            lines = [json_line(doc).encode() for doc in docs]
            if not lines:
                return
            wrote_line(max(map(len, lines)))
            data = b"".join(lines)
            self._write_synced(data)
            if self._compaction is not None:
                self._compaction.feed(docs)
            if os.fstat(self._fd).st_size >= self._compact_at:
                self._compact()
            if not self._moved:
                self._say_if_moved()

    def _write_synced(self, data: bytes) -> None:
        """Append `data` on a fresh line and fsync it; on OSError, none of it stays."""
        before = os.fstat(self._fd).st_size
        try:
            if self._maybe_torn:
                data = self._fresh_line() + data
            sandboxfs.write_all(self._fd, data)
            os.fsync(self._fd)
        except OSError:
            self._undo(before)
            raise
        self._maybe_torn = False

    def say_if_moved(self) -> None:
        """`_say_if_moved` for a file written beside the checkpoint by another writer (a
        disk sample's usage.json): an idle task writes no record for hours, and its
        `.stoker` renamed away was said only at the next one."""
        with self._lock:
            if self._fd >= 0 and not self._moved:
                self._say_if_moved()

    def _say_if_moved(self) -> None:
        """One WARNING, the first time a write finds that SANDBOX/.stoker is no longer the
        directory it writes in: the records go on in the one it holds (with its lock and
        control socket), which readers given the sandbox no longer find (docs/contract.md §4)."""
        now = moved_to(self._sandbox, self._dir)
        if now is None:
            return
        self._moved = True
        log_event(logger, logging.WARNING, "stoker_dir_moved", task=self._label,
                  reason=f"{self._sandbox}/{STOKER_DIR} was renamed or removed since the task started "
                         f"(the directory is now {now}); the checkpoint and the files beside it go on there",
                  consequence=f"`stoker status`, `stoker ps`, `stoker kill` and the observer do not find the "
                              f"task's state until it is renamed back to {STOKER_DIR}")

    def _undo(self, size: int) -> None:
        """A write or its sync failed (a full disk cuts a write short): cut the file back to
        `size`, so that none of the batch stays and the caller may write it all again
        without a duplicate. Where even that fails, part of it may be on disk: the next
        write starts on a fresh line."""
        try:
            os.ftruncate(self._fd, size)
        except OSError:
            self._maybe_torn = True

    def _compact(self) -> None:
        """Fold the file into `COMPACT_FILE`, fsync it, rename it over, fsync the directory."""
        before = os.fstat(self._fd).st_size
        try:
            failed = self._replace_compacted(before)
        except OSError as exc:
            self._compact_failed(exc, before)
            return
        except (ImportError, SyntaxError) as exc:  # `checkpointcompact.py`, loaded at the first compaction
            self._compact_at = 2 * max(before, self._compact_min)  # the records are safe in the file already
            log_event(logger, logging.ERROR, "checkpoint_compaction_not_loaded", task=self._label,
                      error=f"{type(exc).__name__}: {exc}", next_try_bytes=self._compact_at,
                      reason="the installation's checkpointcompact.py does not fit this supervisor "
                      "(upgraded in place?): the checkpoint grows uncompacted")
            return
        if failed is not None:  # this batch is in both files; the next ones need the rename
            log_event(logger, logging.ERROR, "checkpoint_sync_failed", task=self._label,
                      error=sandboxfs.describe_os_error(failed), reason="a compaction's rename "
                      "is not durable yet: the next records are held until it is made again and synced")

    def _name_again(self) -> None:
        """The directory sync that makes the file's name durable failed: a later one may
        succeed without writing what that one did not (Linux drops a page's write error
        once it is reported, as for a file's), so the name is made again, by a compaction,
        before the directory is synced. Raises OSError (the records are then held)."""
        failed = self._replace_compacted(os.fstat(self._fd).st_size)
        if failed is not None:
            raise failed

    def _replace_compacted(self, before: int) -> OSError | None:
        """The compacted file in place of the checkpoint (`FileCompaction.replace`): the error
        of the directory's sync, or None. Raises OSError before the rename (nothing changed)."""
        fd, failed = self._loaded().replace(self._dir, before, self._label)
        self._dir_synced = failed is None
        os.close(self._fd)
        self._fd = fd
        self._compact_at = max(self._compact_min, 2 * os.fstat(fd).st_size)
        return failed

    def _compact_failed(self, exc: OSError, size: int) -> None:
        """The records are safe in the file already; try again once it has doubled."""
        self._compact_at = 2 * max(size, self._compact_min)
        log_event(logger, logging.ERROR, "checkpoint_compaction_failed", task=self._label,
                  file=str(self.path.with_name(COMPACT_FILE)),
                  error=sandboxfs.describe_os_error(exc), next_try_bytes=self._compact_at)

    def replace_beside(self, name: str, data: bytes) -> None:
        """Make `data` the file `name` beside the checkpoint, replaced whole (not synced),
        through the directory fd opened with it: a task that renamed `.stoker` and put a
        symlink or a directory of its own in its place redirects nothing. Raises OSError,
        ValueError once closed. A `.stoker` renamed away is said here too (`_say_if_moved`)."""
        with self._lock:
            if self._fd < 0:
                raise ValueError(f"checkpoint {self.path} is closed")
            replace_file(name, data, dir_fd=self._dir)
            if not self._moved:
                self._say_if_moved()

    def close(self, ended: bool = False) -> None:
        """Close the file. `ended`: the task's terminal record is in it; past
        `ENDED_COMPACT_BYTES` it is compacted once more first, so that every later reader of
        the ended task (`stoker ps --all`, `stoker status`, the observer's list, for the days
        its registry entry stays) replays the few records its view needs, not the last
        threshold's worth (a health check's 133 records, 28.8 KB: 20 records, 4.0 KB; 5.4 ms
        of replay each time, 0.75). A compaction that fails says so and leaves the file whole."""
        with self._lock:
            if self._fd < 0:
                return
            if ended and os.fstat(self._fd).st_size >= ENDED_COMPACT_BYTES:
                self._compact()
            os.close(self._fd)
            os.close(self._dir)
            self._fd = -1


def wrote_line(longest: int) -> None:
    """A writer of this process (or its compaction) encoded a line of `longest` bytes."""
    global _longest_written
    _longest_written = max(_longest_written, longest)


class NoCheckpoint:
    """The sink of a task whose checkpoint could not be opened: records are dropped, and so
    are the files kept beside it (no one reads them without the checkpoint's header)."""

    def append_many(self, records: Iterable[Mapping[str, Any]]) -> None:
        pass

    def replace_beside(self, name: str, data: bytes) -> None:
        """Nothing is kept beside a checkpoint that was never opened."""

    def close(self, ended: bool = False) -> None:
        pass


def open_writer(sandbox: Path, task: str, stoker_dir: int | None = None) -> CheckpointWriter | NoCheckpoint:
    """The task's checkpoint writer, in the `.stoker` whose fd is `stoker_dir` (the host
    session's) when given. Like a failed write, a checkpoint that cannot be opened (a task
    planted a symlink or a FIFO there before a `stoker run` restart) costs the checkpoint,
    not the supervision: one ERROR line, and the task runs without one."""
    try:
        return CheckpointWriter(sandbox, label=task, stoker_dir=stoker_dir)
    except CheckpointError as exc:
        log_event(logger, logging.ERROR, "checkpoint_unavailable", task=task,
                  reason=f"{exc}; the task runs without a checkpoint")
        return NoCheckpoint()


def _with_wall(record: Mapping[str, Any], now: float) -> dict[str, Any]:
    doc = dict(record)
    doc.setdefault("wall", now)
    return doc


def json_line(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"), default=str) + "\n"


def open_checkpoint(sandbox: Path, pinned: str = "") -> int:
    """The checkpoint, open for reading (the caller closes it), never through a symlink or
    a FIFO, in the `.stoker` `pinned` names when given. Raises FileNotFoundError when there is
    none, CheckpointError when it is not what it should be or cannot be opened."""
    dir_fd, fd = open_checkpoint_in(sandbox, pinned)
    sandboxfs.close(dir_fd)
    return fd


def open_checkpoint_in(sandbox: Path, pinned: str = "") -> tuple[int, int]:
    """`.stoker` and the checkpoint in it (`open_checkpoint`), both open for the caller to close:
    a reader that looks at its lock too (`lock.seen_here`) does not open `.stoker` again."""
    dir_fd = _open_dir(sandbox, create=False)
    try:
        if pinned and sandboxfs.dir_id(dir_fd) != pinned:  # the path named only then: 38 us a task a page
            sandboxfs.check_pinned(dir_fd, pinned, str(checkpoint_path(sandbox).parent))
        return dir_fd, sandboxfs.open_regular(CHECKPOINT_FILE, os.O_RDONLY, dir_fd=dir_fd)
    except OSError as e:
        sandboxfs.close(dir_fd)
        if isinstance(e, FileNotFoundError):
            raise
        raise _failed(sandbox, e) from None


def records_at(fd: int, sandbox: Path, offset: int = 0, max_bytes: int = MAX_READ_BYTES,
               keep_unreadable: bool = False, tee: Callable[[bytes], object] | None = None,
               max_line: int = saferead.MAX_LINE_BYTES) -> Iterator[Any]:
    """The records of the open checkpoint `fd` from `offset` (a line's start), in at most
    `max_bytes`, as `iter_records` reads them (`tee`: given the bytes read, `saferead.iter_lines`).
    Raises CheckpointError."""
    try:
        os.lseek(fd, offset, os.SEEK_SET)
        passed: list[int] = []  # lines past `max_line` the reader skipped: in the offsets after them
        lines = saferead.iter_lines(fd, max_bytes, max_line, tee=tee, skipped=passed)
        yield from iter_parsed(lines, keep_unreadable, offset, passed)
    except OSError as e:
        raise CheckpointError(f"cannot read the checkpoint {checkpoint_path(sandbox)}: "
                              f"{sandboxfs.describe_os_error(e)}") from None


def iter_records(sandbox: Path, max_bytes: int = MAX_READ_BYTES, keep_unreadable: bool = False,
                 pinned: str = "", max_line: int = saferead.MAX_LINE_BYTES) -> Generator[Any, None, None]:
    """Every readable record in order, streamed, from at most `max_bytes` of the file (a line
    of at most `max_line`); bad lines skipped or, with `keep_unreadable`, handed on as
    `UnreadableLine`s. Raises FileNotFoundError when there is no checkpoint, CheckpointError
    when `.stoker` or the checkpoint is not what it should be (a symlink, a FIFO, a device, a
    `.stoker` that is not the one `pinned` names: a registry entry's `stoker_dir`) or unreadable."""
    fd = open_checkpoint(sandbox, pinned)
    try:
        yield from records_at(fd, sandbox, 0, max_bytes, keep_unreadable, max_line=max_line)
    finally:
        os.close(fd)


def read_records(sandbox: Path, keep_unreadable: bool = False) -> list[Any]:
    """Every readable record in order; [] when there is no checkpoint. Bad lines are skipped,
    or, with `keep_unreadable`, handed on in their place as `UnreadableLine`s. Raises
    CheckpointError when it cannot be read (e.g. a FIFO or a symlink is there)."""
    try:
        return list(iter_records(sandbox, keep_unreadable=keep_unreadable))
    except FileNotFoundError:
        return []


__all__ = ["CheckpointError", "CheckpointWriter", "NoCheckpoint", "checkpoint_path", "iter_records",
           "open_checkpoint", "open_checkpoint_in", "open_writer", "read_records", "records_at"]
