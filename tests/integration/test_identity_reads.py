"""Which process is a task's supervisor (`executor/host/identity.py`): a pid's start read from
/proc of real processes (a child, a stopped one, a zombie, another's child), the boot's and
the host's ids read once, a time namespace's boot-time offset taken off every start, the
answers of one reading kept, a start given as wall time, and a registry entry judged this
host's and its supervisor alive. The files and clocks a test cannot set on this host (the
boot id, the machine id, a time namespace's offsets) are files of the test's given in their
place; the module's per-process memory of each is restored after every test."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from executor.host import identity
from executor.host.entry import FrontEnd, RegistryEntry
from tests.support.children import sleeping_as

TICK = os.sysconf("SC_CLK_TCK")


@pytest.fixture(autouse=True)
def fresh(monkeypatch) -> None:
    """Each test reads the boot id, the machine id and the offset anew (each restored after)."""
    for name in ("_boot_id", "_machine", "_offset_ticks"):
        monkeypatch.setattr(identity, name, None)
    monkeypatch.setattr(identity, "_boot_wall", 0.0)


def stat_start(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_bytes().rpartition(b")")[2].split()[19])


def test_a_small_proc_file_is_read_up_to_its_limit_and_an_unreadable_one_is_empty(tmp_path):
    (tmp_path / "f").write_bytes(b"0123456789")
    assert identity.read_proc(str(tmp_path / "f")) == b"0123456789"
    assert identity.read_proc(str(tmp_path / "f"), limit=4) == b"0123"
    assert identity.read_proc(str(tmp_path / "gone")) == b""
    assert identity.read_proc(str(tmp_path)) == b""  # a directory: its read fails


def test_the_boot_id_is_read_once_and_an_unreadable_one_again_next_time(tmp_path, monkeypatch):
    path = tmp_path / "boot_id"
    monkeypatch.setattr(identity, "_BOOT_ID", str(path))
    assert identity.boot_id() == ""
    path.write_text("b1\n")
    assert identity.boot_id() == "b1"
    path.write_text("b2\n")
    assert identity.boot_id() == "b1"


def test_the_machine_id_is_the_first_there_read_once_and_the_host_name_each_time(tmp_path, monkeypatch):
    first, second = tmp_path / "machine-id", tmp_path / "dbus-machine-id"
    first.write_text("  \n")  # empty: the next is read
    second.write_text("m2\n")
    monkeypatch.setattr(identity, "_MACHINE_IDS", (str(tmp_path / "gone"), str(first), str(second)))
    assert identity.host_identity() == ("m2", os.uname().nodename)
    first.write_text("m1\n")
    assert identity.host_identity()[0] == "m2"
    monkeypatch.setattr(identity, "_machine", None)
    assert identity.host_identity()[0] == "m1"
    monkeypatch.setattr(identity, "_machine", None)
    monkeypatch.setattr(identity, "_MACHINE_IDS", (str(tmp_path / "gone"),))
    assert identity.host_identity()[0] == ""


def test_a_child_s_start_is_read_while_it_is_that_parent_s_live_child(sleeper):
    start = stat_start(sleeper.pid)
    assert identity.child_start_ticks(sleeper.pid, os.getpid()) == start
    assert identity.child_start_ticks(sleeper.pid, os.getppid()) is None
    wall = identity.child_started_wall(sleeper.pid, os.getpid())
    assert wall is not None and abs(wall - (identity.boot_wall() + start / TICK)) < 1e-6
    assert abs(wall - time.time()) < 5
    assert identity.child_started_wall(sleeper.pid, os.getppid()) is None
    sleeper.kill()
    os.waitid(os.P_PID, sleeper.pid, os.WEXITED | os.WNOWAIT)  # a zombie: no start
    assert identity.child_start_ticks(sleeper.pid, os.getpid()) is None
    assert identity.identity_of(sleeper.pid) is None


def test_a_stopped_process_is_stopped_and_a_running_one_is_not(sleeper):
    assert identity.is_stopped(sleeper.pid) is False
    os.kill(sleeper.pid, signal.SIGSTOP)
    os.waitid(os.P_PID, sleeper.pid, os.WSTOPPED | os.WNOWAIT)
    assert identity.is_stopped(sleeper.pid) is True
    os.kill(sleeper.pid, signal.SIGCONT)
    os.waitid(os.P_PID, sleeper.pid, os.WCONTINUED)
    assert identity.is_stopped(sleeper.pid) is False


def test_a_process_named_with_a_parenthesis_is_read_by_its_last_one(tmp_path):
    with sleeping_as(tmp_path, "x) T 1 2") as pid:
        assert identity.is_stopped(pid) is False
        assert identity.child_start_ticks(pid, os.getpid()) == stat_start(pid)


def test_starts_one_tick_apart_are_one_process_s_and_two_are_not():
    assert identity.same_start(100, 100) and identity.same_start(101, 100) and identity.same_start(99, 100)
    assert not identity.same_start(102, 100) and not identity.same_start(98, 100)


def offsets(monkeypatch, text: bytes) -> None:
    real = identity.read_proc
    monkeypatch.setattr(identity, "read_proc",
                        lambda path, limit=4096: text if path == "/proc/self/timens_offsets" else real(path, limit))


@pytest.mark.parametrize(("text", "ticks"), [
    (b"monotonic 7 0\nboottime 5 500000000\n", 5 * TICK + TICK // 2),
    (b"boottime -3 0\n", -3 * TICK),
    (b"boottime 5\nboottime x 0\n", 0),  # a line cut short, a number that is none
    (b"", 0),  # no time namespaces here
])
def test_a_time_namespace_s_boot_offset_is_taken_off_every_start_read(monkeypatch, sleeper, text, ticks):
    offsets(monkeypatch, text)
    assert identity.boottime_offset_ticks() == ticks
    offsets(monkeypatch, b"boottime 99 0\n")
    assert identity.boottime_offset_ticks() == ticks  # read once
    assert identity.identity_of(sleeper.pid).start_ticks == stat_start(sleeper.pid) - ticks
    assert identity.child_start_ticks(sleeper.pid, os.getpid()) == stat_start(sleeper.pid)  # as read here
    assert abs(identity.boot_secs() - (time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / TICK)) < 0.5


def test_an_identity_is_of_a_live_positive_pid_and_this_process_has_one(monkeypatch, tmp_path):
    (tmp_path / "boot_id").write_text("b\n")
    monkeypatch.setattr(identity, "_BOOT_ID", str(tmp_path / "boot_id"))
    assert identity.identity_of(0) is None and identity.identity_of(-1) is None
    me = identity.own_identity()
    assert me == identity.ProcessIdentity(os.getpid(), stat_start(os.getpid()), "b")


@pytest.fixture
def booted(monkeypatch, tmp_path) -> str:
    (tmp_path / "boot_id").write_text("this-boot\n")
    monkeypatch.setattr(identity, "_BOOT_ID", str(tmp_path / "boot_id"))
    return "this-boot"


def test_a_live_process_is_alive_by_its_start_within_a_tick_and_its_boot(sleeper, booted):
    start = stat_start(sleeper.pid)
    assert identity.is_alive(sleeper.pid, start) and identity.is_alive(sleeper.pid, start + 1, booted)
    assert identity.is_alive(sleeper.pid, start - 1, "")
    assert not identity.is_alive(sleeper.pid, start + 2) and not identity.is_alive(sleeper.pid, start - 2)
    assert not identity.is_alive(sleeper.pid, start, "another-boot")
    assert not identity.is_alive(None, start) and not identity.is_alive(0, None) and not identity.is_alive(-1, None)
    sleeper.kill()
    sleeper.wait(10)
    assert not identity.is_alive(sleeper.pid, start) and not identity.is_alive(sleeper.pid, None)


def test_without_a_recorded_start_a_live_pid_counts_only_if_it_started_in_time(sleeper, booted):
    began = identity.started_wall(identity.identity_of(sleeper.pid))
    assert abs(began - time.time()) < 5
    assert identity.is_alive(sleeper.pid, None)
    assert identity.is_alive(sleeper.pid, None, started_before_wall=began - 1.0)  # within the second
    assert not identity.is_alive(sleeper.pid, None, started_before_wall=began - 1.0 - 2 / TICK)


def test_one_reading_answers_each_question_as_it_first_did(sleeper, booted):
    start = stat_start(sleeper.pid)
    with identity.one_reading():
        assert identity.is_alive(sleeper.pid, start)
        sleeper.kill()
        sleeper.wait(10)
        with identity.one_reading():  # a reading inside another is the outer one's
            assert identity.is_alive(sleeper.pid, start)
        assert identity.is_alive(sleeper.pid, start)
        assert not identity.is_alive(sleeper.pid, start + 5)  # another question: asked now
    assert not identity.is_alive(sleeper.pid, start)


def test_the_boot_moment_is_kept_while_a_new_reading_is_within_its_slack(monkeypatch):
    found = identity.boot_wall()
    assert abs(found - (time.time() - time.clock_gettime(time.CLOCK_BOOTTIME))) < 0.01
    kept = found + identity.BOOT_WALL_SLACK_SECS * 0.8
    monkeypatch.setattr(identity, "_boot_wall", kept)
    assert identity.boot_wall() == kept
    monkeypatch.setattr(identity, "_boot_wall", found + identity.BOOT_WALL_SLACK_SECS * 4)
    assert abs(identity.boot_wall() - found) < identity.BOOT_WALL_SLACK_SECS


def test_a_boot_clock_stamp_is_today_s_wall_time():
    assert identity.boot_to_wall(None) is None
    assert abs(identity.boot_to_wall(identity.boot_secs()) - time.time()) < 0.05
    assert abs(identity.boot_to_wall(identity.boot_secs() - 100.0) - (time.time() - 100.0)) < 0.05


def entry(**fields) -> RegistryEntry:
    base = dict(sandbox="/s", supervisor_pid=os.getpid(), supervisor_start=stat_start(os.getpid()),
                supervisor_boot="this-boot", front_end=FrontEnd.RUN, registered_wall=time.time())
    return RegistryEntry(**{**base, **fields})


def test_an_entry_is_this_host_s_by_its_host_and_boot(booted):
    here = ("m", "h")
    assert identity.of_this_host(entry(), here)  # an older Stoker's: no host recorded
    assert identity.of_this_host(entry(host_id="m", host_name="h"), here)
    assert not identity.of_this_host(entry(host_id="m", host_name="other"), here)
    assert not identity.of_this_host(entry(host_id="m2", host_name="h"), here)
    assert identity.of_this_host(entry(host_id="m", host_name="h", supervisor_boot=""), here)
    booted_at = identity.boot_to_wall(0.0)
    twin = entry(host_id="m", host_name="h", supervisor_boot="another-boot")
    # registered since this host booted by another boot's supervisor: another host's of the same ids
    assert not identity.of_this_host(twin, here)
    then = booted_at + identity.TWIN_SLACK_SECS
    assert identity.of_this_host(entry(host_id="m", host_name="h", supervisor_boot="another-boot",
                                       registered_wall=then - 1), here)
    assert not identity.of_this_host(entry(host_id="m", host_name="h", supervisor_boot="another-boot",
                                           registered_wall=then + 1), here)


def test_an_entry_s_supervisor_is_alive_here_only(booted, monkeypatch):
    monkeypatch.setattr(identity, "host_identity", lambda: ("m", "h"))
    assert identity.supervisor_alive(entry(host_id="m", host_name="h"))
    assert identity.supervisor_alive(entry())  # an older Stoker's
    assert identity.supervisor_alive(entry(host_id="m", host_name="renamed"))  # this machine and boot
    assert not identity.supervisor_alive(entry(host_id="m", host_name="renamed", supervisor_boot=""))
    assert not identity.supervisor_alive(entry(host_id="m2", host_name="h"))  # a container's of this host
    assert not identity.supervisor_alive(entry(supervisor_boot="another-boot"))
    assert not identity.supervisor_alive(entry(host_id="m", host_name="h", supervisor_start=1))


def test_ids_that_are_not_ascii_are_read_with_a_replacement_and_a_machine_id_is_cut_at_64(tmp_path, monkeypatch):
    (tmp_path / "boot_id").write_bytes(b"b\xff1\n")
    monkeypatch.setattr(identity, "_BOOT_ID", str(tmp_path / "boot_id"))
    assert identity.boot_id() == "b\ufffd1"
    (tmp_path / "machine-id").write_bytes(b"m\xff" + b"a" * 100 + b"\n")
    monkeypatch.setattr(identity, "_MACHINE_IDS", (str(tmp_path / "machine-id"),))
    assert identity.host_identity()[0] == "m\ufffd" + "a" * 62


def test_a_process_stopped_by_its_tracer_is_stopped(monkeypatch, sleeper):
    stat = Path(f"/proc/{sleeper.pid}/stat").read_bytes()
    close = stat.rfind(b")")
    for letter, stopped in ((b"t", True), (b"T", True), (b"S", False), (b"D", False)):
        traced = stat[:close + 2] + letter + stat[close + 3:]  # as /proc shows a tracee stopped
        monkeypatch.setattr(identity, "read_proc", lambda path, limit=4096, data=traced: data)
        assert identity.is_stopped(sleeper.pid) is stopped, letter


def test_pid_1_has_an_identity_and_is_alive_by_it(booted):
    init = identity.identity_of(1)
    assert init is not None and init.pid == 1
    assert identity.is_alive(1, init.start_ticks, booted)


def test_one_reading_keeps_each_question_whole(sleeper, booted):
    start = stat_start(sleeper.pid)
    began = identity.started_wall(identity.identity_of(sleeper.pid))
    with identity.one_reading():
        assert identity.is_alive(sleeper.pid, start, booted)
        assert not identity.is_alive(sleeper.pid, start, "another-boot")  # not the first answer
        assert identity.is_alive(sleeper.pid, None)
        assert not identity.is_alive(sleeper.pid, None, started_before_wall=began - 5.0)


def test_a_start_as_wall_time_is_the_same_in_a_time_namespace(monkeypatch, sleeper):
    plain = identity.started_wall(identity.identity_of(sleeper.pid))
    monkeypatch.setattr(identity, "_offset_ticks", None)
    offsets(monkeypatch, b"boottime 1000 0\n")
    shifted = identity.identity_of(sleeper.pid)
    assert shifted.start_ticks == stat_start(sleeper.pid) - 1000 * TICK  # as the host counts it
    assert abs(identity.started_wall(shifted) - plain) < 0.01


def test_an_entry_that_records_a_machine_id_alone_is_judged_by_its_boot(booted):
    here = ("m", "")
    assert not identity.of_this_host(entry(host_id="m", host_name="", supervisor_boot="another-boot"), here)
    assert identity.of_this_host(entry(host_id="m", host_name="", supervisor_boot=booted), here)


def test_an_entry_of_this_host_with_no_boot_recorded_is_alive_by_its_pid(booted, monkeypatch):
    monkeypatch.setattr(identity, "host_identity", lambda: ("m", "h"))
    assert identity.supervisor_alive(entry(host_id="m", host_name="h", supervisor_boot=""))
