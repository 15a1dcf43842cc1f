"""What the watchdog's keeper tells its watchdog (`executor/procs/watchdog.py`): the task's
cgroup, to each watchdog started, and the held list (`held_line`, `Watchdog.hand`,
`WatchdogKeeper.hold`), in this process with real watchdogs (`/bin/sh`); a list's pipe of
its own where the test looks at the pipe itself.
"""
from __future__ import annotations

import fcntl
import os
import signal

import pytest

from executor.procs.watchdog import Watchdog, held_line
from tests.support.keepers import events
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)


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


def test_a_list_held_while_no_watchdog_runs_is_handed_to_the_next_one_started(kept, refused_spawns, caplog):
    refused_spawns(1)
    one = kept()
    one.keeper.start()
    one.keeper.hold({1: 5, 22: 6})
    assert [e for e in events(caplog) if e[1] == "watchdog_holds"] == []
    one.keeper.ensure()
    assert events(caplog)[-2] == ("DEBUG", "watchdog_holds", {"task": "kept.0", "pid": one.keeper.pid,
                                                              "pids": "1 22"})


def test_a_list_whose_write_is_refused_is_said_not_held_at_all(kept, caplog):
    one = kept()
    one.keeper.start()
    dog = one.keeper._watchdog
    assert dog is not None
    pipe, dog.list_fd = dog.list_fd, os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)  # EBADF
    try:
        one.keeper.hold({1: 5, 2: 6})
    finally:
        os.close(dog.list_fd)
        dog.list_fd = pipe
    assert [e[2]["reason"] for e in events(caplog) if e[1] == "watchdog_list_full"] == [
        f"2 of the 2 processes to hold did not fit in its list ({dog.room} bytes)"]


def test_a_list_too_long_for_the_pipe_is_one_error_until_a_list_fits_again(kept, caplog):
    one = kept()
    one.keeper.start()
    dog = one.keeper._watchdog
    assert dog is not None
    room = dog.room
    assert room == fcntl.fcntl(dog.list_fd, fcntl.F_GETPIPE_SZ) // 2
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
        assert dog.hand(b"\n") and dog.listed == 1  # the empty list
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


def test_a_cgroup_told_to_a_watchdog_dead_and_not_yet_reaped_is_dropped_and_the_next_one_told(kept, tmp_path):
    # Its pipe has no reader (EPIPE): the keeper, which restarts it once it is reaped, tells
    # the new one. The reaper held meanwhile: its lock taken here.
    told = tmp_path / "told"
    told.mkdir()
    one = kept()
    with one.held_unheard(signal.SIGKILL, "Z"):
        one.keeper.announce(str(told), "")
    wait_for(lambda: one.restarts, 10, message="a new watchdog")
    one.close()
    assert not told.exists()


def test_a_watchdog_is_told_a_cgroup_only_once_one_is_announced(kept):
    # Read from its own pipe (/proc/PID/fd/0) while it is stopped (the reaper held: its
    # lock taken here, so that the keeper does not continue it).
    one = kept()
    with one.held_unheard(signal.SIGSTOP, "T") as pid:
        told = os.open(f"/proc/{pid}/fd/0", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            with pytest.raises(BlockingIOError):
                os.read(told, 4096)  # nothing announced: nothing told
            one.keeper.announce("/sys/fs/cgroup/stoker-x", "kill")
            one.keeper.announce("", "")
            assert os.read(told, 4096) == b"cgroup kill /sys/fs/cgroup/stoker-x\ncgroup  \n"
        finally:
            os.close(told)
            os.kill(pid, signal.SIGCONT)
