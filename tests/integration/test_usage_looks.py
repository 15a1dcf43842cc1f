"""What the observer's `UsageSampler` keeps between looks (its CPU % is since the previous
look at the same tree): the trees the last look at each task's runs, or at the other
processes it owns, found; a run that has ended is forgotten at the next look at its task,
and the looks at `MAX_LOOKED_AT` tasks and kinds at most are kept. Real child processes of
this test (its pid stands for their supervisor) and of a stand-in supervisor."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager

from executor.observe import usage as usage_module
from executor.observe.model import SINCE_LAST_LOOK, SINCE_START
from executor.observe.usage import RunRef, UsageSampler

APART = 0.25  # past model.MIN_INTERVAL_SECS between two looks


@contextmanager
def child(*argv: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(list(argv or ("sleep", "60")), stdout=subprocess.PIPE, start_new_session=True)
    try:
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def basis(sampler: UsageSampler, ref: RunRef) -> str:
    return sampler.sample([ref])[ref.process].cpu_basis


def test_a_second_look_at_a_run_is_since_the_first_and_a_look_at_another_task_keeps_it():
    stand_in = ("import subprocess, time; p = subprocess.Popen(['sleep', '60']); "
                "print(p.pid, flush=True); time.sleep(60)")
    with child("sleep", "60") as mine, child(sys.executable, "-c", stand_in) as other:
        assert other.stdout is not None
        theirs = RunRef("b", int(other.stdout.readline()), other.pid)
        ours = RunRef("a", mine.pid, os.getpid())
        sampler = UsageSampler()
        assert basis(sampler, ours) == SINCE_START and basis(sampler, theirs) == SINCE_START
        time.sleep(APART)
        assert basis(sampler, ours) == SINCE_LAST_LOOK, "the look at the other task forgot this one's"
        assert basis(sampler, theirs) == SINCE_LAST_LOOK


def test_a_look_right_after_a_measured_one_shows_its_rate_not_the_average():
    """A page and a scraper a moment apart: the second look showed the average since the run
    started, the first the rate since the look before, and the figure flipped at each refresh."""
    with child(sys.executable, "-c", "while True: pass") as busy:
        ref = RunRef("a", busy.pid, os.getpid())
        sampler = UsageSampler()
        sampler.sample([ref])
        time.sleep(APART)
        measured = sampler.sample([ref])["a"]
        again = sampler.sample([ref])["a"]
        assert (measured.cpu_basis, again.cpu_basis) == (SINCE_LAST_LOOK, SINCE_LAST_LOOK)
        assert again.cpu_percent == measured.cpu_percent


def test_the_looks_kept_are_bounded_the_least_recently_looked_at_dropped(monkeypatch):
    """One kept: the look at what this 'supervisor' owns drops the one at its runs."""
    monkeypatch.setattr(usage_module, "MAX_LOOKED_AT", 1)
    with child() as run, child() as daemon:
        ref = RunRef("a", run.pid, os.getpid())
        sampler = UsageSampler()
        assert basis(sampler, ref) == SINCE_START
        assert daemon.pid in {u.pid for u in sampler.owned(os.getpid(), [run.pid], None)}
        time.sleep(APART)
        assert basis(sampler, ref) == SINCE_START
        time.sleep(APART)
        assert basis(sampler, ref) == SINCE_LAST_LOOK


def kept_bytes(snapshot: tracemalloc.Snapshot) -> int:
    traces = snapshot.filter_traces([tracemalloc.Filter(True, usage_module.__file__)])
    return sum(stat.size for stat in traces.statistics("filename"))


def test_a_flapping_tasks_ended_runs_are_forgotten_at_the_next_look():
    """A daemon restarting again and again has a new pid at each look: each pid's CPU time
    was kept for an hour, up to 20,000 of them (the observer polled every 4 ms grew by
    162 KiB per 1,000 requests, 23 to 32 MiB in 4 minutes); now only the live run's."""
    sampler = UsageSampler()

    def flap(times: int) -> None:
        for _ in range(times):
            with child() as run:
                assert set(sampler.sample([RunRef("flap", run.pid, os.getpid())])) == {"flap"}

    tracemalloc.start()
    try:
        flap(3)
        before = kept_bytes(tracemalloc.take_snapshot())
        flap(150)
        grown = kept_bytes(tracemalloc.take_snapshot()) - before
    finally:
        tracemalloc.stop()
    assert grown < 2048, f"150 ended runs' looks kept {grown:,} bytes"
