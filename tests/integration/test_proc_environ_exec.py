"""A process's environment read while it execs (`proctree.read_proc`): between the switch to
its new image and the placing of that image's arguments and environment, the kernel shows
both `/proc/PID/cmdline` and `/proc/PID/environ` empty. Read then, a task's process carried
no marker: a daemon caught so by the walk of its launcher's exit 0 (`setsid`, then the exec
of the daemon) was taken for an orphan that cleared its environment, and SIGKILLed as
unclaimed instead of kept (1 run in 8 of tests/faults/test_held_file_fault.py's first
draft). Such a read is made again until the exec is over; a process whose environment is
empty for good (`env -i`), and a kernel thread, read so at once.
"""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from executor.procs import proctree
from executor.procs.pidsignal import EXEC_SETTLE_SECS

pytestmark = pytest.mark.timeout(30)

EXECS = 300  # the chain's rounds (an `env` and a shell each) before the test stops it
READS, SCANS = 300, 30  # at least as many reads and scans of it meanwhile
# A shell that execs `env`, which execs the shell again, counting its rounds in its last
# argument, until the file $1 exists: then `sleep` (an exiting process has no environment left
# to read either). The test stops it once it has read it as often as it means to, over as many
# rounds: a chain of a fixed length was read a number of times that depended on the host's
# load (a scan of /proc beside 1,000 other processes is slower).
CHAIN = 'if [ -e "$1" ]; then exec sleep 60; fi; exec env sh -c "$0" "$0" "$1" $(($2 + 1))'


def execing(tmp_path) -> tuple[subprocess.Popen, Path]:
    """The chain, with MARK=x, and the file that stops it."""
    stop = tmp_path / "stop"
    return subprocess.Popen(["sh", "-c", CHAIN, CHAIN, str(stop), "0"],
                            env={"MARK": "x", "PATH": os.environ["PATH"]}), stop


def rounds(pid: int) -> int:
    """The chain's round, from its arguments (0 while an exec leaves them unreadable)."""
    last = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[-2:][0]
    return int(last) if last.isdigit() else 0


def settled(pid: int) -> bool:
    """The chain's last exec is over: it is the `sleep`."""
    return open(f"/proc/{pid}/cmdline", "rb").read() == b"sleep\x0060\x00"


def test_a_process_read_while_it_execs_again_and_again_always_carries_its_environment(tmp_path):
    chain, stop = execing(tmp_path)
    reads, unmarked, last = 0, 0, False
    try:
        while not last:
            if reads >= READS and not stop.exists() and rounds(chain.pid) >= EXECS:
                stop.touch()
            last = stop.exists() and settled(chain.pid)
            info = proctree.read_proc(chain.pid)
            assert info is not None, "the chain ended"
            reads += 1
            unmarked += b"MARK=x" not in info.environ.split(b"\0")
    finally:
        chain.kill()
        chain.wait()
    assert unmarked == 0, f"{unmarked} of {reads} reads without the environment"


def test_a_scan_for_a_marker_finds_a_process_that_execs_again_and_again_at_every_pass(tmp_path):
    """`scan_markers` (a lost task's end, the observer, a kill with no live group's leader):
    one read of each environment missed the process read mid-exec (a pass that found nothing
    ended the kill: the process lived on)."""
    chain, stop = execing(tmp_path)
    scans, missed, last = 0, 0, False
    try:
        while not last:
            if scans >= SCANS and not stop.exists() and rounds(chain.pid) >= EXECS:
                stop.touch()
            last = stop.exists() and settled(chain.pid)
            scans += 1
            missed += chain.pid not in proctree.scan_markers((b"MARK=x",))
    finally:
        chain.kill()
        chain.wait()
    assert missed == 0, f"{missed} of {scans} scans without the process"


def test_a_scan_for_a_marker_finds_its_processes_alone_with_their_facts():
    """What `scan_markers` gives of each process it finds: its parent, group and start time
    (`/proc/PID/stat`) and its environment; and no process without the marker."""
    from executor.procs.pidsignal import read_stat

    marker = f"MARK=scan{os.getpid()}"
    sleeper = subprocess.Popen(["sleep", "60"], env={marker.split("=")[0]: marker.split("=")[1],
                                                     "PATH": os.environ["PATH"]}, start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        while open(f"/proc/{sleeper.pid}/cmdline", "rb").read() != b"sleep\x0060\x00":
            assert time.monotonic() < deadline, "sleep never started"
        found = proctree.scan_markers((marker.encode(),))
        stat = read_stat(sleeper.pid)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert list(found) == [sleeper.pid]
    info = found[sleeper.pid]
    assert stat is not None and (info.pid, info.ppid, info.pgrp, info.start) == (
        sleeper.pid, os.getpid(), sleeper.pid, stat[2])
    assert marker.encode() in info.environ.split(b"\0")


def test_the_settled_environment_of_a_process_gone_is_empty():
    from executor.procs.pidsignal import settled_environ

    gone = subprocess.Popen(["true"])
    gone.wait()
    assert settled_environ(gone.pid, 65536) == b""


def test_an_empty_environment_for_good_reads_so_at_once():
    sleeper = subprocess.Popen(["env", "-i", "sleep", "60"])
    try:
        deadline = time.monotonic() + 5
        while open(f"/proc/{sleeper.pid}/cmdline", "rb").read() != b"sleep\x0060\x00":
            assert time.monotonic() < deadline, "env -i sleep never started"
        began = time.perf_counter()
        info = proctree.read_proc(sleeper.pid)
        took = time.perf_counter() - began
    finally:
        sleeper.kill()
        sleeper.wait()
    assert info is not None and info.environ == b"" and took < EXEC_SETTLE_SECS / 2, (info, took)  # not waited


def test_a_kernel_thread_reads_with_no_environment_at_once():
    try:
        with open("/proc/2/stat", "rb") as stat:
            flags = int(stat.read().rsplit(b")", 1)[1].split()[6])
    except OSError:
        pytest.skip("no pid 2 here (a pid namespace of its own)")
    if not flags & 0x00200000:  # PF_KTHREAD
        pytest.skip("pid 2 is no kernel thread here (a pid namespace of its own)")
    began = time.perf_counter()
    info = proctree.read_proc(2)
    took = time.perf_counter() - began
    assert info is not None and info.environ == b"" and took < EXEC_SETTLE_SECS / 2, (info, took)  # not waited
