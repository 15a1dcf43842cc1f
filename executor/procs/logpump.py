"""The log pump: ONE thread that copies every piped run output to its log file and console.

Owns: the read ends of the pipes used by processes whose logger needs copying (mode
`rotate`, or destination `both`), the rotating log files, and the copy loop. A selector
(epoll) waits on all pipes plus a wake-up pipe: no thread per process, no timeouts, no
polling. Reads are big (256 KiB, pipes enlarged to 1 MiB where allowed) so one process
writing 100 MB fast is kept up with. A stream ends at EOF, which comes once the process and
everything that inherited its stdout/stderr have exited; the pump then closes the pipe and
the file. At the supervisor's close (every process of the task killed) the pump copies what
each pipe still holds and closes it, without waiting for an EOF that a writer Stoker could
not kill would hold back.

Rotation: `stdout` is renamed `stdout.1` (older backups shift to `.2` .. `.N`, the oldest is
dropped) the moment it reaches `log_size_bytes`. Writes are split at that boundary, so no
file ever exceeds the size (Thermos overshoots by one read), and never inside a UTF-8
character (`LogFile`). Every rename and the new file's open act on the run directory's fd,
taken at spawn (`src_dir_fd=`/`dst_dir_fd=`/`dir_fd=`), never on a path: a task that swaps
its run directory for a symlink mid-run cannot make the pump write, rename or delete
anywhere else, and the new file is opened through `executor/procs/sandboxfs.py`, so a FIFO
raced into its place is refused, never waited on.

Never raises into callers; a file that cannot be written (a full disk, no inode or
descriptor for a rotation's new file) is reported once at ERROR and its data dropped, so the
process never blocks on a full pipe; each later write tries again, and the first that works
says at WARNING how many bytes were dropped; a rotating file whose oldest backup holds
something is rotated early instead, that backup's room taken for the newest output
(`LogFile._make_room`). Console copies (`destination='both'`) go to
the supervisor's own stdout/stderr through `executor/procs/consolecopy.py`, written by a
thread of its own: a console that stops reading never stops the pump (nor, through it, the
files of every run it copies).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import selectors
import stat
import threading
from pathlib import Path

from config.logline import terminal_writer
from executor.logs import log_event, start_thread
from executor.procs import sandboxfs
from executor.procs.consolecopy import ConsoleCopy, stream_fields, write_all
from executor.procs.exitby import ExitBy
from executor.procs.sandboxfs import LOG_FLAGS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

logger = logging.getLogger(__name__)

READ_BYTES = 256 * 1024
PIPE_BYTES = 1024 * 1024
MIN_LIMIT_ROTATE_BYTES = 4096  # below, a file size limit is not rotated at: a file per few bytes
# A rename that fails for what is at its source or target (a directory, full or not): not the disk's.
_NOT_RENAMED = (errno.EISDIR, errno.ENOTDIR, errno.ENOTEMPTY, errno.EEXIST)


class LogFile:
    """An append-only log file `name` in the directory `dir_fd` (the caller keeps its fd;
    `path` names the file in messages, `label` its stream: "task=web.0 process=web run=0
    stream=stdout"), rotated at `max_bytes` when it is given.

    A rotating file is never cut inside a UTF-8 character (a character cut by a rotation
    showed as U+FFFD on both sides in `stoker tail` and the observer): a write that fills
    the file stops before the character the boundary falls in, which starts the next file,
    and the last bytes of a write that end inside a character wait for the next write (or
    the close) so that its rest comes with them. A file may thus end up to 3 bytes short of
    `max_bytes`; output that is not UTF-8 is cut at the size, as before."""

    def __init__(self, dir_fd: int, name: str, path: Path, max_bytes: int | None = None,
                 backups: int = 0, label: str = "") -> None:
        self.path = path
        self.fields = stream_fields(label)  # every line of its own names the task, process and run
        self.name = name
        self.max_bytes = max_bytes if max_bytes and max_bytes > 0 else None
        self.backups = max(1, backups)
        self.dir_fd = -1
        self._held = b""  # a rotating file: the start of a character the next write ends
        self._blocked_said = False  # `log_backup_blocked` was logged
        self._early_said = False  # `log_rotated_early` was logged
        # Raises OSError (UnsafePath for a FIFO, symlink...): the caller's SpawnError.
        self.fd = sandboxfs.open_regular(name, LOG_FLAGS, dir_fd=dir_fd)
        try:
            self.size = os.fstat(self.fd).st_size
            if self.max_bytes is not None:  # rotation renames in the directory: keep it
                self.dir_fd = os.dup(dir_fd)  # dup'ed fds are non-inheritable
        except BaseException:
            self.close()
            raise

    def write(self, data: bytes) -> None:
        """Append `data`, rotating first where it would pass `max_bytes`. Raises OSError (a
        full disk); the next write tries again, a rotation that failed half-way included."""
        if self.max_bytes is not None:
            data = self._held + data
            whole = character_start(data, len(data))
            data, self._held = data[:whole], data[whole:]
        self._write(memoryview(data))

    def _write(self, view: memoryview) -> None:
        while view:
            if self.fd < 0 or (self.max_bytes is not None and self.size >= self.max_bytes):
                self._rotate()
            room = len(view) if self.max_bytes is None else self.max_bytes - self.size
            if self.max_bytes is not None and room <= len(view):  # this write fills the file
                room = character_start(view, room) or (room if self.size == 0 else 0)
                if room == 0:  # not one more whole character fits: the next file has it
                    self._rotate()
                    continue
            chunk = view[:room]
            try:
                write_all(self.fd, chunk)
            except OSError as exc:
                self.size = os.fstat(self.fd).st_size  # what a short write did add
                if exc.errno == errno.EFBIG and self.max_bytes is not None and self._at_size_limit():
                    continue
                if exc.errno == errno.ENOSPC and self._make_room(exc):
                    continue
                raise
            self.size += len(chunk)
            view = view[len(chunk) :]

    def _at_size_limit(self) -> bool:
        """The file reached the largest file this process may write (RLIMIT_FSIZE, `ulimit
        -f`, below `max_bytes`): rotate it there, and at that size from now on; False (not
        rotated) for a limit below `MIN_LIMIT_ROTATE_BYTES`."""
        import resource  # the limit itself: a file an earlier run left may be past it

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        at = self.size if limit == resource.RLIM_INFINITY else min(self.size, limit)
        if at < MIN_LIMIT_ROTATE_BYTES:
            return False
        log_event(logger, logging.WARNING, "log_rotated_at_size_limit", **self.fields, file=self.path,
                  bytes=at, log_size=self.max_bytes,
                  reason="the file size limit Stoker runs under (RLIMIT_FSIZE, `ulimit -f`) is below "
                         "the logger's log_size: its files are rotated at that limit")
        self.max_bytes = at
        self._rotate()
        return True

    def _make_room(self, exc: OSError) -> bool:
        """A full disk refused a write to a rotating file: rotate it now, below its size, when
        its oldest backup is there for the rotation to drop (its room taken back: a set of
        files larger than the disk never reached log_size again, so nothing was ever dropped
        and every later line was lost). Again as often as the disk fills: each drops a backup
        that holds something, so a disk another writer keeps full ends it once every backup
        is empty. False: no rotation, none that would free anything (no oldest backup, or
        an empty one)."""
        if self.max_bytes is None or self.fd < 0:
            return False
        try:
            oldest = os.stat(f"{self.name}.{self.backups}", dir_fd=self.dir_fd, follow_symlinks=False)
        except OSError:
            return False
        if not stat.S_ISREG(oldest.st_mode) or oldest.st_size == 0:
            return False
        if not self._early_said:
            self._early_said = True
            log_event(logger, logging.WARNING, "log_rotated_early", **self.fields, file=self.path,
                      bytes=self.size, log_size=self.max_bytes, error=sandboxfs.describe_os_error(exc),
                      reason="the disk is full: rotated below its log_size, its oldest backup dropped "
                             "for the newest output (said once)")
        self._rotate()
        return True

    def _rotate(self) -> None:
        """Shift the backups and start a new file; when the file was already moved aside
        (a rotation whose open failed: no inode or descriptor left), only the open."""
        base = self.name
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            for i in range(self.backups - 1, 0, -1):
                self._shift(f"{base}.{i}", f"{base}.{i + 1}")
            self._shift(base, f"{base}.1")
        self.fd = sandboxfs.open_regular(base, LOG_FLAGS, dir_fd=self.dir_fd)
        self.size = os.fstat(self.fd).st_size  # 0, unless a failed rename left it in place

    def _shift(self, name: str, to: str) -> None:
        """Rename `name` to `to`. Where the task put what no file renames over or out of (a
        directory, which a rename fails on for good: each rotation stopped there, all of
        the run's later output dropped), `name` is dropped when it is a log file (as the
        oldest backup is: its place is taken) and left when it is the task's own, said once
        (`log_backup_blocked`), and the rotation goes on. Raises OSError (an I/O error)."""
        try:
            os.replace(name, to, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        except FileNotFoundError:  # a backup not made yet
            return
        except OSError as exc:
            if exc.errno not in _NOT_RENAMED:
                raise
            if stat.S_ISREG(os.stat(name, dir_fd=self.dir_fd, follow_symlinks=False).st_mode):
                os.unlink(name, dir_fd=self.dir_fd)
            if not self._blocked_said:
                self._blocked_said = True
                log_event(logger, logging.WARNING, "log_backup_blocked", **self.fields, file=self.path,
                          backup=to, error=f"{type(exc).__name__}: {exc.strerror}",
                          reason=f"the task put what a log file cannot be renamed over or out of at "
                                 f"{name} or {to}: it is left, a log file that cannot take its place "
                                 "dropped, and rotation goes on")

    def close(self) -> None:
        """Write what is held (a character its process never ended) and close."""
        held, self._held = self._held, b""
        if held:
            with contextlib.suppress(OSError):
                self._write(memoryview(held))
        fd, dir_fd = self.fd, self.dir_fd
        self.fd = self.dir_fd = -1
        if dir_fd >= 0:
            sandboxfs.close(dir_fd)
        if fd >= 0:
            os.close(fd)


def character_start(data: memoryview | bytes, cut: int) -> int:
    """`cut`, or where the UTF-8 character that `data[:cut]` ends inside of begins (a lead
    byte among its last 3 bytes whose character needs more bytes than are left before the
    cut). Bytes that are not UTF-8 are cut where they are."""
    for back in range(1, min(3, cut) + 1):
        byte = data[cut - back]
        if 0x80 <= byte < 0xC0:  # a continuation byte: the lead is further back
            continue
        need = 2 if 0xC0 <= byte < 0xE0 else 3 if 0xE0 <= byte < 0xF0 else 4 if 0xF0 <= byte < 0xF8 else 1
        return cut - back if need > back else cut
    return cut


class _Stream:
    def __init__(self, read_fd: int, file: LogFile | None, console_fd: int | None,
                 label: str, console: ConsoleCopy) -> None:
        self.read_fd = read_fd
        self.file = file
        self.console_fd = console_fd
        self.console = console
        self.label = label  # "task=... process=... run=... stream=stdout" for log lines
        self.dropped: int | None = None  # bytes the file lost since a write failed, while it fails

    def deliver(self, data: bytes) -> None:
        if self.file is not None:
            try:
                self.file.write(data)
            except OSError as e:
                if self.dropped is None:
                    self.dropped = 0
                    log_event(logger, logging.ERROR, "log_write_failed", **stream_fields(self.label),
                              file=self.file.path, error=sandboxfs.describe_os_error(e),
                              reason="dropping its output until it can be written again")
                self.dropped += len(data)
            else:
                if self.dropped is not None:
                    log_event(logger, logging.WARNING, "log_write_recovered",
                              **stream_fields(self.label), file=self.file.path,
                              dropped_bytes=self.dropped)
                    self.dropped = None
        if self.console_fd is not None:
            self.console.put(self.console_fd, data, self.label)

    def close(self) -> None:
        os.close(self.read_fd)
        if self.console_fd is not None:
            self.console.end(self.console_fd, self.label)
        if self.file is not None:
            try:
                self.file.close()
            except OSError:
                pass


def make_pipe() -> tuple[int, int]:
    """A (read, write) pipe, both ends non-inheritable, enlarged when the kernel allows."""
    r, w = os.pipe()
    try:
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except OSError:
        pass  # the default 64 KiB still works, just with more wake-ups
    return r, w


def _nobody() -> None:
    """No one waits for the pump's thread yet."""


class LogPump:
    def __init__(self, task_label: str) -> None:
        self._label = task_label
        self._lock = threading.Lock()
        self._pending: list[_Stream] = []
        self._stopping = False
        self._closed = False
        self._over = False  # the thread is done (`stop` waits for it)
        self._told: Callable[[], None] = _nobody  # called once it is
        self._console = ConsoleCopy(task_label)  # its thread starts at the first copy
        self._wake_r, self._wake_w = os.pipe()
        try:
            os.set_blocking(self._wake_r, False)
            os.set_blocking(self._wake_w, False)
            self._sel = selectors.DefaultSelector()
            try:
                self._sel.register(self._wake_r, selectors.EVENT_READ, None)
                self._thread = threading.Thread(target=self._loop, daemon=True,
                                                name=f"stoker-logpump-{task_label}")
                start_thread(self._thread)  # RuntimeError when no thread can start
            except BaseException:
                self._sel.close()
                raise
        except BaseException:
            os.close(self._wake_r)
            os.close(self._wake_w)
            raise

    def add(self, read_fd: int, file: LogFile | None, console_fd: int | None,
            label: str) -> None:
        """Hand over a pipe's read end; the pump owns (and closes) it and the file from now."""
        stream = _Stream(read_fd, file, console_fd, label, self._console)
        with self._lock:
            if self._closed:
                stream.close()
                return
            self._pending.append(stream)
            self._wake()

    def _wake(self) -> None:
        """Call with `_lock` held (the wake pipe is closed under it)."""
        if self._closed:
            return
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass  # already has wake-ups pending

    def stop(self, drain_secs: float = 0.5, exit_by: ExitBy | None = None) -> None:
        """The task's processes are gone: copy what each pipe still holds and close them all,
        without waiting for more to come (a pipe still open once they are gone is held by
        something Stoker could not kill, which it waited 0.5 s for at every close).
        `drain_secs` bounds only copies that cannot be written (a file system that hangs, a
        console that does not read), and so does `exit_by`'s time (`stoker executor` after
        SHUTDOWN), set before or during the wait."""
        exit_by = exit_by if exit_by is not None else ExitBy()
        with self._lock:
            self._stopping, self._told = True, exit_by.wake
            self._wake()
        exit_by.wait(lambda: self._over, drain_secs)
        self._console.close(drain_secs, exit_by)

    def _loop(self) -> None:
        terminal_writer()
        try:
            while True:
                for key, _ in self._sel.select():
                    if key.data is None:
                        self._take_pending()
                    else:
                        self._pump(key.data)
                with self._lock:
                    stopping = self._stopping
                if stopping:
                    self._take_pending()
                    self._copy_what_is_left()
                    break
        except Exception as e:  # a bug here must not leave pipes to fill up silently
            log_event(logger, logging.ERROR, "log_pump_failed", task=self._label,
                      error=f"{type(e).__name__}: {e}", exc_info=True)
        finally:
            self._shutdown()
            with self._lock:
                self._over, told = True, self._told
            told()

    def _take_pending(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        with self._lock:
            pending, self._pending = self._pending, []
        for stream in pending:
            self._sel.register(stream.read_fd, selectors.EVENT_READ, stream)

    def _pump(self, stream: _Stream) -> None:
        try:
            data = os.read(stream.read_fd, READ_BYTES)
        except OSError as e:
            if e.errno == errno.EINTR:
                return
            data = b""
        if data:
            stream.deliver(data)
            return
        self._sel.unregister(stream.read_fd)
        stream.close()

    def _copy_what_is_left(self) -> None:
        """Read each stream until its pipe is empty or at EOF, and at most a pipe's worth (a
        writer that outlived the kill could fill it for ever)."""
        for key in list(self._sel.get_map().values()):
            stream = key.data
            if stream is None:
                continue
            os.set_blocking(stream.read_fd, False)
            left = PIPE_BYTES
            while left > 0:
                try:
                    data = os.read(stream.read_fd, min(READ_BYTES, left))
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    data = b""
                if not data:
                    break
                stream.deliver(data)
                left -= len(data)

    def _shutdown(self) -> None:
        for key in list(self._sel.get_map().values()):
            if key.data is not None:
                key.data.close()
        with self._lock:
            pending, self._pending = self._pending, []
            self._closed = True
            self._sel.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
        for stream in pending:
            stream.close()
