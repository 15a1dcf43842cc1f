"""The one thread in the Stoker process that waits for children, and the subreaper flag.

Owns: making the process a child subreaper (prctl(PR_SET_CHILD_SUBREAPER), `earlyfork.py`,
so orphaned descendants of task processes re-parent to Stoker instead of init), and a single
process-wide thread that reaps EVERY child. The thread blocks in `waitid(P_ALL, WEXITED |
WNOWAIT)`: it learns that a child exited while the zombie still holds its pid (so the
watcher can still SIGKILL that process group without any risk of pid reuse), then reaps it
with `waitpid` and hands the status to whoever registered the pid. Unregistered pids are
orphans and are just reaped. It hears a child stop too (`WSTOPPED`: one wakeup per stop,
none while it stays stopped), takes that report and tells a watcher that asked
(`Watcher.on_stopped`: the watchdog's keeper continues a watchdog a task's process stopped). While there are no children at all the thread waits on a
condition that the next fork notifies: no busy loop and no polling.

Consequence: no other code in a process that uses a Supervisor may wait for children itself
(no `subprocess.run`, no `Popen.wait`): the reaper would take their status first. That is
why shell health checks go through `Supervisor.run_command`. Nor may it fork children of its
own while a Supervisor runs: an unregistered child counts as an orphan of the task
(`executor/procs/containment.py`). Several Supervisors share the one thread; it exits once
the last one released it and no registered child is left.

Forks must happen inside `forking()`, which holds the registry lock until the new pid is
registered, so a child that exits at once is never mistaken for an orphan, and `registered()`
read after a list of children covers every child this process forked in that list. Children
forked before the reaper existed (an early start's runs) are handed to `acquire`, which
registers them before its thread can reap one.

The kernel lists a child under the thread that forked it, and gives every orphan to the main
thread: the orphans are found by reading the main thread's list alone (`Containment`, at
each run's exit). So a run is not forked on the main thread (`stoker run`'s owner runs
there): `on_fork_thread` hands the forks to a thread of their own (`stoker-fork`, idle in a
queue wait, ended with the reaper's thread), with the caller's signal mask, which the child
inherits. Forked on the main thread, 500 runs made each exit read 500 pids (0.4 ms).
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import threading
import time
from _queue import SimpleQueue  # `queue`'s own (its module and `heapq`: Queue classes)
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, TypeVar

import attrs

from executor.logs import log_event, start_thread
from executor.procs import earlyfork, pidsignal

if TYPE_CHECKING:
    from typing import Protocol

    from executor.procs.oomcount import Shield

    class ChildWatcher(Protocol):
        def before_reap(self, pid: int, exit_code: int | None) -> None:
            """The child exited (with `exit_code`; None: a signal ended it); its zombie still
            holds the pid (and its process group id)."""

        def reaped(self, pid: int, status: int) -> None:
            """The child was reaped with this wait status."""

logger = logging.getLogger(__name__)

# How long the reaper waits before it waits for children again after a MemoryError.
MEMORY_RETRY_SECS = 0.1

T = TypeVar("T")


@attrs.frozen(slots=True)
class Watcher:
    """A ChildWatcher made of two callables."""

    on_exit: Callable[[int, int | None], None] = lambda pid, exit_code: None
    on_reaped: Callable[[int, int], None] = lambda pid, status: None
    on_stopped: Callable[[int, int], None] | None = None  # (pid, the stop signal): the child stopped

    def before_reap(self, pid: int, exit_code: int | None) -> None:
        self.on_exit(pid, exit_code)

    def reaped(self, pid: int, status: int) -> None:
        self.on_reaped(pid, status)


def become_subreaper() -> bool:
    """Make this process a child subreaper; logs ERROR and returns False when it cannot."""
    try:
        earlyfork.set_subreaper()
    except OSError as e:
        log_event(logger, logging.ERROR, "subreaper_failed", pid=os.getpid(),
                  error=f"{type(e).__name__}: {e}",
                  reason="daemonized descendants will re-parent to init and only the watchdog's "
                         "marker scan can reach them")
        return False
    return True


def check_pidfds() -> bool:
    """Whether this process can have pidfds and signal through them (`os.pidfd_open`,
    `signal.pidfd_send_signal` of signal 0 to itself: `pidsignal.probe_pidfds`, the one probe
    of the process, which `send_denied` shares); when it cannot (a kernel before 5.3, a
    seccomp profile that denies either: older Docker and Podman), one WARNING says so and
    what is done instead, once per process. Asked by the reaper as it starts."""
    code, error = pidsignal.probe_pidfds()
    if not code or code in (errno.EMFILE, errno.ENFILE):  # no descriptor to spare now: each signal asks again
        return True
    if pidsignal.first_told():
        log_event(logger, logging.WARNING, "pidfds_unavailable", pid=os.getpid(), error=error,
                  reason="each signal goes by kill() right after the pid is checked again in /proc, "
                         "and a killed process is waited for by reading /proc every millisecond")
    return False


class _ForkThread:
    """A thread that runs the calls handed to it, one at a time, until `stop`."""

    def __init__(self) -> None:
        self._calls: SimpleQueue[tuple[Callable[[], object], list[object], threading.Event] | None] = \
            SimpleQueue()
        self._lock = threading.Lock()
        self._stopped = False
        self.thread = threading.Thread(target=self._loop, name="stoker-fork", daemon=True)
        start_thread(self.thread)  # raises RuntimeError when no thread can be had

    def call(self, fn: Callable[[], T]) -> T:
        """`fn()` run there with this thread's signal mask (here once it is stopped); what it
        returned, or raises what it raised. Waits for it (forks and execs: a millisecond)."""
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, ())

        def masked() -> T:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            return fn()

        box: list[object] = []
        done = threading.Event()
        with self._lock:
            if self._stopped:
                return fn()
            self._calls.put((masked, box, done))
        done.wait()
        ok, value = box
        if not ok:
            assert isinstance(value, BaseException)
            raise value
        return value  # type: ignore[return-value]

    def stop(self) -> None:
        """It ends once the calls handed to it before are done."""
        with self._lock:
            self._stopped = True
            self._calls.put(None)

    def _loop(self) -> None:
        while (item := self._calls.get()) is not None:
            _run(*item)
            del item  # idle, it keeps nothing of the last call (a closure on its supervisor)


def _run(fn: Callable[[], object], box: list[object], done: threading.Event) -> None:
    try:
        box.extend((True, fn()))
    except BaseException as e:  # the caller's to handle, as if it had called fn itself
        box.extend((False, e))
    finally:
        done.set()


class Reaper:
    """Process-wide singleton: use `Reaper.acquire()` / `release()`."""

    _instance: Reaper | None = None
    _instance_lock = threading.Lock()

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._cond = threading.Condition(self.lock)
        self._watchers: dict[int, ChildWatcher] = {}
        self._users = 0
        self._generation = 0  # bumped by every fork, so an ECHILD wait never misses one
        self._thread: threading.Thread | None = None
        self.subreaper = False
        self._orphan_hooks: list[Callable[[], None]] = []
        self._forker: _ForkThread | None = None  # made at the first fork asked on the main thread
        self.shield: Shield | None = None  # the supervisor's lowered oom_score_adj (`oomkill.py`, the shield in `oomcount.py`)
        self._forking = 0  # forking() depth: the shield is lifted by the outermost
        self._fork_tids: frozenset[int] = frozenset()  # the threads that forked (`fork_threads`)
        # The child whose exit is being taken: (pid, its watcher, its wait status), kept across
        # a MemoryError until its status is handed on (`_resume`).
        self._taking: tuple[int, ChildWatcher | None, int] | None = None

    @classmethod
    def acquire(cls, adopt: Mapping[int, ChildWatcher] | None = None) -> Reaper:
        """The reaper, its thread running; `adopt`: children forked before (by the early
        start, `earlyfork.py`), registered before the thread can reap any of them."""
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = Reaper()
            reaper = cls._instance
        reaper._acquire(adopt or {})
        return reaper

    def _acquire(self, adopt: Mapping[int, ChildWatcher]) -> None:
        with self._cond:
            if not self.subreaper:
                self.subreaper = become_subreaper()
            if self._thread is None:
                check_pidfds()  # probes once per process (`pidsignal.probe_pidfds`)
            self._watchers.update(adopt)
            if adopt:  # a thread waiting out an ECHILD (`_wait_once`) waits for children again
                self._generation += 1
            if self._thread is None:
                thread = threading.Thread(target=self._loop, name="stoker-reaper", daemon=True)
                start_thread(thread)  # raises when no thread can be had: no user added, none kept
                self._thread = thread
            self._users += 1
            self._cond.notify_all()

    def release(self) -> None:
        with self._cond:
            self._users = max(0, self._users - 1)
            self._cond.notify_all()

    def join_unused(self, within_secs: float) -> None:
        """With no user left (the last `release`d), wait for the thread to end, `within_secs` at
        most (it ends once no child it watches is left); never from the thread itself."""
        thread = self._thread
        if thread is not None and self._users == 0 and thread is not threading.current_thread():
            thread.join(within_secs)

    @property
    def users(self) -> int:
        return self._users

    @classmethod
    def in_use(cls) -> bool:
        """Whether a supervisor holds the reaper now: then no other code may wait for a
        child, nor fork one (the module docstring); its thread reaps it as the task's orphan."""
        reaper = cls._instance
        return reaper is not None and reaper.users > 0

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    @contextlib.contextmanager
    def forking(self) -> Iterator[None]:
        """Hold the registry while forking and registering; wakes an idle reaper. With a
        `shield`, the child is forked at the adj the process started with (`oomkill.py`, the shield in `oomcount.py`)."""
        with self._cond:
            self._note_fork_thread()
            shield = self.shield if self._forking == 0 else None
            if shield is not None:
                shield.lift()
            self._forking += 1
            try:
                yield
            finally:
                self._forking -= 1
                if shield is not None:
                    shield.restore()
                self._generation += 1
                self._cond.notify_all()

    def _note_fork_thread(self) -> None:
        """Add the calling thread to `fork_threads` (pruned of the threads gone, then)."""
        tid = threading.get_native_id()
        if tid not in self._fork_tids:
            self._fork_tids = frozenset(t for t in self._fork_tids if os.path.exists(f"/proc/self/task/{t}")) | {tid}

    def fork_threads(self) -> frozenset[int]:
        """The threads (native ids) of this process that forked a child. A child's
        `clone(CLONE_PARENT)` makes a process whose parent is that thread: it is on that
        thread's children list, not on the main thread's with the orphans (`Containment`)."""
        return self._fork_tids

    def on_fork_thread(self, fn: Callable[[], T]) -> T:
        """`fn()` (forks, each inside `forking()`), off the main thread: called there, on the
        fork thread (made now if there is none; when none can be had, in place); elsewhere,
        in place. Returns what `fn` returned, raises what it raised."""
        if threading.current_thread() is not threading.main_thread():
            return fn()
        with self._cond:
            if self._forker is None:
                try:
                    self._forker = _ForkThread()
                except RuntimeError:  # no thread to be had (a full pids cgroup): forked here
                    return fn()
            forker = self._forker
        return forker.call(fn)

    def register(self, pid: int, watcher: ChildWatcher) -> None:
        """Call inside `forking()`."""
        with self._cond:
            self._watchers[pid] = watcher

    def on_orphans(self, hook: Callable[[], None], *, remove: bool = False) -> None:
        """Call `hook` on this thread after each orphan is reaped (or stop calling it). Hooks
        are told apart by equality: a bound method (`drains.check`) is a new object at each
        access, so one given again to remove it is equal to the one added, never the same
        (told apart by identity, no hook was ever removed: a closed supervisor was kept, and
        called, after each orphan, for the rest of the process)."""
        with self._cond:
            if remove:
                self._orphan_hooks = [h for h in self._orphan_hooks if h != hook]
            else:
                self._orphan_hooks = [*self._orphan_hooks, hook]

    def registered(self) -> frozenset[int]:
        """Every unreaped registered pid, of every supervisor. Hold `lock` to rely on it."""
        return frozenset(self._watchers)

    def is_registered(self, pid: int) -> bool:
        """True while `pid` is unreaped (and not yet being reaped). Hold `lock` to rely on it."""
        return pid in self._watchers

    def _should_exit(self) -> bool:
        return self._users == 0 and not self._watchers

    def _loop(self) -> None:
        short = False  # memory was short at the last pass
        while True:
            with self._cond:
                if self._should_exit():
                    self._thread = None
                    if self._forker is not None:  # no user is left to fork
                        self._forker.stop()
                        self._forker = None
                    return
                generation = self._generation
            try:
                if (taking := self._taking) is not None:  # a MemoryError cut the last one short
                    self._resume(taking)
                else:
                    self._wait_once(generation)
            except MemoryError:  # WNOWAIT: the child is still there to be waited for again
                with contextlib.suppress(MemoryError):  # the line too may find none
                    if not short:
                        log_event(logger, logging.ERROR, "reaper_short_of_memory",
                                  reason="a child's exit could not be taken (MemoryError); "
                                         f"tried again every {MEMORY_RETRY_SECS} s until it can")
                short = True
                time.sleep(MEMORY_RETRY_SECS)
            else:
                short = False

    def _wait_once(self, generation: int) -> None:
        """Wait for one child to exit or stop and hand it on; while there is none, wait for
        the next fork (`generation` moves). A MemoryError (ulimit -v) leaves the thread to its
        caller's retry: before, it ended the thread, and no exit was heard again (a task's
        runs never ended, its supervisor waiting for them for good)."""
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WSTOPPED | os.WNOWAIT)
        except ChildProcessError:
            with self._cond:
                while self._generation == generation and not self._should_exit():
                    self._cond.wait()
            return
        if info is None:
            return
        if info.si_code in (os.CLD_STOPPED, os.CLD_TRAPPED):
            self._stopped(info.si_pid, info.si_status)
            return
        if info.si_code == os.CLD_EXITED:
            self._dispatch(info.si_pid, info.si_status, info.si_status << 8)
        else:  # the wait status a signal's end gives (with WCOREFLAG for a core dumped)
            dumped = 0x80 if info.si_code == os.CLD_DUMPED else 0
            self._dispatch(info.si_pid, None, info.si_status | dumped)

    def _stopped(self, pid: int, signum: int) -> None:
        """A child stopped (`kill -STOP`): the report taken (else `waitid` would give it again
        at once), and its watcher told, if it asked (the watchdog's keeper continues it)."""
        try:
            os.waitid(os.P_PID, pid, os.WSTOPPED | os.WNOHANG)
        except ChildProcessError:
            return
        with self._cond:
            watcher = self._watchers.get(pid)
        hook = getattr(watcher, "on_stopped", None)
        if hook is not None:
            self._call(hook, pid, signum)

    def _dispatch(self, pid: int, exit_code: int | None, status: int) -> None:
        """Tell `pid`'s watcher it exited, reap it and hand its wait `status` on; `_taking`
        holds what a MemoryError must not lose (the watcher, once out of the registry)."""
        with self._cond:
            watcher = self._watchers.get(pid)
            taking = self._taking = (pid, watcher, status)  # a MemoryError here: nothing taken yet
            self._watchers.pop(pid, None)
        if watcher is not None:
            self._call(watcher.before_reap, pid, exit_code)
        self._reap(taking)

    def _resume(self, taking: tuple[int, ChildWatcher | None, int]) -> None:
        """Finish taking the exit a MemoryError cut: its zombie reaped if it is still
        there, then its status handed on. The reap's own answer can fail after the kernel
        reaped (CPython makes it then): the zombie gone, the status is the one `waitid`
        saw before (was: the watcher never told, the run's exit lost for good)."""
        try:
            zombie = os.waitid(os.P_PID, taking[0], os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            zombie = None
        if zombie is not None:
            self._reap(taking)
        else:
            self._hand_on(taking)

    def _reap(self, taking: tuple[int, ChildWatcher | None, int]) -> None:
        pid, watcher, _ = taking
        try:
            got, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            got = 0
        if got == 0:
            # Someone else reaped it first (Popen does after a failed exec); its status is
            # theirs. Nothing to hand on.
            self._taking = None
            if watcher is not None:
                log_event(logger, logging.ERROR, "reap_lost", pid=pid,
                          reason="another waiter reaped this child first")
            return
        self._hand_on(taking)

    def _hand_on(self, taking: tuple[int, ChildWatcher | None, int]) -> None:
        """The reaped child's status to its watcher (an orphan's: to the orphan hooks)."""
        pid, watcher, status = taking
        self._taking = None
        if watcher is not None:
            self._call(watcher.reaped, pid, status)
        else:
            for hook in self._orphan_hooks:
                self._call(hook)

    @staticmethod
    def _call(fn, *args) -> None:
        try:
            fn(*args)
        except Exception as e:  # a watcher bug must not stop reaping
            log_event(logger, logging.ERROR, "reaper_callback_failed",
                      callback=getattr(fn, "__qualname__", fn), error=f"{type(e).__name__}: {e}",
                      exc_info=True)
