"""Which processes are provably the task's, found in /proc, and signalled by pidfd.

Owns: reading `/proc/PID/stat`, `/proc/PID/environ` and the children lists
(`/proc/PID/task/TID/children`: `walk` visits a subtree, parents first; `scan` and
`scan_markers` visit every process on the host), the rule that decides which live
processes belong to a run or a task (`select`), and delivering signals so that a pid reused
between the look and the signal never receives it (`send`, `send_checked` with the caller's
rule). Under `select`, a process is ours when, at that time, it

- is in the process group of a run whose top process we have not reaped yet (the unreaped
  leader keeps the group id from being reused),
- descends from such a top process (its parent chain reaches the top pid), or
- carries one of the given marker entries (`STOKER_TASK_MARKER=...` /
  `STOKER_RUN_MARKER=...`) in its environment, which every task process inherits (and,
  with `Scope.uid`, runs as that real uid, or is where `Scope.inside` says only the task
  could have put it: a re-run's kill by a checkpoint's marker, which any user may copy into
  a process of theirs).

Every signal goes through a pidfd opened first and re-checked against the same rule
afterwards, so the pidfd provably names the process we judged (where a seccomp profile or
an old kernel denies pidfds, by kill() once the start time or pidfd says it is still there:
`kill_checked`); a signal a stopped process could not act on (SIGTERM) is followed by
SIGCONT (`wakes`). Delivering the one signal is `executor/procs/pidsignal.py`'s. Which processes are looked at (the task's subtree, or the host), and the
rule for unclaimed ones, are `executor/procs/containment.py`'s. Whether a process lives
(zombies count as gone and are never selected), and waiting for exits by pidfd, are
`executor/procs/pidsignal.py`'s. Nothing here raises for a process that vanished or a /proc file that cannot
be read (such processes are skipped), and this module never signals a pid it cannot prove
is ours. No logging here: callers log what they did.

Linux only. Used by the containment; the watchdog has its own tiny `/bin/sh` copy of the
marker rule.
"""
from __future__ import annotations

import _thread
import os
import signal
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence

import attrs

from executor.procs.pidsignal import (
    alive_as,
    kill_checked,
    pidfd_signal,
    read_environ,
    read_small,
    read_stat,
    settled_environ,
    signal_group,
    wakes,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from executor.procs.spawn import Child

_ENVIRON_CHUNK = 65536


@attrs.frozen(slots=True)
class ProcInfo:
    pid: int
    ppid: int
    pgrp: int
    environ: bytes  # raw NUL-separated entries; b"" when unreadable
    start: int = 0  # start time (clock ticks after boot): with the pid, names one process
    hidden: bool = False  # its environ may not be read: not dumpable, or another user's


@attrs.frozen(slots=True)
class Scope:
    """What counts as ours for one call."""

    markers: tuple[bytes, ...] = ()  # full environ entries, e.g. b"STOKER_TASK_MARKER=ab12"
    live_groups: frozenset[int] = frozenset()  # process groups whose leader is unreaped
    live_tops: frozenset[int] = frozenset()  # unreaped run top pids (their descendants count)
    uid: int | None = None  # a marker claims only processes of this real uid (None: any)
    # ... or, of another uid, those `inside` says are where only the task put them (its cgroup)
    inside: Callable[[int], bool] | None = None


def run_scope(children: Sequence[Child], registered: frozenset[int], markers: tuple[bytes, ...],
              draining: bool) -> tuple[frozenset[int], Scope]:
    """The live runs' groups (those of `children` still registered: their leaders unreaped),
    and the scope of their trees: `markers`, those groups, and with `draining` (a walk, not
    a host-wide scan) the draining runs' groups too."""
    live = frozenset(c.pid for c in children if c.pid in registered)
    drained = frozenset(c.pid for c in children if c.draining) if draining else frozenset()
    return live, Scope(markers=markers, live_groups=live | drained, live_tops=live)


def read_proc(pid: int) -> ProcInfo | None:
    """One process's facts, or None when it is gone or a zombie."""
    stat = read_stat(pid)
    if stat is None:
        return None
    try:
        environ, hidden = read_environ(pid, _ENVIRON_CHUNK), False  # not one read mid-exec
    except PermissionError:
        environ, hidden = b"", True
    except OSError:
        environ, hidden = b"", False
    return ProcInfo(pid=pid, ppid=stat[0], pgrp=stat[1], start=stat[2], environ=environ, hidden=hidden)


def hidden_child(pid: int) -> ProcInfo | None:
    """A child of this process that /proc does not show: mounted `hidepid=2` (a container's,
    a hardened host's), /proc hides from a Stoker that is not root each process it may not
    ptrace, one that is not dumpable (ssh-agent) or another user's (a setuid program), though
    its pid is in this process's children list. Its group is `getpgid`'s; its start and
    environment are unknown (start 0, hidden). None when /proc shows it, or it is gone."""
    if os.path.exists(f"/proc/{pid}"):
        return None  # shown (a zombie, say): read_proc's to judge
    try:
        pgrp = os.getpgid(pid)
    except OSError:
        return None
    return ProcInfo(pid=pid, ppid=os.getpid(), pgrp=pgrp, environ=b"", hidden=True)


def children(pid: int, leader_only: bool = False, also: Iterable[int] = ()) -> list[int]:
    """The children of `pid` (every thread's: /proc/PID/task/TID/children; or only its main
    thread's, where the kernel puts the orphans a subreaper adopts, and those of the threads
    `also` names); [] when gone."""
    if leader_only:
        return [int(x) for x in _main_children(pid).split()] + [
            int(x) for tid in also if tid != pid for x in read_small(f"/proc/{pid}/task/{tid}/children", 65536).split()]
    return children_and_threads(pid)[0]


def children_and_threads(pid: int) -> tuple[list[int], bool]:
    """The children of `pid` (every thread's), and whether it has several threads. One of a
    single thread (its task directory's link count 3: ".", ".." and the thread's) has its
    children read by its own tid, not the directory listed (an open and two getdents fewer,
    100 times in `take_in`); a thread started after the stat has no children yet."""
    try:
        if os.stat(f"/proc/{pid}/task").st_nlink == 3:
            return [int(x) for x in read_small(f"/proc/{pid}/task/{pid}/children", 65536).split()], False
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return [], False
    return [int(x) for tid in tids for x in read_small(f"/proc/{pid}/task/{tid}/children", 65536).split()], \
        len(tids) > 1


def _main_children(pid: int) -> bytes:
    """The children list of `pid`'s main thread. This process's own, where every orphan comes
    and which each run's exit reads before its leftover kill, is one pread of the file kept
    open (`_kept_list`): a seq_file is rendered anew at offset 0, and the main thread lives as
    long as the process, so its tid names no other thread; 1.5 us hot where an open, two reads
    and a close took 6. A list that one read may not hold whole (`_WHOLE_BELOW`) is read on
    to its end (`_pread_whole`); any other process's, or one the descriptor fails, by path."""
    fd = _kept_list(pid) if pid == os.getpid() else -1
    data = _pread_whole(fd) if fd >= 0 else None
    return data if data is not None else read_small(f"/proc/{pid}/task/{pid}/children", _LIST_CHUNK)


def _pread_whole(fd: int) -> bytes | None:
    """The whole of the seq_file open at `fd`, from offset 0 (None when a read fails): one
    pread for a short list, more until one reads nothing when the first may have stopped at
    the file's full buffer; by the kept descriptor, so even where no other can be opened."""
    try:
        data = os.pread(fd, _LIST_CHUNK, 0)
        if len(data) < _WHOLE_BELOW:
            return data
        chunks = [data]
        offset = len(data)
        while chunk := os.pread(fd, _LIST_CHUNK, offset):  # the kernel goes on from that offset
            chunks.append(chunk)
            offset += len(chunk)
    except OSError:
        return None
    return b"".join(chunks)


_LIST_CHUNK = 65536
# A seq_file read ends short of its size only at the end or at its full buffer (a page: 4096
# bytes or more, less the one pid that did not fit), whatever size was asked: 4,090 bytes may
# be the first ~680 orphans of a thousand. Shorter than half a page, a read is the whole list.
_WHOLE_BELOW = 2048
_kept = [-1, -1]  # (pid, fd): this process's main-thread children list, open; pid -1: not yet
_kept_lock = _thread.allocate_lock()


def _kept_list(pid: int) -> int:
    """The fd of this process's (`pid`'s) main-thread children list, opened at the first call
    (close-on-exec); -1 when it cannot be opened. A forked child's copy of its parent's is
    left alone (its number may be reused by then) and the child opens its own."""
    with _kept_lock:
        if _kept[0] != pid:
            try:
                fd = os.open(f"/proc/{pid}/task/{pid}/children", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return -1
            _kept[0], _kept[1] = pid, fd
        return _kept[1]


def children_listed() -> bool:
    """True when the kernel lists children in /proc (CONFIG_PROC_CHILDREN)."""
    return os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


def walk(roots: Iterable[int], prune: Callable[[ProcInfo], bool] = lambda info: False,
         *, adopted: bool = False) -> dict[int, ProcInfo]:
    """`roots` and every live descendant, parents before children, leaving out each process
    for which `prune` is true and its subtree. One pass: a child forked after its parent was
    read is not listed, so callers that must catch everything loop. `adopted`: the roots are
    this process's children, and one /proc hides is listed too (`hidden_child`)."""
    procs: dict[int, ProcInfo] = {}
    queue = deque(roots)
    firsts = frozenset(queue) if adopted else frozenset()
    while queue:
        pid = queue.popleft()
        if pid in procs:
            continue
        info = read_proc(pid) or (hidden_child(pid) if pid in firsts else None)
        if info is None or prune(info):
            continue
        procs[pid] = info
        queue.extend(children(pid))
    return procs


def pids() -> list[int]:
    """The pids /proc lists (every process's it shows; [] when it cannot be read)."""
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []


_pids = pids


def real_uid(pid: int) -> int | None:
    """The real uid of `pid` (/proc/PID/status: a setuid program keeps its caller's), or
    None when gone or unreadable."""
    for line in read_small(f"/proc/{pid}/status", 4096).splitlines():
        if line.startswith(b"Uid:"):
            fields = line.split()
            return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None
    return None


def scan() -> dict[int, ProcInfo]:
    """Every live, non-zombie process visible in /proc (one pass)."""
    procs: dict[int, ProcInfo] = {}
    for pid in _pids():
        info = read_proc(pid)
        if info is not None:
            procs[pid] = info
    return procs


def scan_markers(markers: tuple[bytes, ...]) -> dict[int, ProcInfo]:
    """Only the live processes carrying one of `markers` (one pass, about 4x cheaper): each
    environ first (one empty read again as `read_proc` does: mid-exec shows none; was missed in
    1 scan in 5 of a chain of execs), the stat on a match only: a zombie's environ is empty, so
    this finds what `select(scan(), Scope(markers=markers))` would. Each environ is looked up in
    a set of the markers: the observer asks for every LOST task's at once (1,000 cost one's)."""
    carries = marker_matcher(markers)
    procs: dict[int, ProcInfo] = {}
    for pid in _pids():
        environ = read_small(f"/proc/{pid}/environ", _ENVIRON_CHUNK) or settled_environ(pid, _ENVIRON_CHUNK)
        if environ and carries(environ):
            stat = read_stat(pid)
            if stat is not None:
                procs[pid] = ProcInfo(pid=pid, ppid=stat[0], pgrp=stat[1], start=stat[2],
                                      environ=environ)
    return procs


def marker_matcher(markers: Iterable[bytes]) -> Callable[[bytes], bool]:
    """`has_marker(environ, markers)` as one function of the environ whose cost does not grow
    with the number of markers: each occurrence of a marker's variable name (`NAME=`) that
    starts an entry is cut at its NUL and looked up in a set of the markers (no split of the
    whole environ: the supervisor's sweep, with one marker, on a host where hundreds of other
    tasks' processes carry a `STOKER_TASK_MARKER=`, must cost no more than one search). An
    entry without its NUL (the environ's last, cut short) is no entry, as for `has_marker`;
    a marker that is empty or holds a NUL (no real one) is left to `has_marker` itself."""
    wanted = frozenset(markers)
    odd = tuple(m for m in wanted if not m or b"\0" in m)
    names = {m[: m.find(b"=") + 1] or m for m in wanted if m not in odd}

    def carries(environ: bytes) -> bool:
        for name in names:
            at = environ.find(name)
            while at >= 0:
                if at == 0 or environ[at - 1] == 0:
                    end = environ.find(b"\0", at)
                    if end < 0:
                        break
                    if environ[at:end] in wanted:
                        return True
                at = environ.find(name, at + 1)
        return bool(odd) and has_marker(environ, odd)

    return carries


def has_marker(environ: bytes, markers: Iterable[bytes]) -> bool:
    for entry in markers:
        if environ.startswith(entry + b"\0") or (b"\0" + entry + b"\0") in environ:
            return True
    return False


def other_task(environ: bytes, own_entry: bytes) -> bool:
    """It carries another task's marker: a `STOKER_TASK_MARKER=` entry (`own_entry`'s
    variable) that is not `own_entry`."""
    prefix = own_entry.partition(b"=")[0] + b"="
    return any(entry.startswith(prefix) and entry != own_entry for entry in environ.split(b"\0"))


def claimed_directly(info: ProcInfo, holders: frozenset[int], live_markers: tuple[bytes, ...],
                     own_entry: bytes) -> bool:
    """The containment's claim on one process by itself (not by its parent's): a holder
    (registered pid, draining run's top) is it, its group or its parent, or it carries a
    live run's marker or another task's (`executor/procs/containment.py`)."""
    return (info.pid in holders or info.pgrp in holders or info.ppid in holders
            or has_marker(info.environ, live_markers) or other_task(info.environ, own_entry))


def _owned_directly(info: ProcInfo, scope: Scope) -> bool:
    return info.pgrp in scope.live_groups or (
        has_marker(info.environ, scope.markers) and (scope.uid is None or real_uid(info.pid) == scope.uid
                                                     or (scope.inside is not None and scope.inside(info.pid))))


def select(procs: Mapping[int, ProcInfo], scope: Scope) -> list[int]:
    """The pids in `procs` that are ours under `scope`, parents before children."""
    me = os.getpid()
    children: dict[int, list[int]] = {}
    for info in procs.values():
        children.setdefault(info.ppid, []).append(info.pid)
    chosen: dict[int, None] = {}  # insertion-ordered set
    queue = [p for p in scope.live_tops if p in procs]
    while queue:  # descendants of live top pids, breadth first
        pid = queue.pop(0)
        if pid in chosen:
            continue
        chosen[pid] = None
        queue.extend(children.get(pid, ()))
    for info in procs.values():
        if info.pid not in chosen and _owned_directly(info, scope):
            chosen[info.pid] = None
    chosen.pop(me, None)
    return list(chosen)


def _still_ours(info: ProcInfo, scope: Scope, ours: set[int]) -> bool:
    return (
        _owned_directly(info, scope)
        or info.pid in scope.live_tops
        or ((info.ppid in ours or info.ppid in scope.live_tops) and info.ppid != os.getpid())
    )


def send(pids: Iterable[int], sig: int, scope: Scope, proven: Iterable[int] = ()) -> list[int]:
    """Signal each pid that is still ours; returns the pids actually signalled.

    `pids` must come from `select` (parents first): a descendant is re-proven by its parent
    having been proven just before it (or being in `proven`, e.g. signalled with its group).
    """
    return send_checked(pids, sig, lambda info, ours: _still_ours(info, scope, ours), proven)


Check = Callable[[ProcInfo, set[int]], bool]


def send_checked(pids: Iterable[int], sig: int, still_ours: Check,
                 proven: Iterable[int] = (), refused: list[int] | None = None) -> list[int]:
    """`send` with the caller's rule: `still_ours(info, proven_so_far)` judges each process
    again after its pidfd is open; parents must come before their children. Those that
    refused the signal (EPERM: a setuid program's) are added to `refused`, if given."""
    ours = set(proven)
    sent = []
    for pid in pids:
        if _send_one(pid, sig, still_ours, ours, refused):
            ours.add(pid)
            sent.append(pid)
    return sent


def _send_one(pid: int, sig: int, still_ours: Check, ours: set[int], refused: list[int] | None = None) -> bool:
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    except OSError:
        pidfd = -1  # no pidfd support: fall back to kill() right after the re-check
    sent = False  # gone after `sig` (it acted on it, and was reaped, before the SIGCONT): sent
    try:
        info = read_proc(pid) or (hidden_child(pid) if pid in children(os.getpid()) else None)
        if info is None or not still_ours(info, ours):
            return False
        for one in (sig, signal.SIGCONT) if wakes(sig) else (sig,):
            if pidfd >= 0:
                pidfd_signal(pidfd, pid, one)
            elif not kill_checked(pid, one, lambda: bool(info.start) and not alive_as(pid, info.start)):
                return sent
            sent = True
        return True
    except ProcessLookupError:
        return sent
    except PermissionError:
        if refused is not None:
            refused.append(pid)
        return False
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def kill_until_gone(scope: Scope, max_passes: int = 8) -> set[int]:
    """SIGKILL everything ours, again while new pids keep appearing; returns the pids killed.

    `scope.live_groups` must be groups whose leader is unreaped (the caller's guarantee):
    they get one killpg each pass. Other processes are SIGSTOPped before the SIGKILL, so
    none can fork between our scan and its kill; a pass that finds nothing new ends the loop
    (processes already killed may still be dying).
    """
    seen: set[int] = set()
    killed: set[int] = set()
    for _ in range(max_passes):
        # Without live tops, group members need no scan (killpg reaches them): markers do.
        procs = scan() if scope.live_tops else scan_markers(scope.markers)
        fresh = [p for p in select(procs, scope) if p not in seen]
        groups = {g for g in scope.live_groups if signal_group(g, signal.SIGKILL)}
        if not fresh:
            break
        seen.update(fresh)
        by_group = [p for p in fresh if procs[p].pgrp in groups]
        others = [p for p in fresh if procs[p].pgrp not in groups]
        stopped = send(others, signal.SIGSTOP, scope, proven=by_group)
        killed.update(by_group)
        killed.update(send(stopped, signal.SIGKILL, scope, proven=by_group))
    return killed


def kill_leftovers(top_pid: int, marker_entry: bytes) -> set[int]:
    """SIGKILL what is left of an exited top process's tree: its group and its marker.

    Call only while the top's zombie is unreaped (it keeps the group id from reuse).
    """
    return kill_until_gone(Scope(markers=(marker_entry,), live_groups=frozenset((top_pid,))))
