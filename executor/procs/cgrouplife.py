"""The task's cgroup over its life: made, entered on a thread, settled, left, killed and
removed (`executor/procs/cgroups.py` has the cgroup itself; docs/design.md §5 the rules).

The move of this process into the cgroup is the kernel's: it waits for an RCU grace period
(milliseconds, all of it idle), so it runs on a thread while the task's start goes on; every
use of the cgroup waits for it (`settle`), so that every child is still born inside. A
cgroup that cannot be made or entered is a reason in words, and the task runs without one.

After an early start the cgroup is made, and the move begun, as soon as `stoker run` has
read its settings (`begin`, from `executor.cli.main`), before the supervisor's own modules
load; the supervisor takes it over (`TaskCgroupLife.take_early`). The first write to
`cgroup.procs` waits for an RCU grace period (13-15 ms on the 2-core VM, all of it idle):
begun by the supervisor's start, it was on the path to the first RUNNING line (the
checkpoint's header names the containment in force, so it waited for the move); begun
there, it passes while those modules load (some 40 ms). The early start's runs, and what
they started meanwhile, are moved in on the same thread right after this process: a later
write waited for a grace period of its own once the kernel's last one was over (moved by
the supervisor's `settle` as it wrote the header: 10-15 ms more), writes back to back wait
for none. `settle` then moves in only what is not in yet. The supervisor's watchdog, forked
from inside the cgroup, moves itself out first, as a restarted one does. The early start's
watchdog is told the cgroup as the supervisor's is (`cgroup HOW DIR`, HOW empty until it is
made): should this process die before the supervisor's watchdog is up, it kills the cgroup,
the runs in it, and removes it. Its pipe ends otherwise only as it retires (a line, no
kill) or as the early start is given up (`EarlyStart.abandon`): this process leaves the
cgroup first then (`discard`), so that the kill never takes it.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import threading
from collections.abc import Callable, Container, Sequence

from executor.logs import log_event, start_thread
from executor.procs import cgroups, pidsignal, proctree
from executor.procs.cgroups import NoCgroup, TaskCgroup
from executor.procs.reaper import Reaper
from executor.procs.sandboxfs import describe_os_error

logger = logging.getLogger("executor.procs.containment")  # its lines read as the containment's

# A move into the cgroup that a MemoryError cut (ulimit -v), made before memory is short: said
# as a failed move ("Cannot allocate memory (ENOMEM)"), the task contained without the cgroup.
NO_MEMORY = OSError(errno.ENOMEM, os.strerror(errno.ENOMEM))
CGROUP_KILL_SECS = 2.0  # for the cgroup's kill and removal at close
TAKE_IN_PASSES = 100  # moving an early start's runs in: passes until one finds nothing new outside
# `begin` moves an early start's runs in with this process only when they are this few: each
# `cgroup.procs` write holds the kernel's cgroup_threadgroup_rwsem, which every fork, exec and
# exit on the host waits for, so 100 runs moved as their shells start slowed them (exec -> 100
# running +12 ms, the 100th RUNNING line +25 ms, 16 interleaved pairs on tmpfs); more are moved
# by the supervisor as it adopts them, as before `begin` was (their shells started by then)
EARLY_RUNS_MOVED = 10
# (a fork-hopper's generations, each a new pid, outside until one is moved as it lives)


class TaskCgroupLife:
    def __init__(self, *, reaper: Reaper, label: str, setting: str) -> None:
        self._reaper = reaper
        self._label = label
        self._setting = setting
        self._cgroup: TaskCgroup | None = None
        self.no_cgroup = "not started"  # why there is none, in words
        self._settle_lock = threading.Lock()
        self._entering: threading.Thread | None = None  # the move into the cgroup, under way
        self._running: tuple[int, ...] = ()  # an early start's runs, moved in once it is over
        self._enter_error: OSError | None = None
        self._early: EarlyCgroup | None = None  # made, and entered, before the supervisor loaded
        self._foreign: frozenset[tuple[int, int]] = frozenset()  # children left out of `_running`'s move
        self._announce: Callable[[str, str], None] = lambda directory, how: None  # the watchdog's (`make`)
        self.cut_at_close = False  # `close` left the cgroup to the watchdog at its deadline
        self.busy_at_close = False  # ... or with a member that would not die (D state), the watchdog's
        self.stuck_at_close = False  # ... with only those `kill_all` named (not waited for)

    @property
    def cgroup(self) -> TaskCgroup | None:
        """The task's cgroup, once this process is in it (waits for `enter`'s move)."""
        self.settle()
        return self._cgroup

    @property
    def left(self) -> bool:
        """Whether this process is out of the task's cgroup (none, or left): a close that raised
        midway lets the watchdog go only then (at its pipe's end it kills the cgroup's members)."""
        cg = self._cgroup
        return cg is None or not cg.entered

    def describe(self) -> str:
        """The cgroup in force, or why there is none, in words."""
        if self.cgroup is not None:
            return self.cgroup.describe()
        return f"process groups, task markers and the subreaper (no cgroup: {self.no_cgroup})"

    def for_watchdog(self) -> tuple[str, str, str]:
        """(directory, how, home) for the watchdog: home only when it starts inside the
        cgroup (a restart), so that it moves itself out first; all "" without a cgroup."""
        cg = self.cgroup
        if cg is None:
            return "", "", ""
        return cg.directory, cg.how, cg.home.directory if cg.entered else ""

    def take_early(self, name: str) -> None:
        """Take over the cgroup `name` and the move into it that `stoker run` began after an
        early start (`begin`), if it did: `make` then makes none, `enter` starts no
        move, and the watchdog, forked from inside it, is told to move itself out first."""
        early = take(name)
        if early is not None:
            self._early, self._cgroup, self._entering = early, early.cgroup, early.thread

    def make(self, name: str, announce: Callable[[str, str], None]) -> None:
        """Make the cgroup, named to the watchdog by `announce` (`cgroups.create`), which is
        also told when it is gone (discarded, or removed at close). One taken over
        (`take_early`) is only named to it, with how to kill it."""
        self._announce = announce
        if self._early is not None:
            if self.cgroup is not None:
                announce(self.cgroup.directory, self.cgroup.how)
            return
        made = cgroups.create(name, self._setting, announce)
        if isinstance(made, NoCgroup):
            self.no_cgroup = made.reason
        else:
            self._cgroup = made

    def enter(self, running: Sequence[int] = (), foreign: frozenset[tuple[int, int]] = frozenset()) -> None:
        """Start moving this process into the cgroup, on a thread (`settle` waits for it).
        `running`: the task's runs forked before (an early start's), moved in after it with
        everything they started meanwhile, but the `foreign` children ((pid, start): not the
        task's, inherited)."""
        cg = self._cgroup
        if cg is None:
            return
        self._running = tuple(running)
        self._foreign = foreign
        if self._early is not None:  # under way, or over, since before the supervisor loaded
            return
        self._entering = threading.Thread(target=self._enter, args=(cg,), daemon=True,
                                          name=f"stoker-cgroup-enter {self._label}")
        try:
            start_thread(self._entering)
        except RuntimeError:  # no thread to be had (a full pids cgroup): the move, here
            self._enter(cg)

    def _enter(self, cg: TaskCgroup) -> None:
        try:
            cg.enter()
        except OSError as e:
            self._enter_error = e
        except MemoryError:  # as a failed move (was: taken for done, the runs born outside)
            self._enter_error = NO_MEMORY

    def _take_in(self, cg: TaskCgroup, roots: tuple[int, ...]) -> None:
        """Move `roots`, the daemons they left that re-parented here, and their descendants
        into `cg` (`take_in`); but those moved in already, after a move taken over
        (`take_early`). One that cannot be moved stays the task's by its subtree and marker,
        and is logged."""
        def failed(pid: int, e: OSError) -> None:
            log_event(logger, logging.ERROR, "cgroup_move_failed", task=self._label, pid=pid,
                      cgroup=cg.directory, error=describe_os_error(e),
                      consequence="it is contained by its subtree and marker only")
        take_in(cg, roots, skip=self._early.moved if self._early is not None else frozenset(), failed=failed,
                adopted=self._orphans)

    def _orphans(self) -> list[int]:
        """This process's children that are neither registered (runs, the watchdog) nor
        `foreign`: what the task's runs left that re-parented here (the subreaper)."""
        with self._reaper.lock:
            registered = self._reaper.registered()
        return [pid for pid in proctree.children(os.getpid()) if pid not in registered and not self._is_foreign(pid)]

    def settle(self) -> None:
        """Wait until the move `enter` started is over (at once when there is none)."""
        discarded = False
        with self._settle_lock:
            entering, self._entering = self._entering, None
            if entering is None and not self._running:
                return
            if entering is not None and entering.ident is not None:  # not done here, on the caller's thread
                entering.join()
            cg, error = self._cgroup, self._enter_error if self._early is None else self._early.error
            if entering is None:  # a move taken over (`take_early`), settled before its runs came
                error = None
            if error is not None and cg is not None:
                self.no_cgroup = f"cannot move the supervisor into {cg.directory}: {describe_os_error(error)}"
                cgroups.discard(cg)
                self._cgroup, discarded = None, True
            elif cg is not None and self._running:
                # here, not on the mover's thread: a walk there left 0.3 MiB (100 runs) behind
                self._take_in(cg, self._running)
            self._running = ()
        if discarded:  # told out of the lock: a watchdog starting holds the keeper's as it settles
            self._announce("", "")

    def _is_foreign(self, pid: int) -> bool:
        """Whether child `pid` is one of the `foreign` ones (its pid and start)."""
        if not any(pid == known for known, _ in self._foreign):
            return False
        stat = pidsignal.read_stat(pid)
        return stat is None or (pid, stat[2]) in self._foreign or (pid, 0) in self._foreign

    def close(self, watchdog: int | None = None, within_secs: float | None = None,
              stuck: frozenset[int] = frozenset()) -> bool:
        """Leave, kill and remove the cgroup. False when this process could not leave it:
        the watchdog must then do it once this process has exited. `watchdog`: the pid of
        the one running, to be let go (None: none runs), which finishes a kill its deadline
        cut; `within_secs`: that deadline, when sooner than `CGROUP_KILL_SECS` (what is left
        of the time this process was given to exit); `stuck`: processes SIGKILLed that would
        not die, named already (`Containment.kill_all`): with a watchdog to hand them to, not
        waited for once they alone hold the cgroup."""
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
        problem = cg.kill_and_remove(min(CGROUP_KILL_SECS, math.inf if within_secs is None else within_secs),
                                     stuck if watchdog is not None else frozenset())
        self.stuck_at_close = cg.stuck_left
        cgroups.release(cg)
        self._cgroup = None
        self.no_cgroup = "closed"
        if problem is None:  # gone: a cgroup made at its path later is not the task's
            self._announce("", "")
            return True
        # what is left is said in the words of what the close could not end (`unsignalled.py`,
        # loaded with the kill's machine half a second into the task, or before a restart's wait)
        from executor.procs.unsignalled import cgroup_cut, cgroup_left
        if isinstance(problem, cgroups.CutShort):  # a slow host or a deep tree: not a failure
            self.cut_at_close = True
            cgroup_cut(self._label, cg.directory, problem, watchdog, cg.left_frozen is not None)
        else:
            self.busy_at_close = watchdog is not None
            cgroup_left(self._label, cg.directory, problem, watchdog, cg.left_frozen is not None)
        return True


# ---- the cgroup made as `stoker run` loads, after an early start (see the module docstring) ----


class EarlyCgroup:
    """A cgroup made for the task whose marker is `marker`, and this process's move into it,
    under way on a thread (`error`: why it failed, once `thread` is over)."""

    def __init__(self, marker: str, cgroup: TaskCgroup, runs: tuple[int, ...], others: frozenset[int]) -> None:
        self.name = cgroups.task_name(marker)
        self.cgroup = cgroup
        self.runs = runs  # the early start's, moved in after this process
        self.others = others  # this process's children that are not the task's (its watchdog, inherited)
        self.error: OSError | None = None
        self.moved: set[int] = set()  # the runs and their descendants moved in after this process
        self.thread = threading.Thread(target=self._enter, daemon=True, name="stoker-cgroup-enter early")

    def _enter(self) -> None:
        try:
            self.cgroup.enter()
        except OSError as e:
            self.error = e
            return
        except MemoryError:  # as a failed move (was: the thread ended, the move taken for done)
            self.error = NO_MEMORY
            return
        if self.runs:
            self.moved = take_in(self.cgroup, self.runs, adopted=self._orphans)

    def _orphans(self) -> list[int]:
        """This process's children but the runs and `others`: what the runs left that
        re-parented here (a fork-hopper's generations, out of the runs' subtrees: left out,
        a kill -9 before the supervisor's walk left them outside the cgroup, alive)."""
        return [pid for pid in proctree.children(os.getpid()) if pid not in self.runs and pid not in self.others]


def take_in(cg: TaskCgroup, roots: tuple[int, ...], skip: Container[int] = frozenset(),
            failed: Callable[[int, OSError], None] = lambda pid, error: None,
            adopted: Callable[[], list[int]] = list) -> set[int]:
    """Move `roots` and their descendants into `cg`, each before its children are listed (one
    forked before the move is listed by the read after it; one forked after is born inside:
    fork and migration exclude each other, cgroup_threadgroup_rwsem), in passes until one finds
    nothing new outside; those moved. A later pass lists only this process's children and
    `_Walk`'s `again` (was: every run's, 100 listings). `adopted`: more roots, listed at each
    pass (the runs' orphans, re-parented here: a fork-hopper's generation that exited before
    its move left its child here, outside). `skip`: moved in already (`begin`'s): not written
    again (a write waits for a grace period when the kernel's last one is over; so does a read
    of /proc/PID/cgroup while another process's write waits for one). One that cannot be moved
    is told to `failed`; only pids are read (no `ProcInfo`: what a walk allocates on the
    supervisor's thread is left as holes under its state, 0.3 MiB for 100). Each is moved only
    while it is the child of the process it was listed under (`roots` and `adopted`: this
    one's, as each pass begins; the others as each is moved, `TaskCgroup.take_in`): one reaped
    since may have had its pid handed on; one re-parented since is moved once listed under its
    new parent (was: never, a daemon's double fork left outside). One `cgroup.procs` descriptor."""
    walk = _Walk(cg, skip, failed)
    try:
        procs_fd = cg.open_procs()
    except OSError:  # each move opens it then, and says why it fails
        procs_fd = -1
    try:
        for _ in range(TAKE_IN_PASSES):
            mine = set(proctree.children(os.getpid()))  # the roots' one read (100 runs); `adopted` reads its own
            if not walk.one_pass([(pid, None) for pid in (*(p for p in roots if p in mine), *adopted())], procs_fd):
                break  # nothing new outside, or all of it born inside
    finally:
        if procs_fd >= 0:
            os.close(procs_fd)
    return walk.moved


class _Walk:
    """`take_in`'s passes: what they moved (`moved`), and what each next one lists again."""

    def __init__(self, cg: TaskCgroup, skip: Container[int], failed: Callable[[int, OSError], None]) -> None:
        self._cg, self._skip, self._failed = cg, skip, failed
        self._seen: set[int] = set()  # moved, found inside, gone, or failed: not tried again
        self.moved: set[int] = set()
        # listed at each pass: those an exit below can re-parent an outside child to (they had
        # children: a subreaper); of several threads (one exiting as they are listed hands its
        # children to a thread read before it); not moved (forking outside)
        self._again: set[int] = set()

    def one_pass(self, tops: list[tuple[int, int | None]], procs_fd: int) -> bool:
        """Move `tops` ((pid, None)), `_again`'s children and their descendants not seen yet,
        parents first; whether any was outside (then another pass is due)."""
        stack = tops + [(kid, pid) for pid in list(self._again) for kid in proctree.children(pid)]
        members: frozenset[int] | None = None
        outside = False
        while stack:
            pid, parent = stack.pop()
            if pid in self._seen:
                continue
            members = _members(self._cg) if members is None else members
            verdict: bool | None = True
            if pid not in self._skip and pid not in members:
                outside, verdict = True, self._move(pid, parent, procs_fd)
            if verdict is None:  # re-parented since its listing: moved once listed under its new parent
                continue
            self._seen.add(pid)
            kids, threads = proctree.children_and_threads(pid) if verdict else ([], False)  # gone: its children re-parented
            if kids or threads:
                self._again.add(pid)
            stack.extend((kid, pid) for kid in kids)
        return outside

    def _move(self, pid: int, parent: int | None, procs_fd: int) -> bool | None:
        """`TaskCgroup.take_in`'s verdict; True for one that cannot be moved (told to
        `failed`, listed again at each pass): its children are still listed and moved."""
        try:
            verdict = self._cg.take_in(pid, parent, procs_fd)
        except OSError as e:
            self._failed(pid, e)
            self._again.add(pid)
            return True
        if verdict:
            self.moved.add(pid)
        return verdict


def _members(cg: TaskCgroup) -> frozenset[int]:
    """The processes `cg` itself lists (none when it cannot be read: each is then moved)."""
    try:
        return frozenset(cgroups.read_pids(cg.directory))
    except OSError:
        return frozenset()


_made: EarlyCgroup | None = None  # made by `begin`, until the supervisor takes it or it is discarded


def begin(marker: str, setting: str, watchdog_fd: int, runs: tuple[int, ...],
          others: frozenset[int] = frozenset()) -> None:
    """Make the cgroup of the task whose marker is `marker` where `setting` says, naming its
    directory to the early start's watchdog (its pipe `watchdog_fd`) before it is made, and
    start moving this process in, then the early start's `runs` and the orphans they left
    (this process's other children but `others`) when there are at most `EARLY_RUNS_MOVED`
    (more: the supervisor's `settle` moves them). A cgroup that cannot be made is left to the
    supervisor, which tries as ever and says why there is none."""
    global _made
    if setting == cgroups.SETTING_OFF or _made is not None:
        return
    made = cgroups.create(cgroups.task_name(marker), setting, lambda directory, how: _tell(watchdog_fd, directory, how))
    if isinstance(made, NoCgroup):
        return
    _made = EarlyCgroup(marker, made, runs if len(runs) <= EARLY_RUNS_MOVED else (), others)
    try:
        start_thread(_made.thread)
    except RuntimeError:  # no thread to be had: no move now, the cgroup goes
        discard()


def _tell(watchdog_fd: int, directory: str, how: str) -> None:
    """The early watchdog's line, as the supervisor's keeper writes it (`watchdog.py`)."""
    if watchdog_fd >= 0 and "\n" not in directory:
        with contextlib.suppress(OSError):
            os.write(watchdog_fd, f"cgroup {how} {directory}\n".encode())


def wait_moved() -> None:
    """Wait until `begin`'s move (its thread) is over, if it is under way: before
    `healthcheck/plainhttp.py` loads `http.client` without `ssl`, which it does only while
    this process has one thread (a move waiting for the kernel's grace period under load
    was still running as the plan came: `ssl` and OpenSSL loaded, 2.6 MiB)."""
    made = _made
    if made is not None and made.thread.ident is not None:
        made.thread.join()


def take(name: str) -> EarlyCgroup | None:
    """The cgroup `begin` made, when it is the one named `name` (the supervisor's task's);
    one made for another task is discarded. None when there is none."""
    global _made
    made, _made = _made, None
    if made is not None and made.name != name:
        _made = made
        discard()
        return None
    return made


def discard() -> None:
    """The early start is given up: wait for the move, take this process back out of the
    cgroup `begin` made, and remove it if empty (with runs in it, the early watchdog kills
    them and removes it once its pipe is closed)."""
    global _made
    made, _made = _made, None
    if made is None:
        return
    if made.thread.ident is not None:
        made.thread.join()
    cg = made.cgroup
    if cg.entered:
        with contextlib.suppress(OSError):
            cg.leave()
    cgroups.discard(cg)
