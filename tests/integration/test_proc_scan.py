"""The tests' fork-hopper checks (`tests/support/proc_scan.py`) on a host shared with other
suites, and with the file system's own delays: a pid taken by another suite's hopper is not
this hopper, and a pid a killed generation finishes writing after its kill does not make a
stopped hopper look alive. A hopper is the one writing its pid file (`--hop-pid-file`)."""
from __future__ import annotations

import os
import signal
import subprocess

import pytest

from tests.support import proc_scan

pytestmark = pytest.mark.timeout(30)


GONE = 5_000_000  # above any pid_max (4194304): no process has it


def test_another_hoppers_process_at_the_last_pid_is_neither_this_hopper_nor_killed(tmp_path):
    """A generation of another suite's hopper (`--fork-hop` on its command line too) took the
    last pid this one wrote: it counted as this hopper alive, and `stop_hopper` SIGKILLed it."""
    ours, theirs = tmp_path / "hop.pid", tmp_path / "theirs" / "hop.pid"
    theirs.parent.mkdir()
    other = subprocess.Popen(["sh", "-c", "echo up; sleep 30; :", "sh", "--fork-hop", "30", "--hop-pid-file", "hop.pid"],
                             cwd=theirs.parent, start_new_session=True, env={"PATH": os.environ["PATH"]},
                             stdout=subprocess.PIPE)
    try:
        assert other.stdout is not None and other.stdout.readline() == b"up\n"  # sh runs: its argv is in /proc
        assert proc_scan.hopper_writing(other.pid) == theirs.resolve()
        theirs.write_text(f"{other.pid}\n")
        assert not proc_scan.hopper_quiet(theirs, 0.05)  # its own hopper's: alive
        ours.write_text(f"{other.pid}\n")
        assert proc_scan.hopper_quiet(ours, 0.05)
        proc_scan.stop_hopper(ours, tmp_path / "hop.stop", timeout_secs=0.3)
        assert other.poll() is None, "stop_hopper killed another suite's process"
    finally:
        os.killpg(other.pid, signal.SIGKILL)
        other.wait()
        if other.stdout is not None:
            other.stdout.close()


def test_a_pid_written_once_after_the_kill_leaves_the_hopper_quiet_within_its_time(tmp_path, monkeypatch):
    """A generation SIGKILLed in the middle of writing its pid (its rename blocked on the
    journal) finishes that write after the kill, while the check waits: the hopper is quiet
    once it is in, asked again within the time given."""
    pid_file = tmp_path / "hop.pid"
    pid_file.write_text(f"{GONE}\n")
    late = [GONE + 1]

    def sleep(secs: float) -> None:  # the killed generation's write lands as the check waits
        if late:
            pid_file.write_text(f"{late.pop()}\n")

    monkeypatch.setattr(proc_scan.time, "sleep", sleep)
    assert proc_scan.hopper_quiet(pid_file, 0.2, within_secs=2)
    assert not late


def test_a_hopper_that_writes_on_is_never_quiet(tmp_path, monkeypatch):
    """The time given does not let a live hopper pass: it writes a new pid at every look."""
    pid_file = tmp_path / "hop.pid"
    pid_file.write_text(f"{GONE}\n")
    written = iter(range(GONE + 1, GONE + 1_000_000))
    monkeypatch.setattr(proc_scan.time, "sleep", lambda secs: pid_file.write_text(f"{next(written)}\n"))
    assert not proc_scan.hopper_quiet(pid_file, 0.2, within_secs=0.2)


def test_a_hopper_hops_when_it_writes_new_generations_and_not_when_it_stopped(tmp_path, monkeypatch):
    """`hopper_hops` answers "it lives" on new generations written, however late a loaded host
    lets them come (a fixed quiet time called a live one stopped); a hopper that writes no more
    never hops, whatever it wrote before."""
    pid_file = tmp_path / "hop.pid"
    pid_file.write_text(f"{GONE}\n")
    written = iter(range(GONE + 1, GONE + 1_000))
    monkeypatch.setattr(proc_scan.time, "sleep", lambda secs: pid_file.write_text(f"{next(written)}\n"))
    assert proc_scan.hopper_hops(pid_file, generations=3, timeout_secs=10)
    monkeypatch.setattr(proc_scan.time, "sleep", lambda secs: None)
    assert not proc_scan.hopper_hops(pid_file, generations=1, timeout_secs=0.2)
