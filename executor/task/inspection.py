"""What a sandbox says about its task, checked against the host: for `stoker status`,
`stoker ps` and `stoker observe`.

Owns `inspect_sandbox`: replay the sandbox's checkpoint (streamed, bounded, never through a
symlink or a FIFO: `executor/task/checkpoint.iter_records`), find the attempt a supervisor
ran (the latest, or the one a registry entry names), check that its supervisor still runs
(pid, start time and boot: `executor/host/identity.py`), judge the truth
(`executor/host/truth.judge`: LOST when it is gone without a terminal record), and, for a
LOST task, list its leftover processes: those whose environment still carries its
`STOKER_TASK_MARKER`, with the process and run their `STOKER_RUN_MARKER` names, and those its
watchdog held by pid and start time that are still alive as themselves (`heldfile.py`: one
that is not dumpable hides its marker; its process and run are unknown). One /proc scan
for every LOST task of a call. A sandbox with no checkpoint but a supervisor's lock
file is `unrecorded`: its supervisor died, let go or is starting before its first record
(its pid from the registry entry, the lock file or /proc/locks: `unrecorded.py`, which also
says a checkpoint that keeps none of its attempts, and a `.stoker` not the one pinned).
The task as the readers show it (`row`, `status_json`) is `inspectionjson.py`'s.
Reads only: never writes, never signals.
"""
from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from executor.host import identity, lock
from executor.host.entry import RegistryEntry, first_taker
from executor.host.entrycache import stamp_of
from executor.host.sandbox import CHECKPOINT_FILE, checkpoint_mtime
from executor.host.truth import Truth, judge, taker_name
from executor.procs import proctree, saferead
from executor.procs.runenv import TASK_MARKER
from executor.task.checkpoint import MAX_READ_BYTES, open_checkpoint_in, records_at
from executor.task.heldfile import held_leftovers
from executor.task.leftoverprocs import Foreign, Leftover, by_user, carrying, command_of
from executor.task.replay import AttemptView, Fold, TaskView
from executor.task.unrecorded import (
    Unrecorded,
    garbled,
    gone,
    later_task,
    none_of_its,
    pin_lost,
    unreachable,
    unrecorded,
)
from executor.task.viewcache import Seen, ViewCache, resumable

STALE_SECS = 2.0  # an entry read at most this before its supervisor's newest header: the id before's


@attrs.frozen(slots=True)
class Inspection:
    sandbox: Path
    view: TaskView | None  # None: no readable checkpoint (`problem` says why)
    attempt: AttemptView | None  # the attempt of the supervisor asked about (None: not in the checkpoint)
    truth: Truth
    problem: str = ""
    leftovers: tuple[Leftover, ...] = ()
    foreign: tuple[Foreign, ...] = ()  # other users' processes carrying its marker: shown, not counted
    leftovers_looked: bool = False  # `with_leftovers` looked for them (LOST, its marker known)
    # No checkpoint (or none of its attempts): a supervisor took the sandbox and died, let go or
    # is starting before it recorded anything. Its pid when known.
    unrecorded: bool = False
    supervisor_pid: int | None = None
    pinned: str = ""  # the `.stoker` its registry entry names (`open_stoker_dir`): none other is read
    sandbox_gone: bool = False  # its sandbox is no longer there (renamed or deleted): nothing was read
    registered_wall: float | None = None  # when its registry entry was written (None: read without one)
    after_latest: bool = True  # an `attempt` None: the entry's id is newer than the checkpoint's latest
    run_uid: int | None = None  # the uid its header says its processes ran as, when trusted (`trusted_run_uid`)
    judged_as: TaskUser | None = None  # the task's user its leftovers were judged against (`with_leftovers`)
    replaced_by: RegistryEntry | None = None  # LOST or GONE, no leftover: who took its sandbox since (`with_replacements`)


Viewed = tuple[TaskView | None, str | None, str]  # (None, None, ""): no whole record (words: garbled ones)


@attrs.frozen
class TaskUser:
    """The uid a task's processes are taken to run as, and whence: its checkpoint's header
    (`trusted_run_uid`) or, when that names none that is trusted, the sandbox's owner."""

    uid: int | None  # None: neither known (the sandbox cannot be seen)
    source: str | None  # "checkpoint_header" or "sandbox_owner" (None: neither known)


def _view(sandbox: Path, pinned: str, cache: ViewCache[Viewed] | None,
          opened: contextlib.ExitStack) -> tuple[TaskView | None, str | None, str, Any, int]:
    """The replayed view, or None and why ((None, None): no checkpoint, or no whole record,
    then what garbled lines it holds: `unrecorded.garbled`), the checkpoint's `fstat`
    (None: not opened) and `.stoker`'s fd (-1: not opened; else open until `opened` closes). With
    `cache`, a checkpoint unchanged since it was last replayed is not read again, and one that
    grew since is read from where that replay ended (`viewcache.py`)."""
    read_at = cache.clock() if cache is not None else 0  # before the file is opened (`entrycache.racy`)
    try:
        stoker, fd = open_checkpoint_in(sandbox, pinned)
    except FileNotFoundError:
        if not os.path.isdir(sandbox):
            return None, f"the sandbox {sandbox} no longer exists (renamed or deleted)", "", None, -1
        return None, None, "", None, -1
    except OSError as exc:
        return None, _unreadable(sandbox, exc), "", None, -1
    opened.callback(os.close, stoker)
    try:
        st = os.fstat(fd)
        return *_replayed(fd, st, sandbox, pinned, cache, read_at), st, stoker
    except OSError as exc:
        return None, _unreadable(sandbox, exc), "", None, stoker
    finally:
        os.close(fd)


def _replayed(fd: int, st: os.stat_result, sandbox: Path, pinned: str, cache: ViewCache[Viewed] | None,
              read_at: int) -> Viewed:  # read_at: the cache's clock before `fd` was opened
    """The view of the checkpoint open as `fd` (`st`: its `fstat`): kept, gone on with, or replayed whole;
    read up to the size stamped as it was opened (and a byte past it: a line half written is not whole)."""
    stamp, where = stamp_of(st), (str(sandbox), pinned)
    if cache is not None and (kept := cache.get(where, stamp, fd, read_at)) is not None:
        return kept
    resume = cache.take(where, stamp, fd) if cache is not None else None
    fold, offset = (resume.fold, resume.offset) if resume is not None else (Fold(), 0)
    limit = min(MAX_READ_BYTES, st.st_size + 1)  # a file past the cap: no fold kept, none hashed
    seen = Seen(st.st_size, resume) if cache is not None and st.st_size < limit else None
    fold.feed(records_at(fd, sandbox, offset, limit - offset, keep_unreadable=True,
                        tee=seen.tee if seen is not None else None))
    # No whole record (made but empty on a full disk, or cut inside its header by a crash):
    # said as no checkpoint is, by the lock file and the registry (`unrecorded`), with the lines
    # a crash's cut does not explain (`garbled`: its supervisor did record them).
    viewed: Viewed = (fold.view(), "", "") if fold.records else (None, None, garbled(fold, st.st_size))
    if cache is not None:
        cache.put(where, stamp, viewed, resumable(fd, fold, stamp, limit, seen) if seen is not None else None, read_at)
    return viewed


def _unreadable(sandbox: Path, exc: OSError) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM):  # .stoker is owner-only: another user's
        why = _own_closed(sandbox) or "only the supervisor's user (or root) may read its task's state"
        return (f"cannot read the checkpoint in {sandbox}/.stoker: Permission denied "
                f"({errno.errorcode[exc.errno]}): {why}")
    return f"cannot read the checkpoint in {sandbox}/.stoker: {saferead.describe(exc)}"


def _own_closed(sandbox: Path) -> str:
    """Why the reader's own sandbox, `.stoker` or checkpoint denied it (a `chmod 000`, a
    restore without modes): its mode, not another user's ownership; "" when it is not the
    reader's. A directory is opened to be read (`r`) as well as passed (`x`); the sandbox is
    reached through a symlink its path ends in, as the checkpoint is read."""
    me, rx = os.geteuid(), stat.S_IRUSR | stat.S_IXUSR
    for name, needs in (("", rx), (".stoker", rx), (f".stoker/{CHECKPOINT_FILE}", stat.S_IRUSR)):
        try:
            st = os.stat(os.path.join(sandbox, name), follow_symlinks=not name)
        except OSError:
            return ""
        if st.st_uid != me:
            return ""
        if st.st_mode & needs != needs:
            what, fix = (f"the sandbox {sandbox}", "chmod u+rx on it") if not name else (
                name.rpartition("/")[2], f"chmod u+rwx .stoker, u+rw .stoker/{CHECKPOINT_FILE}")
            return f"{what} is yours, but its mode ({stat.S_IMODE(st.st_mode):03o}) lets not even its owner read it ({fix})"
    return ""


def _attempt_of(view: TaskView, entry: RegistryEntry | None) -> AttemptView | None:
    """The latest attempt, or the latest one the entry's supervisor ran (None: none kept)."""
    if entry is None:
        return view.current
    return next((a for a in reversed(view.attempts) if a.supervisor_pid == entry.supervisor_pid
                 and a.supervisor_start in (None, entry.supervisor_start)), None)


def _not_its(view: TaskView, attempt: AttemptView, entry: RegistryEntry, alive: bool) -> bool:
    """The latest attempt, its supervisor's, is of another id: the entry names the next id before its
    header is in (`stoker run`), or was read just (STALE_SECS) before its live supervisor wrote it."""
    return bool(view.task_id and entry.task_id) and view.task_id != entry.task_id and (
        view.task_id in entry.earlier_task_ids or alive and attempt.started_boot is not None
        and identity.boot_secs() - attempt.started_boot < STALE_SECS)


def inspect_sandbox(sandbox: Path, entry: RegistryEntry | None = None, cache: ViewCache[Viewed] | None = None,
                    locks: lock.LockTable | None = None) -> Inspection:
    """The task in `sandbox` as it is now (see the module docstring); no leftovers yet. With the
    registry's `entry`, only the `.stoker` its supervisor made is read; with `cache` (a reader that
    lives on: the observer), a checkpoint is replayed again only once it changed; `locks`: /proc/locks
    as read once for every task of a reading."""
    pinned = entry.stoker_dir if entry is not None else ""
    with contextlib.ExitStack() as opened:  # `.stoker`, opened once: for the checkpoint, then its lock
        view, problem, damaged, st, stoker = _view(sandbox, pinned, cache, opened)  # through the `.stoker` pinned
        judged = _judged(sandbox, entry, cache, locks, view, problem, st, stoker, damaged)
        if judged.truth.unsupervised and _changed_since(stoker, st):  # it ended as it was read
            view, problem, damaged, st, stoker = _view(sandbox, pinned, cache, opened)
            judged = _judged(sandbox, entry, cache, locks, view, problem, st, stoker, damaged)
        return judged


def _changed_since(stoker: int, st: Any) -> bool:
    """Whether the checkpoint in the `.stoker` open as `stoker` is no longer as `st` (its `fstat`
    as it was read) found it. The supervisor is looked for after its checkpoint is read: one
    that recorded its end and exited between the two was judged gone without it, LOST (a
    `stoker ps` row that flipped RUNNING, LOST, KILLED as 36 tasks were stopped at once); read
    again once it is gone, the checkpoint is final (nothing of its writer follows)."""
    if stoker < 0 or st is None:
        return False
    try:
        now = os.stat(CHECKPOINT_FILE, dir_fd=stoker, follow_symlinks=False)
    except OSError:
        return False
    return stamp_of(now) != stamp_of(st)


def _judged(sandbox: Path, entry: RegistryEntry | None, cache: ViewCache[Viewed] | None,
            locks: lock.LockTable | None, view: TaskView | None, problem: str | None, st: Any,
            stoker: int, damaged: str = "") -> Inspection:
    """`inspect_sandbox`'s task from what `_view` read (`stoker`: the `.stoker` it opened, or -1;
    `damaged`: the garbled lines of a checkpoint with no whole record)."""
    pinned = entry.stoker_dir if entry is not None else ""
    if st is None and entry is not None and pinned and (moved := pin_lost(sandbox, entry, lambda: held_task_id(sandbox))):
        return _said(sandbox, moved)
    if problem is None:
        return _said(sandbox, unrecorded(sandbox, pinned, entry, made=st is not None, garbled=damaged))
    if view is None:  # it could not be read: `problem` says why
        return _unread(sandbox, entry, problem, pinned)
    attempt = _attempt_of(view, entry)
    if entry is not None and attempt is None:
        other = view.task_id if view.task_id != entry.task_id and later_task(view, entry) else ""
        return _said(sandbox, none_of_its(sandbox, pinned, entry, view.headless_after, other))
    alive = _alive(entry, attempt)
    latest = attempt is view.current  # the checkpoint's last write is this supervisor's only then
    if not alive and latest and attempt is not None and attempt.supervisor_pid:
        alive = _seen_here(stoker, attempt, locks)
    truth = judge(attempt.state if attempt is not None else None, alive,
                  last_record_wall=view.last_wall if latest else None,
                  checkpoint_mtime=(st.st_mtime if st else checkpoint_mtime(sandbox, pinned)) if latest else None,
                  registry_wall=(entry.ended_wall or entry.registered_wall) if entry else None,
                  let_go=entry is not None and entry.ended_wall is not None,
                  restart_scheduled=latest and attempt is not None and attempt.restart is not None,
                  killing_ends_as=attempt.killing_ends_as if latest and attempt is not None else None)
    if cache is not None and st is not None and latest and not alive:  # its last writer is gone
        cache.settle((str(sandbox), pinned), stamp_of(st))
    if attempt is not None and not latest and entry is not None:
        view = _as_of(view, attempt, entry)
    after_latest = True
    if attempt is not None and latest and entry and _not_its(view, attempt, entry, alive):
        after_latest = view.task_id in entry.earlier_task_ids
        view, attempt = attrs.evolve(view, task_id=entry.task_id), None
    if attempt is not None and alive:
        view, attempt = _counted_on_the_boot_clock(view, attempt)
    return Inspection(sandbox=sandbox, view=view, attempt=attempt, truth=truth, problem=problem, pinned=pinned,
                      registered_wall=entry.registered_wall if entry is not None else None, after_latest=after_latest,
                      run_uid=trusted_run_uid(attempt.run_uid, st, stoker) if attempt is not None else None)


def _unread(sandbox: Path, entry: RegistryEntry | None, problem: str, pinned: str) -> Inspection:
    """A checkpoint that could not be read (`problem`: why): UNKNOWN under a live supervisor
    or one that let go, never NEW (`truth.judge`: it may have run for days); a sandbox renamed
    or deleted under it is `sandbox_gone`, and what to do about its live supervisor is said."""
    alive = _alive(entry, None)
    sandbox_gone = not os.path.isdir(sandbox)
    if sandbox_gone and entry is not None and not alive:  # as `pin_lost` says it of an entry that pins
        return _said(sandbox, gone(entry, "removed"))  # its `.stoker` (an older Stoker's pins none)
    if sandbox_gone and alive and entry is not None:
        problem = f"{problem}; {unreachable(entry.supervisor_pid)}"
    truth = judge(None, alive, last_record_wall=None, checkpoint_mtime=checkpoint_mtime(sandbox, pinned),
                  registry_wall=(entry.ended_wall or entry.registered_wall) if entry else None,
                  let_go=entry is not None and entry.ended_wall is not None, unread=True)
    return Inspection(sandbox=sandbox, view=None, attempt=None, truth=truth, problem=problem, pinned=pinned,
                      sandbox_gone=sandbox_gone, registered_wall=entry.registered_wall if entry is not None else None)


def held_task_id(sandbox: Path) -> str:
    """The task id of the checkpoint `sandbox` holds now, whatever `.stoker` it is ("": none
    read): what a GONE task's sandbox holds instead of its own (`stoker tail`: whose logs)."""
    with contextlib.ExitStack() as opened:
        view = _view(sandbox, "", None, opened)[0]
        return view.task_id if view is not None else ""


def trusted_run_uid(recorded: int | None, checkpoint: Any, stoker: int) -> int | None:
    """The uid a header says the task's processes ran as (`recorded`), when no one but root
    or that user could have written it: the checkpoint (`checkpoint`: its `fstat`) and its
    `.stoker` (open as `stoker`) are root's or that user's, neither writable by another. A
    task's user that owns its sandbox may plant a `.stoker` of its own (its processes share
    the sandbox), and could else name another user's marked processes its leftovers."""
    if recorded is None or checkpoint is None or stoker < 0:
        return None
    try:
        directory = os.fstat(stoker)
    except OSError:
        return None
    loose = (directory.st_mode | checkpoint.st_mode) & (stat.S_IWGRP | stat.S_IWOTH)
    return recorded if not loose and {directory.st_uid, checkpoint.st_uid} <= {0, recorded} else None


def _said(sandbox: Path, said: Unrecorded) -> Inspection:
    """A sandbox whose checkpoint says nothing of the supervisor asked about, as its lock file,
    its registry entry and /proc/locks say it (`unrecorded.py`)."""
    return Inspection(sandbox=sandbox, view=None, attempt=None, truth=said.truth, problem=said.problem,
                      unrecorded=said.unrecorded, supervisor_pid=said.supervisor_pid, pinned=said.pinned)


def _alive(entry: RegistryEntry | None, a: AttemptView | None) -> bool:
    """Whether the entry's supervisor runs; without one, the attempt's (none: False)."""
    if entry is not None:
        return identity.is_alive(entry.supervisor_pid, entry.supervisor_start, entry.supervisor_boot)
    return a is not None and identity.is_alive(a.supervisor_pid, a.supervisor_start, a.supervisor_boot,
                                               started_before_wall=a.started_wall)


def _counted_on_the_boot_clock(view: TaskView, attempt: AttemptView) -> tuple[TaskView, AttemptView]:
    """A live supervisor's attempt with its start and its next attempt's due time in
    today's wall clock, counted from the boot-clock moments its records carry: an age or a
    "starts in" from the recorded wall times is off by any step the clock took since (NTP, a
    VM resumed). Without them (a supervisor of an older Stoker), its first attempt's start
    is its supervisor's, as the kernel counts it; a later one's stays as recorded."""
    started = identity.boot_to_wall(attempt.started_boot)
    if started is None and attempt.supervisor_pid and attempt.supervisor_start is not None \
            and not any(a.supervisor_start == attempt.supervisor_start for a in view.attempts
                        if a is not attempt and a.supervisor_pid == attempt.supervisor_pid):
        started = identity.started_wall(identity.ProcessIdentity(
            attempt.supervisor_pid, attempt.supervisor_start, attempt.supervisor_boot))
    restart = attempt.restart
    due_from = identity.boot_to_wall(restart.boot) if restart is not None else None
    if restart is not None and due_from is not None:
        restart = attrs.evolve(restart, wall=due_from)
    counted = attrs.evolve(attempt, started_wall=started or attempt.started_wall, restart=restart)
    return attrs.evolve(view, attempts=tuple(counted if a is attempt else a for a in view.attempts)), counted


def _seen_here(stoker: int, attempt: AttemptView, locks: lock.LockTable | None) -> bool:
    """Whether the attempt's supervisor runs in a PID namespace of its own (a container's
    main process, pid 1 there, its sandbox a volume seen here): `lock.seen_here`, in the
    `.stoker` open as `stoker` (-1: none; never one of another boot)."""
    if stoker < 0 or attempt.supervisor_boot and attempt.supervisor_boot != identity.boot_id():
        return False
    return lock.seen_here(stoker, attempt.supervisor_pid or 0, attempt.supervisor_start, attempt.supervisor_boot,
                          locks, attempt.started_boot) is not None  # its lock taken before it started


def _as_of(view: TaskView, attempt: AttemptView, entry: RegistryEntry) -> TaskView:
    """The view as its attempt `attempt` left it: a later attempt in the same sandbox (a new
    `stoker run` after its supervisor died) is another task, with its own id, supervisor
    and ports, and not this one's to show."""
    kept = view.attempts[: view.attempts.index(attempt) + 1]
    return attrs.evolve(view, attempts=kept, task_id=entry.task_id or view.task_id,
                        ports=dict(attempt.ports or {}))


def marker_of(inspection: Inspection, entry: RegistryEntry | None = None) -> str:
    if inspection.attempt is not None and inspection.attempt.marker:
        return inspection.attempt.marker
    return entry.marker if entry is not None else ""


def with_leftovers(inspections: Sequence[Inspection], markers: Sequence[str]) -> list[Inspection]:
    """The LOST ones, and those whose supervisor died while killing, get their leftover
    processes (one /proc scan for all of them)."""
    # A supervisor's marker is hex; one a task wrote in its checkpoint ("\ud800") names nothing
    markers = [m if m.isascii() and m.isprintable() else "" for m in markers]
    wanted = {m for i, m in zip(inspections, markers) if i.truth.unsupervised and m}
    if not wanted:
        return list(inspections)
    entries = tuple(f"{TASK_MARKER}={m}".encode() for m in sorted(wanted))
    found = proctree.scan_markers(entries)
    out = []
    for inspection, marker in zip(inspections, markers):
        if inspection.truth.unsupervised and marker:
            carried = carrying(found.values(), marker)
            held = held_leftovers(inspection.sandbox, marker, pinned=inspection.pinned)
            user = task_user(inspection)
            listed, foreign = by_user(carried, user.uid, marker, held)
            seen = {p.pid for p in carried}
            listed += [Leftover(pid, "", None, command_of(pid)) for pid in held if pid not in seen]
            inspection = attrs.evolve(inspection, leftovers=tuple(sorted(listed, key=lambda p: p.pid)),
                                      foreign=tuple(foreign), leftovers_looked=True, judged_as=user)
        out.append(inspection)
    return out


def with_replacements(inspections: Sequence[Inspection], entries: Sequence[RegistryEntry],
                      every: Sequence[RegistryEntry] | None = None) -> list[Inspection]:
    """Each LOST task (`entries`: their registry entries) that left no process (after
    `with_leftovers`) and whose sandbox a later supervisor took, with that one's entry (of
    `every`, this host's entries; default `entries`): the earliest registered after it, in
    the `.stoker` it pinned, or at its path where either pinned none (`entry.first_taker`:
    later by their starts on the boot's clock, else by the wall clock of their registrations;
    an unrelated task run at its path counts: the checkpoint is that one's now). Nothing to
    act on: `stoker ps` lists it only with `--all`. So too a GONE task with no recorded end (its
    sandbox deleted and run again) whose leftovers were looked for, none found. Read-side
    only: no entry is rewritten."""
    wanted = [n for n, i in enumerate(inspections) if not i.leftovers and (
        i.truth.lost or i.truth.gone and not i.truth.ended and i.leftovers_looked)]
    if not wanted:
        return list(inspections)
    at: dict[tuple[str, str], list[RegistryEntry]] = {}  # each entry by its path and by its pin
    for e in entries if every is None else every:
        at.setdefault(("path", e.sandbox), []).append(e)
        if e.stoker_dir:
            at.setdefault(("pin", e.stoker_dir), []).append(e)
    out = list(inspections)
    for n in wanted:
        entry = entries[n]
        pool = at.get(("path", entry.sandbox), []) + (at.get(("pin", entry.stoker_dir), []) if entry.stoker_dir else [])
        taker = first_taker(pool, entry)
        if taker is not None:
            said = taker_name(taker.task_id, taker.supervisor_pid)
            out[n] = attrs.evolve(out[n], replaced_by=taker, truth=attrs.evolve(out[n].truth, replaced_by=said))
    return out


def task_user(inspection: Inspection) -> TaskUser:
    """The task's user (`leftoverprocs.py`): the uid its header names when trusted, else the
    sandbox's owner."""
    if inspection.run_uid is not None:
        return TaskUser(inspection.run_uid, "checkpoint_header")
    owner = _owner(inspection.sandbox)
    return TaskUser(owner, "sandbox_owner" if owner is not None else None)


def _owner(sandbox: Path) -> int | None:
    """The sandbox's owner, the task's user (`leftoverprocs.py`) when its header names none
    that is trusted (an older Stoker's); None when it cannot be seen.
    Through a symlink the path ends in (the Mesos agent's `runs/latest`, root's), as the
    checkpoint is read."""
    try:
        return os.stat(sandbox).st_uid
    except OSError:
        return None
