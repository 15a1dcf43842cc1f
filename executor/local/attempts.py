"""The logs of earlier attempts in a `stoker run` sandbox, and their bound.

Each attempt of a run writes its processes' logs in `.logs`; before the next attempt (of
this run, or of a later run in the same sandbox) begins, they are kept as `.logs.attempt-N`,
N one more than the highest kept (0 for the first), so a higher N is always a later
attempt (`stoker tail --attempt N` reads them; a failed run's console line names its N
ahead, `next_number`). A service that keeps failing would keep one more of them each back-off (1,440 a
day at the default 60 s), so only some are kept (`--keep-attempts K`, default
`KEEP_ATTEMPTS`): the first one the sandbox kept (where a crash loop began: its first
failure's logs) and the K most recent; the others are removed as each new one is kept. The
running attempt's `.logs` is never touched.

The sandbox is the task's: only entries named exactly `.logs.attempt-N` that are
directories are counted and removed, through a descriptor of the sandbox, without following
a symlink at any level (`shutil.rmtree` with `dir_fd`: a symlink below is unlinked, never
followed); a planted `.logs.attempt-5 -> /` is left alone. A follower of a removed attempt's
log (`stoker tail -f`, the observer's follow mode) holds its descriptors and reads on into
the next attempt's logs.

Every attempt of a run keeps the run's ports: before a restart, `ports_taken_warning` names
those another program took meanwhile (`ports_taken`, probed as `planfiles.ports_free` does).
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
from pathlib import Path

from executor.local.planfiles import loopback_sockets
from executor.logs import log_event

TYPE_CHECKING = False  # as in planfiles.py
if TYPE_CHECKING:
    import socket
    from collections.abc import Mapping

logger = logging.getLogger(__name__)

KEEP_ATTEMPTS = 20  # as many as `stoker status` shows (executor/task/replay.ATTEMPTS_KEPT)
_ARCHIVE = r"\.logs\.attempt-(0|[1-9][0-9]{0,17})"  # compiled at its first use (`re`'s cache): a new sandbox has none
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC  # never through a symlink


def archive_logs(sandbox: Path, keep: int = KEEP_ATTEMPTS) -> None:
    """.logs → .logs.attempt-N, then the earlier ones past the bound removed. A `.logs` that
    is not a directory (a symlink, say) is left alone."""
    logs = sandbox / ".logs"
    if not logs.is_dir() or logs.is_symlink():
        return
    try:
        top = os.open(sandbox, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        _not_archived(logs, exc)
        return
    try:
        if not _drop_readied(top):
            return  # its attempt started nothing: nothing to keep
        numbers, taken = _scan(top)
        os.rename(".logs", f".logs.attempt-{taken + 1}", src_dir_fd=top, dst_dir_fd=top)
        numbers.append(taken + 1)
        for number in _past_bound(numbers, keep):
            _remove(top, number)
    except OSError as exc:
        _not_archived(logs, exc)
    finally:
        os.close(top)


def _drop_readied(top: int) -> bool:
    """Remove from `.logs` the runs readied ahead that never started (`sandboxfs.readied`: a
    supervisor killed -9 before its first step left them), then each of their processes'
    directories and `.logs` itself that this left empty: an attempt that started nothing keeps
    no `.logs.attempt-N`, whose empty runs `stoker tail --attempt N` would show as runs. False
    once `.logs` is gone. Raises OSError."""
    logs = os.open(".logs", _DIR_FLAGS, dir_fd=top)
    dropped = False
    try:
        for process in os.listdir(logs):
            with contextlib.suppress(OSError):  # not a directory, or not empty: the task's, kept
                pdir = os.open(process, _DIR_FLAGS, dir_fd=logs)
                try:
                    if not _drop_readied_runs(pdir):
                        continue
                finally:
                    os.close(pdir)
                dropped = True
                os.rmdir(process, dir_fd=logs)
    finally:
        os.close(logs)
    if not dropped:
        return True
    with contextlib.suppress(OSError):  # not empty: kept
        os.rmdir(".logs", dir_fd=top)
        return False
    return True


def _drop_readied_runs(pdir: int) -> bool:
    """Remove each run's directory in `pdir` (a process's) that holds a run readied ahead that
    never started, with its two empty files; whether there was one."""
    from executor.task.wiring import readied  # loaded by `stoker run` before it archives

    dropped = False
    for name in os.listdir(pdir):
        if name.isascii() and name.isdigit() and readied(int(name), pdir):
            run = os.open(name, _DIR_FLAGS, dir_fd=pdir)
            try:
                for stream in ("stdout", "stderr"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(stream, dir_fd=run)
            finally:
                os.close(run)
            os.rmdir(name, dir_fd=pdir)
            dropped = True
    return dropped


def next_number(sandbox: Path) -> int | None:
    """The N the running attempt's `.logs` will be kept as (nothing else archives in a sandbox
    its run holds); None when the sandbox cannot be listed."""
    scanned = _scan_sandbox(sandbox)
    return None if scanned is None else scanned[1] + 1


def kept_numbers(sandbox: Path) -> list[int] | None:
    """The N of each kept `.logs.attempt-N`, ascending (`stoker tail --attempt N`); None when
    the sandbox cannot be listed."""
    scanned = _scan_sandbox(sandbox)
    return None if scanned is None else scanned[0]


def _scan_sandbox(sandbox: Path) -> tuple[list[int], int] | None:
    try:
        top = os.open(sandbox, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return _scan(top)
    except OSError:
        return None
    finally:
        os.close(top)


def _not_archived(logs: Path, exc: OSError) -> None:
    log_event(logger, logging.ERROR, "logs_not_archived", path=logs, error=str(exc),
              reason="the earlier attempt's logs could not be kept apart")


def _past_bound(numbers: list[int], keep: int) -> list[int]:
    """The kept attempts to remove (`numbers` ascending): all but the first and the `keep` last."""
    return numbers[1:max(1, len(numbers) - keep)]


def _scan(top: int) -> tuple[list[int], int]:
    """The N of each `.logs.attempt-N` directory in the sandbox, ascending (one listing), and
    the highest N any entry so named has (a planted file or symlink included: its name is
    not taken again; -1 when none)."""
    found, highest = [], -1
    with os.scandir(top) as entries:
        for entry in entries:
            match = re.fullmatch(_ARCHIVE, entry.name)
            if match:
                highest = max(highest, int(match.group(1)))
                if entry.is_dir(follow_symlinks=False):
                    found.append(int(match.group(1)))
    return sorted(found), highest


def _remove(top: int, number: int) -> None:
    name = f".logs.attempt-{number}"
    try:
        if not stat.S_ISDIR(os.lstat(name, dir_fd=top).st_mode):
            return  # replaced since the listing: not ours
        import shutil  # (with bz2, lzma, zlib: only once there is one to remove)

        shutil.rmtree(name, dir_fd=top)
    except OSError as exc:
        log_event(logger, logging.ERROR, "attempt_logs_not_removed", name=name, error=str(exc),
                  reason="an earlier attempt's logs past --keep-attempts could not be removed")
        return
    log_event(logger, logging.INFO, "attempt_logs_removed", name=name,
              reason="only the first attempt's logs and the last --keep-attempts ones are kept")


def ports_taken(ports: Mapping[str, int]) -> list[str]:
    """`NAME=NUMBER` of each of `ports` another socket holds on 127.0.0.1 or ::1 now (bound
    or listening; probed as `planfiles.ports_free` does): before a restart, the ports the run's
    attempts keep that another program took meanwhile."""
    import errno

    taken = []
    for name, number in sorted(ports.items()):
        held: list[socket.socket] = []
        try:
            loopback_sockets(number, held)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                taken.append(f"{name}={number}")
        finally:
            for sock in held:
                sock.close()
    return taken


def ports_taken_warning(ports: Mapping[str, int]) -> str | None:
    """Before a restart: a line naming each of the run's ports another program took since
    (the next attempt's server would fail to bind it; docs/contract.md §7)."""
    if not (taken := ports_taken(ports)):
        return None
    return (f"{'port' if len(taken) == 1 else 'ports'} {', '.join(taken)} in use by another "
            "program; every attempt of this run keeps its ports (a new `stoker run` chooses free ones)")
