"""One signal to one process (`executor/procs/pidsignal.py`) with real processes, in this
process (no supervisor, no subreaper): kill() with the judged process's exit asked just
before (`kill_checked`), a group's signal and the SIGCONT after it (`signal_group`,
`wakes`), and whether this process may send through a pidfd (`send_denied`).

The signal by kill() where a seccomp filter denies pidfd_send_signal (`kill_by_pid`) is
here too; `pidfd_signal`'s choice of it needs the filter, installed in a child process:
tests/integration/test_kill_fallback.py.
"""
from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from executor.procs import pidsignal
from tests.support.limits import descriptors, no_descriptor_left, opened_since
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)


@contextlib.contextmanager
def _cat() -> Iterator[subprocess.Popen[bytes]]:
    """A `cat` in a session (and process group) of its own: it echoes a line while it runs."""
    proc = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
    try:
        yield proc
    finally:
        proc.kill()
        proc.communicate(timeout=10)


def _echoes(proc: subprocess.Popen[bytes]) -> bool:
    """It runs: a line written comes back within 10 s."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"ping\n")
    proc.stdin.flush()
    return bool(select.select([proc.stdout], [], [], 10)[0]) and proc.stdout.readline() == b"ping\n"


def _stopped(proc: subprocess.Popen[bytes]) -> None:
    """Waits until the kernel reports it stopped (waitpid's WUNTRACED, polled, 10 s at most)."""
    wait_for(lambda: os.waitpid(proc.pid, os.WUNTRACED | os.WNOHANG)[0] == proc.pid, 10, message="stopped")


def _answers(*answers: bool) -> Callable[[], bool]:
    """`gone` answering each of `answers` in turn: the judged process's exit as the caller sees it."""
    left = list(answers)
    return lambda: left.pop(0)


def test_a_process_judged_gone_is_not_signalled():
    with _cat() as proc:
        assert pidsignal.kill_checked(proc.pid, signal.SIGTERM, _answers(True)) is False
        assert _echoes(proc)


def test_a_process_not_gone_gets_the_signal():
    with _cat() as proc:
        assert pidsignal.kill_checked(proc.pid, signal.SIGTERM, _answers(False)) is True
        assert proc.wait(10) == -signal.SIGTERM


def test_a_sigstop_stays_while_the_judged_process_is_still_there():
    with _cat() as proc:
        assert pidsignal.kill_checked(proc.pid, signal.SIGSTOP, _answers(False, False)) is True
        _stopped(proc)
        os.kill(proc.pid, signal.SIGCONT)
        assert _echoes(proc)


def test_a_sigstop_that_may_have_hit_a_reused_pid_is_undone():
    """`gone()` true just after the SIGSTOP: the pid may have been another process's by
    then; it gets SIGCONT, so whatever took the pid is not left stopped."""
    with _cat() as proc:
        assert pidsignal.kill_checked(proc.pid, signal.SIGSTOP, _answers(False, True)) is True
        assert _echoes(proc)


def test_a_process_gone_before_its_sigcont_is_no_error():
    with _cat() as proc:
        def reaped() -> bool:  # the second look: it is gone, and reaped, before the SIGCONT
            proc.kill()
            proc.wait(10)
            return True

        answers = [False]
        assert pidsignal.kill_checked(proc.pid, signal.SIGSTOP, lambda: answers.pop() if answers else reaped())


@pytest.mark.parametrize("sig, woken", [
    (signal.SIGTERM, True), (signal.SIGINT, True), (signal.SIGHUP, True), (signal.SIGQUIT, True),
    (signal.SIGUSR1, True), (signal.SIGKILL, False), (signal.SIGCONT, False), (signal.SIGSTOP, False),
    (signal.SIGTSTP, False), (signal.SIGTTIN, False), (signal.SIGTTOU, False)])
def test_every_signal_but_kill_continue_and_the_stops_is_followed_by_sigcont(sig, woken):
    assert pidsignal.wakes(sig) is woken


def test_a_stopped_group_is_continued_so_that_its_sigterm_acts():
    """A stopped process acts on no signal but SIGKILL until continued: the SIGTERM alone
    would sit pending for the whole grace."""
    with _cat() as proc:
        os.killpg(proc.pid, signal.SIGSTOP)
        _stopped(proc)
        assert pidsignal.signal_group(proc.pid, signal.SIGTERM) is True
        assert proc.wait(10) == -signal.SIGTERM


def test_a_group_told_to_stop_is_not_continued():
    with _cat() as proc:
        assert pidsignal.signal_group(proc.pid, signal.SIGSTOP) is True
        _stopped(proc)
        with open(f"/proc/{proc.pid}/stat") as stat:
            assert stat.read().rpartition(")")[2].split()[0] == "T"
        os.killpg(proc.pid, signal.SIGCONT)
        assert _echoes(proc)


def test_a_group_with_none_left_is_false():
    with _cat() as proc:
        pgid = proc.pid
    assert pidsignal.signal_group(pgid, signal.SIGTERM) is False


def test_this_process_may_send_through_a_pidfd_asked_once_with_signal_0(monkeypatch):
    monkeypatch.setattr(pidsignal, "_PROBED", {})  # as at the process's start: not asked yet
    got: list[int] = []
    before = signal.signal(signal.SIGHUP, lambda signum, frame: got.append(signum))
    try:
        fds = descriptors()
        assert pidsignal.send_denied() is False
        assert pidsignal._PROBED == {os.getpid(): (0, "")}  # the answer kept: the next one asks nothing
        assert pidsignal.send_denied() is False
        assert opened_since(fds) == {}  # its pidfd closed
    finally:
        signal.signal(signal.SIGHUP, before)
    assert got == []  # the probe is signal 0: nothing is delivered to this process


def test_no_descriptor_for_the_probe_is_no_answer_and_asked_again(monkeypatch):
    """pidfd_open's EMFILE (every descriptor of the limit in use) says nothing of a seccomp
    profile: not denied, and not kept, so that the next call asks."""
    monkeypatch.setattr(pidsignal, "_PROBED", {})
    with no_descriptor_left():
        assert pidsignal.send_denied() is False
    assert pidsignal._PROBED == {}


def test_a_signal_through_a_pidfd_reaches_its_process_and_one_gone_is_no_such_process():
    with _cat() as proc:
        pidfd = os.pidfd_open(proc.pid)
        try:
            pidsignal.pidfd_signal(pidfd, proc.pid, signal.SIGTERM)
            assert proc.wait(10) == -signal.SIGTERM
            with pytest.raises(ProcessLookupError):
                pidsignal.pidfd_signal(pidfd, proc.pid, signal.SIGTERM)
        finally:
            os.close(pidfd)


def _within_10_s(call: Callable[[], None]) -> None:
    """`call()` on a thread of its own, its end awaited 10 s at most: a look at a pidfd that
    blocks (a select without its 0 timeout) fails the test, not hangs it."""
    errors: list[BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # handed to the test's thread
            errors.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(10), "still blocked after 10 s"
    if errors:
        raise errors[0]


def test_by_pid_where_no_pidfd_may_carry_it_a_live_process_gets_the_signal_and_one_exited_none():
    with _cat() as proc:
        pidfd = os.pidfd_open(proc.pid)
        try:
            _within_10_s(lambda: pidsignal.kill_by_pid(pidfd, proc.pid, signal.SIGTERM))
            assert select.select([pidfd], [], [], 10)[0]  # its exit: the pidfd turns readable
            with pytest.raises(ProcessLookupError) as gone:  # exited, not yet reaped: not signalled
                pidsignal.kill_by_pid(pidfd, proc.pid, signal.SIGTERM)
            assert (gone.value.errno, gone.value.strerror) == (errno.ESRCH, os.strerror(errno.ESRCH))
            assert proc.wait(10) == -signal.SIGTERM
        finally:
            os.close(pidfd)


def test_a_pid_that_is_another_process_now_is_not_waited_for():
    """The leftover kill waits for what it SIGKILLed by pid and the start time its walk read: a
    grandchild reaped by its own parent, its pid handed to another process meanwhile, is not
    waited for to the deadline (a restart held LEFTOVER_SECS and an ERROR logged)."""
    proc = subprocess.Popen(["sleep", "30"])
    try:
        start = pidsignal.read_stat(proc.pid)[2]
        assert pidsignal.wait_exited({proc.pid: start + 1}, time.monotonic() + 30)
        assert not pidsignal.wait_exited({proc.pid: start}, time.monotonic() + 0.05)
    finally:
        proc.kill()
        proc.wait()
