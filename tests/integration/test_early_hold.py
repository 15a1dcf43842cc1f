"""What `stoker run`'s early start holds, in this process (`executor/host/early.py`): the
stop signals recorded while it loads and given back, and an early start given up: its runs,
their daemons and its watchdog killed and reaped, what it holds closed, its sandbox removed,
and the children it found at its start left alone.

Real signals raised in this process (its handlers put back after each test), real children
(`sleep`, `sh`) spawned by this process, made a child subreaper as `stoker run` is, so that
a run's daemon comes back to it.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.host import early
from executor.host.early import EarlyStart
from executor.procs.earlyfork import EarlyRun
from tests.support.children import sleeping_as
from tests.support.limits import closed
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)

STOPS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGTSTP]
HEARD = [signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGTSTP, signal.SIGUSR1]


@pytest.fixture
def heard() -> Iterator[list[int]]:
    """What this process's own handler heard: it is set on `HEARD` (SIGHUP ignored, as
    under nohup) for the test, and what was there before put back after it, with the
    early start's records cleared."""
    every = [*early.STOPS, *early.STRAYS]
    before = {s: signal.getsignal(s) for s in every}
    got: list[int] = []
    for signum in HEARD:
        signal.signal(signum, lambda signum, frame: got.append(signum))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        yield got
    finally:
        early._deferred.clear()
        early._replaced.clear()
        for signum, handler in before.items():
            signal.signal(signum, handler)


def test_stop_signals_and_strays_are_recorded_in_order_once_and_not_acted_on(heard):
    early.defer_stop_signals()
    for signum in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT, signal.SIGTSTP, signal.SIGRTMIN + 3):
        signal.raise_signal(signum)
    assert heard == []
    assert early.deferred_signals() == [signal.SIGTERM, signal.SIGUSR1, signal.SIGINT, signal.SIGTSTP,
                                        signal.SIGRTMIN + 3]
    assert early.deferred_signals() == []


def test_a_stop_signal_ignored_stays_ignored_and_is_not_recorded(heard):
    early.defer_stop_signals()
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    signal.raise_signal(signal.SIGHUP)
    assert early.deferred_signals() == [] and signal.SIGHUP not in early.replaced_stop_handlers()


def test_the_handlers_replaced_are_the_ones_found_first_given_once(heard):
    every = early.STOPS + early.STRAYS
    found = {s: signal.getsignal(s) for s in every}
    early.defer_stop_signals()
    early.defer_stop_signals()  # again: the recorder it finds is not taken for the handler
    assert [s for s in every if signal.getsignal(s) is not early._record] == [signal.SIGHUP]
    assert early.replaced_stop_handlers() == {s: h for s, h in found.items() if s != signal.SIGHUP}
    assert early.replaced_stop_handlers() == {}


def test_a_stop_is_pending_once_one_came_and_not_for_strays(heard):
    early.defer_stop_signals()
    assert not early.stop_pending()
    signal.raise_signal(signal.SIGUSR2)
    assert not early.stop_pending()
    signal.raise_signal(signal.SIGQUIT)
    assert early.stop_pending()
    early.deferred_signals()
    assert not early.stop_pending()


def test_given_back_the_handlers_are_put_back_and_the_stops_raised_in_order_the_strays_dropped(heard):
    early.defer_stop_signals()
    for signum in (signal.SIGQUIT, signal.SIGUSR1, signal.SIGINT):
        signal.raise_signal(signum)
    early.undefer_stop_signals()
    assert heard == [signal.SIGQUIT, signal.SIGINT]
    assert early.replaced_stop_handlers() == {} and early.deferred_signals() == []
    signal.raise_signal(signal.SIGUSR1)  # its own handler's again
    assert heard[-1] == signal.SIGUSR1


# ---- an early start given up


@pytest.fixture
def subreaper() -> Iterator[None]:
    """This process a child subreaper for the test (as `stoker run` is), as it was after."""
    libc = ctypes.CDLL(None, use_errno=True)
    was = ctypes.c_int(0)
    assert libc.prctl(37, ctypes.byref(was), 0, 0, 0) == 0  # PR_GET_CHILD_SUBREAPER
    assert libc.prctl(36, 1, 0, 0, 0) == 0
    try:
        yield
    finally:
        libc.prctl(36, was.value, 0, 0, 0)


def spawn(*args: str, stdin: int = -1, setsid: bool = False) -> int:
    actions = [(os.POSIX_SPAWN_DUP2, stdin, 0)] if stdin >= 0 else []
    return os.posix_spawnp(args[0], list(args), os.environ, file_actions=actions, setsid=setsid)


def reaped(pid: int) -> bool:
    """Gone and reaped by someone: no /proc entry (a zombie of this process has one)."""
    return not os.path.exists(f"/proc/{pid}")


def end(*pids: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            continue


def early_start(tmp_path: Path) -> EarlyStart:
    sandbox = tmp_path / "sandbox"
    (sandbox / ".logs" / "serve" / "0").mkdir(parents=True)
    lease = os.open(tmp_path / "lease", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    return EarlyStart(entry=str(tmp_path / "entry"), sandbox=str(sandbox), lease_fd=lease, task_id="t", marker="m")


def test_given_up_it_kills_its_runs_their_daemons_and_its_watchdog_and_closes_what_it_holds(tmp_path, subreaper):
    inherited = spawn("sleep", "60")  # there before it: `sleep 60 & exec stoker run`
    started = early_start(tmp_path)
    pidfile = tmp_path / "daemon"
    pids: list[int] = [inherited]
    try:
        run = spawn("sh", "-c", f"setsid sleep 60 & echo $! > {pidfile}; exec sleep 60", setsid=True)
        pids.append(run)
        started.runs.append(EarlyRun("serve", 0, run, "sleep 60", {}))
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, message="the run's daemon")
        daemon = int(pidfile.read_text())
        pids.append(daemon)
        wait_for(lambda: os.getsid(daemon) == daemon, 10, message="the daemon in a session of its own")
        read_end, write_end = os.pipe()
        dog = spawn("sh", "-c", "read line; exit 0", stdin=read_end)
        os.close(read_end)
        pids.append(dog)
        started.hold_watchdog(dog, write_end)
        lock = os.open(tmp_path / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        started.hold_lock(lock)
        lease = started._lease_fd
        moved: list[bool] = []
        started.before_abandon = lambda: moved.append(os.path.isdir(started.sandbox))
        started.abandon()
        assert moved == [True] and started.before_abandon is None
        assert [pid for pid in (run, daemon, dog) if not reaped(pid)] == []
        assert not reaped(inherited), "a child it found at its start was killed"
        assert started.runs == [] and started.watchdog_fd() == -1
        assert closed(write_end) and closed(lock) and closed(lease)
        assert (started._lock_fd, started._lease_fd) == (-1, -1)
        assert not os.path.exists(started.sandbox)
    finally:
        end(*pids)


def test_a_sandbox_taken_over_is_not_removed_and_what_was_taken_is_not_closed(tmp_path, subreaper):
    started = early_start(tmp_path)
    lock = os.open(tmp_path / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    started.hold_lock(lock)
    read_end, write_end = os.pipe()
    started.hold_watchdog(-1, write_end)
    try:
        assert started.take_lock() == lock and started.take_lock() == -1 and not started.made_sandbox
        assert started.take_lease() >= 0 and started.take_lease() == -1
        assert started.take_watchdog() == (-1, write_end) and started.take_watchdog() == (-1, -1)
        started.abandon()
        assert os.path.isdir(started.sandbox)
        assert not closed(lock) and not closed(write_end)
    finally:
        for fd in (lock, read_end, write_end):
            os.close(fd)


def test_runs_gone_are_passed_over_and_the_watchdog_is_let_finish(tmp_path, subreaper):
    # A run whose group is gone and reaped (it exited first), then one that runs; the
    # watchdog finishes what it does at EOF (here: a moment's work, then a file) before
    # its children are killed.
    started = early_start(tmp_path)
    gone = spawn("true", setsid=True)
    os.waitpid(gone, 0)
    running = spawn("sleep", "5", setsid=True)
    read_end, write_end = os.pipe()
    finished = tmp_path / "finished"
    dog = spawn("sh", "-c", f"read line; sleep 0.2; echo done > {finished}", stdin=read_end)
    os.close(read_end)
    started.runs += [EarlyRun("serve", 0, gone, "true", {}), EarlyRun("serve", 1, running, "sleep 5", {})]
    started.hold_watchdog(dog, write_end)
    began = time.monotonic()
    try:
        started.abandon()
        assert time.monotonic() - began < 2, "the running run waited for, not killed"
        assert reaped(running) and reaped(dog)
        assert finished.read_text() == "done\n", "the watchdog killed before it was done"
        assert not os.path.exists(started.sandbox) and started.runs == []
    finally:
        end(running, dog)


def test_with_no_watchdog_and_a_child_it_found_it_waits_for_none(tmp_path, subreaper):
    inherited = spawn("sleep", "5")
    started = early_start(tmp_path)
    began = time.monotonic()
    try:
        started.abandon()
        assert time.monotonic() - began < 2, "it waited for a child it found"
        assert not reaped(inherited)
    finally:
        end(inherited)


def test_a_sandbox_gone_already_is_no_error(tmp_path):
    started = early_start(tmp_path)
    shutil.rmtree(started.sandbox)
    started.abandon()
    assert started.take_lease() == -1 and not os.path.exists(started.sandbox)


def test_a_new_early_start_holds_nothing_yet():
    started = EarlyStart(entry="e", sandbox="/nonexistent", lease_fd=-1, task_id="id-0", marker="mk",
                         planned_ahead=True)
    assert (started.entry, started.task_id, started.marker, started.planned_ahead) == ("e", "id-0", "mk", True)
    assert started.made_sandbox and started.runs == [] and started.watchdog_fd() == -1
    assert started.take_watchdog() == (-1, -1) and started.take_lock() == -1 and started.take_lease() == -1
    assert not EarlyStart(entry="e", sandbox="/x", lease_fd=-1, task_id="t", marker="m").planned_ahead


def test_the_runs_handed_to_a_supervisor_are_its_alone():
    started = EarlyStart(entry="e", sandbox="/nonexistent", lease_fd=-1, task_id="t", marker="m")
    run = EarlyRun("serve", 0, 12345, "sleep 1", {})
    started.runs.append(run)
    assert started.take_runs() == [run] and started.take_runs() == []
    waited: list[bool] = []
    started.one_thread()  # none to wait for
    started.until_moved = lambda: waited.append(True)
    started.one_thread()
    assert waited == [True]


def test_a_child_s_start_is_read_past_a_parenthesis_in_its_name(tmp_path, subreaper):
    with sleeping_as(tmp_path, "a) R 1 2 3 4 5 6") as pid:  # a name of 15 bytes at most
        stat = Path(f"/proc/{pid}/stat").read_bytes().rpartition(b")")[2].split()
        assert dict(early._inherited_now())[pid] == int(stat[19]) > 0


def test_this_process_s_children_are_every_thread_s(subreaper):
    pids: list[int] = []
    worker = threading.Thread(target=lambda: pids.append(spawn("sleep", "60")))
    worker.start()
    worker.join(10)
    pids.append(spawn("sleep", "60"))
    try:
        children = early._children()
        assert set(pids) <= set(children), (pids, children)
        found = dict(early._inherited_now())
        for pid in pids:
            stat = Path(f"/proc/{pid}/stat").read_bytes().rpartition(b")")[2].split()
            assert found[pid] == int(stat[19]) > 0
    finally:
        end(*pids)
    assert not set(pids) & set(early._children())


def test_killing_its_children_goes_on_to_the_daemons_a_killed_child_left(tmp_path, subreaper):
    pidfile = tmp_path / "daemon"
    keep = spawn("sleep", "60")
    parent = spawn("sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait")
    pids = [keep, parent]
    try:
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, message="the child's child")
        grandchild = int(pidfile.read_text())
        pids.append(grandchild)
        early._kill_children(frozenset({keep}))
        assert reaped(parent) and reaped(grandchild) and not reaped(keep)
        early._kill_children(frozenset({keep}), passes=0)  # no pass: nothing looked at
        assert not reaped(keep)
    finally:
        end(*pids)


def test_with_one_pass_a_killed_child_s_daemon_is_left_for_the_next(tmp_path, subreaper):
    pidfile = tmp_path / "daemon"
    parent = spawn("sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait")
    pids = [parent]
    try:
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, message="the child's child")
        grandchild = int(pidfile.read_text())
        pids.append(grandchild)
        early._kill_children(frozenset(), passes=1)
        assert reaped(parent) and not reaped(grandchild)
        wait_for(lambda: grandchild in early._children(), 10, message="the orphan come back here")
    finally:
        end(*pids)
