"""The watchdog's keeper (`executor/procs/watchdog.py`, `WatchdogKeeper`) in this process:
a start refused and tried again, how a watchdog is started, a stop continued, one that died
restarted, the close's wait and its lines (the cgroup told and the held list:
test_watchdog_held.py).

Real watchdogs (`/bin/sh`, children of this process reaped by the one reaper); a start the
kernel refuses (a full pids cgroup, `ulimit -u`: EAGAIN) is `os.posix_spawn` raising as it
would (the conftest's `refused_spawns`). Each keeper is let go and waited for before its test
ends (`kept`).
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from executor.procs import watchdog
from executor.procs.exitby import ExitBy
from executor.procs.reaper import Watcher
from executor.procs.watchdog import start_watchdog
from executor.procs.watchdogsh import WATCHDOG_COMMAND, WATCHDOG_ENV
from tests.support.keepers import Kept, argv_of, events, reaches
from tests.support.limits import no_descriptor_left
from tests.support.nosetsid import posix_spawn_without_setsid
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)


def open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# ---- a start refused, and tried again


def test_a_refused_start_is_one_error_tried_again_while_the_task_lives_and_one_info_line_once_up(
        kept, refused_spawns, caplog):
    one = kept()
    before = open_fds()
    refused_spawns(2)
    one.keeper.start()
    assert one.keeper.pid is None and one.keeper.running() is None
    assert open_fds() == before, "the pipes of a refused start were left open"
    one.keeper.ensure()  # refused again: no second line
    [(level, event, fields)] = events(caplog)
    assert (level, event) == ("ERROR", "watchdog_failed")
    assert fields["error"] == "BlockingIOError: [Errno 11] Resource temporarily unavailable", fields
    assert fields["task"] == "kept.0" and fields["consequence"] == (
        "the task is not protected against the supervisor's death until it starts; tried again whenever "
        "the task is idle")
    one.keep = False
    one.keeper.ensure()  # the task closing: not tried
    assert one.keeper.pid is None
    one.keep = True
    one.keeper.ensure()
    assert one.keeper.running() == one.keeper.pid is not None
    assert events(caplog)[-1] == ("INFO", "watchdog_started", {"task": "kept.0", "pid": one.keeper.pid,
                                                                "reason": "after 2 failed starts"})
    caplog.clear()
    one.keeper.ensure()  # one runs: nothing to do
    assert events(caplog) == []


def test_a_start_out_of_descriptors_at_its_second_pipe_closes_its_first(kept, caplog):
    one = kept()
    with no_descriptor_left(free=2):
        one.keeper.start()
        read_end, write_end = os.pipe()  # the first pipe's two given back
        os.close(read_end)
        os.close(write_end)
    assert one.keeper.pid is None
    assert events(caplog)[0][2]["error"] == "OSError: [Errno 24] Too many open files", events(caplog)


def test_one_refused_start_is_counted_in_the_singular_and_a_first_start_is_a_debug_line(
        kept, refused_spawns, caplog):
    first = kept()
    first.keeper.start()
    assert events(caplog) == [("DEBUG", "watchdog_started", {"task": "kept.0", "pid": first.keeper.pid})]
    caplog.clear()
    refused_spawns(1)
    second = kept()
    second.keeper.start()
    second.keeper.ensure()
    assert [e[:2] for e in events(caplog)] == [("ERROR", "watchdog_failed"), ("INFO", "watchdog_started")]
    assert events(caplog)[-1][2]["reason"] == "after 1 failed start"


def test_a_watchdog_started_by_popen_where_posix_spawn_cannot_start_a_session_is_reaped_once(
        kept, monkeypatch):
    cannot_start_a_session(monkeypatch)
    one = kept()
    one.keeper.start()
    dog = one.keeper._watchdog
    assert dog is not None and dog.popen is not None and dog.popen.pid == dog.pid
    one.close()
    wait_for(lambda: dog.popen.returncode is not None, 10, message="its exit status set")
    assert dog.popen.returncode == 0  # set as the reaper reaped it: subprocess never waits on it
    assert dog.popen.poll() == 0


@pytest.mark.parametrize("how", ["posix_spawn", "popen"])
def test_a_watchdog_holds_its_pipe_dev_null_and_its_list_in_a_session_of_its_own(kept, monkeypatch, how):
    # This process ignores SIGPIPE (Python's start) and holds descriptors of its own: the
    # watchdog gets SIGPIPE and SIGXFSZ at their defaults, and its four descriptors, and
    # this process's open for exec (pytest's, and one of the test's) by posix_spawn, which
    # closes none (a supervisor makes them close-on-exec first, `earlyfork.shut_inherited`),
    # as Popen's `close_fds` closed them. "popen": where posix_spawn cannot start a session.
    if how == "popen":
        cannot_start_a_session(monkeypatch)
    one = kept()
    open_for_exec = os.open("/dev/null", os.O_RDONLY)
    os.set_inheritable(open_for_exec, True)
    try:
        one.keeper.start()
    finally:
        os.close(open_for_exec)
    dog = one.keeper._watchdog
    assert dog is not None and (dog.popen is None) == (how == "posix_spawn")
    wait_for(lambda: ignored_by(dog.pid) >> (signal.SIGTERM - 1) & 1, 10, message="its trap set")
    fds = {int(fd): os.readlink(f"/proc/{dog.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{dog.pid}/fd")}
    inherited = {fd for fd in map(int, os.listdir("/proc/self/fd")) if fd > 3 and inheritable(fd)} | {open_for_exec}
    listed = 3 if how == "posix_spawn" else dog.drain_fd  # Popen's pass_fds keeps its number
    assert sorted(fds) == sorted({0, 1, 2, listed} | (inherited if how == "posix_spawn" else set())), fds
    assert fds[0] == os.readlink(f"/proc/self/fd/{dog.write_fd}") and fds[0].startswith("pipe:")
    assert fds[listed] == os.readlink(f"/proc/self/fd/{dog.drain_fd}") != fds[0]  # the list it is handed
    assert fds[1] == fds[2] == "/dev/null"
    assert os.getsid(dog.pid) == dog.pid
    assert [s.name for s in signal.Signals if ignored_by(dog.pid) >> (s - 1) & 1] == ["SIGHUP", "SIGINT", "SIGTERM"]
    assert os.readlink(f"/proc/{dog.pid}/cwd") == "/"
    words = argv_of(dog.pid)
    assert words == [b"/bin/sh", b"-c", WATCHDOG_COMMAND.encode(), b"stoker-watchdog", one.keeper._marker.encode(),
                     b"", b"", b"", str(listed).encode()], words
    environ = Path(f"/proc/{dog.pid}/environ").read_bytes().split(b"\0")[:-1]
    assert sorted(environ) == sorted(f"{k}={v}".encode() for k, v in WATCHDOG_ENV.items())


def cannot_start_a_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's `posix_spawn` one that cannot start a session (`tests/support/nosetsid.py`)
    until the test ends."""
    monkeypatch.setattr(os, "posix_spawn", os.posix_spawn)  # put back after the test
    posix_spawn_without_setsid()


def test_a_watchdog_started_with_no_cgroup_named_is_given_none(kept):
    one = kept()  # for its reaper
    with one.reaper.forking():
        dog = start_watchdog("marker")
        one.reaper.register(dog.pid, Watcher())
    try:
        words = argv_of(dog.pid)
        assert words[4:] == [b"marker", b"", b"", b"", b"3"], words
    finally:
        dog.close_pipe()
        wait_for(lambda: not one.reaper.is_registered(dog.pid), 10, message="the watchdog gone")


def test_each_watchdog_is_given_the_task_s_cgroup_and_home_as_it_starts(kept, tmp_path):
    # Its home's cgroup.procs gets its pid (here a file); the cgroup, named with no way to
    # kill it, it removes at EOF if empty. A restarted one is given them too.
    home = tmp_path / "home"
    home.mkdir()
    procs = home / "cgroup.procs"
    one = kept()
    cgroups = [tmp_path / "cg0", tmp_path / "cg1"]
    for cgroup in cgroups:
        cgroup.mkdir()
    for cgroup in cgroups:
        one.cgroup = (str(cgroup), "", str(home))
        if one.keeper.pid is None:
            one.keeper.start()
        else:
            os.kill(one.keeper.pid, signal.SIGKILL)
            wait_for(lambda: one.restarts, 10, message="a new watchdog")
        pid = one.keeper.pid
        assert pid is not None
        words = argv_of(pid)
        assert words[4:] == [one.keeper._marker.encode(), str(cgroup).encode(), b"", str(home).encode(), b"3"]
        wait_for(lambda p=pid: procs.exists() and procs.read_text() == f"{p}\n", 10, message="its pid written")
    one.close()
    assert cgroups[0].is_dir(), "the first watchdog, killed, removed its cgroup"
    assert not cgroups[1].exists()


def test_a_list_on_descriptor_3_is_handed_on_as_4(kept):
    # A dup2 onto itself would leave it close-on-exec in C libraries before glibc 2.29.
    one = kept()
    saved = os.dup(3)
    read_end, write_end = os.pipe()
    list_read, list_write = os.pipe()
    try:
        os.dup2(list_read, 3, inheritable=False)
        with one.reaper.forking():
            pid = watchdog._spawn(["marker", "", "", ""], read_end, 3)
            one.reaper.register(pid, Watcher())
    finally:
        os.dup2(saved, 3, inheritable=os.get_inheritable(saved))
        os.close(saved)
    try:
        listed = os.readlink(f"/proc/self/fd/{list_read}")
        wait_for(lambda: os.path.exists(f"/proc/{pid}/fd/4"), 10, message="its descriptors")
        assert os.readlink(f"/proc/{pid}/fd/4") == listed
        assert argv_of(pid)[-1] == b"4"
    finally:
        for fd in (read_end, write_end, list_read, list_write):
            os.close(fd)
        wait_for(lambda: not one.reaper.is_registered(pid), 10, message="the watchdog gone")


def inheritable(fd: int) -> bool:
    try:
        return os.get_inheritable(fd)
    except OSError:  # the listing's own descriptor, closed
        return False


def ignored_by(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("SigIgn:\t", 1)[1].split()[0], 16)


# ---- stopped, died, let go


def test_a_stopped_watchdog_is_continued_and_said_the_1st_and_10th_time(kept, caplog):
    one = kept()
    one.keeper.start()
    pid = one.keeper.pid
    assert pid is not None
    for times in range(1, 12):
        os.kill(pid, signal.SIGSTOP)
        wait_for(lambda n=times: one.keeper._continued == n, 10, message=f"stop {times} continued")
    assert reaches(pid, "S"), "the watchdog left stopped"
    said = [(level, fields) for level, e, fields in events(caplog) if e == "watchdog_continued"]
    reason = "it was stopped (SIGSTOP), by a process of the task's user"
    assert said == [("WARNING", {"task": "kept.0", "pid": pid, "times": times, "reason": reason})
                    for times in (1, 10)]


def test_a_watchdog_that_died_while_the_task_lives_is_restarted_said_and_reported(kept, caplog):
    one = kept()
    one.keeper.start()
    first, old = one.keeper.pid, one.keeper._watchdog
    assert first is not None and old is not None
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: one.restarts, 10, message="a new watchdog")
    assert one.restarts == [one.keeper.pid] and one.keeper.pid != first
    assert (old.write_fd, old.list_fd, old.drain_fd) == (-1, -1, -1), "the dead one's pipes left open"
    assert one.keeper.running() == one.keeper.pid
    died = [e for e in events(caplog) if e[1] == "watchdog_exited"]
    assert died == [("ERROR", "watchdog_exited", {"task": "kept.0", "pid": first,
                                                   "status": "killed by SIGKILL", "action": "restarting it"})]


def test_a_watchdog_that_died_and_could_not_start_again_is_not_reported_restarted(kept, refused_spawns, caplog):
    one = kept()
    one.keeper.start()
    first = one.keeper.pid
    assert first is not None
    refused_spawns(1)
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: any(e[1] == "watchdog_failed" for e in events(caplog)), 10, message="the restart refused")
    assert one.restarts == [] and one.keeper.pid is None and one.keeper.running() is None
    one.keeper.ensure()
    assert one.restarts == [] and one.keeper.running() is not None  # started by `ensure`, not restarted


def test_a_watchdog_let_go_exits_and_is_not_restarted_and_its_wait_says_nothing(kept, caplog):
    one = kept()
    one.keeper.start()
    pid = one.keeper.pid
    assert pid is not None
    one.keep = False
    one.keeper.let_go()
    began = time.monotonic()
    one.keeper.wait_gone(5)
    assert time.monotonic() - began < 4 and gone(pid)
    assert one.restarts == [] and one.keeper.running() is None and one.keeper.pid == pid
    assert [e[1] for e in events(caplog)] == ["watchdog_started"]


def test_a_keeper_that_never_started_one_waits_for_nothing(kept, refused_spawns, caplog):
    refused_spawns(1)
    one = kept()
    one.keeper.start()
    one.keeper.let_go()
    began = time.monotonic()
    one.keeper.wait_gone(5)
    assert time.monotonic() - began < 1


def waited_for(kept, within: float, exit_in: float | None = None, cgroup: str = "", **how: bool) -> Kept:
    """A started keeper whose watchdog is not let go (it reads on), waited for `within`
    seconds (`how`: `cut`, `busy`), this process to exit `exit_in` seconds from now, and a
    cgroup named to kill."""
    exit_by = ExitBy()
    one = kept(exit_by)
    one.keeper.start()
    if cgroup:
        one.keeper.announce(cgroup, "kill")
    one.keep = False
    if exit_in is not None:
        exit_by.set(time.monotonic() + exit_in)
    one.keeper.wait_gone(within, **how)
    return one


def test_a_watchdog_that_does_not_exit_in_time_is_one_error(kept, caplog):
    one = waited_for(kept, 0.05)
    assert events(caplog)[-1] == ("ERROR", "watchdog_stuck", {
        "task": "kept.0", "pid": one.keeper.pid, "reason": "it did not exit within 0.05 s of close"})


def test_a_wait_cut_by_the_exit_time_leaves_the_watchdog_with_a_warning(kept, caplog):
    began = time.monotonic()
    one = waited_for(kept, 0.05, exit_in=0.2, cgroup="/sys/fs/cgroup/no-such-stoker-task", cut=True)
    waited = time.monotonic() - began  # 10.05 s had it no exit time
    assert 0.15 < waited < 2, waited
    (level, event, fields) = events(caplog)[-1]
    assert (level, event) == ("WARNING", "watchdog_left"), events(caplog)
    assert (fields["task"], fields["pid"]) == ("kept.0", one.keeper.pid)
    assert str(fields["reason"]).startswith("this process must exit within the grace it was given "
                                            "(the watchdog was waited for 0.")
    assert fields["consequence"] == ("it goes on alone, outliving this process: it kills what is left "
                                     "of the task's cgroup /sys/fs/cgroup/no-such-stoker-task and removes it")


def test_an_exit_time_past_the_wait_changes_nothing(kept, caplog):
    waited_for(kept, 0.05, exit_in=60)
    assert events(caplog)[-1][:2] == ("ERROR", "watchdog_stuck")


def test_a_busy_cgroup_s_watchdog_is_left_at_once_with_why(kept, caplog):
    one = waited_for(kept, 0.05, cgroup="/sys/fs/cgroup/stuck-stoker-task", busy=True)
    (level, event, fields) = events(caplog)[-1]
    assert (level, event) == ("WARNING", "watchdog_left")
    assert (fields["task"], fields["pid"]) == ("kept.0", one.keeper.pid)
    assert fields["reason"] == ("the task's cgroup holds a member that would not die (in D state), which no "
                                "wait makes die sooner; the watchdog removes it once it can, within its own 10 s")
    assert str(fields["consequence"]).endswith("of the task's cgroup /sys/fs/cgroup/stuck-stoker-task and removes it")


def test_a_wait_left_without_a_cgroup_to_finish_says_only_that_it_goes_on(kept, caplog):
    waited_for(kept, 5, exit_in=0.05)
    assert events(caplog)[-1][2]["consequence"] == "it goes on alone, outliving this process"


def test_a_watchdog_let_go_while_stopped_is_continued_to_finish(kept):
    # Stopped by a task's process, and not yet continued (the reaper held: its lock taken
    # here), it would never read the end of its pipe.
    one = kept()
    one.keep = False
    with one.held_unheard(signal.SIGSTOP, "T") as pid:
        one.keeper.let_go()
        assert reaches(pid, "Z"), "the watchdog not continued to finish"
    # A stop report the reaper took while the lock was held is said once it is let in: that
    # line, then the exit, heard here, not between this test's call and its teardown (no
    # handler there: the line went to the worker's stderr).
    wait_for(lambda: one.keeper.running() is None, 10, message="the keeper to hear its exit")
