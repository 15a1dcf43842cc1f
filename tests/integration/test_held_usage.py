"""The trees of a task's held processes (`executor/observe/usage.UsageSampler.held`): a
held pid counts only while it is a child of the live supervisor with the start the list
records; a reused pid, a process the list names that is not the supervisor's, and a run's
top (counted with its run) do not. This test process stands for the supervisor."""
from __future__ import annotations

import os
import subprocess
import sys

from executor.host.identity import read_proc
from executor.observe.usage import UsageSampler
from tests.support.waiting import wait_for

HELD = 20_000_000


def start_of(pid: int) -> int:
    data = read_proc(f"/proc/{pid}/stat")
    return int(data[data.rfind(b")") + 2:].split()[19])


def rss_of(pid: int) -> int:
    data = read_proc(f"/proc/{pid}/stat")
    return int(data[data.rfind(b")") + 2:].split()[21]) * os.sysconf("SC_PAGE_SIZE")


def test_a_held_child_counts_with_its_tree_and_nothing_unproven_does():
    code = f"import sys, time; x = b'd' * {HELD}; print(flush=True); time.sleep(60)"
    daemon = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert daemon.stdout is not None and daemon.stdout.readline() == b"\n"
        me, start = os.getpid(), start_of(daemon.pid)
        sampler = UsageSampler()
        (found,) = sampler.held([(daemon.pid, start)], me, ())
        assert found.pid == daemon.pid and found.processes == 1 and found.rss_bytes >= HELD
        assert found.rss_bytes >= rss_of(daemon.pid) - 1024 * 1024 and found.cpu_percent is not None
        assert sampler.held([(daemon.pid, start + 100)], me, ()) == []  # another start: a reused pid
        assert sampler.held([(daemon.pid, start)], os.getppid(), ()) == []  # not that supervisor's child
        assert sampler.held([(me, start_of(me))], os.getppid(), ()) != []  # (the parent check itself)
        assert sampler.held([(daemon.pid, start)], me, (daemon.pid,)) == []  # a run's top: counted as the run
        assert sampler.held([(os.getppid(), start_of(os.getppid()))], me, ()) == []  # named, not a child
    finally:
        daemon.kill()
        daemon.wait()
    assert wait_for(lambda: UsageSampler().held([(daemon.pid, start)], me, ()) == [])
