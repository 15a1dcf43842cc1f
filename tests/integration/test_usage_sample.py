"""The observer's look at a run's process tree (`executor/observe/usage.py`'s
`UsageSampler.sample`) against what psutil reads of the same real processes: the tree's
process count, its resident memory summed, its CPU seconds, when its top started, and
whether it is stopped; a run whose pid another process's child has now is no run's. This
test's process stands for the supervisor (the runs are its children)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import psutil
import pytest

from executor.observe.model import Usage
from executor.observe.usage import RunRef, UsageSampler
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)

# a top that burns 0.3 s of CPU, then starts two sleeping children and waits
BUSY_TOP = ("import subprocess, sys, time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
            "kids = [subprocess.Popen(['sleep', '600']) for _ in range(2)]\nprint('ready', flush=True)\n"
            "time.sleep(600)\n")


@pytest.fixture
def run() -> Iterator[psutil.Process]:
    proc = subprocess.Popen([sys.executable, "-c", BUSY_TOP], stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        top = psutil.Process(proc.pid)
        wait_for(lambda: len(top.children()) == 2, 10, message="the top's two children")
        yield top
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()


def _stat_rss(pid: int) -> int:
    """Resident bytes as /proc/PID/stat says (its 24th field)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        return int(f.read().rsplit(b")", 1)[1].split()[21]) * os.sysconf("SC_PAGE_SIZE")


def _settled_sample(tree: list[psutil.Process]) -> tuple[Usage, int]:
    """The sampler's reading of the run taken between two equal sums of /proc's resident
    bytes, and that sum: a `sleep` just exec'd still grows while its loader maps libc."""
    def bracketed() -> tuple[Usage, int] | None:
        before = sum(_stat_rss(p.pid) for p in tree)
        usage = UsageSampler().sample([RunRef("web", tree[0].pid, os.getpid())])["web"]
        return (usage, before) if sum(_stat_rss(p.pid) for p in tree) == before else None
    return wait_for(bracketed, 10, message="the tree's resident bytes settled")


def test_a_run_s_tree_is_counted_summed_and_dated_as_psutil_reads_it(run):
    tree = [run, *run.children()]
    usage, rss = _settled_sample(tree)
    assert (usage.pid, usage.processes, usage.stopped) == (run.pid, 3, False)
    assert usage.rss_bytes == rss  # (psutil's statm may read a page count apart)
    assert usage.rss_bytes == pytest.approx(sum(p.memory_info().rss for p in tree), abs=1 << 20)
    cpu = sum(p.cpu_times().user + p.cpu_times().system for p in tree)
    assert usage.cpu_secs == pytest.approx(cpu, abs=0.02) and usage.cpu_secs >= 0.28
    assert usage.cpu_secs == round(usage.cpu_secs, 2)
    assert usage.started_wall == pytest.approx(run.create_time(), abs=1.0)  # (psutil: the boot time in whole seconds)


def test_a_stopped_top_is_said_stopped(run):
    os.kill(run.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: run.status() == psutil.STATUS_STOPPED, 10, message="the top stopped")
        assert UsageSampler().sample([RunRef("web", run.pid, os.getpid())])["web"].stopped
    finally:
        os.kill(run.pid, signal.SIGCONT)


def test_a_pid_whose_parent_is_not_the_run_s_supervisor_is_no_run_s(run):
    assert UsageSampler().sample([RunRef("web", run.pid, 1), RunRef("gone", 4_000_000, os.getpid())]) == {}
