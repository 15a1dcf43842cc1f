"""Which processes are the task's, how they are signalled, and what keeps them contained
when the Stoker process is gone.

Owns, for one supervisor: the list of the task's processes, the "unclaimed" rule, the
leftover kill after each exit, the signals of `signal_run(s)` / `signal_all`, the kill of
whatever is left at close (`kill_all`), and the task's cgroup (`executor/procs/cgroups.py`)
from start to removal.

The whole of it is docs/design.md §5. In short: **while Stoker lives, the task is its
subtree** (Stoker is a child subreaper), found by walking down from Stoker's children
(`/proc/PID/task/TID/children`), so the cost follows the task, not the host; children that
existed before the supervisor started (`foreign`) are not the task's. In that subtree a
process is *claimed* when it is a registered child (a run's or a command's top, a watchdog),
is in the process group of one (or of a draining run, `draining.py`), descends from one,
carries the marker of a live or draining run or command of this task or another task's
marker, or descends from a claimed process; it is *kept* when it is a daemon an ended run
left (`daemons.py`: outside the run's group as its top exited; by pid, by that run's marker,
or descending from a kept one), or one whose environment may not be read (not dumpable:
no run can be told from its); everything else is *unclaimed*: a leftover of a health
command, or an orphan that cleared its environment.

**When a run's top exits 0 on its own** (on the reaper thread, its zombie holding its pid
and group id), what it left is kept (`run_ended`). **When a command's top exits, or a run's
that failed or that the task signalled**: one `killpg` of its group, then passes of walk,
SIGSTOP every unclaimed process, SIGKILL it, until a pass finds nothing new (a stopped
process cannot fork; a fork-hopper always has a live heir the next pass finds, within
`LEFTOVER_SECS`). Unclaimed processes are killed so after every exit, and with the task
(`signal_all`); kept ones with the task's stop (`signal_daemons`) and with the task.

**Without the subreaper**, or where the kernel does not list children, the rule is a full
/proc sweep (`proctree.py`) and a run's daemons are not kept apart. **After Stoker dies**
the watchdog kills through the cgroup, the task marker, and what it was handed by pid and
start time (`handover.py`).

Never raises out of its public methods; logs ERROR for adapter failures, naming the task.
"""
from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Container, Iterable, Sequence

from executor.logs import log_event
from executor.procs import orphanwalk, pidsignal, proctree
from executor.procs.cgrouplife import TaskCgroupLife
from executor.procs.cgroups import TaskCgroup, task_name
from executor.procs.daemons import KeptDaemons
from executor.procs.exitby import ExitBy
from executor.procs.handover import Handover, Sink
from executor.procs.proctree import ProcInfo, Scope
from executor.procs.reaper import Reaper
from executor.procs.spawn import TASK_MARKER, Child, RunChild

logger = logging.getLogger(__name__)

LEFTOVER_SECS = 1.0  # the longest a leftover kill keeps finding new processes
# A walk's result: the live processes (parents first), the registered pids, the zombie children.
Members = tuple[dict[int, ProcInfo], frozenset[int], set[int]]


class Containment:
    def __init__(self, *, reaper: Reaper, task_marker: str, label: str, cgroup_setting: str,
                 live_children: Callable[[], Sequence[Child]]) -> None:
        self._reaper, self._label, self._live_children = reaper, label, live_children
        self._entry = f"{TASK_MARKER}={task_marker}".encode()
        self._me = os.getpid()
        self._init = False  # a PID namespace's init: it adopts others' orphans (`strangers.py`)
        self._walk = False
        self._foreign: frozenset[tuple[int, int]] = frozenset()
        self._cg = TaskCgroupLife(reaper=reaper, label=label, setting=cgroup_setting)
        self._cg.take_early(task_name(task_marker))  # made and entered as `stoker run` loaded, if it was
        self._daemons = KeptDaemons()
        self._handover = Handover(self._daemons)
        self._retired = False  # `retire`d: its leftover kills kill nothing more

    @property
    def cgroup(self) -> TaskCgroup | None:
        """The task's cgroup, once this process is in it (waits for `enter`'s move)."""
        return self._cg.cgroup

    # ---- start and close ----

    def prepare(self, name: str, *, early: bool = False, inherited: frozenset[tuple[int, int]] = frozenset(),
                announce: Callable[[str, str], None] = lambda directory, how: None) -> None:
        """Note the children that are not the task's, make the task's cgroup (not entered
        yet), named to the watchdog by `announce` first. `early`: this process ran an early start, which
        forked nothing but the task's: every child it has is the task's (a daemon one of
        its runs left re-parents here before the supervisor exists) but those it had before
        its first fork, `inherited` ((pid, start): `sleep 1000 & exec stoker run`)."""
        self._me = os.getpid()
        self._init = self._me == 1
        if self._init:  # loaded now, as the task starts: an upgrade in place may leave it unloadable later
            from executor.procs import strangers  # noqa: F401  (an init's alone: others never load it)
        self._walk = self._reaper.subreaper and proctree.children_listed()
        if early:
            self._foreign = inherited
        elif self._walk:
            self._foreign = orphanwalk.children_now(self._me, self._registered())
        self._cg.make(name, announce)

    def enter(self, running: Sequence[int] = ()) -> None:
        """After the watchdog started: start moving this process into the cgroup
        (`cgrouplife.py`); every use of this class waits for the move."""
        self._cg.enter(running, self._foreign)

    def settle(self) -> None:
        """Wait until the move `enter` started is over (at once when there is none)."""
        self._cg.settle()

    @property
    def mechanism(self) -> str:
        return self.cgroup.place.kind.value if self.cgroup is not None else "fallback"

    def describe(self) -> str:
        """The mechanism in force, in words (the checkpoint header and the start log line)."""
        text = self._cg.describe()
        if not self._walk:
            text += ("; Stoker is not a subreaper or the kernel lists no children, so leftovers "
                     "are found by /proc scans, and unmarked daemons are not found")
        return text

    def watchdog_cgroup(self) -> tuple[str, str, str]:
        return self._cg.for_watchdog()

    def hand_over_to(self, sink: Sink) -> None:
        """Give `sink` (the watchdog's keeper) the task's orphans and daemons, and each change."""
        self._handover.to(sink)

    def look(self) -> None:
        """Note the orphans this process has now, for the watchdog (`handover.py`): one read of
        its children list, and of the facts of each orphan not known yet."""
        if not self._walk:
            return
        kids = proctree.children(self._me, leader_only=True)
        with self._reaper.lock:
            registered = self._reaper.registered()
        known, found = self._handover.orphans(), {}
        for pid in kids:
            if pid in registered:
                continue
            start = known.get(pid)
            if start is None:
                info = proctree.read_proc(pid)
                if info is None or self._is_foreign(info) or proctree.other_task(info.environ, self._entry):
                    continue
                start = info.start
            found[pid] = start
        self._handover.saw(found)

    def orphan_reaped(self) -> None:
        self._handover.prune()

    def held(self) -> dict[int, int]:
        return self._handover.handed()

    def close(self, watchdog: int | None = None, within_secs: float | None = None,
              stuck: frozenset[int] = frozenset()) -> bool:
        """Leave, kill and remove the cgroup; False when this process could not leave it (the
        watchdog must then). `TaskCgroupLife.close` says what each argument is: `stuck` is
        what `kill_all` left."""
        return self._cg.close(watchdog, within_secs, stuck)

    def retire(self) -> None:
        """The supervisor closed: a run of it that dies later (D state) kills no unclaimed process:
        this process's unregistered children are not the task's then (one forked since)."""
        self._retired = True

    @property
    def closed(self) -> TaskCgroupLife:
        """How `close` left the cgroup: `cut_at_close`, `busy_at_close`, `stuck_at_close`."""
        return self._cg

    # ---- who is ours ----

    def _members(self, skip_registered: bool, skip: frozenset[int] = frozenset(), siblings: bool = False) -> Members:
        """The task's live processes (Stoker's subtree less foreign children and `skip`),
        parents first; the registered pids; and the unregistered children that are zombies.
        Children are listed before the registry is read, so every child this process forked
        and listed is registered by then (fork and registration happen together under the
        reaper's lock). With `skip_registered`, only orphans are wanted, and the kernel gives
        every orphan to a subreaper's main thread: only its list is read (a tenth of the cost
        of every thread's); it is read again after a walk that had a root to walk (`orphanwalk.py`;
        with none, an orphan that comes after this read is the next look's). `siblings`: the
        forking threads' lists too, where a run's `clone(CLONE_PARENT)` child is, never an orphan."""
        if not self._walk:
            with self._reaper.lock:
                return proctree.scan(), self._reaper.registered(), set()
        kids = proctree.children(self._me, leader_only=skip_registered,
                                 also=self._reaper.fork_threads() if siblings else ())
        registered = self._registered()
        roots = [k for k in kids if k not in skip and not (skip_registered and k in registered)]
        procs, roots, registered = orphanwalk.walk(self._me, roots, self._registered, self._is_foreign, skip,
                                                   self._label)
        foreign = {pid for pid, _ in self._foreign}
        dead = {k for k in roots if k not in procs and k not in registered and k not in foreign}
        self._handover.saw({k: procs[k].start for k in roots if k in procs and k not in registered
                            and not proctree.other_task(procs[k].environ, self._entry)})
        return procs, registered, dead

    def _registered(self) -> frozenset[int]:
        with self._reaper.lock:
            return self._reaper.registered()

    def _is_foreign(self, info: ProcInfo) -> bool:
        """A child this process had before the supervisor started, or, as a PID namespace's
        init, an orphan that is not the task's (`strangers.py`: what `docker exec` left)."""
        if info.ppid != self._me:
            return False
        if not self._init or (info.pid, info.start) in self._foreign:
            return (info.pid, info.start) in self._foreign
        from executor.procs.strangers import is_stranger  # loaded by `prepare` already

        with self._reaper.lock:
            registered = self._reaper.registered()
        return is_stranger(info, registered, self._cg.cgroup)

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

    def _unclaimed_and_kept(self, procs: dict[int, ProcInfo], registered: frozenset[int]) -> tuple[list[int], list[int]]:
        """The unclaimed processes of `procs` and the kept ones, each parents first."""
        if not self._walk or not procs:  # a host-wide scan: an unmarked process may be anyone's
            return [], []  # (none: a run's usual exit; the live runs' markers cost one each)
        out, daemons, hidden = self._daemons.sort(procs.values(), self._holders(registered),
                                                  self._live_markers(registered), self._entry)
        if hidden:
            log_event(logger, logging.INFO, "daemons_kept", task=self._label, pids=" ".join(map(str, hidden)),
                      reason="their environment may not be read (not dumpable, or another user's), so "
                             "no run can be told from theirs; they are stopped with the task")
        if daemons:
            self._handover.changed()
        return out, daemons

    def _still_unclaimed(self, members: Iterable[int], *, kept: bool | None = False) -> proctree.Check:
        """The re-check after each pidfd is open: still in our subtree (a child of this
        process, of a member just walked, or of one just signalled), not claimed, and kept
        (`kept` True), not kept (False) or either (None)."""
        walked = frozenset(members)

        def check(info: ProcInfo, ours: set[int]) -> bool:  # (`retire`d: asked after a fork since)
            if self._retired or (info.ppid != self._me and info.ppid not in walked and info.ppid not in ours):
                return False
            if self._is_foreign(info):
                return False
            with self._reaper.lock:
                registered = self._reaper.registered()
            if proctree.claimed_directly(info, self._holders(registered), self._live_markers(registered), self._entry):
                return False
            return kept is None or self._daemons.holds(info) is kept
        return check

    # ---- signals ----

    def top_exited(self, child: RunChild, drain: bool, succeeded: bool) -> int | None:
        """`child`'s top, a run's, exited (its zombie unreaped). With `drain` (the run was
        SIGTERMed) and something of it left, returns None and kills nothing: it drains.
        Otherwise `run_ended`. A SIGTERMed run with nothing left (a stop's usual case) is
        decided by one walk of the orphans, which is also the first pass of the unclaimed
        kill: its group is empty, so nothing dies and re-parents between the walk and that pass."""
        if not drain or not self._walk:
            if drain and self.has_leftovers(child):
                return None
            return self.run_ended(child, succeeded)
        members = self._members(skip_registered=True, skip=frozenset({child.pid}))
        if proctree.select(members[0], Scope(markers=(child.marker_entry,),
                                             live_groups=frozenset({child.pid}))):
            return None
        return self._kill_unclaimed(child.pid, members)

    def run_ended(self, child: RunChild, succeeded: bool) -> int:
        """A run's top exited. One that exited 0 on its own (a daemonizer: `nginx`, `apachectl
        start`, a double fork) hands what it left to the task, as Thermos does: its daemons
        (`daemons.py`), kept until the task stops. One that failed, or that the task signalled,
        takes it all with it (`kill_leftovers`), so that the next run starts clean. Returns
        how many processes were killed."""
        if child.signalled or not succeeded:
            return self.kill_leftovers(child.pid, child.marker_entry)
        if not self._walk:
            return 0  # its daemons are found by the task's marker, and die with the task
        members = self._members(skip_registered=True, skip=frozenset({child.pid}))
        procs, registered, _ = members
        left = [procs[p] for p in self._unclaimed_and_kept(procs, registered)[0]
                if KeptDaemons.left_by(procs[p], child.marker_entry, child.pid)]
        if left:
            self._daemons.keep(left, child.marker_entry)
            self._handover.changed()
            log_event(logger, logging.INFO, "daemons_kept", task=self._label, top=child.pid,
                      pids=" ".join(str(info.pid) for info in left),
                      reason="its run exited 0 and left them running; they are stopped with the task")
        return self._kill_unclaimed(child.pid, members)

    def kill_leftovers(self, top_pid: int, marker_entry: bytes) -> int:
        """A command's top, or a run's the task signalled, exited (its zombie unreaped): SIGKILL
        its group, then every unclaimed process until none is left; returns how many were
        killed. Call on the reaper thread (so no child of this process is reaped meanwhile).
        With its `clone(CLONE_PARENT)` siblings (`_members`); other exits do not read the fork
        threads' lists (N runs: N pids at each exit): an exit 0's sibling lives as a kept daemon
        does, until the task's stop, whose signal reads every thread's list."""
        proctree.signal_group(top_pid, signal.SIGKILL)
        if not self._walk:
            return len(proctree.kill_leftovers(top_pid, marker_entry))
        return self._kill_unclaimed(top_pid, siblings=True)

    def end_drain(self, child: Child, sigkilled: bool) -> int:
        """A draining run that the task SIGKILLed, or that ended (its processes gone), no
        longer claimed: kill what is left of it as after an exit, but by its marker only (its
        top is reaped: its group id may be reused), then every unclaimed process (an orphaned
        `setsid env -i` escape). Without the walk, a run that ended has nothing of its marker
        left (`has_leftovers` just scanned), and nothing else can be found. Call on the
        reaper thread."""
        if not self._walk:
            return len(proctree.kill_until_gone(Scope(markers=(child.marker_entry,)))) if sigkilled else 0
        return self._kill_unclaimed(child.pid)

    def _kill_unclaimed(self, top_pid: int, first: Members | None = None, siblings: bool = False) -> int:
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
                                       self._members(skip_registered=True, skip=frozenset(dead_seen), siblings=siblings))
            first = None
            fresh = [p for p in self._unclaimed_and_kept(procs, registered)[0] if (p, procs[p].start) not in seen]
            if not fresh and dead <= dead_seen:
                return killed
            seen.update((p, procs[p].start) for p in fresh)
            dead_seen |= dead
            check = self._still_unclaimed(procs)
            stopped = proctree.send_checked(fresh, signal.SIGSTOP, check)
            sent = proctree.send_checked(stopped, signal.SIGKILL, check)
            killed += len(sent)
            if not pidsignal.wait_exited({p: procs[p].start for p in sent}, deadline) or time.monotonic() >= deadline:
                log_event(logger, logging.ERROR, "leftovers_survive", task=self._label,
                          reason=f"unclaimed processes were still appearing or alive after "
                                 f"{LEFTOVER_SECS} s", consequence="they are killed with the task")
                return killed

    def signal(self, children: Sequence[Child], markers: tuple[bytes, ...], sig: int, *, whole_task: bool,
               skip: Container[int] = (), starts: dict[int, int] | None = None) -> list[int]:
        """`sig` to each process of the trees of `children` (group, descendants, `markers`), and
        with `whole_task` to every unclaimed one too, each once, but those in `skip` (SIGKILLed
        already); returns the pids signalled (their start times, as walked, into `starts`). Those
        outside the live groups go first: once a group's leader dies, the reaper kills that run's
        leftovers, and a count taken after that would miss them."""
        procs, registered, _ = self._members(skip_registered=False)
        live, scope = proctree.run_scope(children, registered, markers, self._walk)
        pids = proctree.select(procs, scope)
        by_group, done = [p for p in pids if procs[p].pgrp in live], [p for p in pids if p in skip]
        sent = proctree.send([p for p in pids if procs[p].pgrp not in live and p not in done], sig, scope,
                             proven=by_group + done)  # `done`: proven at their SIGKILL, alive as themselves
        if whole_task:  # and the task's daemons
            chosen = set(pids)
            unclaimed, kept = self._unclaimed_and_kept(procs, registered)
            extra = [p for p in unclaimed + kept if p not in chosen and p not in skip]
            sent += proctree.send_checked(extra, sig, self._still_unclaimed(procs, kept=None))
        with self._reaper.lock:  # the leader is unreaped while registered: no pid reuse
            for pgid in live:
                if self._reaper.is_registered(pgid):
                    proctree.signal_group(pgid, sig)
        sent = [p for p in by_group if p not in done] + sent
        if starts is not None:
            starts.update((p, procs[p].start) for p in sent)
        return sent

    def signal_task(self, sig: int) -> int:
        """`sig` to every process of the task, unclaimed ones included; returns how many."""
        return len(self.signal(self._live_children(), (self._entry,), sig, whole_task=True))

    def kill_all(self, within_secs: float, exit_by: ExitBy, held: frozenset[int] = frozenset()) -> frozenset[int]:
        """At close: SIGKILL the task and, at each exit (pidfd), what a walk finds new, until none
        is left but `held` (waited for already: a health command in D state), for `within_secs` or
        to `exit_by`'s time, set before or during it (`waking`); what is not gone then is named."""
        began = time.monotonic()
        with exit_by.waking() as wake, pidsignal.Exits() as exits:
            while True:
                self.signal(self._live_children(), (self._entry,), signal.SIGKILL, whole_task=True,
                            skip=exits, starts=(starts := dict[int, int]()))
                exits.add(starts)  # not one exited (its children re-parented), or its pid reused
                if not starts and not exits:  # what is left refused the signal: a setuid program's
                    if rest := self.pids(self._live_children()):
                        from executor.procs.unsignalled import report
                        report(self._label, rest)
                    return frozenset()
                while not exits.wait(end_at := began if exits and exits.left() <= held else
                                     exit_by.bound(began + within_secs, wake), wake):
                    if time.monotonic() >= end_at:
                        if not exits:  # all gone by the bound's end: none to name
                            return frozenset()
                        from executor.procs.unsignalled import close_incomplete
                        return close_incomplete(self._label, exits.left(), began)

    def pids(self, children: Sequence[Child]) -> set[int]:
        """The task's live processes: the trees of `children`, the task marker, unclaimed."""
        procs, registered, _ = self._members(skip_registered=False)
        scope = proctree.run_scope(children, registered, (self._entry,), self._walk)[1]
        unclaimed, kept = self._unclaimed_and_kept(procs, registered)
        return set(proctree.select(procs, scope)) | set(unclaimed) | set(kept)

    # ---- the daemons the runs left ----

    @property
    def daemons_kept(self) -> bool:
        """Whether a run left daemons (some may be gone since)."""
        return bool(self._daemons)

    def daemons_alive(self) -> bool:
        """Whether a daemon a run left still lives: by its pid, or else (its known processes
        gone: a daemonizer's middle child, say) by a walk for its run's marker, once."""
        if not self._walk or not self._daemons:
            return False
        alive = self._daemons.found_alive(lambda: self._kept_now()[0])
        self._handover.changed()
        return alive

    def signal_daemons(self, sig: int) -> int:
        """`sig` to every daemon the task's runs left (one walk: whether they live is the
        owner's question, `daemons_alive`, asked just before); returns how many."""
        if not self._walk or not self._daemons:
            return 0
        kept, procs = self._kept_now()
        return self._daemons.signal(kept, sig, self._still_unclaimed(procs, kept=True), self._label)

    def _kept_now(self) -> tuple[list[int], dict[int, ProcInfo]]:
        """One walk: the kept processes found (parents first), and every process walked."""
        procs, registered, _ = self._members(skip_registered=False)
        return self._unclaimed_and_kept(procs, registered)[1], procs
