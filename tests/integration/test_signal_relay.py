"""`executor.host.signals.SignalRelay` with real signals, in this process.

The main thread waits in a queue as a supervisor's does; the signals are sent to a worker
thread (`pthread_kill`), where the kernel may deliver a signal sent to the process. SIGUSR1
and SIGUSR2 stand in for the stop signals; every test puts back what it found.
"""
from __future__ import annotations

import logging
import os
import queue
import signal
import threading

import pytest

from executor.host.signals import STRAY_SIGNALS, SignalRelay, signal_name

USR1, USR2 = signal.SIGUSR1, signal.SIGUSR2


@pytest.fixture
def restored():
    """The handlers and wakeup fd as found, checked put back after the test."""
    before = {s: signal.getsignal(s) for s in (USR1, USR2)}
    wakeup = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(wakeup)
    yield
    assert {s: signal.getsignal(s) for s in (USR1, USR2)} == before
    assert signal.set_wakeup_fd(wakeup) == wakeup


def from_a_worker(*signums: int) -> None:
    """Each signal sent to a worker thread of this process, in order."""
    def send() -> None:
        for signum in signums:
            signal.pthread_kill(threading.get_ident(), signum)

    worker = threading.Thread(target=send)
    worker.start()
    worker.join(5)


def test_a_signal_taken_by_a_worker_thread_wakes_a_main_thread_blocked_in_a_queue(restored):
    got: queue.SimpleQueue[int] = queue.SimpleQueue()
    relay = SignalRelay([USR1], got.put)
    try:
        from_a_worker(USR1)
        assert got.get(timeout=5) == USR1  # queue.Empty here: main slept on
    finally:
        relay.close()


def test_each_signal_is_relayed_once_in_order(restored):
    got: queue.SimpleQueue[int] = queue.SimpleQueue()
    relay = SignalRelay([USR1, USR2], got.put)
    try:
        from_a_worker(USR2)
        assert got.get(timeout=5) == USR2
        from_a_worker(USR1)
        assert got.get(timeout=5) == USR1
        assert got.empty()
    finally:
        relay.close()


def test_the_signals_recorded_before_it_was_up_go_ahead_of_one_it_reads(restored):
    """`stoker run`'s SIGINT recorded while it loaded, then a SIGTERM relayed at once: the
    SIGINT is the first stop, the SIGTERM the second (was: the other way round at times)."""
    got: queue.SimpleQueue[int] = queue.SimpleQueue()

    def recorded() -> list[int]:
        from_a_worker(USR2)  # the relay's handler is up: its number is in the pipe
        with pytest.raises(queue.Empty):
            got.get(timeout=0.1)  # and not handed on before the recorded ones
        return [USR1, USR1]

    relay = SignalRelay([USR1, USR2], got.put, recorded=recorded)
    try:
        assert [got.get(timeout=5) for _ in range(3)] == [USR1, USR1, USR2]
    finally:
        relay.close()
    assert got.empty()


@pytest.mark.timeout(30)
def test_numbers_read_at_once_are_each_handed_on_once_in_order(restored):
    """Signals that came faster than the relay read them: their numbers, in the wakeup pipe
    as the handler writes them, come in one read."""
    got: queue.SimpleQueue[int] = queue.SimpleQueue()
    relay = SignalRelay([USR1, USR2], got.put)
    try:
        os.write(relay._write, bytes([USR1, USR2, USR1]))
        assert [got.get(timeout=5) for _ in range(3)] == [USR1, USR2, USR1]
    finally:
        relay.close()
    assert got.empty()


def test_another_handled_signal_is_not_relayed_and_its_handler_still_runs(restored):
    got: queue.SimpleQueue[int] = queue.SimpleQueue()
    handled = threading.Event()
    signal.signal(USR2, lambda _s, _f: handled.set())
    relay = SignalRelay([USR1], got.put)
    try:
        from_a_worker(USR2, USR1)
        assert got.get(timeout=5) == USR1
        assert handled.wait(5)  # run by the main thread, which the relay's put woke
        assert got.empty()
    finally:
        relay.close()
        signal.signal(USR2, signal.SIG_DFL)


def test_a_failing_reaction_is_logged_and_the_next_signal_still_relayed(restored, caplog):
    got: queue.SimpleQueue[int] = queue.SimpleQueue()
    calls = []

    def react(signum: int) -> None:
        calls.append(signum)
        if len(calls) == 1:
            raise RuntimeError("the owner is gone")
        got.put(signum)

    relay = SignalRelay([USR1], react)
    try:
        with caplog.at_level(logging.ERROR, logger="executor.host.signals"):
            from_a_worker(USR1)
            from_a_worker(USR1)
            assert got.get(timeout=5) == USR1
        assert calls == [USR1, USR1]
        assert "signal_reaction_failed signal=SIGUSR1" in caplog.text
        assert "RuntimeError: the owner is gone" in caplog.text  # with its traceback
    finally:
        relay.close()


def test_close_puts_back_the_handler_and_wakeup_fd_and_ends_the_thread(restored):
    relay = SignalRelay([USR1], lambda _s: None)
    assert signal.getsignal(USR1) not in (signal.SIG_DFL, signal.SIG_IGN)
    relay.close()
    relay.close()  # a second close does nothing
    assert not [t for t in threading.enumerate() if t.name == "stoker-signals"]


def test_it_is_installed_from_the_main_thread_only(restored):
    errors = []

    def install() -> None:
        try:
            SignalRelay([USR1], lambda _s: None)
        except RuntimeError as exc:
            errors.append(str(exc))

    worker = threading.Thread(target=install)
    worker.start()
    worker.join(5)
    assert errors == ["SignalRelay must be installed from the main thread"]


def test_a_real_time_signal_is_relayed_and_named_by_its_offset(restored):
    rt = signal.SIGRTMIN + 3
    before = signal.getsignal(rt)
    got: queue.SimpleQueue[int] = queue.SimpleQueue()
    relay = SignalRelay([rt], got.put)
    try:
        from_a_worker(rt)
        assert got.get(timeout=5) == rt
    finally:
        relay.close()
    assert signal.getsignal(rt) == before
    assert [signal_name(s) for s in (rt, signal.SIGRTMIN, signal.SIGRTMAX, USR1)] == [
        "SIGRTMIN+3", "SIGRTMIN", "SIGRTMAX", "SIGUSR1"]  # signal.Signals(rt) raises ValueError


def test_close_leaves_the_ones_it_is_told_to_ignored_and_puts_back_the_others(restored):
    before = signal.getsignal(USR2)
    relay = SignalRelay([USR1, USR2], lambda _s: None)
    relay.close(ignoring=[USR2, signal.SIGALRM])  # one it does not relay stays as it was
    try:
        assert signal.getsignal(USR2) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGALRM) is not signal.SIG_IGN
    finally:
        signal.signal(USR2, before)


STOPS = (signal.SIGTERM, signal.SIGINT)


def test_the_executor_keeps_its_strays_ignored_once_its_relay_closes(tmp_path, monkeypatch):
    """`stoker executor` writes its last lines (executor_exit, the spool, the flush) after
    its relay closed, which put SIGUSR1, SIGHUP and SIGQUIT back at their defaults: a task's
    late `kill -USR1 $PPID` then ended it by signal instead of its exit status. SIGTERM and
    SIGINT too: with nothing left to stop, one raised the entry point's stop (exit 3)."""
    from types import SimpleNamespace

    from config.executorsettings import ExecutorSettings
    from executor.mesos import process

    strays = (signal.SIGUSR1, signal.SIGHUP, signal.SIGQUIT, signal.SIGRTMIN + 3)
    # every one its relay may leave ignored: a child of a later test inherits SIG_IGN
    inherited = {signum: signal.getsignal(signum) for signum in {*strays, *STRAY_SIGNALS, *STOPS}}
    settings = ExecutorSettings.from_env({"MESOS_AGENT_ENDPOINT": "127.0.0.1:5051", "MESOS_FRAMEWORK_ID": "f",
                                          "MESOS_EXECUTOR_ID": "e", "MESOS_SANDBOX": str(tmp_path)})
    monkeypatch.setattr(process.HostSession, "open", lambda *a, **k: SimpleNamespace(close=lambda: None))
    monkeypatch.setattr(process, "_run", lambda *a: 0)
    try:
        for signum in strays:
            signal.signal(signum, signal.SIG_DFL)
        assert process.main(settings, {}) == 0
        after = {signum: signal.getsignal(signum) for signum in (*strays, *STOPS)}
    finally:
        for signum, handler in inherited.items():
            signal.signal(signum, handler)
    assert after == {signum: signal.SIG_IGN for signum in (*strays, *STOPS)}


@pytest.mark.timeout(30)
def test_a_storm_of_a_latest_only_signal_is_one_reaction_per_read_and_a_stop_amid_it_is_relayed(restored):
    """SIGWINCH (USR2 here) redraws the live view: only the terminal's size now matters. A
    storm of them (a window dragged, a loop of `kill -WINCH`) was one redraw each, slower
    than the signals came: the wakeup pipe filled, and a SIGTERM sent then was dropped
    (`stoker run` went on until kill -9). Those read at once are one reaction, the last."""
    calls: list[int] = []
    holding, release = threading.Event(), threading.Event()

    def react(signum: int) -> None:
        calls.append(signum)
        if len(calls) == 1:  # the relay busy in a reaction while the storm comes
            holding.set()
            release.wait(10)

    relay = SignalRelay([USR1, USR2], react, latest_only=[USR2])
    try:
        os.write(relay._write, bytes([USR2]))
        assert holding.wait(5)
        os.write(relay._write, bytes([USR2]) * 3000 + bytes([USR1]) + bytes([USR2]) * 1000)
        release.set()
    finally:
        relay.close()  # reads on to its stop
    # the first; then, the 4,001 read at once: the stop, and the storm's last USR2
    assert calls == [USR2, USR1, USR2], (len(calls), calls[:5])
