"""Bench: the restart after kill -9 as `stoker run` does it (issue 14), timed from outside by
the kernel's own process events, next to the in-process figure of bench_supervisor.py.

`stoker run JOB` (one process, `sleep 100000`, min_duration 0, max_failures 0) is started as
the installed `stoker` script runs it (`CONSOLE_ENTRY`), its first run left to live 1.5 s;
then, again and again, the run's process is SIGKILLed and the time is taken from
`time.monotonic_ns()` just before the kill to:
- "forked": the kernel's PROC_EVENT_FORK of the next run, a new process whose parent is
  `stoker run` (its `stoker-fork` thread);
- "exec'd": that child's first PROC_EVENT_EXEC;
- "RUNNING line": the moment a thread of this process reads the run's `WAITING → RUNNING`
  line from `stoker run`'s stdout (a pipe; includes the printing).
Both event times are the kernel's `timestamp_ns` (CLOCK_MONOTONIC), read from the netlink
process connector (tests/support/proc_connector.py), which needs root: without it the rows
say "skipped" and why. Each kill comes SETTLE_SECS after the run's RUNNING line, when
`stoker run` is idle again. The restarts are measured with 0 and with 1,000 unrelated
processes on the host.

Every `stoker run` is stopped with SIGTERM (its session SIGKILLed if it overstays) and its
task's pids checked dead in a `finally`; the background processes are killed and reaped.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import benchlib
from bench_launch import stop_run
from bench_supervisor import BACKGROUND_PROCESSES
from benchlib import Row, med_p95, ms, progress, summary, workdir

from tests.support import proc_connector
from tests.support.background import Background
from tests.support.stoker_proc import CONSOLE_ENTRY, task_pids

RESTART_TARGET_SECS = 0.0025  # as bench_supervisor's, quiet host
BUSY_RESTART_TARGET_SECS = 0.003  # with BACKGROUND_PROCESSES others
FIRST_RUN_SECS = 1.5
SETTLE_SECS = 0.02
# `stoker run`'s run cap: a process's 100th failed or lost run fails the task, so one
# `stoker run` takes 99 kills at most.
KILLS_PER_RUN = 99
WAIT_SECS = 10.0
RUNNING = "WAITING → RUNNING".encode()
CONFIG = """jobs = [Job(cluster='local', role='bench', environment='test', name='restart',
  task=Task(processes=[Process(name='p0', cmdline='sleep 100000', min_duration=0, max_failures=0)],
            resources=Resources(cpu=0.1, ram=16*MB, disk=16*MB), finalization_wait=5))]
"""


class RunningLines:
    """Reads `stoker run`'s stdout on a thread: when each RUNNING line arrived, in order."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.at: list[float] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if RUNNING in line:
                now = time.monotonic()
                with self._cond:
                    self.at.append(now)
                    self._cond.notify_all()

    def wait(self, count: int) -> float:
        """When the `count`th RUNNING line arrived (waits for it)."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.at) >= count, WAIT_SECS):
                raise RuntimeError(f"stoker run's RUNNING line {count} did not come within {WAIT_SECS} s")
            return self.at[count - 1]

    def join(self) -> None:
        self._thread.join(10)


class Restarts:
    """Per restart: SIGKILL → the next run forked, → exec'd, → its RUNNING line read (s)."""

    def __init__(self) -> None:
        self.forked: list[float] = []
        self.execd: list[float] = []
        self.reported: list[float] = []
        self.exited: list[float] = []  # SIGKILL → the killed run's exit (the kernel's)


def restart_runs(root: Path, count: int) -> Restarts:
    """`count` kill -9s, KILLS_PER_RUN at most in each `stoker run`, one after the other."""
    got = Restarts()
    for i, start in enumerate(range(0, count, KILLS_PER_RUN)):
        restart_run(root / str(i), min(KILLS_PER_RUN, count - start), got)
    return got


def restart_run(root: Path, count: int, got: Restarts) -> None:
    """One `stoker run`, its first run left to live FIRST_RUN_SECS, then `count` kill -9s."""
    root.mkdir(parents=True)
    config = root / "restart.aurora"
    config.write_text(CONFIG)
    sandbox = root / "sandbox"
    with open(root / "stderr", "wb") as err:
        proc = subprocess.Popen([sys.executable, *CONSOLE_ENTRY, "run", str(config), "--sandbox", str(sandbox)],
                                cwd=root, env=dict(os.environ, PYTHONPATH=str(benchlib.REPO)),
                                stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    events = proc_connector.Follower(proc.pid)
    lines = RunningLines(proc)
    try:
        _kill_loop(sandbox, events, lines, count, got)
    except BaseException:
        progress(f"stoker run's stderr: {(root / 'stderr').read_text(errors='replace')[-2000:]}")
        raise
    finally:
        events.close()
        stop_run(proc, sandbox, lines.join)


def _kill_loop(sandbox: Path, events: proc_connector.Follower, lines: RunningLines,
               count: int, got: Restarts) -> None:
    """`count` times: SIGKILL the run's process, then note its exit, the next run's fork and
    exec (the kernel's stamps) and its RUNNING line, into `got`."""
    lines.wait(1)
    time.sleep(FIRST_RUN_SECS)
    (pid,) = task_pids(sandbox)  # the checkpoint's sync follows the report: read it late
    for k in range(count):
        start = time.monotonic_ns()
        os.kill(pid, signal.SIGKILL)
        exited = events.wait_for("exit", start, WAIT_SECS, pid)
        fork = events.wait_for("fork", start, WAIT_SECS)
        execd = events.wait_for("exec", start, WAIT_SECS, fork.tgid)
        reported = lines.wait(k + 2)
        got.exited.append((exited.ns - start) / 1e9)
        got.forked.append((fork.ns - start) / 1e9)
        got.execd.append((execd.ns - start) / 1e9)
        got.reported.append(reported - start / 1e9)
        pid = fork.tgid
        events.forget_before(start)
        time.sleep(SETTLE_SECS)


def fork_to_exec_floor(count: int) -> list[float]:
    """`count` posix_spawns of `/bin/bash -c 'sleep 100000'` from this process: the kernel's
    fork event → its exec event (s), what any supervisor's run pays between the two."""
    events = proc_connector.Follower(os.getpid())
    times = []
    try:
        for _ in range(count):
            start = time.monotonic_ns()
            pid = os.posix_spawn("/bin/bash", ["/bin/bash", "-c", "sleep 100000"], os.environ)
            try:
                fork = events.wait_for("fork", start, WAIT_SECS, pid)
                execd = events.wait_for("exec", start, WAIT_SECS, pid)
            finally:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            times.append((execd.ns - fork.ns) / 1e9)
            events.forget_before(start)
    finally:
        events.close()
    return times


def rows_of(got: Restarts, label: str, target: str, limit: float, spawn_floor: list[float]) -> list[Row]:
    floor = (f"SIGKILL → the killed run's exit (the kernel's event): median "
             f"{ms(summary(got.exited).median)}; a posix_spawn's fork → exec events from a "
             f"Python process: median {ms(summary(spawn_floor).median)}")
    return [
        Row(f"`stoker run` restart after kill -9{label}: SIGKILL → next run forked "
            f"(the kernel's fork event)", med_p95(got.forked), floor, target,
            summary(got.forked).median, limit),
        Row(f"`stoker run` restart after kill -9{label}: SIGKILL → next run exec'd "
            f"(the kernel's exec event)", f"{med_p95(got.execd)}; its fork → exec: median "
            f"{ms(summary([e - f for e, f in zip(got.execd, got.forked)]).median)}", floor, target,
            summary(got.execd).median, limit),
        Row(f"`stoker run` restart after kill -9{label}: SIGKILL → its RUNNING line read "
            f"from stdout", med_p95(got.reported), floor, "—"),
    ]


def skipped(why: str) -> list[Row]:
    return [Row("`stoker run` restart after kill -9 (the kernel's fork/exec events)",
                f"skipped: {why}", "—", "≤ 2.5 ms median")]


def run(quick: bool) -> tuple[list[Row], list[str]]:
    why = proc_connector.unavailable()
    if why is not None:
        return skipped(why), []
    count = 20 if quick else 2 * KILLS_PER_RUN
    with workdir("restartrun") as root:
        progress(f"stoker run: {count} kill -9s, timed by the kernel's process events")
        quiet = restart_runs(root / "quiet", count)
        spawn_floor = fork_to_exec_floor(count)
        rows = rows_of(quiet, "", "≤ 2.5 ms median", RESTART_TARGET_SECS, spawn_floor)
        progress(f"the same with {BACKGROUND_PROCESSES} other processes on the host")
        bg = Background(BACKGROUND_PROCESSES)
        try:
            bg.wait_ready()
            busy = restart_runs(root / "busy", count // 2)
        finally:
            bg.close()
        rows += rows_of(busy, f" with {BACKGROUND_PROCESSES:,} other processes on the host",
                        "≤ 3 ms median", BUSY_RESTART_TARGET_SECS, spawn_floor)
    note = (f"`stoker run`'s restart rows: {count} kill -9s ({count // 2} with the other processes), "
            f"{KILLS_PER_RUN} at most per `stoker run` (its run cap), whose first run lived "
            f"{FIRST_RUN_SECS} s; each kill {ms(SETTLE_SECS, 0)} after the run's RUNNING line; "
            f"times from the kernel's process connector events, stamped on CLOCK_MONOTONIC.")
    return rows, [note]


if __name__ == "__main__":
    sys.exit(benchlib.main("bench_restart_run", run))
