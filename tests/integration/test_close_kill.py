"""The close's last kill (`Containment.kill_all`) and its log drain, against a process slow
to die and a SHUTDOWN that comes while the close waits.

- `kill_all` SIGKILLed the task and walked it again every 5 ms until a walk found none: a
  process that takes a while to die after its SIGKILL (here: one in a frozen v1 freezer
  cgroup, which dies only once thawed) cost a walk and a SIGKILL of the whole task each
  5 ms (60 for 0.3 s). Now it waits for the processes it SIGKILLed by pidfd, and walks once
  more when they are gone: two walks.
- Its 1 s, and the log drain's 0.5 s, were bounded by the exit time (`exitby.ExitBy`) only as
  they began: a SHUTDOWN that came during them did not cut them. Now each ends at it.
- After the close: a run that dies later kills no child this process forked since; the
  kill's eventfd is closed (and, out of descriptors, the close kills without one).
- A process whose first thread exited while others run (state Z) is killed, by the walk and
  after `cgroup.kill`.
- Each exit of a process SIGKILLed brings a walk (one forked before its SIGKILL is killed
  though another cannot die), and only what was SIGKILLed is named; a pid reused before its
  pidfd was opened is not waited for (its start is checked).

The test's freezer cgroup is named `stoker-test-*`, below the test run's own, and removed
(its members killed) at teardown, also when the test fails.
"""
from __future__ import annotations

import contextlib
import logging
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.spec import ProcessSpec
from executor.procs import pidsignal, proctree
from executor.procs import supervisor as supervisor_module
from executor.procs.containment import Containment
from executor.procs.exitby import ExitBy
from executor.procs.logpump import LogFile, LogPump, make_pipe
from executor.procs.supervisor import Supervisor
from tests.support import cgroups as cgroup_support
from tests.support import limits, pidnames
from tests.support.headless import headless, running_threads
from tests.support.waiting import log_pump_threads_ended, wait_for

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def frozen_cgroup() -> Iterator[Path]:
    """A v1 freezer cgroup of the test's (skipped where there is none); removed after."""
    if (why := cgroup_support.unavailable(cgroup_support.FREEZER)) is not None:
        pytest.skip(f"no v1 freezer here: {why}")
    directory = Path(cgroup_support.FREEZER) / f"stoker-test-{uuid.uuid4().hex[:8]}"
    directory.mkdir()
    try:
        yield directory
    finally:
        cgroup_support.remove(str(directory))


def _freeze(directory: Path, pid: int) -> None:
    (directory / "cgroup.procs").write_text(str(pid))
    (directory / "freezer.state").write_text("FROZEN")
    wait_for(lambda: (directory / "freezer.state").read_text().strip() == "FROZEN", 10,
             message="the test's cgroup frozen")


def _thaw(directory: Path) -> None:
    (directory / "freezer.state").write_text("THAWED")


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[tuple[Supervisor, ExitBy]]:
    """A supervisor with no task cgroup (its kill is the walk's alone) and its exit time."""
    exit_by = ExitBy()
    sup = Supervisor(sandbox=tmp_path / "sandbox", task_label="closekill.0", env={"PATH": os.environ["PATH"]},
                     post=queue.SimpleQueue().put, cgroups="off", exit_by=exit_by)
    (tmp_path / "sandbox").mkdir()
    try:
        sup.start()  # inside: a start that raises midway is closed too (its reaper released)
        yield sup, exit_by
    finally:
        sup.close()


def _counting_signals(monkeypatch: pytest.MonkeyPatch, after_first) -> list[int]:  # type: ignore[no-untyped-def]
    """Count the containment's walks-and-signals (`Containment.signal`); `after_first()` once
    the first has gone out."""
    calls: list[int] = []
    real = Containment.signal

    def counted(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        sent = real(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            after_first()
        return sent
    monkeypatch.setattr(Containment, "signal", counted)
    return calls


def test_the_close_waits_for_a_process_slow_to_die_by_pidfd_not_by_walking_it_again(
        supervised, frozen_cgroup, monkeypatch):
    sup, _ = supervised
    pid = sup.spawn(ProcessSpec("slow", "exec sleep 600"), 0)
    _freeze(frozen_cgroup, pid)
    thaw = threading.Timer(0.3, _thaw, (frozen_cgroup,))  # it dies 0.3 s after its SIGKILL
    calls = _counting_signals(monkeypatch, thaw.start)
    try:
        sup.close()
    finally:
        thaw.cancel()
        _thaw(frozen_cgroup)
    assert not os.path.exists(f"/proc/{pid}/stat") or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    assert len(calls) <= 3, f"{len(calls)} walks at the close"  # was ~60: one each 5 ms


def test_a_shutdown_that_comes_while_the_close_kills_ends_the_kill(supervised, frozen_cgroup, monkeypatch, caplog):
    """A process that does not die (frozen until the test's end), a close whose kill would
    wait 60 s, and an exit time set after its first SIGKILL: the kill ends at it (was: read as
    the kill began, none then: the whole 60 s)."""
    sup, exit_by = supervised
    monkeypatch.setattr(supervisor_module, "CLOSE_KILL_SECS", 60.0)
    pid = sup.spawn(ProcessSpec("stuck", "exec sleep 600"), 0)
    _freeze(frozen_cgroup, pid)
    _counting_signals(monkeypatch, lambda: exit_by.set(time.monotonic()))
    began = time.monotonic()
    try:
        sup.close()
    finally:
        _thaw(frozen_cgroup)  # it dies, and is reaped (its leftover kill done) before the next test
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 10, message="the thawed run reaped")
    assert time.monotonic() - began < 30.0, "the close's kill outlived the exit time set during it"
    assert "close_incomplete" in caplog.text and f"pid {pid}" in caplog.text, caplog.text


def test_a_shutdown_that_comes_while_the_logs_drain_ends_the_drain(tmp_path):
    """A console that does not read (full), the pump stopped with 60 s to drain it, and an
    exit time set meanwhile: the drain ends at it (was: the whole 60 s)."""
    console_r, console_w = os.pipe()  # nobody reads it: full at 64 KiB
    run_dir = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    read_fd, write_fd = make_pipe()
    pump, exit_by, ended = LogPump("drain.0"), ExitBy(), threading.Event()
    stopped = threading.Thread(target=lambda: (pump.stop(60.0, exit_by), ended.set()))
    try:
        pump.add(read_fd, LogFile(run_dir, "stdout", tmp_path / "stdout"), console_w,
                 "task=drain.0 process=a run=0 stream=stdout")
        line = b"x" * 1023 + b"\n"
        for _ in range(128):  # past what the console's pipe holds: its copy blocks
            os.write(write_fd, line)
        wait_for(lambda: (tmp_path / "stdout").stat().st_size == 128 * len(line), 10,
                 message="every line in the file (the console's copy blocked)")
        stopped.start()
        exit_by.set(time.monotonic())
        assert ended.wait(30), "the drain outlived the exit time set during it"
        assert "stoker-logpump-console-drain.0" in {t.name for t in threading.enumerate()}, \
            "the console copy's thread, stuck in its write, is the one the cleanup waits for"
    finally:
        os.close(write_fd)
        os.close(console_r)  # the console copy's writes fail (EPIPE): its thread ends
        if stopped.ident is not None:
            stopped.join(70)
        log_pump_threads_ended("drain.0", 30)  # before console_w's number is free again
        os.close(console_w)
        os.close(run_dir)


def test_the_close_stops_waiting_for_a_cgroup_held_only_by_processes_named_stuck_already(frozen_cgroup, caplog):
    """Was: a task cgroup whose only member was SIGKILLed and would not die (D state), named
    at the task's end and by the close's kill, was waited for to the cgroup kill's 2 s
    deadline, then the watchdog 1 s and the reaper's thread 1 s more (`stoker run`: 5 s from
    KILLED to its exit, 1 s now: the close's kill). Now the removal stops waiting once those
    are all that holds it, and says so; with another member there, it waits as before."""
    if (why := cgroup_support.unavailable("auto")) is not None:
        pytest.skip(f"no task cgroup here: {why}")
    from executor.procs import cgroups

    life, cg = cgroup_support.task_cgroup_life("stuck.0", "auto")
    stuck: subprocess.Popen[bytes] | None = None
    try:  # the cgroup is released whatever happens: a test after it may make one
        stuck = subprocess.Popen(["sleep", "600"])
        assert cg.take_in(stuck.pid)
        _freeze(frozen_cgroup, stuck.pid)  # SIGKILLed, it stays (state D) until thawed
        stuck.kill()
        with caplog.at_level(logging.INFO):
            assert life.close(watchdog=4242, stuck=frozenset({stuck.pid}))
        assert life.stuck_at_close and os.path.isdir(cg.directory)
    finally:
        _thaw(frozen_cgroup)
        if stuck is not None:
            stuck.kill()
            stuck.wait()
        cgroup_support.remove(cg.directory)
        cgroups.release(cg)
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(said) == 1 and said[0].startswith("cgroup_remove_failed "), said
    assert "(1 processes still in it, SIGKILLed and not yet gone, named already: not waited for)" in said[0], said


def _alive(pid: int) -> bool:
    """Whether `pid` is a process that is neither stopped nor dead (a zombie); a
    `pidnames.Named` only as the process it named."""
    if not pidnames.is_live(pid):
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):  # gone before the open, or as it read
        return False
    return state not in ("T", "t", "Z", "X")


def test_a_run_that_dies_after_its_close_kills_no_child_started_since(supervised, frozen_cgroup, monkeypatch):
    """A run SIGKILLed at the close that would not die (frozen), the close over without it;
    then this process starts a child of its own, and the run dies. Was: the closed
    supervisor's watcher of the run did its leftover kill on the reaper's thread, and the
    new child, unregistered, was an unclaimed process of the task: SIGSTOPped and SIGKILLed
    (a later test's `subprocess.Popen` hung). A closed supervisor kills nothing more."""
    sup, _ = supervised
    monkeypatch.setattr(supervisor_module, "CLOSE_KILL_SECS", 0.2)
    pid = sup.spawn(ProcessSpec("stuck", "exec sleep 600"), 0)
    _freeze(frozen_cgroup, pid)
    stranger: subprocess.Popen[bytes] | None = None
    try:
        sup.close()
        assert os.path.exists(f"/proc/{pid}"), "the frozen run died at the close"
        stranger = subprocess.Popen(["sleep", "600"])  # not the task's: the test's own
        _thaw(frozen_cgroup)
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 10, message="the thawed run reaped")
        assert _alive(stranger.pid), "the closed supervisor's leftover kill took a child it did not start"
    finally:
        _thaw(frozen_cgroup)
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 10, message="the thawed run reaped")
        if stranger is not None:
            stranger.kill()
            stranger.wait()


def _eventfds() -> int:
    """How many eventfds this process has open."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventfd]"
    return count


def test_a_close_leaves_no_descriptor_of_its_kill_open(supervised):
    """Was: the close's kill made its ExitBy's eventfd and kept it: one more open descriptor
    for each supervisor closed that had an ExitBy of its own (`stoker run`: each attempt)."""
    sup, _ = supervised
    sup.spawn(ProcessSpec("a", "exec sleep 600"), 0)
    before = _eventfds()
    sup.close()
    assert _eventfds() == before


def test_a_close_out_of_descriptors_still_kills_the_task(supervised):
    """Every descriptor taken as the close begins: its kill waits without an eventfd, to its
    own bound, and the task dies (was: EMFILE making the eventfd raised out of the close,
    and the task's processes were left running)."""
    sup, _ = supervised
    pid = pidnames.named(sup.spawn(ProcessSpec("a", "exec sleep 600"), 0))
    try:
        with limits.no_descriptor_left():
            sup.close()
        assert not _alive(pid), "the close left the run running"
    finally:
        if _alive(pid):  # the close failed: the run, still registered, still holds its pid
            pidnames.kill(pid)
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 10, message="the run reaped")


def test_the_close_kills_a_process_whose_first_thread_exited_while_others_run(supervised, tmp_path):
    """A task's process whose main thread called `pthread_exit` while another thread runs:
    its /proc state reads Z, as a zombie's. Was: every walk took it for a zombie (gone), so
    the close's kill never signalled it and, with no cgroup, it outlived the task."""
    sup, _ = supervised
    program = ("import ctypes, threading, time; threading.Thread(target=time.sleep, args=(600,)).start(); "
               "ctypes.CDLL(None).pthread_exit(None)")
    pidfile = tmp_path / "pid"
    sup.spawn(ProcessSpec("headless", f"setsid {shlex.quote(sys.executable)} -c '{program}' & echo $! > {shlex.quote(str(pidfile))}; wait"), 0)
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "", 10, message="its pid written")
    pid = int(pidfile.read_text())
    wait_for(lambda: running_threads(pid) == 1 and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z",
             10, message="its first thread gone, the other running")
    try:
        sup.close()
        assert running_threads(pid) == 0, "the close left it running"
    finally:
        if running_threads(pid):  # the leader, a zombie, holds its pid: no other process has it
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: running_threads(pid) == 0, 10, message="it died")




def test_the_cgroup_s_kill_takes_a_process_whose_first_thread_exited_while_others_run():
    """`cgroup.kill` signals each process through its first thread: one whose first thread
    exited (`pthread_exit` in `main`) while another runs lived on, and the close's removal
    waited its 2 s for it, EBUSY, then left it. Now each member is SIGKILLed by its pid
    too (the whole process), and the cgroup is removed at once."""
    if (why := cgroup_support.unavailable("auto")) is not None:
        pytest.skip(f"no task cgroup here: {why}")
    from executor.procs import cgroups

    life, cg = cgroup_support.task_cgroup_life("headless.0", "auto")
    try:
        with headless(cg.take_in) as proc:  # in the cgroup, then its first thread exits
            if cg.how != "kill":
                pytest.skip(f"the task cgroup here is killed by {cg.how}, not cgroup.kill")
            assert life.close() and not os.path.isdir(cg.directory)
            assert proc.wait(10) == -signal.SIGKILL
    finally:
        if os.path.isdir(cg.directory):
            cgroup_support.remove(cg.directory)
        cgroups.release(cg)


def _pid_in(path: Path) -> int:
    wait_for(lambda: path.exists() and path.read_text().strip() != "", 10, message=f"{path.name} written")
    return pidnames.pid_in(path)


def test_the_close_kills_a_process_forked_before_its_sigkill_while_another_cannot_die(
        supervised, frozen_cgroup, monkeypatch, caplog, tmp_path):
    """A run's top cannot die (frozen: as in D state), and a process below it forks a child
    (in a session of its own) after the walk, before its SIGKILL. Was: the kill walked again
    only once every SIGKILLed pid had exited, so the child lived the whole bound (with no
    cgroup, past the close) and was named "SIGKILLed and not yet gone" though it never was.
    Now the forker's exit brings a walk: the child is SIGKILLed, and only the top is named.
    The close always lasts its whole bound (the top never dies), and the bound counts from
    before the first walk: the forker's trap, the fork, the forker's SIGKILL and exit and
    the walk after it all fall within it. 0.5 s was too short under load (a 2-core CI
    machine with another worker): the bound ended first and the child was left."""
    sup, _ = supervised
    monkeypatch.setattr(supervisor_module, "CLOSE_KILL_SECS", 3.0)
    (tmp_path / "forker.sh").write_text(f"trap 'setsid sleep 600 & echo $! > {tmp_path}/late' USR1\n"
                                        f"echo > {tmp_path}/trapped\n"
                                        "while :; do sleep 0.05; done\n")
    top = sup.spawn(ProcessSpec("top", f"bash {tmp_path}/forker.sh & echo $! > {tmp_path}/forker; wait"), 0)
    forker = _pid_in(tmp_path / "forker")
    # its USR1 before its trap is set ends it (a CI run under load: 'late' never written, and the
    # close, cut short by that failure, left the supervisor's reaper taking the worker's children)
    wait_for(lambda: (tmp_path / "trapped").exists(), 10, message="the forker's trap set")
    _freeze(frozen_cgroup, top)
    real_send = proctree.send

    def fork_first(*args, **kwargs):  # type: ignore[no-untyped-def]
        if not (tmp_path / "late").exists():  # the first walk is done, no SIGKILL sent yet
            os.kill(forker, signal.SIGUSR1)
            _pid_in(tmp_path / "late")
        return real_send(*args, **kwargs)
    monkeypatch.setattr(proctree, "send", fork_first)
    late = 0
    try:
        with caplog.at_level(logging.INFO):
            sup.close()
        late = _pid_in(tmp_path / "late")
        assert not _alive(late), "the child forked before the SIGKILL outlived the close"
        said = [r.getMessage() for r in caplog.records if "close_incomplete" in r.getMessage()]
        assert len(said) == 1 and f"pid {top} " in said[0] and "1 process SIGKILLed" in said[0], said
    finally:
        _thaw(frozen_cgroup)
        if late and _alive(late):
            pidnames.kill(late)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(late, 0) if late else None
        wait_for(lambda: not os.path.exists(f"/proc/{top}"), 10, message="the run reaped")


def test_the_close_does_not_wait_for_a_pid_reused_before_its_pidfd_was_opened(supervised, monkeypatch, caplog):
    """A process the walk read (pid, start) that was reaped, its pid handed to another
    process, before the kill opened its pidfd: here, the walk's start of a task's process
    made another's (this process's parent's pid, a start one tick off its own). Was: that
    stranger was waited for the whole bound, then named as the task's, not gone. Now the
    start is checked once the pidfd is open."""
    sup, _ = supervised
    monkeypatch.setattr(supervisor_module, "CLOSE_KILL_SECS", 5.0)
    sup.spawn(ProcessSpec("a", "exec sleep 600"), 0)
    stranger = os.getppid()
    real = Containment.signal

    def reused(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        sent = real(self, *args, **kwargs)
        if (starts := kwargs.get("starts")) is not None and sent:
            starts[stranger] = pidsignal.read_stat(stranger)[2] + 1  # type: ignore[index]
        return sent
    monkeypatch.setattr(Containment, "signal", reused)
    with caplog.at_level(logging.INFO):
        sup.close()
    assert "close_incomplete" not in caplog.text, caplog.text


def test_the_close_walks_again_after_a_kill_whose_processes_exited_before_their_pidfds_opened(
        supervised, monkeypatch):
    """Every process a pass SIGKILLed has exited (a zombie) by the time its pidfd is opened,
    so none is waited for: its children, forked before its SIGKILL, are re-parented by then,
    and the next walk must find them. Was: such a pass ended the kill, no walk after it. Here
    each pidfd is opened too late, as it may be under load."""
    sup, _ = supervised
    sup.spawn(ProcessSpec("a", "exec sleep 600"), 0)
    calls = _counting_signals(monkeypatch, lambda: None)
    real_add = pidsignal.Exits.add

    def too_late(self, started):  # type: ignore[no-untyped-def]
        for pid in started:
            wait_for(lambda pid=pid: not _alive(pid), 10, message=f"pid {pid} exited")
        real_add(self, started)
    monkeypatch.setattr(pidsignal.Exits, "add", too_late)
    sup.close()
    assert len(calls) == 2, f"{len(calls)} walks at the close"


def test_a_pid_whose_start_is_not_the_walk_s_is_not_waited_for():
    """`Exits` with a live process added under another start time: not waited for (gone at
    once); under its own, waited for until it exits."""
    proc = subprocess.Popen(["sleep", "600"])
    try:
        start = pidsignal.read_stat(proc.pid)[2]  # type: ignore[index]
        with pidsignal.Exits() as exits:
            exits.add({proc.pid: start + 1})
            assert not exits and exits.wait(time.monotonic() + 30)
            exits.add({proc.pid: start})
            assert exits and not exits.wait(time.monotonic() + 0.05)
            proc.kill()
            assert exits.wait(time.monotonic() + 30) and not exits
    finally:
        proc.kill()
        proc.wait()
