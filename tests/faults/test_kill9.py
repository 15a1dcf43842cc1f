"""Fault 2: `kill -9` of the Stoker process leaves no process of its task alive 1 s later.

A task of 10 processes (plain sleepers, daemonizing ones whose setsid grandchild ignores
SIGTERM, trees whose children ignore SIGTERM, a bash loop that traps TERM) runs under the
real `stoker executor` (agent simulator) and under `stoker run`. Once everything is up, the
Stoker process alone gets SIGKILL (its pid, not its group); 1 s later not one of the task's
processes may be alive: every pid the checkpoint recorded, every daemon and child pid file,
and everything carrying the task's STOKER_TASK_MARKER found by scanning /proc/*/environ.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from config.document import encode
from config.loader import load_job
from tests.support import proc_scan
from tests.support.agent_sim import AgentSimulator, make_task_info
from tests.support.fault_sizes import size
from tests.support.shellwords import fake_sh
from tests.support.stoker_proc import StokerProcess, task_pids
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]

EXECUTOR = [sys.executable, "-m", "executor", "executor"]
ROUNDS = size(1, 3)
GONE_WITHIN_SECS = 1.0


def _daemon(n: int, *flags: str) -> tuple[str, str, list[str]]:
    """A process whose setsid'd, re-parented grandchild writes daemonN.pid."""
    cmdline = fake_sh(*flags, "--daemonize-child", "--daemon-pid-file", f"daemon{n}.pid")
    return f"daemon{n}", f"exec {cmdline}", [f"daemon{n}.pid"]


def _tree(n: int) -> tuple[str, str, list[str]]:
    """A process ignoring SIGTERM with two children (same group) that ignore it too."""
    cmdline = fake_sh("--ignore-sigterm", "--children", "2", "--child-ignore-sigterm",
                    "--children-pid-file", f"kids{n}.pid")
    return f"tree{n}", f"exec {cmdline}", [f"kids{n}.pid"]


# (name, cmdline, pid files it writes in the sandbox): 10 processes, 19 pids once all are up.
PROCESSES = [
    *[(f"sleeper{n}", f"exec {fake_sh()}", []) for n in range(3)],
    _daemon(3, "--daemon-ignore-sigterm"),
    _daemon(4, "--daemon-ignore-sigterm"),
    _daemon(5, "--ignore-sigterm"),
    _tree(6),
    _tree(7),
    ("trap8", "trap '' TERM; while true; do sleep 1; done", []),
    ("mixed9", fake_sh("--ignore-sigterm", "--children", "1", "--children-pid-file", "kids9.pid",
                     "--daemonize-child", "--daemon-ignore-sigterm", "--daemon-pid-file", "daemon9.pid"),
     ["kids9.pid", "daemon9.pid"]),
]
PID_FILES = [f for _, _, files in PROCESSES for f in files]


def config_text(name: str) -> str:
    procs = "".join(f"    Process(name={n!r}, cmdline={c!r}),\n" for n, c, _ in PROCESSES)
    return (
        f"procs = [\n{procs}]\n"
        f"jobs = [Service(cluster='local', role='me', environment='test', name={name!r},\n"
        "                task=Task(processes=procs, resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB),\n"
        "                          finalization_wait=5),\n"
        "                lifecycle=DisableLifecycle)]\n"
    )


class Tracked:
    """Every pid of one task we know of, and the cleanup that kills whatever is left."""

    def __init__(self, sandbox: Path) -> None:
        self.sandbox = sandbox
        self.marker: str | None = None
        self.pids: set[int] = set()

    def collect(self, expected_tops: int, stoker: subprocess.Popen) -> dict[str, int]:
        """Waits until every process and pid file is up; returns the counts by source."""
        def up(cond):
            def check():
                assert stoker.poll() is None, f"stoker exited with {stoker.returncode} during set-up"
                return cond()
            return check

        tops = wait_for(up(lambda: (lambda p: p if len(p) >= expected_tops else None)(
            task_pids(self.sandbox))), 20, message=f"{expected_tops} process pids in the checkpoint")
        files = [self.sandbox / f for f in PID_FILES]
        wait_for(up(lambda: all(f.exists() for f in files)), 20, message="every daemon/children pid file")
        from_files = proc_scan.read_pid_files(files)
        markers = {proc_scan.task_marker_of(pid) for pid in tops} - {None}
        assert len(markers) == 1, f"the task's processes carry {len(markers)} task markers: {markers}"
        self.marker = markers.pop()
        by_marker = proc_scan.task_pids_by_marker(self.marker)
        self.pids = set(tops) | from_files | by_marker
        assert proc_scan.live(tops | from_files) <= by_marker, "a task process lacks the task marker"
        return {"tops": len(tops), "from_pid_files": len(from_files), "by_marker": len(by_marker),
                "total": len(self.pids)}

    def alive(self) -> set[int]:
        found = proc_scan.live(self.pids)
        if self.marker:
            found |= proc_scan.task_pids_by_marker(self.marker)
        return found

    def cleanup(self) -> None:
        if self.marker:
            proc_scan.kill_carrying(f"{proc_scan.TASK_MARKER}={self.marker}", self.pids)
        else:
            proc_scan.kill_carrying(b"STOKER_FAULTS_NOTHING=1", self.pids)


def kill9_and_measure(pid: int, tracked: Tracked) -> tuple[float | None, set[int]]:
    """SIGKILL `pid` alone; returns (seconds until none of the task was left or None, the
    processes still alive exactly GONE_WITHIN_SECS after the kill)."""
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    gone_after = None
    while time.monotonic() - killed_at < GONE_WITHIN_SECS:
        if not tracked.alive():
            gone_after = time.monotonic() - killed_at
            break
        time.sleep(0.01)
    left = killed_at + GONE_WITHIN_SECS - time.monotonic()
    if left > 0:
        time.sleep(left)  # the figure is about time: look again exactly 1 s after the kill
    return gone_after, tracked.alive()


@pytest.fixture
def tracked_tasks():
    made: list[Tracked] = []
    yield lambda sandbox: made.append(Tracked(sandbox)) or made[-1]
    for t in made:
        t.cleanup()


def _report(figures, what: str, counts: dict, gone_after: float | None, alive: set[int]) -> None:
    figures.add(f"{what}: processes tracked", f"{counts['total']} ({counts['tops']} task processes, "
                f"{counts['from_pid_files']} from daemon/children pid files, "
                f"{counts['by_marker']} carrying the task marker)")
    took = f"{gone_after * 1000:.0f} ms" if gone_after is not None else f"not within {GONE_WITHIN_SECS} s"
    figures.add(f"{what}: alive {GONE_WITHIN_SECS:g} s after kill -9", f"{len(alive)} (all gone after {took})")


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_kill9_of_the_executor_leaves_no_task_process(tmp_path, tracked_tasks, figures, round_):
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    config = tmp_path / "ten.aurora"
    config.write_text(config_text("ten"))
    tracked = tracked_tasks(sandbox)
    with AgentSimulator(sandbox=sandbox) as sim:
        proc = sim.launch_executor(EXECUTOR, cwd=sandbox)
        sim.wait_subscribed(timeout_secs=15)
        sim.launch(make_task_info("task-1", encode(load_job(config))))
        sim.wait_for_state("task-1", "TASK_RUNNING", 20)
        counts = tracked.collect(len(PROCESSES), proc)
        gone_after, alive = kill9_and_measure(proc.pid, tracked)
        _report(figures, "stoker executor", counts, gone_after, alive)
        assert counts["tops"] == len(PROCESSES)
        assert not alive, f"{len(alive)} task processes alive {GONE_WITHIN_SECS} s after kill -9 " \
                          f"of the executor: {sorted(alive)}"


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_kill9_of_stoker_run_leaves_no_task_process(tmp_path, tracked_tasks, figures, round_):
    sandbox = tmp_path / "sandbox"
    config = tmp_path / "ten.aurora"
    config.write_text(config_text("ten"))
    tracked = tracked_tasks(sandbox)
    run = StokerProcess(["run", str(config), "--sandbox", str(sandbox)], tmp_path)
    try:
        counts = tracked.collect(len(PROCESSES), run.proc)
        gone_after, alive = kill9_and_measure(run.pid, tracked)
        _report(figures, "stoker run", counts, gone_after, alive)
        assert counts["tops"] == len(PROCESSES)
        assert not alive, f"{len(alive)} task processes alive {GONE_WITHIN_SECS} s after kill -9 " \
                          f"of stoker run: {sorted(alive)}"
    finally:
        run.close()
