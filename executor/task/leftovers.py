"""What a crashed supervisor left running in its sandbox, ended before a new one starts there.

A supervisor killed with -9 leaves its task to its watchdog. When the watchdog went with it
(killed too, or in the moment its keeper re-forks it), the task's processes run on,
unsupervised, still carrying the attempt's `STOKER_TASK_MARKER`; `stoker status` lists them
as the LOST task's leftovers. A new `stoker run` in that sandbox would start the task a
second time beside them (the same ports and files), saying nothing. So, once it holds the
sandbox's lock, `end_lost_attempts` reads the checkpoint and, for each attempt that
recorded no end and whose supervisor is gone (pid, start time and boot: a planted header
naming a live supervisor is left alone), SIGKILLs every process still carrying that
attempt's marker whose real uid is this process's, or that is in its task cgroup (a root
task's daemon that dropped privileges: no other user can move a process into this user's
cgroup; the marker is anyone's to read and copy: another user's such process elsewhere is
left, and named): SIGSTOP first, pass after pass until none
is new, as the watchdog does (`executor/procs/proctree.kill_until_gone`); then what its
watchdog held by pid and start time (`heldfile.py`: a daemon that hides the marker), still
alive as itself, with its descendants, each through a pidfd checked again, when that list
is trusted (this user's); then it removes the attempt's task cgroup (`stoker-` and its whole
marker, found as `executor/procs/cgrouplost.py` says: where the kernel showed this user's
marked processes before the kill, below the cgroups this process is in, where the header
says it was made; an older Stoker's 16-character one they are in only thawed, so that
those left frozen die), once the processes killed leave it; one holding a process of another
task (a marker planted in the checkpoint) or of another user (left by the kill) is left
alone, and said so.
A sandbox whose attempts all recorded their end costs one read of the checkpoint and no
/proc scan; only its headers and task records are parsed (the view `stoker status` replays
is not loaded on a supervisor's start). Never raises: a checkpoint that cannot be read has
nothing to end.
"""
from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from pathlib import Path

import attrs

from executor.host import identity
from executor.host.entry import TERMINAL_STATES
from executor.host.replacefile import user_name
from executor.procs import proctree
from executor.procs.saferead import MAX_LINE_BYTES
from executor.procs.spawn import TASK_MARKER
from executor.task import records as rec
from executor.task.checkpoint import iter_records

HELD_PASSES = 8  # walks of the held processes' trees at most, as `kill_until_gone`'s passes
CGROUP_SECS = 2.0  # for the killed to leave the task's cgroup, as `cgrouplife.CGROUP_KILL_SECS`


@attrs.frozen(slots=True)
class LostAttempt:
    """An attempt whose supervisor died without recording its end, and what it left."""

    number: int
    supervisor_pid: int | None
    killed: tuple[int, ...]  # the pids that still carried its marker, SIGKILLed
    cgroups: tuple[str, ...] = ()  # its task cgroup: removed, or why it could not be, in words
    foreign: tuple[tuple[int, str], ...] = ()  # (pid, user): other users' processes carrying it, left

    def describe(self) -> str:
        gone = f"its supervisor (pid {self.supervisor_pid}) died" if self.supervisor_pid \
            else "its supervisor died"
        pids = " ".join(str(p) for p in self.killed)
        done = [f"killed the {len(self.killed)} process(es) it left running: {pids}"] if self.killed else []
        if self.foreign:
            others = " ".join(f"{pid} ({user})" for pid, user in self.foreign)
            done.append(f"left the {len(self.foreign)} process(es) of other users that carry its marker: {others}")
        return f"attempt {self.number} in this sandbox recorded no end ({gone}); " + \
            "; ".join(done + list(self.cgroups))


def _attempts(docs: Iterable[dict]) -> list[tuple[int, rec.HeaderRecord, str]]:
    """Each attempt's number, header and last task state, from the headers, task records and
    compaction's summary alone (a light fold: `stoker status`'s replay is not loaded on a
    supervisor's start)."""
    found: list[tuple[rec.HeaderRecord, str]] = []
    earlier = 0  # the attempts compaction dropped
    for doc in docs:
        kind = doc.get("kind")
        if kind == "summary" and isinstance(doc.get("earlier_attempts"), int):
            earlier = max(earlier, doc["earlier_attempts"])
        elif kind in ("header", "task"):
            record = rec.parse(doc)
            if isinstance(record, rec.HeaderRecord):
                found.append((record, ""))
            elif isinstance(record, rec.TaskRecord) and found:
                found[-1] = (found[-1][0], record.to.value)
    return [(earlier + n, header, state) for n, (header, state) in enumerate(found, 1)]


def _unfinished(header: rec.HeaderRecord, state: str) -> bool:
    return (state not in TERMINAL_STATES and bool(header.marker)
            and not identity.is_alive(header.supervisor_pid, header.supervisor_start,
                                      header.supervisor_boot, started_before_wall=header.wall))


def _kill_held(sandbox: Path, marker: str, pinned: str) -> set[int]:
    """SIGSTOP what the attempt's watchdog held, alive as itself, and every descendant
    (parents first), walking again until a walk finds no one new (a child forked between a
    walk and its parent's SIGSTOP is found by the next); then SIGKILL; the pids killed."""
    from executor.task.heldfile import alive_held, read_held  # only for an attempt left LOST

    held = alive_held(read_held(sandbox, marker, trusted_only=True, pinned=pinned))  # pid → its start here
    found: set[tuple[int, int]] = set()

    def check(info: proctree.ProcInfo, ours: set[int]) -> bool:
        return (info.pid, info.start) in found

    stopped: list[int] = []
    for _ in range(HELD_PASSES):
        procs = proctree.walk(held, prune=lambda info: held.get(info.pid, info.start) != info.start)
        fresh = [pid for pid, info in procs.items() if (pid, info.start) not in found]
        if not fresh:
            break
        found.update((pid, procs[pid].start) for pid in fresh)
        stopped += proctree.send_checked(fresh, signal.SIGSTOP, check)
    return set(proctree.send_checked(stopped, signal.SIGKILL, check))


def _not_its(directory: str, entry: bytes, killed: AbstractSet[int] = frozenset()) -> list[int]:
    """The processes in the cgroup `directory`, or below it, that the kill left as not the
    attempt's: another task's (they carry another marker) or another user's (but those
    `killed`, still leaving it). The checkpoint (the task may write it) may name a live
    task's marker, whose cgroup that is."""
    from executor.procs import cgroupwalk  # only for a lost attempt's cgroup

    pids = cgroupwalk.pids(directory)
    me = os.geteuid()
    return sorted(p for p in pids if p not in killed and (info := proctree.read_proc(p)) is not None
                  and (proctree.other_task(info.environ, entry) or proctree.real_uid(p) not in (me, None)))


def _remove_lost(directory: str, others: list[int]) -> str:
    if others:  # neither those below it removed, nor a wait on it
        return (f"left {directory} alone: another task's or another user's process(es) are in it: "
                f"{' '.join(map(str, others))}")
    from executor.procs import cgrouplost  # (loaded by `_end` already)

    said = cgrouplost.remove_emptied(directory, CGROUP_SECS)
    if said == cgrouplost.ALREADY_GONE:
        return f"its cgroup {directory} was already gone (removed first by another: its own watchdog)"
    return said or f"removed its cgroup {directory}"


def end_lost_attempts(sandbox: Path, pinned: str = "", header_bytes: int = 0) -> list[LostAttempt]:
    """Kill what the sandbox's unfinished attempts left running (call holding its lock);
    the attempts that had any left, each with the pids killed. `pinned`: the `.stoker`
    directory the lock was taken in (`HostSession.pinned`): a checkpoint or a held list in
    another (one a leftover put in its place) names nothing. `header_bytes`: a line of up to
    that is read too, past the readers' 1 MiB (`header_bytes()`, of the re-run's own job)."""
    try:
        attempts = _attempts(iter_records(sandbox, pinned=pinned, max_line=max(header_bytes, MAX_LINE_BYTES)))
    except OSError:  # no checkpoint, or one that cannot be read
        return []
    ended = (_end(sandbox, pinned, number, header) for number, header, state in attempts
             if _unfinished(header, state))
    return [lost for lost in ended if lost is not None]


def header_bytes(processes: Iterable[str], ports: Mapping[str, int]) -> int:
    """The most a header of a task of `processes` and `ports` takes: what they take in JSON,
    and the readers' 1 MiB for the rest (paths and names: a few KiB). A re-run reads its lost
    attempts' headers up to it, so one of the same job is read past the readers' cap (was: one
    of 10,000 processes was skipped, the attempt unseen, and what its SIGKILLed supervisor left
    ran on beside the re-run's), at no more memory than the job's own plan holds."""
    return MAX_LINE_BYTES + len(json.dumps(list(processes))) + len(json.dumps(dict(ports)))


def _end(sandbox: Path, pinned: str, number: int, header: rec.HeaderRecord) -> LostAttempt | None:
    """End one lost attempt: its user's marked processes, its held ones, its cgroup."""
    from executor.procs import cgrouplost  # a re-run after a finished attempt goes without

    entry = f"{TASK_MARKER}={header.marker}".encode()
    me = os.geteuid()
    marked = {pid: proctree.real_uid(pid) for pid in sorted(proctree.scan_markers((entry,)))}
    mine = [p for p, uid in marked.items() if uid == me]
    places = cgrouplost.lost_cgroups(header.marker, mine, header.cgroup)
    older = cgrouplost.older_cgroups(header.marker, mine)
    inside = cgrouplost.holding(places)  # another user's there is the task's: a daemon that changed user
    killed = proctree.kill_until_gone(proctree.Scope(markers=(entry,), uid=me, inside=inside))
    killed |= _kill_held(sandbox, header.marker, pinned)
    thawed = tuple(f"thawed its cgroup {d}, an older Stoker's left frozen (those killed in it die only "
                   "once thawed; a later start's sweep removes it once empty)" for d in cgrouplost.thaw_older(older))
    foreign = tuple((pid, user_name(uid)) for pid, uid in marked.items()
                    if uid not in (me, None) and pid not in killed)  # (killed as held: a root list's)
    removed = thawed + tuple(_remove_lost(d, _not_its(d, entry, killed)) for d in sorted(places))
    if not (killed or removed or foreign):
        return None
    return LostAttempt(number, header.supervisor_pid, tuple(sorted(killed)), removed, foreign)
