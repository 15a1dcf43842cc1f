"""`stoker tail SANDBOX|TASK_ID PROCESS [-n N] [-f] [--run N] [--attempt N] [--stderr]`: a process's log.

Prints the last N lines (default 10) of the latest run's stdout (or stderr, or run N's),
found by reading backwards from the end one block at a time, so a 200 MB log costs a
block or two, never the whole file; a rotated log's lines reach into its backups
(`executor/cli/tailparts.py`) while the file holds fewer, and `-n +K` counts from the
oldest backup's first line. `-f` then keeps printing what is appended, like
`tail -f`: it reopens the file when it was rotated, going through the backups written
since in order when a burst rotated it several times between two looks (and starts over
when it was truncated; at the oldest backup still there once the held file was rotated out
of the backups kept), and, unless `--run` pins a run, follows the process into its next
run (and into the next attempt's runs when `stoker run` restarts the task), printing
`==> PROCESS run N: stdout <==` before the new run's output, from its oldest file (a run
rotated already before it was looked at). The rotation steps are shared with the observer's
follow mode (`executor/procs/rotation.py`). While idle it waits for the kernel's word
(inotify, `executor/cli/logwatch.py`) that the run's directory or the process's changed, and
looks again after `FOLLOW_IDLE_SECS` at the latest (tail's own `-s`; every look, where
inotify cannot be had); the supervisor itself never polls. It ends, quietly
and with status 0, once its reader is gone (`stoker tail -f ... | head -2`), even while
the log is idle, as GNU tail does; once its sandbox is removed (the run's directory with
it), nothing more can come: it ends with an error line, exit 1. `--attempt N` reads an earlier attempt's logs instead,
the ones `stoker run` kept as `.logs.attempt-N` when it restarted the task (nothing follows
them: that attempt is over). A GONE task's id whose sandbox another task holds now (deleted,
then run again) is refused, exit 1: the logs there are that task's (`_another_task_s`).

The log is the task's, and so are the bytes in it. To a pipe or a file they are copied
byte for byte. To a terminal they are shown as text (`TerminalText`,
`executor/procs/terminaltext.py`): escape sequences, a clipboard write (OSC 52), other
control characters but the newline and the tab, and bytes that are not UTF-8 are written
out (`\x1b[2J`, `\xff`), so a task cannot drive the operator's terminal. A sparse log's hole
is stepped over, never read, as the lines are looked for (`saferead.data_at`); to a terminal a
run of NULs (a hole's, or written) is one `\x00*N`; to a pipe, its NUL bytes as they read.

The sandbox is the task's: every level below it (`.logs`, the process, the run, the file)
is opened without following a symlink or blocking (`executor/procs/saferead.py`), so a
`.logs/web/0/stdout -> /etc/shadow` symlink or a FIFO is refused with one error line, exit
1. Memory stays bounded: bytes go from the file to stdout a block at a time.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, cast

from config.words import quoted
from executor.cli import logwatch, tailparts
from executor.cli.targets import Target, error, registry_arguments, resolve, task_arguments
from executor.procs import rotation, saferead
from executor.procs.runprune import KEEP_RUNS
from executor.procs.terminaltext import TerminalText

FOLLOW_IDLE_SECS = 0.2
LOGS_DIR = ".logs"


def register(sub: Any, command: Any) -> None:
    tail = command(sub, "tail", "print the end of a process's log; -f follows it into its next runs",
                   "examples:\n  stoker tail sandbox-hello-20261128-101500-3f2a1c hello\n"
                   "  stoker tail -n 100 hello-0-3f2a1c8e hello --stderr\n"
                   "  stoker tail -f SANDBOX web")
    task_arguments(tail, process=True)
    tail.add_argument("-n", "--lines", type=_lines, default="10", metavar="N",
                      help="print the last N lines (default 10); +K: from line K on (+1: all)")
    tail.add_argument("-f", "--follow", action="store_true",
                      help="keep printing what is appended, across rotations and restarts")
    tail.add_argument("--run", type=_count, default=None, metavar="N",
                      help="this run's log (default: the latest run's)")
    tail.add_argument("--attempt", type=_count, default=None, metavar="N",
                      help="an earlier attempt's logs (.logs.attempt-N, kept when stoker run restarted the task; "
                           "the first attempt's is 0, which stoker status calls attempt=1; ls SANDBOX lists them)")
    tail.add_argument("--stderr", action="store_true", help="stderr instead of stdout")
    registry_arguments(tail)
    tail.set_defaults(handler=run)


def _lines(text: str) -> str:
    _count(text.removeprefix("+"))
    return text


def _count(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"{quoted(text)} is not a non-negative whole number")
    return int(text)


class ProcessLogs:
    """One process's run logs under a sandbox, opened safely each time they are needed."""

    def __init__(self, sandbox: Path, process: str, stream: str, logs_dir: str = LOGS_DIR) -> None:
        saferead.check_name(process)  # ValueError: not a process name
        self.sandbox, self.process, self.stream = sandbox, process, stream
        self.logs_dir = logs_dir  # `.logs`, or an earlier attempt's `.logs.attempt-N`

    def process_dir(self) -> int:
        root = saferead.open_root(self.sandbox)
        try:
            return saferead.walk(root, [self.logs_dir, self.process], file=False)
        finally:
            os.close(root)

    def runs(self) -> list[int]:
        """The run numbers that have a log directory, in order ([] when none); not a run
        readied ahead that never started (`saferead.readied`: its supervisor was killed -9
        before its first step)."""
        try:
            fd = self.process_dir()
        except FileNotFoundError:
            return []
        try:
            with os.scandir(fd) as scan:
                numbers = [(saferead.run_number(e.name), e) for e in scan]
                return sorted(n for n, e in numbers if n is not None and e.is_dir(follow_symlinks=False)
                              and not saferead.readied(n, fd))
        finally:
            os.close(fd)

    def open(self, run: int) -> tuple[int, int]:
        """(run directory fd, file fd) of run `run`'s log. Raises OSError."""
        pdir = self.process_dir()
        try:
            rdir = saferead.open_dir(str(run), pdir)
        finally:
            os.close(pdir)
        try:
            return rdir, saferead.open_file(self.stream, rdir)
        except FileNotFoundError:
            os.close(rdir)
            raise FileNotFoundError(
                f"run {run} of process {quoted(self.process)} has no {self.stream} log "
                f"({self.sandbox}/{self.where(run)} does not exist: a process whose Logger "
                f"destination is 'console' or 'none' keeps none)") from None
        except BaseException:
            os.close(rdir)
            raise

    def run_ident(self, run: int) -> tuple[int, int] | None:
        """(device, inode) of run `run`'s directory as its path names it now; None when none."""
        try:
            pdir = self.process_dir()
        except FileNotFoundError:
            return None
        try:
            return _ident(os.stat(str(run), dir_fd=pdir, follow_symlinks=False))
        except FileNotFoundError:
            return None
        finally:
            os.close(pdir)

    def where(self, run: int) -> str:
        return f"{self.logs_dir}/{self.process}/{run}/{self.stream}"


def _another_task_s(target: Target) -> str:
    """Why the sandbox of a GONE task id (`inspection.py`) holds another task's logs now:
    its `.stoker` another's (deleted, then run again), or its checkpoint only other tasks'
    (`stoker status` says which); "" otherwise: its `.stoker`, or its checkpoint alone, was
    removed, or its sandbox copied back (a `.stoker` of its own id), and the logs are its own. Its supervisor's entry (a task id's) pins it."""
    entry = target.entry
    if entry is None or not entry.stoker_dir:
        return ""
    from executor.host.sandbox import checkpoint_mtime, open_stoker_dir
    from executor.task.inspection import held_task_id, inspect_sandbox

    inspection = inspect_sandbox(target.sandbox, entry)
    if not inspection.truth.gone:
        return ""
    try:
        os.close(open_stoker_dir(target.sandbox, pinned=entry.stoker_dir))
    except FileNotFoundError:
        return ""
    except OSError:  # another `.stoker` than its supervisor made: a later task's, or a copy of its own
        return "" if entry.known_as(held_task_id(target.sandbox)) else inspection.problem
    return inspection.problem if checkpoint_mtime(target.sandbox) is not None else ""


def _no_log(logs: ProcessLogs, number: int | None, runs: list[int]) -> str:
    """Why there is no log of run `number` (None: of any run); a run between the first and
    the kept last ones was removed (`executor/procs/runprune.py`)."""
    where = f"{logs.sandbox}/{logs.logs_dir}"
    if logs.logs_dir != LOGS_DIR and not (logs.sandbox / logs.logs_dir).is_dir():
        from executor.local.attempts import kept_numbers  # only for this error

        kept = kept_numbers(logs.sandbox)
        has = ("keeps no earlier attempt's logs" if not kept else
               f"keeps --attempt {', '.join(map(str, kept))}") if kept is not None else "cannot be listed"
        return (f"{where} does not exist: this sandbox {has} (stoker run keeps the logs of the first "
                f"attempt and of the last --keep-attempts ones as .logs.attempt-N, N from 0)")
    if number is not None and runs and 0 < number < runs[-1] and number not in runs:
        shown = ", ".join(map(str, runs)) if len(runs) <= 2 else f"{runs[0]}, {runs[1]}–{runs[-1]}"
        return (f"the log of run {number} of process {quoted(logs.process)} was removed: a process keeps "
                f"its first run's logs and its last {KEEP_RUNS} runs' (in {where}: runs {shown})")
    what = f"run {number}" if number is not None else "any run"
    return f"process {quoted(logs.process)} has no log of {what} in {where}{_others(logs, where)}"


def _others(logs: ProcessLogs, where: str) -> str:
    """The processes whose logs are there, when `logs.process` has none (a misspelt name)."""
    try:
        with os.scandir(where) as entries:
            names = sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir(follow_symlinks=False))
    except OSError:
        return ""
    if not names or logs.process in names:
        return ""
    return f" (its processes with logs: {', '.join(quoted(name) for name in names)})"


def run(args: argparse.Namespace) -> int:
    target = resolve(args.target, args, command="tail")
    if another := _another_task_s(target):
        error(f"task {quoted(args.target)} is GONE: the logs in {quoted(str(target.sandbox))} are another "
              f"task's ({another})")
        return 1
    sandbox = target.sandbox
    logs_dir = LOGS_DIR if args.attempt is None else f"{LOGS_DIR}.attempt-{args.attempt}"
    where = f"{sandbox}/{logs_dir}/{args.process}"  # the log's path, once its run is known
    try:
        logs = ProcessLogs(sandbox, args.process, "stderr" if args.stderr else "stdout", logs_dir)
        runs = logs.runs()
        number = args.run if args.run is not None else (runs[-1] if runs else None)
        if number is None or number not in runs:
            raise FileNotFoundError(_no_log(logs, args.run, runs))
        where = f"{sandbox}/{logs.where(number)}"
        rdir, fd = logs.open(number)
    except (ValueError, FileNotFoundError) as exc:
        error(str(exc))
        return 1
    except OSError as exc:  # the path, and the part of it that failed
        error(f"cannot read the log of {quoted(args.process)} ({where}): {saferead.describe(exc)}")
        return 1
    out: BinaryIO = sys.stdout.buffer
    if sys.stdout.isatty():
        out = cast(BinaryIO, TerminalText(out, sys.stdout.encoding))  # writes bytes, as a BinaryIO
    pos = _write_lines(args.lines, logs.stream, rdir, fd, out)
    if not args.follow:
        os.close(fd)
        os.close(rdir)
        _finish(out)
        return 0
    out.flush()
    follower = Follower(logs, number, rdir, fd, pos, pinned=args.run is not None or args.attempt is not None)
    return follower.follow(out, stop=lambda: False)


def _write_lines(lines: str, stream: str, rdir: int, fd: int, out: BinaryIO) -> int:
    """The lines `--lines` asks for (`+N`: from the Nth on) of the log `fd` (its backups' too,
    in `rdir`) written to `out`; the offset in `fd` it ended at."""
    end = os.fstat(fd).st_size
    if lines.startswith("+"):
        parts = tailparts.from_line(rdir, stream, fd, end, max(1, int(lines[1:])))
    else:
        parts = tailparts.last_lines(rdir, stream, fd, end, int(lines))
    try:
        for part_fd, start, stop in parts:  # the backups' first, when the lines reach into them
            pos = saferead.copy_range(part_fd, start, stop, out, _holes(out))
    finally:
        for part_fd, _, _ in parts[:-1]:
            os.close(part_fd)
    return pos


def _holes(out: BinaryIO) -> Callable[[int], object] | None:
    """What a hole of the log is given to: a terminal's `TerminalText`, which shows it as one
    run of NULs, never read; to a pipe or a file, None: its NULs are copied as they read."""
    return out.hole if isinstance(out, TerminalText) else None


def _finish(out: BinaryIO) -> None:
    if isinstance(out, TerminalText):
        out.finish()
    out.flush()


def _out_fd(out: BinaryIO) -> int | None:
    """The descriptor `out` writes to, whose hang-up says its reader is gone (a pipe whose
    reader closed it, a hung-up terminal); None when it is no file (a test's buffer)."""
    try:
        return out.fileno()
    except (AttributeError, OSError, ValueError):
        return None


_ident = rotation.ident


class Follower:
    """`-f`: print what is appended to the log, across rotations and into the next runs."""

    def __init__(self, logs: ProcessLogs, run: int, run_dir: int, fd: int, pos: int,
                 pinned: bool) -> None:
        self.logs, self.run, self._dir, self._fd, self.pos = logs, run, run_dir, fd, pos
        self._pinned = pinned
        self._awaited: int | None = None  # a newer run whose directory came before its log

    def follow(self, out: BinaryIO, stop: Callable[[], bool],
               idle_secs: float = FOLLOW_IDLE_SECS) -> int:
        """Until `stop()` is true when there is nothing new; returns the exit status."""
        wakeups, out_fd = logwatch.Wakeups(), _out_fd(out)
        try:
            self._watch(wakeups)
            while True:
                if self._copy(out):
                    continue
                if stop():
                    return 0
                if self._rotated(out):
                    continue
                if self._next_run(out):
                    self._watch(wakeups)
                    continue
                if self._removed(out):
                    error(f"stopped following {self._path()}: its sandbox was removed (the agent's garbage "
                          "collection, an rm -rf): nothing more can be written to it")
                    return 1
                if self._awaited is not None:
                    self._watch(wakeups)  # its log's creation wakes the follower
                if wakeups.wait(out_fd, idle_secs):
                    raise BrokenPipeError("the reader of stdout is gone")
        except BrokenPipeError:
            raise  # the reader had enough: the command ends quietly (executor/cli/main.py)
        except OSError as exc:
            error(f"stopped following {self._path()}: {saferead.describe(exc)}")
            return 1
        finally:
            wakeups.close()
            os.close(self._fd)
            os.close(self._dir)

    def _watch(self, wakeups: logwatch.Wakeups) -> None:
        """Wake at a change in the run's directory (the log, its rotations), in the
        process's (its next run) and in the newer run's awaited, as they are now."""
        wakeups.watch("run", self._dir, logwatch.RUN_DIR_EVENTS)
        if self._awaited is None:
            wakeups.forget("awaited")
        if self._pinned:
            return
        try:
            pdir = self.logs.process_dir()
        except OSError:
            return  # gone: the look after each wait finds what comes instead
        try:
            wakeups.watch("process", pdir, logwatch.PROCESS_DIR_EVENTS)
            if self._awaited is not None:
                awaited = saferead.open_dir(str(self._awaited), pdir)
                wakeups.watch("awaited", awaited, logwatch.RUN_DIR_EVENTS)
                os.close(awaited)
        except OSError:
            return  # moved or gone under the look: the next look finds it
        finally:
            os.close(pdir)

    def _copy(self, out: BinaryIO) -> bool:
        size = os.fstat(self._fd).st_size
        if size < self.pos:
            self.pos = 0  # truncated: start over, as tail does
        if size == self.pos:
            return False
        self.pos = saferead.copy_range(self._fd, self.pos, size, out, _holes(out))
        out.flush()
        return True

    def _path(self) -> str:
        return f"{self.logs.sandbox}/{self.logs.where(self.run)}"

    def _removed(self, out: BinaryIO) -> bool:
        """Whether the run's directory was removed with its sandbox (the agent's garbage
        collection, an `rm -rf`), what was written last printed first: nothing more comes,
        where polling it went on for ever. A run's logs removed in a sandbox still there (a
        pinned run pruned; an attempt `--keep-attempts 0` keeps none of, whose next attempt's
        runs come next) are waited on, as before."""
        if os.fstat(self._dir).st_nlink or os.path.lexists(self.logs.sandbox):
            return False
        self._copy(out)
        return True

    def _rotated(self, out: BinaryIO) -> bool:
        """The name now holds another file (a rotation): switch to the file written after
        the one held, from its start (a burst may have rotated it several times since)."""
        if self._ident(self.logs.stream) in (None, _ident(os.fstat(self._fd))):
            return False  # not rotated, or between a rotation's rename and the new file
        self._copy(out)  # what was written to the old file before it was rotated
        fd = self._successor()
        if fd is None:
            return False
        os.close(self._fd)
        self._fd, self.pos = fd, 0
        return True

    def _successor(self) -> int | None:
        """The file written after the one held (`executor/procs/rotation.py`). Raises OSError."""
        held = os.fstat(self._fd)
        return rotation.open_successor(self._dir, self.logs.stream, _ident(held), dropped=held.st_nlink == 0)

    def _ident(self, name: str) -> tuple[int, int] | None:
        return rotation.ident_at(name, self._dir)

    def _next_run(self, out: BinaryIO) -> bool:
        """The process started a newer run: switch to its log, after a marker line. When
        the run held is no longer where its path says (`stoker run` started a new attempt,
        keeping this one's logs as `.logs.attempt-N`), every run of the new `.logs` is newer."""
        if self._pinned:
            return False
        moved = self.logs.run_ident(self.run) != _ident(os.fstat(self._dir))
        newer = [r for r in self.logs.runs() if moved or r > self.run]
        if not newer:
            return False
        try:
            rdir, fd = self.logs.open(newer[0])
        except FileNotFoundError:
            self._awaited = newer[0]
            return False  # its directory is there, its log not yet
        try:  # from its oldest file: a burst may have rotated it already
            first = rotation.open_first(rdir, self.logs.stream)
        except BaseException:
            os.close(fd)
            os.close(rdir)
            raise
        os.close(fd)
        fd = first
        self._copy(out)  # the last words of the run before
        os.close(self._fd)
        os.close(self._dir)
        self.run, self._dir, self._fd, self.pos, self._awaited = newer[0], rdir, fd, 0, None
        out.write(f"==> {self.logs.process} run {self.run}: {self.logs.stream} <==\n".encode())
        out.flush()
        return True
