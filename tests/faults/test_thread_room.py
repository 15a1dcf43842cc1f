"""`stoker run` under an address-space limit (ulimit -v) just too small for its threads: it ends.

Before: under a limit a few KiB past what a thread's stack needs, the kernel made the new
thread (the reaper's), and the thread died before it ran any Python (its first frames' data
stack refused: a MemoryError before threading's `_bootstrap_inner`); the main thread waited
for good in `Thread.start()` for a start signal that never came. SIGTERM was ignored (the wait
is in a lock), only kill -9 ended it, and no checkpoint was written. Every start now goes
through `executor.logs.start_thread`, which refuses one the limit has no room for (stack and
first allocations), as the C library refuses a stack: one line naming the limit, exit 2.

The window was about 16 KiB wide, and where it lies moves with what the process maps (~100
KiB with what is imported), so the test finds it: a lowest limit under which the job runs
(by bisection, to a page), then every other page (`SCAN_STEP_KIB`: the window holds two at
least) from `SCAN_BELOW_KIB` below it to `SCAN_ABOVE_KIB` above it, where runs are sure. Each limit must end within `BOUND_SECS` (a run takes a fraction of a second) with exit 0, or
exit 2 and one `stoker: error:` line naming the limit, no traceback.
"""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.stoker_proc import REPO, kill_leftovers, task_pids

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]

JOB = """
a = Process(name='a', cmdline='true')
b = Process(name='b', cmdline='true')
jobs = [Job(cluster='local', role='me', environment='test', name='job',
            task=Task(processes=[a, b], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
"""
BOUND_SECS = 30  # a run of this job takes ~0.1 s (its processes: `true`); a hang, for good
PAGE_KIB = 4
SCAN_STEP_KIB = 2 * PAGE_KIB  # the window was 16 KiB wide: each step lands in it twice at least
SCAN_BELOW_KIB = 160  # the hang was 76-88 KiB below the lowest limit that ran: twice that
SCAN_ABOVE_KIB = 96  # near the lowest, a limit may run or not: what is mapped varies by some pages


class Run:
    """The outcome of `stoker run` of the job under an address-space limit of `limit_kib`."""

    def __init__(self, tmp_path: Path, job: Path, limit_kib: int | None) -> None:
        sandbox = tmp_path / f"sb-{limit_kib}"
        limit = resource.RLIM_INFINITY if limit_kib is None else limit_kib * 1024
        proc = subprocess.Popen(
            [sys.executable, "-m", "executor", "run", str(job), "--sandbox", str(sandbox),
             "--root", str(tmp_path / "root")],
            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO), "HOME": str(tmp_path)},
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
        try:
            self.output, _ = proc.communicate(timeout=BOUND_SECS)
            self.hung = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            self.output, _ = proc.communicate()
            self.hung = True
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
            kill_leftovers(task_pids(sandbox))
        self.limit_kib = limit_kib
        self.status = proc.returncode

    def ran(self) -> bool:
        return not self.hung and self.status == 0

    def problem(self) -> str | None:
        """What is wrong with this outcome, None when it ran or ended with one line."""
        if self.hung:
            return f"ulimit -v {self.limit_kib}: no end within {BOUND_SECS} s (killed): {self.output[-600:]!r}"
        if self.status == 0:
            return None
        errors = [line for line in self.output.splitlines() if line.startswith("stoker: error:")]
        if (self.status != 2 or "Traceback" in self.output or len(errors) != 1
                or f"ulimit -v: {self.limit_kib} KiB" not in errors[0]):
            return f"ulimit -v {self.limit_kib}: exit {self.status}: {self.output[-1500:]!r}"
        return None


def lowest_limit_that_runs(tmp_path: Path, job: Path) -> int:
    """The lowest address-space limit (KiB, to a page) under which the job runs."""
    low, high = 16 * 1024, 512 * 1024  # refused, ran
    runs = Run(tmp_path, job, high)
    assert runs.ran(), runs.output[-2000:]
    while high - low > PAGE_KIB:
        middle = (low + high) // 2 // PAGE_KIB * PAGE_KIB
        if Run(tmp_path, job, middle).ran():
            high = middle
        else:
            low = middle
    return high


def test_a_limit_just_too_small_for_a_thread_ends_with_one_line_never_a_hang(tmp_path: Path) -> None:
    job = tmp_path / "job.aurora"
    job.write_text(JOB)
    first = Run(tmp_path, job, None)  # plans the job (kept under HOME): the scan's runs are alike
    assert first.ran(), first.output[-2000:]
    lowest = lowest_limit_that_runs(tmp_path, job)
    problems, statuses = [], set()
    for limit_kib in range(lowest - SCAN_BELOW_KIB, lowest + SCAN_ABOVE_KIB + 1, SCAN_STEP_KIB):
        run = Run(tmp_path, job, limit_kib)
        statuses.add(run.status)
        if run.problem():
            problems.append(run.problem())
        if run.hung:  # one shows it: more would only cost the bound each
            break
    assert problems == [], f"lowest limit that ran: {lowest} KiB\n" + "\n".join(problems)
    assert statuses == {0, 2}, statuses  # the scan saw both sides: refused, and ran
