"""`ExitBy`: when `stoker executor` must be gone, set from another thread at any time; a wait
through it ends at it even when it is set during the wait (a SHUTDOWN that comes while the
close of a task a KILL ended waits for the watchdog), and as soon as what it waits for is
done and said (`wake`)."""
from __future__ import annotations

import os
import threading
import time

from config.executorsettings import ExecutorSettings
from executor.mesos.driver import ExecutorDriver
from executor.mesos.executor import EXIT_MARGIN_SECS, SHUTDOWN_MARGIN_SECS, StokerExecutor
from executor.mesos.process import ACK_MARGIN_SECS, _ack_budget
from executor.procs.exitby import ExitBy, within
from tests.support.waiting import wait_for


def _waiting(exit_by: ExitBy, done, secs: float) -> tuple[threading.Thread, list[bool]]:
    """`exit_by.wait(done, secs)` on a thread of its own; its result in the list once over."""
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(exit_by.wait(done, secs)), daemon=True)
    thread.start()
    return thread, result


def test_a_wait_ends_at_an_exit_time_set_while_it_waits():
    exit_by = ExitBy()
    assert exit_by() is None and within(30.0, exit_by()) == 30.0  # no bound yet
    thread, result = _waiting(exit_by, lambda: False, 60.0)
    exit_by.set(time.monotonic())  # before the wait began, or during it: over either way
    thread.join(10)  # (was: read once as the close began, the whole 60 s waited for)
    assert result == [False]


def test_a_wait_ends_once_what_it_waits_for_is_done_and_said():
    exit_by, done = ExitBy(), threading.Event()
    thread, result = _waiting(exit_by, done.is_set, 60.0)
    done.set()
    exit_by.wake()
    thread.join(10)
    assert result == [True]


def test_a_wait_nobody_wakes_ends_at_its_own_bound_after_one_more_look():
    """No exit time, no `wake`: the wait ends as its `secs` run out, even a bound under a
    second, and says what `done` says at that last look."""
    exit_by = ExitBy()
    looks = iter([False, True])  # done at its second look: the one after the bound
    thread, result = _waiting(exit_by, looks.__next__, 0.3)
    thread.join(10)
    assert result == [True]
    thread, result = _waiting(exit_by, lambda: False, 0.3)
    thread.join(10)
    assert result == [False]


def test_the_soonest_exit_time_holds():
    exit_by = ExitBy()
    soon = time.monotonic() + 100.0
    exit_by.set(soon)
    exit_by.set(soon + 50.0)  # a second SHUTDOWN, a signal after one: no later
    assert exit_by() == soon
    assert 0.0 < within(1000.0, exit_by()) <= 100.0 and within(1.0, exit_by()) == 1.0
    exit_by.set(time.monotonic() - 1.0)  # past: no time left, never less than none
    assert within(1000.0, exit_by()) == 0.0
    assert exit_by.wait(lambda: True, 0.0) is True  # done already: said so, however late


def test_a_second_shutdown_gives_the_executor_no_more_time():
    """The agent counts its grace from its SHUTDOWN: a stop signal after it (or a second
    SHUTDOWN) moves neither the close's bound nor the wait for the last acknowledgement
    (was: both counted from the latest, past the agent's destroy)."""
    settings = ExecutorSettings.from_env({"MESOS_AGENT_ENDPOINT": "127.0.0.1:5051", "MESOS_FRAMEWORK_ID": "f",
                                          "MESOS_EXECUTOR_ID": "e", "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": "5secs"})
    executor = StokerExecutor(settings, {}, on_done=lambda: None)
    driver = ExecutorDriver(executor, settings)
    executor.shutdown(driver)
    first, exit_by = executor.shutdown_at, executor.exit_by()
    assert first is not None and exit_by == first + 5.0 - EXIT_MARGIN_SECS
    wait_for(lambda: time.monotonic() > first + 0.05, 5, message="the clock past the SHUTDOWN")
    executor.shutdown(driver)  # SIGTERM, treated as SHUTDOWN
    assert (executor.shutdown_at, executor.exit_by()) == (first, exit_by)
    assert _ack_budget(executor, settings) <= 5.0 - ACK_MARGIN_SECS - 0.05


def test_a_waking_fd_turns_readable_as_an_exit_time_is_set_and_quiet_once_the_bound_is_read():
    """The close's kill waits on pidfds and on `waking`'s eventfd: a SHUTDOWN during that wait
    wakes it (readable), and the kill, reading its new bound, makes it quiet again."""
    import select

    exit_by = ExitBy()
    with exit_by.waking() as fd:
        assert select.select([fd], [], [], 0)[0] == []  # no exit time: quiet
        at = time.monotonic() + 100.0
        exit_by.set(at)
        assert select.select([fd], [], [], 0)[0] == [fd]
        assert exit_by.bound(at + 50.0, fd) == at and exit_by.bound(at - 1.0, fd) == at - 1.0
        assert select.select([fd], [], [], 0)[0] == []
    late = ExitBy()
    late.set(at)  # before the fd was made: readable from the start
    with late.waking() as fd:
        assert select.select([fd], [], [], 0)[0] == [fd]


def test_each_waiter_has_its_own_fd_woken_by_one_set_and_closed_as_its_wait_ends():
    """Two waits at once (the close's kill, a second waiter): one `set` wakes both, one's
    bound read leaves the other's readable; and no fd outlives its wait (was: one eventfd
    per ExitBy, kept open, read by whoever read the bound first: `stoker run`, an ExitBy per
    attempt, kept one more fd open at each restart)."""
    import select

    before = _eventfds()
    exit_by = ExitBy()
    with exit_by.waking() as first, exit_by.waking() as second:
        assert first >= 0 and second >= 0 and first != second
        exit_by.set(time.monotonic() + 100.0)
        exit_by.bound(time.monotonic() + 200.0, first)
        assert select.select([first, second], [], [], 0)[0] == [second]
    exit_by.set(time.monotonic() + 10.0)  # no fd is written now
    assert _eventfds() == before


def _eventfds() -> list[int]:
    """This process's open eventfds."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventfd]":
                found.append(int(fd))
        except OSError:
            continue  # the listing's own descriptor, closed since
    return sorted(found)


def test_a_wait_with_a_share_takes_that_share_of_the_time_left_when_the_exit_time_is_set():
    """A task's leave of its ServerSet begun after a KILL (no exit time yet) while ZooKeeper
    is stalled, then SHUTDOWN: the leave takes a quarter of what is left, as one begun after
    the SHUTDOWN does. Was: it ran on to the exit time, past the processes' grace end."""
    exit_by = ExitBy()
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(exit_by.wait(lambda: False, 60.0, share=0.25)),
                              daemon=True)
    thread.start()
    set_at = time.monotonic()
    exit_by.set(set_at + 6.0)
    thread.join(30)
    assert result == [False]
    assert time.monotonic() - set_at < 4.5  # about 1.5 s: a quarter of the 6 s left (was: 6 s)
    assert exit_by.wait(lambda: False, 60.0, share=0.25) is False  # set before it began: the same
    assert time.monotonic() < set_at + 5.5  # about 1.1 s more: a quarter of the 4.5 s or less left



class _RacedExecutor(StokerExecutor):
    """The executor, its `shutdown_at` read by two threads at once: a read outside the lock
    waits (up to 2 s) until the other thread has read it too, the worst interleaving
    there is, every time; the values written are kept."""

    def __init__(self, *args, **kwargs) -> None:
        self.both_read, self.written = threading.Barrier(2), []
        super().__init__(*args, **kwargs)

    @property
    def shutdown_at(self) -> float | None:
        seen = self._shutdown_at
        if not self._lock.locked():
            try:
                self.both_read.wait(2.0)
            except threading.BrokenBarrierError:
                return seen  # the other thread is not reading it: nothing to interleave with
        return seen

    @shutdown_at.setter
    def shutdown_at(self, at: float | None) -> None:
        self._shutdown_at = at
        if at is not None:
            self.written.append(at)


def test_a_shutdown_and_a_stop_signal_at_once_take_the_first_ones_time():
    """SHUTDOWN (the driver's thread) and a stop signal (the main thread) at the same moment:
    one of them is the first, and the grace counts from its time, the exit time's too (was:
    both saw no SHUTDOWN yet and the later write won, the grace counted from the second)."""
    settings = ExecutorSettings.from_env({"MESOS_AGENT_ENDPOINT": "127.0.0.1:5051", "MESOS_FRAMEWORK_ID": "f",
                                          "MESOS_EXECUTOR_ID": "e", "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": "5secs"})
    for _ in range(50):
        executor = _RacedExecutor(settings, {}, on_done=lambda: None)
        executor.written.clear()  # __init__'s None
        driver = ExecutorDriver(executor, settings)
        calls = [threading.Thread(target=executor.shutdown, args=(driver,)) for _ in "ab"]
        for call in calls:
            call.start()
        for call in calls:
            call.join(10)
        assert len(executor.written) == 1, "both calls took themselves for the first"
        assert executor._shutdown_at == executor.written[0]
        assert executor.exit_by() == executor.written[0] + 5.0 - EXIT_MARGIN_SECS


def test_a_leaves_wait_takes_its_share_of_the_time_left_until_the_sigkill_set_while_it_waits():
    """A leave of the ServerSet under way (a KILL's, ZooKeeper stalled) when SHUTDOWN comes:
    its share is of what is left until the processes' SIGKILL (`kill_at`), which comes
    before the exit time. Was: of the exit time's, past the SIGKILL under ~1.17 s of the
    agent's grace (the SIGTERM, after the leave, came after the SIGKILL's time)."""
    exit_by = ExitBy()
    result: list[bool] = []
    thread = threading.Thread(
        target=lambda: result.append(exit_by.wait(lambda: False, 60.0, share=0.25, to_kill=True)), daemon=True)
    thread.start()
    set_at = time.monotonic()
    exit_by.set(set_at + 12.0, kill_at=set_at + 2.0)
    thread.join(30)
    assert result == [False]
    assert time.monotonic() - set_at < 2.0  # about 0.5 s: a quarter of the 2 s (was: 3 s, of the 12 s)
    assert exit_by.wait(lambda: False, 0.0, share=0.25) is False  # not a leave's: the exit time's share


def test_a_shutdown_hands_the_exit_time_its_sigkill_time():
    """The SIGKILL time a leave's share is of is the SHUTDOWN's `kill_all_at`: its grace less
    SHUTDOWN_MARGIN_SECS, counted from the first SHUTDOWN."""
    settings = ExecutorSettings.from_env({"MESOS_AGENT_ENDPOINT": "127.0.0.1:5051", "MESOS_FRAMEWORK_ID": "f",
                                          "MESOS_EXECUTOR_ID": "e", "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": "1100ms"})
    executor = StokerExecutor(settings, {}, on_done=lambda: None)
    executor.shutdown(ExecutorDriver(executor, settings))
    assert executor.shutdown_at is not None
    assert executor._exit.kill_at == executor.shutdown_at + 1.1 - SHUTDOWN_MARGIN_SECS


def test_a_wait_not_over_soon_is_said_once_with_the_time_left_and_one_over_at_once_is_not():
    """`noted`: a leave of the ServerSet that ZooKeeper does not answer (stalled) held a stop
    up to 2 s without a word; now a wait still not over `after` seconds in says so, once,
    with what is left of it, and one over at once says nothing."""
    said: list[float] = []
    assert ExitBy().wait(lambda: len(said) > 0, 60.0, noted=(0.05, said.append)) is True  # over once said
    assert len(said) == 1 and 30.0 < said[0] < 60.0, said
    quiet: list[float] = []
    assert ExitBy().wait(lambda: True, 5.0, noted=(0.0, quiet.append)) is True
    assert quiet == []
