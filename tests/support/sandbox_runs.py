"""`stoker run` children for the fault tests that plant files in a task's sandbox
(test_sandbox_planted_files.py, test_sandbox_deep_nesting.py): their job configs, the pid
files their task processes write, and stopping them at teardown whatever the test did.
"""
from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import proc_scan
from tests.support.stoker_proc import StokerProcess
from tests.support.waiting import wait_for

STOP_SECS = 5.0  # a stop (signal or KILL) must be over well within this
RESOURCES = "resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)"


def job_config(tmp_path: Path, name: str, processes: str, **task_fields: str) -> Path:
    """A service job `name` whose task runs `processes` (Process(...) source text)."""
    fields = "".join(f", {k}={v}" for k, v in task_fields.items())
    path = tmp_path / f"{name}.aurora"
    path.write_text(
        f"jobs = [Service(cluster='local', role='me', environment='test', name={name!r},\n"
        f"  task=Task(processes=[{processes}], finalization_wait=1, {RESOURCES}{fields}))]\n")
    return path


def process(cmdline: str, **fields: object) -> str:
    extra = "".join(f", {k}={v!r}" for k, v in fields.items())
    return f"Process(name='p', cmdline={cmdline!r}{extra})"


def eventually(cond, timeout_secs: float) -> bool:  # type: ignore[no-untyped-def]
    """True once `cond()` holds within the deadline, False otherwise (the caller asserts)."""
    try:
        wait_for(cond, timeout_secs)
        return True
    except AssertionError:
        return False


def read_pids(sandbox: Path) -> set[int]:
    return proc_scan.read_pid_files([sandbox / "pids", sandbox / "sleeper.pid"])


def left_in(sandbox: Path) -> set[int]:
    """The pids of the sandbox's pid files still alive as its task's processes: each the
    process that had it when its file was written (`proc_scan.read_pid_files`). A pid alone
    may name another process by now: pid_max is 32768 here, and the suite's processes wrap
    it within a run (a run's pid, exited seconds before, was another test's process at the
    check once)."""
    return proc_scan.live(read_pids(sandbox))


class Runs:
    """`stoker run` children of one test, each stopped (SIGKILL, then the task's processes by
    its marker) at teardown even when the test failed; never reads the sandbox's checkpoint,
    which a test may have replaced with a FIFO."""

    def __init__(self, tmp_path: Path) -> None:
        self._tmp = tmp_path
        self._started: list[tuple[StokerProcess, Path]] = []
        self._markers: set[str] = set()

    def start(self, config: Path, sandbox: Path, *flags: str) -> StokerProcess:
        proc = StokerProcess(["run", str(config), "--sandbox", str(sandbox), *flags], self._tmp)
        self._started.append((proc, sandbox))
        return proc

    def remember_marker(self, sandbox: Path) -> None:
        for pid in read_pids(sandbox):
            marker = proc_scan.task_marker_of(pid)
            if marker and proc_scan.is_live(pid):  # still the process of the file (not another task's)
                self._markers.add(marker)

    def close(self) -> None:
        for proc, sandbox in self._started:
            self.remember_marker(sandbox)
            proc.close()
            for marker in self._markers:
                proc_scan.kill_carrying(f"{proc_scan.TASK_MARKER}={marker}", read_pids(sandbox))



def stop_secs(proc: StokerProcess, sig: int) -> float:
    """Send `sig`; how long `stoker run` took to exit (fails past STOP_SECS)."""
    started = time.monotonic()
    proc.signal(sig)
    try:
        proc.wait(STOP_SECS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"stoker run did not exit within {STOP_SECS} s of {signal.Signals(sig).name}"
                    f"\nstdout:\n{proc.stdout()}\nstderr:\n{proc.stderr()}")
    return time.monotonic() - started

