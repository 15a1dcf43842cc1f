"""Which processes are the task's, how they are signalled, and what keeps them contained
when the Stoker process is gone.

Owns, for one supervisor: the list of the task's processes, the "unclaimed" rule, the
leftover kill after each exit, the signals of `signal_run(s)` / `signal_all`, the kill of
whatever is left at close (`kill_all`), and the task's cgroup (`executor/procs/cgroups.py`)
from start to removal.

**While Stoker lives, the task is its subtree.** Stoker is a child subreaper: a process whose
parent dies is re-parented to it, so every process the task ever started stays a descendant
of the Stoker process, whatever it does to its session (`setsid`) or its environment
(`env -i`). The task's processes are found by walking down from Stoker's children
(`/proc/PID/task/TID/children`): the cost follows the task's size, not the host's. Children
that existed before the supervisor started (`foreign`) are not the task's; a process that
supervises tasks must fork nothing else (see `executor/procs/reaper.py`).

**Claimed and unclaimed.** In that subtree a process is *claimed* when it is a registered
child (a run's or a command's top, a watchdog: of any supervisor in the process), is in the
process group of one (or of a draining run, `executor/procs/draining.py`), descends from one,
carries the marker of a live or draining run or command of this task (`STOKER_RUN_MARKER`), carries another task's `STOKER_TASK_MARKER`, or descends from a
claimed process. Everything else is *unclaimed*: a leftover of an exited run or command, or
a daemon that left both its group and its marker and whose parent is gone (so it cannot be
traced to a run). Unclaimed processes are killed after every exit of a run or a command, and
with the task (`signal_all`).

**Leftovers** (`kill_leftovers`, on the reaper thread, while the exited top's zombie holds
its pid and group id): one `killpg` of its group, then passes of: walk the orphans' subtrees
(registered children are skipped: they are claimed), SIGSTOP every unclaimed process, then
SIGKILL it, until a pass finds nothing new. A stopped process cannot fork, and a process
that forks and exits in a loop always has a live heir in the subtree, which the next pass
finds (within `LEFTOVER_SECS`).

**Fallbacks.** When Stoker could not become a subreaper, or the kernel does not list
children, orphans re-parent elsewhere: the rule is then today's full /proc sweep (process
groups, descendants of live tops and markers, `executor/procs/proctree.py`), and unclaimed
processes cannot be found at all. `describe()` says which is in force.

**After Stoker dies** the watchdog kills through the cgroup when there is one (nothing can
leave it but root), and by the task marker otherwise.

Never raises out of its public methods; logs ERROR for adapter failures, naming the task.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from executor.logs import log_event
from executor.procs import cgroups, proctree
from executor.procs.cgroups import NoCgroup, TaskCgroup
from executor.procs.proctree import ProcInfo, Scope
from executor.procs.reaper import Reaper
from executor.procs.sandboxfs import describe_os_error
from executor.procs.spawn import TASK_MARKER, Child

logger = logging.getLogger(__name__)

LEFTOVER_SECS = 1.0  # the longest a leftover kill keeps finding new processes
CGROUP_KILL_SECS = 2.0  # for the cgroup's kill and removal at close
TAKE_IN_PASSES = 20  # moving an early start's runs in: passes until one finds nothing new
_TASK_PREFIX = f"{TASK_MARKER}=".encode()
# A walk's result: the live processes (parents first), the registered pids, the zombie children.
Members = tuple[dict[int, ProcInfo], frozenset[int], set[int]]


class Containment:
    def __init__(self, *, reaper: Reaper, task_marker: str, label: str, cgroup_setting: str,
                 live_children: Callable[[], Sequence[Child]]) -> None:
        self._reaper = reaper
        self._entry = _TASK_PREFIX + task_marker.encode()
        self._label = label
        self._setting = cgroup_setting
        self._live_children = live_children
        self._me = os.getpid()
        self._walk = False
        self._foreign: frozenset[tuple[int, int]] = frozenset()
        self._cgroup: TaskCgroup | None = None
        self._no_cgroup = "not started"
        self._settle_lock = threading.Lock()
        self._entering: threading.Thread | None = None  # the move into the cgroup, under way
        self._running: tuple[int, ...] = ()  # an early start's runs, moved in once it is over
        self._enter_error: OSError | None = None

    @property
    def cgroup(self) -> TaskCgroup | None:
        """The task's cgroup, once this process is in it (waits for `enter`'s move)."""
        self.settle()
        return self._cgroup

    # ---- start and close ----

    def prepare(self, name: str, *, early: bool = False) -> None:
        """Before the watchdog starts: note the children that are not the task's, make the
        task's cgroup (not entered yet). `early`: this process ran an early start, which
        forked nothing but the task's: every child it has is the task's (a daemon one of
        its runs left re-parents here before the supervisor exists)."""
        self._me = os.getpid()
        self._walk = self._reaper.subreaper and proctree.children_listed()
        if self._walk and not early:
            self._foreign = self._children_now()
        made = cgroups.create(name, self._setting)
        if isinstance(made, NoCgroup):
            self._no_cgroup = made.reason
        else:
            self._cgroup = made

    def enter(self, running: Sequence[int] = ()) -> None:
        """After the watchdog started: start moving this process into the cgroup. The move
        is the kernel's (it waits for an RCU grace period: milliseconds, all of it idle), so
        it runs on a thread while the caller goes on with the task's start (its registry
        entry, its checkpoint); `settle` waits for it, and so does every use of `cgroup`
        and of this class, so that every child is still born inside. On failure the task
        runs without one. `running`: the task's runs forked before (an early start's), moved
        in after it with everything they started meanwhile."""
        cg = self._cgroup
        if cg is None:
            return
        self._running = tuple(running)
        self._entering = threading.Thread(target=self._enter, args=(cg,), daemon=True,
                                          name=f"stoker-cgroup-enter {self._label}")
        try:
            self._entering.start()
        except RuntimeError:  # no thread to be had (a full pids cgroup): the move, here
            self._enter(cg)

    def _enter(self, cg: TaskCgroup) -> None:
        try:
            cg.enter()
        except OSError as e:
            self._enter_error = e

    def _take_in(self, cg: TaskCgroup, roots: tuple[int, ...]) -> None:
        """Move `roots` and their descendants into `cg`, parents first, in passes until one
        finds nothing new (a child forked by a parent not yet moved is found by the next
        pass; one forked after is born inside). One that cannot be moved stays the task's
        by its subtree and marker, and is logged. Only pids are read (no `ProcInfo`): what a
        walk allocates here is left as holes under the supervisor's state (0.3 MiB for 100)."""
        moved: set[int] = set()
        for _ in range(TAKE_IN_PASSES):
            found, queue = [], list(roots)
            while queue:
                pid = queue.pop()
                if pid not in moved:
                    found.append(pid)
                queue.extend(proctree.children(pid))
            if not found:
                return
            for pid in found:
                moved.add(pid)
                try:
                    if not cg.take_in(pid):
                        continue  # gone meanwhile
                except OSError as e:
                    log_event(logger, logging.ERROR, "cgroup_move_failed", task=self._label, pid=pid,
                              cgroup=cg.directory, error=describe_os_error(e),
                              consequence="it is contained by its subtree and marker only")

    def settle(self) -> None:
        """Wait until the move `enter` started is over (at once when there is none)."""
        with self._settle_lock:
            entering, self._entering = self._entering, None
            if entering is None:
                return
            if entering.ident is not None:  # not done here, on the caller's thread
                entering.join()
            cg, error = self._cgroup, self._enter_error
            if error is not None and cg is not None:
                self._no_cgroup = f"cannot move the supervisor into {cg.directory}: {describe_os_error(error)}"
                cgroups.discard(cg)
                self._cgroup = None
            elif cg is not None and self._running:
                # here, not on the mover's thread: a walk there left 0.3 MiB (100 runs) behind;
                # with the runs, the daemons they left that re-parented here meanwhile
                with self._reaper.lock:
                    registered = self._reaper.registered()
                orphans = [pid for pid in proctree.children(self._me) if pid not in registered]
                self._take_in(cg, self._running + tuple(orphans))
            self._running = ()

    @property
    def mechanism(self) -> str:
        return self.cgroup.place.kind.value if self.cgroup is not None else "fallback"

    def describe(self) -> str:
        """The mechanism in force, in words (the checkpoint header and the start log line)."""
        if self.cgroup is not None:
            text = self.cgroup.describe()
        else:
            text = f"process groups, task markers and the subreaper (no cgroup: {self._no_cgroup})"
        if not self._walk:
            text += ("; Stoker is not a subreaper or the kernel lists no children, so leftovers "
                     "are found by /proc scans, and unmarked daemons are not found")
        return text

    def watchdog_cgroup(self) -> tuple[str, str, str]:
        """(directory, how, home) for the watchdog: home only when it starts inside the
        cgroup (a restart), so that it moves itself out first."""
        cg = self.cgroup
        if cg is None:
            return "", "", ""
        return cg.directory, cg.how, cg.home.directory if cg.entered else ""

    def close(self) -> bool:
        """Leave, kill and remove the cgroup. False when this process could not leave it:
        the watchdog must then do it once this process has exited."""
        cg = self.cgroup
        if cg is None:
            return True
        try:
            cg.leave()
        except OSError as e:
            log_event(logger, logging.ERROR, "cgroup_leave_failed", task=self._label,
                      cgroup=cg.directory, error=describe_os_error(e),
                      consequence="the watchdog kills and removes it when this process exits")
            return False
        problem = cg.kill_and_remove(CGROUP_KILL_SECS)
        cgroups.release(cg)
        self._cgroup = None
        self._no_cgroup = "closed"
        if problem is not None:
            log_event(logger, logging.ERROR, "cgroup_remove_failed", task=self._label,
                      cgroup=cg.directory, error=problem)
        return True

    # ---- who is ours ----

    def _children_now(self) -> frozenset[tuple[int, int]]:
        with self._reaper.lock:
            registered = self._reaper.registered()
        found = set()
        for pid in proctree.children(self._me):
            info = proctree.read_proc(pid) if pid not in registered else None
            if info is not None:
                found.add((pid, info.start))
        return frozenset(found)

    def _members(self, skip_registered: bool, skip: frozenset[int] = frozenset()) -> Members:
        """The task's live processes (Stoker's subtree less foreign children and `skip`),
        parents first; the registered pids; and the unregistered children that are zombies.
        Children are listed before the registry is read, so every child this process forked
        and listed is registered by then (fork and registration happen together under the
        reaper's lock). With `skip_registered`, only orphans are wanted, and the kernel gives
        every orphan to a subreaper's main thread: only its list is read (a tenth of the cost
        of every thread's)."""
        if not self._walk:
            with self._reaper.lock:
                return proctree.scan(), self._reaper.registered(), set()
        kids = proctree.children(self._me, leader_only=skip_registered)
        with self._reaper.lock:
            registered = self._reaper.registered()
        roots = [k for k in kids if k not in skip and not (skip_registered and k in registered)]
        procs = proctree.walk(roots, prune=self._is_foreign)
        foreign = {pid for pid, _ in self._foreign}
        dead = {k for k in roots if k not in procs and k not in registered and k not in foreign}
        return procs, registered, dead

    def _is_foreign(self, info: ProcInfo) -> bool:
        return info.ppid == self._me and (info.pid, info.start) in self._foreign

    def _other_task(self, environ: bytes) -> bool:
        """It carries a STOKER_TASK_MARKER that is not ours."""
        for entry in environ.split(b"\0"):
            if entry.startswith(_TASK_PREFIX) and entry != self._entry:
                return True
        return False

    def _claimed_directly(self, info: ProcInfo, registered: frozenset[int],
                          live_markers: tuple[bytes, ...]) -> bool:
        return (info.pid in registered or info.pgrp in registered or info.ppid in registered
                or proctree.has_marker(info.environ, live_markers)
                or self._other_task(info.environ))

    def _live_markers(self, registered: frozenset[int]) -> tuple[bytes, ...]:
        return tuple(c.marker_entry for c in self._live_children() if c.pid in registered or c.draining)

    def _holders(self, registered: frozenset[int]) -> frozenset[int]:
        """The registered pids and the draining runs' tops: what claims a process."""
        return registered | {c.pid for c in self._live_children() if c.draining}

    def has_leftovers(self, child: Child) -> bool:
        """Whether a live process is in `child`'s process group or carries its marker. Its top
        has exited, so whatever it left is an orphan, or below one, and orphans are this
        process's (a subreaper's) unregistered children: only they are walked, not every
        run's tree (a stop of N runs would walk N trees N times). Without the walk, a
        host-wide scan, by marker only."""
        procs, _, _ = self._members(skip_registered=True)
        groups = frozenset({child.pid}) if self._walk else frozenset()
        return bool(proctree.select(procs, Scope(markers=(child.marker_entry,), live_groups=groups)))

    def _unclaimed(self, procs: dict[int, ProcInfo], registered: frozenset[int]) -> list[int]:
        """The unclaimed processes of `procs` (parents first, as `procs` is ordered)."""
        if not self._walk:
            return []  # a host-wide scan: an unmarked process there may be anyone's
        markers, registered = self._live_markers(registered), self._holders(registered)
        claimed: set[int] = set()
        out = []
        for info in procs.values():
            if info.ppid in claimed or self._claimed_directly(info, registered, markers):
                claimed.add(info.pid)
            else:
                out.append(info.pid)
        return out

    def _still_unclaimed(self, members: Iterable[int]) -> proctree.Check:
        """The re-check after each pidfd is open: still in our subtree (a child of this
        process, of a member just walked, or of one just signalled) and still unclaimed."""
        walked = frozenset(members)

        def check(info: ProcInfo, ours: set[int]) -> bool:
            if info.ppid != self._me and info.ppid not in walked and info.ppid not in ours:
                return False
            if self._is_foreign(info):
                return False
            with self._reaper.lock:
                registered = self._reaper.registered()
            return not self._claimed_directly(info, self._holders(registered), self._live_markers(registered))
        return check

    # ---- signals ----

    def top_exited(self, child: Child, drain: bool) -> int | None:
        """`child`'s top exited (its zombie unreaped). With `drain` (the run was SIGTERMed)
        and something of it left, returns None and kills nothing: it drains. Otherwise as
        `kill_leftovers`. A SIGTERMed run with nothing left (a stop's usual case) is decided
        by one walk of the orphans, which is also the first pass of the unclaimed kill: its
        group is empty, so nothing dies and re-parents between the walk and that pass."""
        if not drain or not self._walk:
            if drain and self.has_leftovers(child):
                return None
            return self.kill_leftovers(child.pid, child.marker_entry)
        members = self._members(skip_registered=True, skip=frozenset({child.pid}))
        if proctree.select(members[0], Scope(markers=(child.marker_entry,),
                                             live_groups=frozenset({child.pid}))):
            return None
        return self._kill_unclaimed(child.pid, members)

    def kill_leftovers(self, top_pid: int, marker_entry: bytes) -> int:
        """A run's or command's top exited (its zombie unreaped): SIGKILL its group, then every
        unclaimed process until none is left; returns how many were killed. Call on the
        reaper thread (so no child of this process is reaped meanwhile)."""
        proctree.signal_group(top_pid, signal.SIGKILL)
        if not self._walk:
            return len(proctree.kill_leftovers(top_pid, marker_entry))
        return self._kill_unclaimed(top_pid)

    def end_drain(self, child: Child) -> int:
        """A draining run the task SIGKILLed, no longer claimed: kill what is left of it as
        after an exit, but by its marker only (its top is reaped: its group id may be
        reused), then every unclaimed process. Call on the reaper thread."""
        if not self._walk:
            return len(proctree.kill_until_gone(Scope(markers=(child.marker_entry,))))
        return self._kill_unclaimed(child.pid)

    def _kill_unclaimed(self, top_pid: int, first: Members | None = None) -> int:
        """Passes until one finds no new unclaimed process and no new zombie child. Between
        passes, the processes just killed are waited for (pidfd), so that their children
        have been re-parented to this process before the next pass lists its children; and
        a child that died on its own since the last pass may have left an heir there too (a
        fork-hopper's next generation). Zombie children stay listed until the reaper (this
        thread) reaps them, so "new" is by pid."""
        deadline = time.monotonic() + LEFTOVER_SECS
        seen: set[tuple[int, int]] = set()
        dead_seen = {top_pid}
        killed = 0
        while True:
            procs, registered, dead = (first if first is not None else
                                       self._members(skip_registered=True, skip=frozenset(dead_seen)))
            first = None
            fresh = [p for p in self._unclaimed(procs, registered) if (p, procs[p].start) not in seen]
            if not fresh and dead <= dead_seen:
                return killed
            seen.update((p, procs[p].start) for p in fresh)
            dead_seen |= dead
            check = self._still_unclaimed(procs)
            stopped = proctree.send_checked(fresh, signal.SIGSTOP, check)
            sent = proctree.send_checked(stopped, signal.SIGKILL, check)
            killed += len(sent)
            if not proctree.wait_exited(sent, deadline) or time.monotonic() >= deadline:
                log_event(logger, logging.ERROR, "leftovers_survive", task=self._label,
                          reason=f"unclaimed processes were still appearing or alive after "
                                 f"{LEFTOVER_SECS} s", consequence="they are killed with the task")
                return killed

    def signal(self, children: Sequence[Child], markers: tuple[bytes, ...], sig: int,
               *, whole_task: bool) -> int:
        """`sig` to each process of the trees of `children` (group, descendants, `markers`),
        and with `whole_task` to every unclaimed process too, each exactly once; returns how
        many. Processes outside the live groups go first: once a group's leader dies, the
        reaper kills that run's leftovers, and a count taken after that would miss them."""
        procs, registered, _ = self._members(skip_registered=False)
        live = frozenset(c.pid for c in children if c.pid in registered)
        # a draining run's group, its leader reaped: only among this process's own subtree
        draining = frozenset(c.pid for c in children if c.draining and self._walk)
        scope = Scope(markers=markers, live_groups=live | draining, live_tops=live)
        pids = proctree.select(procs, scope)
        by_group = [p for p in pids if procs[p].pgrp in live]
        others = [p for p in pids if procs[p].pgrp not in live]
        sent = proctree.send(others, sig, scope, proven=by_group)
        if whole_task:
            chosen = set(pids)
            extra = [p for p in self._unclaimed(procs, registered) if p not in chosen]
            sent += proctree.send_checked(extra, sig, self._still_unclaimed(procs))
        with self._reaper.lock:  # the leader is unreaped while registered: no pid reuse
            for pgid in live:
                if self._reaper.is_registered(pgid):
                    proctree.signal_group(pgid, sig)
        return len(by_group) + len(sent)

    def signal_task(self, sig: int) -> int:
        """`sig` to every process of the task, unclaimed ones included; returns how many."""
        return self.signal(self._live_children(), (self._entry,), sig, whole_task=True)

    def kill_all(self, within_secs: float) -> None:
        """At close: SIGKILL every process of the task until none is left, for at most
        `within_secs` (what is still alive then is logged)."""
        deadline = time.monotonic() + within_secs
        while True:
            left = self.signal_task(signal.SIGKILL)
            if left == 0:
                return
            if time.monotonic() >= deadline:
                log_event(logger, logging.ERROR, "close_incomplete", task=self._label,
                          reason=f"{left} processes were still alive {within_secs} s "
                                 f"after the first SIGKILL")
                return
            time.sleep(0.005)  # SIGKILLed processes need a moment to become zombies

    def pids(self, children: Sequence[Child]) -> set[int]:
        """The task's live processes: the trees of `children`, the task marker, unclaimed."""
        procs, registered, _ = self._members(skip_registered=False)
        live = frozenset(c.pid for c in children if c.pid in registered)
        scope = Scope(markers=(self._entry,), live_groups=live, live_tops=live)
        return set(proctree.select(procs, scope)) | set(self._unclaimed(procs, registered))
