"""The watchdog's held list (`executor/procs/watchdog.py`, `WatchdogKeeper.hold`): the
processes it kills by pid and start time when the supervisor is gone, besides the task's
marker and cgroup. Real watchdogs (`/bin/sh`) and real `sleep` processes: each watchdog is
let go (its pipe closed, as at the supervisor's death) and runs its passes.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from executor.procs import pidsignal
from executor.procs.reaper import Reaper, Watcher
from executor.procs.watchdog import WatchdogKeeper
from tests.support import headless, pidnames, proc_scan
from tests.support.keepers import state_of
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)


@contextlib.contextmanager
def sleepers(count: int) -> Iterator[tuple[Reaper, list[int]]]:
    """`count` sleep processes, children of this process reaped by the one reaper."""
    reaper = Reaper.acquire()
    pids: list[int] = []
    try:
        for _ in range(count):
            with reaper.forking():
                pid = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL).pid
                reaper.register(pid, Watcher())
            pids.append(pidnames.named(pid))  # the reaper reaps it: its pid may be handed on
        yield reaper, pids
    finally:
        proc_scan.kill_carrying(b"STOKER_TESTS_NOTHING=1", pids)
        reaper.release()


def start_of(pid: int) -> int:
    stat = pidsignal.read_stat(pid)
    assert stat is not None, f"{pid} is gone"
    return stat[2]


def keeper_for(reaper: Reaper, keep: list[bool]) -> WatchdogKeeper:
    keeper = WatchdogKeeper(reaper=reaper, marker=os.urandom(16).hex(), label="held.0",
                            cgroup=lambda: ("", "", ""), keep=lambda: keep[0])
    keeper.start()
    assert keeper.pid is not None
    return keeper


def let_go(keeper: WatchdogKeeper, keep: list[bool]) -> None:
    keep[0] = False
    keeper.let_go()
    keeper.wait_gone(5)


def test_the_watchdog_kills_what_it_holds_last_and_never_a_pid_whose_start_time_changed():
    """The list replaces the one before (the first sleeper, held then let go, lives on); a
    held pid whose start time is not the one recorded (a pid reused since) is not signalled
    at all, not even stopped; the one held as itself dies."""
    keep = [True]
    with sleepers(3) as (reaper, (dropped, reused, held)):
        keeper = keeper_for(reaper, keep)
        keeper.hold({dropped: start_of(dropped)})
        keeper.hold({held: start_of(held), reused: start_of(reused) + 1})
        let_go(keeper, keep)
        wait_for(lambda: not proc_scan.is_live(held), 10, message="the held sleeper killed")
        assert proc_scan.is_live(dropped), "a process no longer held was killed"
        assert proc_scan.is_live(reused), "a pid whose start time changed was killed"
        assert state_of(reused) == "S" and state_of(dropped) == "S", "left stopped"


def test_a_restarted_watchdog_holds_what_the_one_before_held():
    keep = [True]
    with sleepers(1) as (reaper, (held,)):
        keeper = keeper_for(reaper, keep)
        keeper.hold({held: start_of(held)})
        first = keeper.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: keeper.pid not in (None, first), 10, message="a new watchdog")
        let_go(keeper, keep)
        wait_for(lambda: not proc_scan.is_live(held), 10, message="the held sleeper killed")


def test_letting_go_waits_for_a_list_being_handed_over(monkeypatch, caplog):
    """At the supervisor's close, orphans reaped on the reaper thread hand a new list over
    while the owner's thread lets the watchdog go: its pipes were closed under the write,
    which then wrote to a closed descriptor (or to a file opened meanwhile with its number)
    and said the list did not fit. Letting go now waits for the hand-over."""
    from executor.procs import watchdog

    keep = [True]
    with sleepers(1) as (reaper, (held,)):
        keeper = keeper_for(reaper, keep)
        closer = threading.Thread(target=let_go, args=(keeper, keep))
        real_os = watchdog.os

        class Writing:  # the list's write, with the let go begun in the middle of it
            def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
                return getattr(real_os, name)

            def write(self, fd: int, data: bytes) -> int:
                closer.start()
                closer.join(0.2)  # done by now when nothing makes it wait
                return real_os.write(fd, data)

        monkeypatch.setattr(watchdog, "os", Writing())
        with caplog.at_level(logging.DEBUG, logger=watchdog.__name__):
            keeper.hold({held: start_of(held)})
        closer.join(5)
        assert [r.message for r in caplog.records if r.levelno >= logging.WARNING] == []
        wait_for(lambda: not proc_scan.is_live(held), 10, message="the held sleeper killed")


def test_the_watchdog_kills_a_held_process_whose_first_thread_exited_while_others_run():
    """A held process (an orphan, a daemon) whose first thread exited while another runs: its
    /proc/PID/stat reads Z, as a zombie's, with two threads, and its environment (the marker)
    is empty. Was: the watchdog took it for a zombie, and with no cgroup it outlived the task."""
    keep = [True]
    reaper = Reaper.acquire()
    pids: list[int] = []
    try:
        with reaper.forking():
            pid = subprocess.Popen([sys.executable, "-c", headless.PROGRAM], stdin=subprocess.DEVNULL).pid
            reaper.register(pid, Watcher())
        pids.append(pid)
        wait_for(lambda: headless.state(pid) == "Z" and headless.running_threads(pid) == 1, 10,
                 message="its first thread gone, the other running")
        keeper = keeper_for(reaper, keep)
        keeper.hold({pid: start_of(pid)})
        let_go(keeper, keep)
        wait_for(lambda: not proc_scan.is_live(pid), 10, message="the held headless process killed")
    finally:
        proc_scan.kill_carrying(b"STOKER_TESTS_NOTHING=1", pids)
        reaper.release()
