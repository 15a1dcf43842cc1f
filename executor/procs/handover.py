"""What the watchdog kills by pid when the Stoker process dies: the task's processes its
marker scan may not find.

Without a cgroup the watchdog finds the task by the marker in `/proc/PID/environ` and by
descent from a marked process. Two kinds of process escape that once their parent is no
marked process: one that made itself not dumpable (its environ is then root's to read:
ssh-agent, gpg-agent, a setuid program, when Stoker is not root) and one that cleared its
environment (`setsid env -i`). As the task's subreaper, this process is the parent of every
such orphan while it lives. So each orphan it sees (an unregistered child that is neither
foreign nor another task's) and every daemon the task's runs left (`daemons.py`) is handed
to the watchdog by pid and start time (`WatchdogKeeper.hold`); when this process dies the
watchdog kills them and their descendants too, each only while its start time still
matches, so a reused pid is never hit (`watchdog.py`).

Learned at each walk of the subtree (an exit, a signal, the daemons' check: `saw`, with
every orphan the walk found) and each time the owner is idle (`Containment.look`: one read
of this process's children list and a stat per new orphan, no wakeup of its own); forgotten
when reaped (`prune`, from the reaper's orphan hook) or when a walk no longer finds it. A
change is handed over at once; an unchanged list costs nothing. Thread-safe: walks run on
the reaper thread and the owner's.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from executor.procs import pidsignal
from executor.procs.daemons import KeptDaemons

Sink = Callable[[Mapping[int, int]], None]
# After a run starts, the orphans are looked for at these times too (`Supervisor.idle`): an
# adoption wakes nothing, and a daemon that daemonizes as its run starts (ssh-agent) is then
# handed over within them, even if the task has no other step. Three wakeups per start, all
# within its first second: an idle task makes none.
LOOKS_AFTER_SPAWN_SECS = (0.05, 0.2, 0.8)


def next_look_in(spawned_at: float | None, now: float) -> float | None:
    """In how many seconds the next look after the latest start (at `spawned_at`) is due."""
    if spawned_at is None:
        return None
    since = now - spawned_at
    return next((after - since for after in LOOKS_AFTER_SPAWN_SECS if after > since), None)


class Handover:
    def __init__(self, daemons: KeptDaemons) -> None:
        self._lock = threading.Lock()
        self._daemons = daemons
        self._orphans: dict[int, int] = {}  # pid → start time
        self._handed: dict[int, int] = {}  # what the sink was last given
        self._sink: Sink | None = None

    def to(self, sink: Sink) -> None:
        """Hand every change to `sink` from now on (what is held already, at once)."""
        with self._lock:
            self._sink = sink
            self._hand()

    def handed(self) -> dict[int, int]:
        """What the sink was last given."""
        with self._lock:
            return dict(self._handed)

    def orphans(self) -> dict[int, int]:
        with self._lock:
            return dict(self._orphans)

    def saw(self, orphans: Mapping[int, int]) -> None:
        """Every orphan a look at this process's children found, pid → start time."""
        with self._lock:
            self._orphans = dict(orphans)
            self._hand()

    def prune(self) -> None:
        """An orphan was reaped: forget those no longer alive as themselves."""
        with self._lock:
            self._orphans = {pid: start for pid, start in self._orphans.items()
                             if pidsignal.alive_as(pid, start)}
            self._hand()

    def changed(self) -> None:
        """The kept daemons changed."""
        with self._lock:
            self._hand()

    def _hand(self) -> None:
        held = {**self._daemons.held(), **self._orphans}
        if self._sink is not None and held != self._handed:
            self._sink(held)
            self._handed = held
