"""A sandbox whose checkpoint says nothing of the supervisor asked about, for
`executor/task/inspection.py`: what its lock file, its registry entry and /proc/locks say
instead.

- No checkpoint, or one with no whole record (made, then a full disk or a crash cut its
  header): a supervisor took the sandbox and died, let go or is starting before its first
  record (`unrecorded`); or one whose lines were garbled since it wrote them (`garbled`: not
  only its last line, cut at the file's end), said as such, never as a supervisor that
  recorded nothing. Its pid from its registry entry, else the lock file (a live process
  only while it holds the lock: the task may have written the file), else the lock's holder
  in /proc/locks (an early start writes none); without any of them and without a lock file,
  no task sandbox.
- A checkpoint that keeps none of its attempts (`none_of_its`): a `stoker run` in another's
  sandbox before its first header, or pushed out by later runs'.
- A `.stoker` that is not the one its registry entry pins (`pin_lost`): renamed or removed
  since its supervisor took it (a task's processes share the sandbox).
- Of these, a gone supervisor's whose sandbox no longer holds its checkpoint (removed, or
  another task's now: deleted, then run again; or, its supervisor having let go, the file
  alone removed, its `.stoker` keeping the definition written just before its first
  record) is GONE (`gone`), with its
  end as its registry entry recorded it.
Reads only: never writes, never signals.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from config.words import quoted
from executor.host import identity, lock
from executor.host.clock import iso_time
from executor.host.entry import RegistryEntry
from executor.host.sandbox import LOCK_FILE, TASK_FILE, open_stoker_dir
from executor.host.truth import Truth, judge
from executor.host.truth import gone as truth_gone
from executor.procs import saferead, sandboxfs
from executor.task.records import TOO_LONG

if TYPE_CHECKING:
    from collections.abc import Callable

    from executor.task.replay import Fold, TaskView


@attrs.frozen(slots=True)
class Unrecorded:
    """What the inspection says of such a sandbox (its `Inspection` has no view, no attempt)."""

    truth: Truth
    problem: str
    pinned: str
    unrecorded: bool = True  # False: no task sandbox, or a `.stoker` not the one pinned
    supervisor_pid: int | None = None


def _truth(alive: bool, entry: RegistryEntry | None, unread: bool = False) -> Truth:
    """The truth of a supervisor of which no record is read: alive, or ended or LOST as its
    registry entry says (`unread`: its checkpoint could not be read: `truth.judge`)."""
    return judge(None, alive, last_record_wall=None, checkpoint_mtime=None,
                 registry_wall=(entry.ended_wall or entry.registered_wall) if entry else None,
                 let_go=entry is not None and entry.ended_wall is not None, unread=unread)


def unreachable(pid: int) -> str:
    """What to do about a live supervisor whose sandbox was renamed or deleted under it: its
    control socket went with it (`stoker ps`'s note, `kill`'s, `status`' error)."""
    return (f"its supervisor (pid {pid}) still runs, but without its sandbox it cannot be "
            f"reached: `kill {pid}` (SIGTERM) stops it gracefully")


def _entry_alive(entry: RegistryEntry) -> bool:
    return identity.is_alive(entry.supervisor_pid, entry.supervisor_start, entry.supervisor_boot)


def pin_lost(sandbox: Path, entry: RegistryEntry, held_now: Callable[[], str]) -> Unrecorded | None:
    """The sandbox whose `.stoker` is not the one its registry entry pins, said as such,
    rather than as a task that has recorded nothing yet; None when it is the one. Its
    supervisor gone, the task is GONE (`gone`: `held_now()`, the task id the sandbox's
    checkpoint holds now, "" for none read); its supervisor alive and the whole sandbox gone,
    None too: that is what is said of it."""
    try:
        fd = open_stoker_dir(sandbox)
    except FileNotFoundError:
        now = "there is none"
    except OSError as exc:
        now = f"it cannot be opened: {saferead.describe(exc)}"
    else:
        try:
            if sandboxfs.dir_id(fd) == entry.stoker_dir:
                return None
        finally:
            os.close(fd)
        now = "another directory has its name"
    pid, alive = entry.supervisor_pid, _entry_alive(entry)
    if alive and now == "there is none" and not os.path.isdir(sandbox):
        return None  # the sandbox itself is gone (`inspection._view` says so), not its `.stoker` alone
    if not alive and not now.startswith("it cannot"):
        return gone(entry, "removed" if now == "there is none" else _now_whose(held_now(), entry))
    goes_on = (f"its supervisor (pid {pid}) still runs and goes on recording in the directory it made, "
               f"under whatever name it has now; rename that back to .stoker to see the task") if alive else \
        f"its supervisor (pid {pid}) no longer runs"
    return Unrecorded(truth=_truth(alive, entry, unread=True), pinned=entry.stoker_dir, unrecorded=False,
                      problem=f"{sandbox}/.stoker is not the directory its supervisor made ({now}): it was "
                              f"renamed or removed since the task started; {goes_on}")


def gone(entry: RegistryEntry, now: str) -> Unrecorded:
    """The task of a gone supervisor whose sandbox no longer holds its checkpoint (`now`: what
    it holds instead), GONE, with its end as its registry entry recorded it (was: NEW 0/0)."""
    pid = entry.supervisor_pid
    if entry.ended_wall is not None:
        end = f"its supervisor (pid {pid}) ended at {iso_time(entry.ended_wall)}"
        end += f": {entry.ended_reason}" if entry.ended_reason else ""
    else:
        end = f"its supervisor (pid {pid}) is gone and recorded no end"
    return Unrecorded(truth=truth_gone(entry.ended_wall is not None), pinned=entry.stoker_dir, supervisor_pid=pid,
                      problem=f"its sandbox no longer holds its checkpoint: {now}; {end}")


def later_task(view: TaskView, entry: RegistryEntry) -> bool:
    """Whether the checkpoint's latest attempt (`view`'s) began after the entry's supervisor
    registered: a later task's (its sandbox deleted, or run again), not the run before's,
    which a supervisor killed before its first record leaves there (LOST, not GONE). Its
    supervisor's start on the boot's clock where both are of this boot and apart (no step of
    the wall clock moves it: one stepped back after the registration made a later task's
    attempt look older), else its header's wall time."""
    current = view.current
    start, boot = current.supervisor_start, current.supervisor_boot
    if boot and boot == entry.supervisor_boot and start is not None and start != entry.supervisor_start:
        return start > entry.supervisor_start
    return current.started_wall is not None and current.started_wall > entry.registered_wall


def _now_whose(task_id: str, entry: RegistryEntry | None = None) -> str:
    """Whose the checkpoint in its sandbox is now (`task_id`: its task id, "" none read); one
    of the entry's own ids is not a later task's: its sandbox copied back (a restore, a move
    to another disk), or the task's own making, in another `.stoker` than its supervisor made."""
    if task_id and entry is not None and entry.known_as(task_id):
        return (f"another .stoker has its name, whose checkpoint names task {task_id} too (its sandbox "
                f"copied back, or the task's own making: not read)")
    return f"now task {task_id}'s" if task_id else "now another task's"


def garbled(fold: Fold, size: int) -> str:
    """What the lines of a checkpoint of `size` bytes that gave `fold` no whole record are, when
    a crash's cut does not explain them: more than one line, or one a newline ends (the writer
    ends each record's line in the same write); "" for none (an empty file, or one line torn at
    the file's end: a header a crash or a full disk cut short)."""
    first = fold.first_unreadable
    if first is None or fold.fed == 1 and first.offset + first.size >= size:
        return ""
    which = f"{fold.fed} lines, none a record: the first" if fold.fed > 1 else "its one line"
    if first.too_long:
        return f"{which}, at offset {first.offset}, is {first.size:,} bytes long, {TOO_LONG}"
    return f"{which}, at offset {first.offset}, is garbled, not JSON: {quoted(first.excerpt)}"


def unrecorded(sandbox: Path, pinned: str, entry: RegistryEntry | None, made: bool = False,
               garbled: str = "") -> Unrecorded:
    """A sandbox without a checkpoint (`made`: one with no whole record; `garbled`: what it
    holds instead, `garbled()`): a supervisor's that recorded nothing (or nothing readable)
    when its lock file is there (or its entry or the lock names it), else no task sandbox."""
    pid, alive = _supervisor(sandbox, pinned, entry)
    if entry is not None and entry.ended_wall is not None and pinned and not (made or alive) \
            and _holds(sandbox, pinned, TASK_FILE):
        # Its definition is written just before its checkpoint's first record, and it let go
        # (not killed between the two): that was removed.
        return gone(entry, "its file removed, its .stoker kept")
    truth = _truth(alive, entry)
    where = f"the checkpoint in {sandbox}/.stoker holds no record" if made else f"no checkpoint in {sandbox}/.stoker"
    if garbled:
        where = f"the checkpoint in {sandbox}/.stoker holds no readable record ({garbled})"
    if pid is None and entry is None and not _has_lock(sandbox, pinned):
        return Unrecorded(truth=truth, pinned=pinned, unrecorded=False,
                          problem=where if made else f"{where} (is this a task sandbox?)")
    reason = entry.ended_reason if entry else ""
    return Unrecorded(truth=truth, supervisor_pid=pid, pinned=pinned,
                      problem=_garbled_problem(where, pid, truth, reason) if garbled else
                      _unrecorded_problem(where, pid, truth, reason))


def none_of_its(sandbox: Path, pinned: str, entry: RegistryEntry, headless: str = "", held_now: str = "") -> Unrecorded:
    """A checkpoint that keeps no attempt of the entry's supervisor, said as `unrecorded`;
    `headless`: the damaged record its first records follow without a header (which may
    have been the supervisor's: a garbled header), or that none came first (its line lost),
    said, not taken for other runs'. Its supervisor gone, only other tasks' (`held_now`:
    the task id it holds now, another than the entry's): GONE."""
    pid, alive = entry.supervisor_pid, _entry_alive(entry)  # not the lock's holder: another run's
    where = f"the checkpoint in {sandbox}/.stoker keeps no attempt of its supervisor (pid {pid})"
    if headless:
        return Unrecorded(truth=_truth(alive, entry), supervisor_pid=pid, pinned=pinned,
                          problem=f"{where}: {'it runs' if alive else 'it is gone'}; its records follow no "
                                  f"readable header (its own header garbled?): {headless}")
    if not alive and held_now:
        return gone(entry, _now_whose(held_now))
    now = "it has recorded none yet" if alive else "it is gone"
    return Unrecorded(truth=_truth(alive, entry), supervisor_pid=pid, pinned=pinned,
                      problem=f"{where}, only other runs' of the sandbox: {now}")


def _supervisor(sandbox: Path, pinned: str, entry: RegistryEntry | None) -> tuple[int | None, bool]:
    """The pid of the supervisor that took the sandbox (None: not known) and whether it runs."""
    try:
        fd = open_stoker_dir(sandbox, pinned=pinned)
    except OSError:
        fd = -1
    try:
        who = lock.holder(fd) if fd >= 0 and entry is None else None
        holders = lock.lock_holders(fd) if fd >= 0 else ()
    finally:
        if fd >= 0:
            os.close(fd)
    holding = holders[0] if holders else None
    pid: int | None
    if entry is not None:
        pid, alive = entry.supervisor_pid, _entry_alive(entry)
    elif who is not None and identity.is_alive(who.pid, who.start_ticks, who.boot_id):
        # Live, it is the supervisor only while it holds the lock: the task may write the file
        # (it may own its sandbox) and name any process; a supervisor holds it all its life.
        pid, alive = (who.pid, True) if who.pid in holders else (None, False)
    elif who is not None:
        pid, alive = who.pid, False
    else:
        pid, alive = None, False
    if not alive and holding is not None:  # the lock is held: its holder runs
        return holding, True
    return pid, alive


def _has_lock(sandbox: Path, pinned: str) -> bool:
    return _holds(sandbox, pinned, LOCK_FILE)


def _holds(sandbox: Path, pinned: str, name: str) -> bool:
    """Whether the sandbox's `.stoker` (the one `pinned` names, if any) holds the file `name`."""
    try:
        fd = open_stoker_dir(sandbox, pinned=pinned)
    except OSError:
        return False
    try:
        return stat.S_ISREG(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
    except OSError:
        return False
    finally:
        os.close(fd)


def _garbled_problem(where: str, pid: int | None, truth: Truth, reason: str) -> str:
    """Where its supervisor is, after `where` (a checkpoint whose records were garbled: they
    were written, so not "before it recorded anything")."""
    who = "its supervisor" if pid is None else f"its supervisor (pid {pid})"
    if truth.alive:
        now = "runs"
    elif truth.ended:
        now = f"stopped: {reason}" if reason else "let go of the sandbox"
    else:
        now = "is gone"
    return f"{where}: {who} {now}; what it recorded cannot be read"


def _unrecorded_problem(where: str, pid: int | None, truth: Truth, reason: str = "") -> str:
    """Why nothing is recorded, after `where` (what the checkpoint is: none, or empty)."""
    if truth.alive:
        return f"{where} yet: its supervisor (pid {pid}) is starting and has recorded nothing so far"
    if pid is None:
        return (f"{where}: its supervisor died before it recorded anything, in its early start "
                f"(its lock file names no pid, or a process that does not hold the lock, and nothing "
                f"holds it)")
    if truth.ended:  # with the error it stopped on, if it said one (`cannot go on: ...`)
        return (f"{where}: its supervisor (pid {pid}) stopped before it recorded anything: {reason}" if reason
                else f"{where}: its supervisor (pid {pid}) let go of the sandbox before it recorded anything")
    return f"{where}: its supervisor (pid {pid}) died before it recorded anything"
