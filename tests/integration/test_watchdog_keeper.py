"""The watchdog's keeper (`executor/procs/watchdog.py`, `WatchdogKeeper`) in this process:
a start refused and tried again, the cgroup told to each watchdog started, a stop continued,
one that died restarted, the close's wait and its lines; the held list's line and pipe.

Real watchdogs (`/bin/sh`, children of this process reaped by the one reaper); a start the
kernel refuses (a full pids cgroup, `ulimit -u`: EAGAIN) is `os.posix_spawn` raising as it
would (`refused_spawns`). Each keeper is let go and waited for before its test ends.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from executor.procs import watchdog
from executor.procs.exitby import ExitBy
from executor.procs.reaper import Reaper
from executor.procs.watchdog import Watchdog, WatchdogKeeper, held_line
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)


class Kept:
    """A keeper under test, its `keep` answer and the pids its restarts reported."""

    def __init__(self, reaper: Reaper, exit_by: ExitBy | None = None) -> None:
        self.keep = True
        self.restarts: list[int] = []
        self.cgroup = ("", "", "")
        self.keeper = WatchdogKeeper(reaper=reaper, marker=os.urandom(16).hex(), label="kept.0",
                                     cgroup=lambda: self.cgroup, keep=lambda: self.keep,
                                     restarted=self.restarts.append, exit_by=exit_by)

    def close(self) -> None:
        """Let go and reaped, whatever its exit time; a cgroup a test named it to kill taken
        back first (one that does not exist: it would look for its members 10 s)."""
        self.keep = False
        if self.keeper._announced[1]:
            self.keeper.announce("", "")
        self.keeper.let_go()
        wait_for(lambda: self.keeper.running() is None, 10, message="the watchdog let go gone")


@pytest.fixture
def kept(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[..., Kept]]:
    """`kept(exit_by=None)`: a keeper (not started), closed after the test; the module's
    lines captured from DEBUG up."""
    reaper = Reaper.acquire()
    made: list[Kept] = []

    def make(exit_by: ExitBy | None = None) -> Kept:
        made.append(Kept(reaper, exit_by))
        return made[-1]

    caplog.set_level(logging.DEBUG, logger=watchdog.__name__)
    try:
        yield make
    finally:
        try:
            for one in made:
                one.close()
        finally:
            reaper.release()


@pytest.fixture
def refused_spawns(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """`refuse(n)`: the next `n` spawns refused as the kernel refuses a fork (EAGAIN; the
    C library's error names the program, as posix_spawn's does)."""
    real = os.posix_spawn
    left = [0]

    def spawn(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if left[0] > 0:
            left[0] -= 1
            raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN), path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "posix_spawn", spawn)
    return lambda n: left.__setitem__(0, n)


def events(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, dict[str, object]]]:
    return [(r.levelname, r.stoker_event, r.stoker_fields) for r in caplog.records
            if getattr(r, "stoker_event", "").startswith("watchdog_")]


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
    assert fields["task"] == "kept.0" and "not protected" in str(fields["consequence"])
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
    def cannot(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise NotImplementedError("setsid")

    monkeypatch.setattr(os, "posix_spawn", cannot)
    one = kept()
    one.keeper.start()
    dog = one.keeper._watchdog
    assert dog is not None and dog.popen is not None and dog.popen.pid == dog.pid
    one.close()
    wait_for(lambda: dog.popen.returncode is not None, 10, message="its exit status set")
    assert dog.popen.returncode == 0  # set as the reaper reaped it: subprocess never waits on it
    assert dog.popen.poll() == 0


def test_a_spawned_watchdog_holds_its_pipe_dev_null_and_its_list_in_a_session_of_its_own(kept):
    # This process ignores SIGPIPE (Python's start) and holds descriptors of its own: the
    # watchdog gets SIGPIPE and SIGXFSZ at their defaults, and only its four descriptors.
    one = kept()
    one.keeper.start()
    dog = one.keeper._watchdog
    assert dog is not None and dog.popen is None
    wait_for(lambda: ignored_by(dog.pid) >> (signal.SIGTERM - 1) & 1, 10, message="its trap set")
    fds = {int(fd): os.readlink(f"/proc/{dog.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{dog.pid}/fd")}
    # and this process's descriptors open for exec (pytest's): posix_spawn closes none, as
    # Popen's `close_fds` did; a supervisor makes them close-on-exec first (`earlyfork.shut_inherited`)
    inherited = {fd for fd in map(int, os.listdir("/proc/self/fd")) if fd > 3 and inheritable(fd)}
    assert sorted(fds) == sorted({0, 1, 2, 3} | inherited), (fds, inherited)
    assert fds[0].startswith("pipe:") and fds[3].startswith("pipe:") and fds[0] != fds[3]
    assert fds[3] == os.readlink(f"/proc/self/fd/{dog.drain_fd}")  # the list it is handed
    assert fds[1] == fds[2] == "/dev/null"
    assert os.getsid(dog.pid) == dog.pid
    assert [s.name for s in signal.Signals if ignored_by(dog.pid) >> (s - 1) & 1] == ["SIGHUP", "SIGINT", "SIGTERM"]
    assert os.readlink(f"/proc/{dog.pid}/cwd") == "/"
    words = Path(f"/proc/{dog.pid}/cmdline").read_bytes().split(b"\0")[:-1]
    assert words[3:] == [b"stoker-watchdog", one.keeper._marker.encode(), b"", b"", b"", b"3"], words


def inheritable(fd: int) -> bool:
    try:
        return os.get_inheritable(fd)
    except OSError:  # the listing's own descriptor, closed
        return False


def ignored_by(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("SigIgn:\t", 1)[1].split()[0], 16)


# ---- the cgroup told, the held list handed on


def test_the_announced_cgroup_is_told_to_the_watchdog_and_to_one_started_after_a_refusal(
        kept, refused_spawns, tmp_path):
    # Named with no way to kill it (before the supervisor made it), the watchdog removes it
    # at EOF if empty: what it was told is seen in the directory gone.
    told, later = tmp_path / "told", tmp_path / "later"
    told.mkdir()
    later.mkdir()
    one = kept()
    one.keeper.start()
    one.keeper.announce(str(told), "")
    refused_spawns(1)
    two = kept()
    two.keeper.start()
    two.keeper.announce(str(later), "")  # none runs: kept for the next
    two.keeper.ensure()
    for each in (one, two):
        each.close()
    assert not told.exists() and not later.exists()


def test_a_cgroup_name_with_a_newline_is_never_told(kept, tmp_path):
    # Told, the line would end at the newline: the watchdog would remove `first`.
    first = tmp_path / "first"
    first.mkdir()
    one = kept()
    one.keeper.start()
    one.keeper.announce(f"{first}\nrest", "")
    one.close()
    assert first.is_dir()


def test_a_list_too_long_for_the_pipe_is_one_error_until_a_list_fits_again(kept, caplog):
    one = kept()
    one.keeper.start()
    dog = one.keeper._watchdog
    assert dog is not None
    room = dog.room
    too_many = {pid: 10**12 for pid in range(10**6, 10**6 + room // 10)}  # 21 bytes a process
    one.keeper.hold(too_many)
    full = [e for e in events(caplog) if e[1] == "watchdog_list_full"]
    fitted = (room - 1) // 22  # "1000000:1000000000000", a space, and the newline's byte
    assert full == [("ERROR", "watchdog_list_full", {
        "task": "kept.0", "pid": dog.pid,
        "reason": f"{len(too_many) - fitted} of the {len(too_many)} processes to hold did not fit "
                  f"in its list ({room} bytes)",
        "consequence": "those survive the supervisor's death unless their marker is seen"})], full
    one.keeper.hold(too_many)  # still too long: said once
    one.keeper.hold({1: 5})
    assert events(caplog)[-1] == ("DEBUG", "watchdog_holds", {"task": "kept.0", "pid": dog.pid, "pids": "1"})
    one.keeper.hold(too_many)  # too long again, after one that fitted: said again
    assert len([e for e in events(caplog) if e[1] == "watchdog_list_full"]) == 2
    one.keeper.hold({})
    assert events(caplog)[-1][2]["pids"] == "none"


def test_held_line_fits_its_room_and_counts_what_did_not():
    # Sorted by pid; each process counted with a space, its newline too: a byte to spare.
    held = {30: 7, 4: 123, 200: 9}
    assert held_line(held, 100) == (b"4:123 30:7 200:9\n", 0)
    assert held_line(held, 18) == (b"4:123 30:7 200:9\n", 0)
    assert held_line(held, 17) == (b"4:123 30:7\n", 1)
    assert held_line(held, 12) == (b"4:123 30:7\n", 1)
    assert held_line(held, 11) == (b"4:123\n", 2)
    assert held_line(held, 7) == (b"4:123\n", 2)
    assert held_line(held, 6) == (b"\n", 3)
    assert held_line({}, 1) == (b"\n", 0)


def test_a_list_replaces_the_one_the_pipe_held():
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    dog = Watchdog(pid=0, write_fd=-1, list_fd=write_end, drain_fd=read_end, room=100)
    try:
        assert dog.hand(b"1:2 3:4\n") and dog.listed == 8
        assert dog.hand(b"5:6\n") and dog.listed == 4
        assert dog.hand(b"") and dog.listed == 0
        assert dog.hand(b"7:8\n") and os.read(read_end, 100) == b"7:8\n"
        size = fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ)
        dog.listed = 0
        assert not dog.hand(b"x" * (size + 1))  # cut short: not held whole
    finally:
        dog.close_pipe()
    assert (dog.list_fd, dog.drain_fd, dog.write_fd) == (-1, -1, -1)
    assert not dog.hand(b"1:2\n")  # closed: nothing held
    with pytest.raises(OSError):
        os.fstat(read_end)


def test_a_list_whose_pipe_was_closed_under_it_is_not_held():
    read_end, write_end = os.pipe()
    dog = Watchdog(pid=0, write_fd=-1, list_fd=write_end, drain_fd=read_end, room=100)
    os.close(read_end)  # the write raises EPIPE (SIGPIPE is ignored under Python)
    try:
        assert not dog.hand(b"1:2\n")
    finally:
        dog.drain_fd = -1
        dog.close_pipe()


# ---- stopped, died, let go


def test_a_stopped_watchdog_is_continued_and_said_the_1st_and_10th_time(kept, caplog):
    one = kept()
    one.keeper.start()
    pid = one.keeper.pid
    assert pid is not None
    for times in range(1, 12):
        os.kill(pid, signal.SIGSTOP)
        wait_for(lambda n=times: one.keeper._continued == n, 10, message=f"stop {times} continued")
    wait_for(lambda: state_of(pid) != "T", 10, message="the watchdog running again")
    said = [(level, e, f["times"], f["reason"]) for level, e, f in events(caplog) if e == "watchdog_continued"]
    reason = "it was stopped (SIGSTOP), by a process of the task's user"
    assert said == [("WARNING", "watchdog_continued", 1, reason), ("WARNING", "watchdog_continued", 10, reason)]


def state_of(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


def test_a_watchdog_that_died_while_the_task_lives_is_restarted_said_and_reported(kept, caplog):
    one = kept()
    one.keeper.start()
    first = one.keeper.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: one.restarts, 10, message="a new watchdog")
    assert one.restarts == [one.keeper.pid] and one.keeper.pid != first
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


def test_a_watchdog_that_does_not_exit_in_time_is_one_error(kept, caplog):
    one = kept()
    one.keeper.start()
    one.keep = False  # not let go: it reads on
    one.keeper.wait_gone(0.05)
    assert events(caplog)[-1] == ("ERROR", "watchdog_stuck", {
        "task": "kept.0", "pid": one.keeper.pid, "reason": "it did not exit within 0.05 s of close"})


def test_a_wait_cut_by_the_exit_time_leaves_the_watchdog_with_a_warning(kept, caplog):
    exit_by = ExitBy()
    one = kept(exit_by)
    one.keeper.start()
    one.keeper.announce("/sys/fs/cgroup/no-such-stoker-task", "kill")
    one.keep = False
    exit_by.set(time.monotonic() + 0.2)
    began = time.monotonic()
    one.keeper.wait_gone(0.05, cut=True)  # 10.05 s had it no exit time
    waited = time.monotonic() - began
    assert 0.15 < waited < 2, waited
    (level, event, fields) = events(caplog)[-1]
    assert (level, event) == ("WARNING", "watchdog_left"), events(caplog)
    assert str(fields["reason"]).startswith("this process must exit within the grace it was given "
                                            "(the watchdog was waited for 0.")
    assert fields["consequence"] == ("it goes on alone, outliving this process: it kills what is left "
                                     "of the task's cgroup /sys/fs/cgroup/no-such-stoker-task and removes it")


def test_an_exit_time_past_the_wait_changes_nothing(kept, caplog):
    exit_by = ExitBy()
    one = kept(exit_by)
    one.keeper.start()
    one.keep = False
    exit_by.set(time.monotonic() + 60)
    one.keeper.wait_gone(0.05)
    assert events(caplog)[-1][:2] == ("ERROR", "watchdog_stuck")


def test_a_busy_cgroup_s_watchdog_is_left_at_once_with_why(kept, caplog):
    one = kept()
    one.keeper.start()
    one.keeper.announce("/sys/fs/cgroup/stuck-stoker-task", "kill")
    one.keep = False
    one.keeper.wait_gone(0.05, busy=True)
    (level, event, fields) = events(caplog)[-1]
    assert (level, event) == ("WARNING", "watchdog_left")
    assert fields["reason"] == ("the task's cgroup holds a member that would not die (in D state), which no "
                                "wait makes die sooner; the watchdog removes it once it can, within its own 10 s")
    assert str(fields["consequence"]).endswith("of the task's cgroup /sys/fs/cgroup/stuck-stoker-task and removes it")


def test_a_wait_left_without_a_cgroup_to_finish_says_only_that_it_goes_on(kept, caplog):
    exit_by = ExitBy()
    one = kept(exit_by)
    one.keeper.start()
    one.keep = False
    exit_by.set(time.monotonic() + 0.05)
    one.keeper.wait_gone(5)
    assert events(caplog)[-1][2]["consequence"] == "it goes on alone, outliving this process"
