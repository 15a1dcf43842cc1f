"""The daemons a task's runs left: what a run that exited 0 on its own left running, kept
alive after it, as Thermos keeps a daemonizer's daemon.

A run's top exits 0: a launcher that daemonized (`setsid` and a double fork, as `nginx`,
`apachectl start` or a `daemon.py` do), whose daemon may not even have left the run's
process group yet. What it left is the task's from then on (`containment.run_ended`): this
set keeps it (by pid and start time) and the run's marker (`STOKER_RUN_MARKER`), which the
daemon's own children inherit, so that they are kept too. (A run that failed, or that the
task signalled, takes everything it left with it.) Kept processes are not leftovers (no exit kills
them); they are stopped with the task (`Containment.signal_daemons`: SIGTERM with the regular
processes, SIGKILL at the end of the grace; the stop waits for them) and killed with it.
One that refuses a signal (EPERM: a setuid program that took another user's id, under a
supervisor that is not root) is `refused`: still kept (no exit takes it for a leftover), but
no longer waited for nor signalled: no grace would end it.

`sort` applies the containment's claim rule to a walk's processes: unclaimed, kept, newly
kept. Thread-safe: runs end on the reaper thread, the owner asks `alive` on its own.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from executor.procs import pidsignal, proctree
from executor.procs.proctree import ProcInfo


class KeptDaemons:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pids: dict[int, int] = {}  # pid → start time
        self._markers: tuple[bytes, ...] = ()  # the run markers of the runs that left them
        self._refused: dict[int, int] = {}  # pid → start time: kept, never waited for

    def __bool__(self) -> bool:
        return bool(self._pids) or bool(self._markers)

    def forget(self) -> None:
        """No process of theirs is left: none can carry their markers again."""
        with self._lock:
            self._pids.clear()
            self._markers = ()  # (the refused ones stay kept: alive, just not waited for)

    def keep(self, infos: list[ProcInfo], run_marker_entry: bytes) -> None:
        """Keep `infos`, processes an ended run left outside its group; its marker too, when
        one of them carries it."""
        with self._lock:
            for info in infos:
                self._pids[info.pid] = info.start
            if run_marker_entry not in self._markers and any(
                    proctree.has_marker(info.environ, (run_marker_entry,)) for info in infos):
                self._markers = (*self._markers, run_marker_entry)

    def add(self, info: ProcInfo) -> bool:
        """Keep `info` too: a kept daemon's child, so that it outlives its parent, or a
        process whose environment may not be read; False when it was kept already."""
        with self._lock:
            new = self._pids.get(info.pid) != info.start
            self._pids[info.pid] = info.start
            return new

    def refuse(self, pids: list[int]) -> None:
        """These kept processes refused a signal: kept, and waited for no more."""
        with self._lock:
            for pid in pids:
                if (start := self._pids.pop(pid, None)) is not None:
                    self._refused[pid] = start

    def waited_for(self, pids: list[int]) -> list[int]:
        """Those of `pids` (kept ones, as `holds` found them) that did not refuse a signal: a
        refusal is by pid and start time, forgotten once `holds` sees its pid as another process."""
        with self._lock:
            return [pid for pid in pids if pid not in self._refused] if self._refused else pids

    def holds(self, info: ProcInfo) -> bool:
        """Kept by pid, or by a kept run's marker (then it is added: it outlives its parent)."""
        with self._lock:
            if self._refused.get(info.pid, info.start) != info.start:
                del self._refused[info.pid]  # gone: its pid is another process's now
            if self._pids.get(info.pid) == info.start or info.pid in self._refused:
                return True
            if self._markers and proctree.has_marker(info.environ, self._markers):
                self._pids[info.pid] = info.start
                return True
        return False

    def sort(self, procs: Iterable[ProcInfo], holders: frozenset[int], live_markers: tuple[bytes, ...],
             own_entry: bytes) -> tuple[list[int], list[int], list[int]]:
        """The walked processes `procs` (parents first) sorted by the containment's claim
        rule (`executor/procs/containment.py`): the unclaimed ones, the kept ones, and those
        of the kept that are newly kept for their environment may not be read; each parents
        first. Claimed: `proctree.claimed_directly` by `holders` and the markers, or the
        child of a claimed one. Kept: held here, the child of a kept one, or hidden (both
        then kept from now on: they outlive their parent)."""
        claimed: set[int] = set()
        kept: set[int] = set()
        out, daemons, hidden = [], [], []
        for info in procs:
            if info.ppid in claimed or proctree.claimed_directly(info, holders, live_markers, own_entry):
                claimed.add(info.pid)
            elif info.ppid in kept or info.hidden or self.holds(info):
                if (info.ppid in kept or info.hidden) and self.add(info) and info.hidden:
                    hidden.append(info.pid)  # newly kept: it outlives its parent
                kept.add(info.pid)
                daemons.append(info.pid)
            else:
                out.append(info.pid)
        return out, daemons, hidden

    @staticmethod
    def left_by(info: ProcInfo, run_marker_entry: bytes, top_pid: int) -> bool:
        """Whether an unclaimed process found as a run ends is that run's: it carries the
        run's marker, or is still in its process group (a daemonizer's child that has not
        left it yet). One that cleared its environment (`env -i`) and left the group cannot
        be told apart from another run's escape: it is not kept, and dies as one."""
        return info.pgrp == top_pid or proctree.has_marker(info.environ, (run_marker_entry,))

    def alive(self) -> bool:
        """Whether a kept process still lives by its pid (the gone ones are forgotten; the
        refused ones do not count)."""
        with self._lock:
            self._pids = {pid: start for pid, start in self._pids.items() if pidsignal.alive_as(pid, start)}
            return bool(self._pids)

    def found_alive(self, found: Callable[[], list[int]]) -> bool:
        """Whether a kept process still lives: by its pid, or else (its known processes gone:
        a daemonizer's middle child, say) among those `found` (a walk for its run's marker,
        once: found ones are kept by pid). None left: forgotten (none to hand the marker on)."""
        alive = self.alive() or bool(self.waited_for(found()))
        if not alive:
            self.forget()
        return alive

    def signal(self, kept: list[int], sig: int, check: proctree.Check, label: str) -> int:
        """`sig` to those of `kept` (as a walk found them) not refused yet, each as `check`
        still finds it; returns how many were signalled. One that refuses is `refuse`d: no
        grace would end it, so it is named now (`unsignalled.py`) and waited for no more."""
        refused: list[int] = []
        sent = proctree.send_checked(self.waited_for(kept), sig, check, refused=refused)
        if refused:
            from executor.procs.unsignalled import report_daemons

            self.refuse(refused)
            report_daemons(label, sig, refused)
        return len(sent)

    def pids(self) -> list[int]:
        with self._lock:
            return list(self._pids)

    def held(self) -> dict[int, int]:
        """Every kept process known by pid: pid → start time."""
        with self._lock:
            return {**self._refused, **self._pids}
