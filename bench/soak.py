"""Soak: what a task that lives long grows. Not part of `make bench`'s default set; run it by
hand (five scenarios of 60 s: five minutes and more; `--quick`: about one):

    .venv/bin/python bench/soak.py [--quick] [--secs S] [--only NAME]

Time is compressed with tiny intervals, so that each scenario does in a minute what a task
does in days (a daemon's `min_duration` of 0, a health check every 0.1 ms, a restart
back-off of 1 ms). Each scenario is a real `stoker run` in a sandbox on /dev/shm (the fsync
per step costs microseconds there), in a registry of its own:

- restarts: a daemon process that exits at once, restarted again and again (min_duration 0),
  while a thread polls `stoker observe` (the task list, the task page, its JSON and the
  latest run's log);
- health-tcp: a TCP health check every 0.1 ms against the process's own port;
- health-shell: a shell health check (`true`, a fork and exec each) every 0.1 ms;
- attempts: a service whose one process fails at once, so the task fails and `stoker run`
  starts attempt after attempt (`--restart-backoff 0.001 --restart-backoff-max 0.001`);
- executor: `stoker executor` under the agent simulator (tests/support/agent_sim/), its task
  a daemon restarted again and again with a shell health check every 0.1 ms, while the agent
  sends a HEARTBEAT every millisecond (the events counted).

For each: the events done and their rate; the supervisor's memory (RSS, PSS, USS), open fds
and threads a few seconds in and at the end (growth per 1,000 events); the checkpoint's
size (largest while it ran, and at the end); the sandbox's directory entries (run log
directories, `.logs.attempt-N`); `stoker status` (the whole process) at the end and its
output's length; for `restarts`, the observer's memory and fds before and after its
requests. It prints one table (`figure | start | end | per 1,000 events`).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import attrs
import benchlib
import psutil
from benchlib import MIB, progress

from executor.task.checkpoint import checkpoint_path, iter_records
from executor.task.replay import replay
from tests.support.stoker_proc import REPO, StokerProcess, kill_leftovers, task_pids

FAKE = REPO / "tests/support/fake_task.py"
WARMUP_SECS = 3.0
RESOURCES = "resources=Resources(cpu=0.1, ram=16*MB, disk=16*MB)"
# the interpreter and the script quoted for bash: a checkout at "/a b/stoker" ran `exec /a`
WEB = f"exec {shlex.quote(sys.executable)} {shlex.quote(str(FAKE))} --accept-tcp {{{{thermos.ports[health]}}}}"

CONFIGS = {
    "restarts": f"""
flap = Process(name='flap', cmdline='exit 0', daemon=True, min_duration=0.0, max_failures=0)
jobs = [Service(cluster='local', role='soak', environment='test', name='restarts',
                task=Task(processes=[flap], {RESOURCES}))]
""",
    "health-tcp": f"""
web = Process(name='web', cmdline={WEB!r})
jobs = [Service(cluster='local', role='soak', environment='test', name='checks',
                task=Task(processes=[web], {RESOURCES}),
                health_check_config=HealthCheckConfig(
                    health_checker=HealthCheckerConfig(tcp=TcpHealthChecker()),
                    initial_interval_secs=30.0, interval_secs=0.0001, timeout_secs=1.0),
                lifecycle=DisableLifecycle)]
""",
    "health-shell": f"""
srv = Process(name='srv', cmdline='exec sleep 100000')
jobs = [Service(cluster='local', role='soak', environment='test', name='shell',
                task=Task(processes=[srv], {RESOURCES}),
                health_check_config=HealthCheckConfig(
                    health_checker=HealthCheckerConfig(shell=ShellHealthChecker(shell_command='true')),
                    initial_interval_secs=0.0001, interval_secs=0.0001, timeout_secs=1.0))]
""",
    "attempts": f"""
bad = Process(name='bad', cmdline='echo started; echo it failed >&2; exit 3', min_duration=0.0)
jobs = [Service(cluster='local', role='soak', environment='test', name='attempts',
                task=Task(processes=[bad], {RESOURCES}))]
""",
}
# The executor's disk-limit check is on: the simulator keeps the executor's log in the sandbox
# (`executor.log`, where an agent's `stderr` is left out), and its lines of a restart a
# millisecond would outgrow a 16 MB reservation within minutes.
EXECUTOR_JOB = """
flap = Process(name='flap', cmdline='exit 0', daemon=True, min_duration=0.0, max_failures=0)
jobs = [Job(cluster='local', role={role!r}, environment='test', name='soak',
            task=Task(processes=[flap], resources=Resources(cpu=0.1, ram=16*MB, disk=64*GB)),
            health_check_config=HealthCheckConfig(
                health_checker=HealthCheckerConfig(shell=ShellHealthChecker(shell_command='true')),
                initial_interval_secs=0.0001, interval_secs=0.0001, timeout_secs=1.0))]
"""
EXTRA_ARGS = {"attempts": ["--restart-backoff", "0.001", "--restart-backoff-max", "0.001"]}


@attrs.frozen
class Reading:
    """The supervisor (or observer) at one moment."""

    at: float
    rss: int
    pss: int
    uss: int
    fds: int
    threads: int

    @classmethod
    def of(cls, pid: int) -> Reading:
        proc = psutil.Process(pid)
        mem = proc.memory_full_info()
        return cls(time.monotonic(), mem.rss, mem.pss, mem.uss, proc.num_fds(), proc.num_threads())


@attrs.frozen
class Result:
    name: str
    events: str  # what was counted
    start_events: int
    end_events: int
    secs: float
    first: Reading
    last: Reading
    biggest_checkpoint: int
    final_checkpoint: int
    entries: dict[str, int]  # sandbox directory listings: name → entries
    status_secs: float
    status_lines: int
    observer: tuple[Reading, Reading, int] | None = None  # before, after, requests


def count_events(name: str, sandbox: Path) -> int:
    """Runs of the process (restarts), health attempts, or task attempts, from the checkpoint."""
    view = replay(iter_records(sandbox))
    if name == "restarts":
        return sum(p.runs[-1].run + 1 for p in view.processes if p.runs)
    if name.startswith("health"):
        return view.health.attempts
    return view.attempt


def entries(sandbox: Path) -> dict[str, int]:
    found = {"sandbox": len(os.listdir(sandbox))}
    logs = sandbox / ".logs"
    if logs.is_dir():
        for process in os.listdir(logs):
            found[f".logs/{process}"] = len(os.listdir(logs / process))
    return found


class ObserverPoll:
    """`stoker observe` on the scenario's registry, polled from a thread until stopped."""

    def __init__(self, root: Path, cwd: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO), STOKER_ROOT=str(root))
        self.proc = subprocess.Popen([sys.executable, "-m", "executor", "observe", "--port", "0"],
                                     cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if not line.startswith("stoker observe: http://"):
            self.proc.kill()
            raise RuntimeError(f"stoker observe did not start: {line!r}")
        self.url = line.split()[2].rstrip("/")
        self.requests = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self.before: Reading | None = None

    def start(self) -> None:
        self._round()  # every page once: what they import is not growth
        self.before = Reading.of(self.proc.pid)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._round()

    def _round(self) -> None:
        for task in json.loads(_get(f"{self.url}/api/tasks")):
            tid = task["task_id"]
            for path in ("/", f"/tasks/{tid}", f"/api/tasks/{tid}",
                         f"/api/tasks/{tid}/processes/flap/logs?stream=stderr"):
                _get(self.url + path)
                self.requests += 1
        self.requests += 1

    def close(self) -> tuple[Reading, Reading, int]:
        self._stop.set()
        self._thread.join(30)
        after = Reading.of(self.proc.pid)
        self.proc.kill()
        self.proc.wait(10)
        assert self.before is not None
        return self.before, after, self.requests


def _get(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return answer.read()
    except urllib.error.HTTPError as exc:  # a 404 for a log not there yet counts as served
        return exc.read()


def soak(name: str, secs: float, base: Path) -> Result:
    config = base / f"{name}.aurora"
    config.write_text(CONFIGS[name])
    shm = Path(tempfile.mkdtemp(prefix="stoker-soak-", dir="/dev/shm"))
    sandbox = shm / "sandbox"
    run = StokerProcess(["run", str(config), "--sandbox", str(sandbox), *EXTRA_ARGS.get(name, [])], base)
    observer = None
    try:
        run.wait_output("→ RUNNING", timeout_secs=60)
        time.sleep(WARMUP_SECS)
        first, start_events = Reading.of(run.pid), count_events(name, sandbox)
        if name == "restarts":
            observer = ObserverPoll(Path(os.environ["STOKER_ROOT"]), base)
            observer.start()
        biggest, until = 0, time.monotonic() + secs
        next_note = time.monotonic()
        while time.monotonic() < until and run.proc.poll() is None:
            path = checkpoint_path(sandbox)
            biggest = max(biggest, path.stat().st_size if path.exists() else 0)
            if time.monotonic() >= next_note:
                now = Reading.of(run.pid)
                progress(f"{name}: {count_events(name, sandbox):,} events, checkpoint ≤ {biggest:,} bytes, "
                         f"supervisor USS {now.uss / MIB:.2f} MiB, {now.fds} fds, {now.threads} threads")
                next_note += secs / 4
            time.sleep(0.02)
        if run.proc.poll() is not None:
            raise RuntimeError(f"stoker run ended early ({run.proc.returncode}): {run.stderr()[-2000:]}")
        last, end_events = Reading.of(run.pid), count_events(name, sandbox)
        watched = observer.close() if observer is not None else None
        observer = None
        started = time.monotonic()
        shown = subprocess.run([sys.executable, "-m", "executor", "status", str(sandbox)], cwd=base,
                               env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, check=True)
        status_secs = time.monotonic() - started
        return Result(name=name, events=name, start_events=start_events, end_events=end_events,
                      secs=last.at - first.at, first=first, last=last, biggest_checkpoint=biggest,
                      final_checkpoint=checkpoint_path(sandbox).stat().st_size, entries=entries(sandbox),
                      status_secs=status_secs, status_lines=len(shown.stdout.splitlines()),
                      observer=watched)
    finally:
        if observer is not None:
            observer.close()
        run.signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):  # close() kills what did not stop
            run.wait(60)
        run.close()
        kill_leftovers(task_pids(sandbox))
        shutil.rmtree(shm, ignore_errors=True)


def _per_k(first: float, last: float, events: int, unit: float, fmt: str) -> str:
    return fmt.format((last - first) / unit / max(events, 1) * 1000)


def table(results: list[Result]) -> list[str]:
    lines = ["| scenario | figure | start | end | growth per 1,000 events |", "| --- | --- | --- | --- | --- |"]
    for r in results:
        n = r.end_events - r.start_events
        rate = n / r.secs if r.secs else 0.0
        rows: list[tuple[str, str, str, str]] = [
            ("events (runs / health attempts / task attempts)", f"{r.start_events:,}", f"{r.end_events:,}",
             f"{n:,} in {r.secs:.0f} s ({rate:,.0f}/s)"),
            ("supervisor RSS", f"{r.first.rss / MIB:.2f} MiB", f"{r.last.rss / MIB:.2f} MiB",
             _per_k(r.first.rss, r.last.rss, n, 1024, "{:+.2f} KiB")),
            ("supervisor PSS", f"{r.first.pss / MIB:.2f} MiB", f"{r.last.pss / MIB:.2f} MiB",
             _per_k(r.first.pss, r.last.pss, n, 1024, "{:+.2f} KiB")),
            ("supervisor USS", f"{r.first.uss / MIB:.2f} MiB", f"{r.last.uss / MIB:.2f} MiB",
             _per_k(r.first.uss, r.last.uss, n, 1024, "{:+.2f} KiB")),
            ("supervisor fds / threads", f"{r.first.fds} / {r.first.threads}",
             f"{r.last.fds} / {r.last.threads}", f"{r.last.fds - r.first.fds:+d} / "
                                                 f"{r.last.threads - r.first.threads:+d} in all"),
            ("checkpoint bytes (largest; at the end)", "—",
             f"{r.biggest_checkpoint:,}; {r.final_checkpoint:,}", "—"),
            ("sandbox entries", "—", ", ".join(f"{k}: {v:,}" for k, v in r.entries.items()), "—"),
            ("`stoker status` (whole process; lines)", "—", f"{r.status_secs * 1000:.0f} ms; {r.status_lines} lines",
             "—"),
        ]
        if r.observer is not None:
            before, after, requests = r.observer
            rows.append((f"observer RSS / fds / threads ({requests:,} requests)",
                         f"{before.rss / MIB:.2f} MiB / {before.fds} / {before.threads}",
                         f"{after.rss / MIB:.2f} MiB / {after.fds} / {after.threads}",
                         f"{(after.rss - before.rss) / 1024 / max(requests, 1) * 1000:+.1f} KiB per 1,000 requests"))
        lines += [f"| {r.name} | {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return lines


def soak_executor(secs: float, base: Path) -> Result:
    """`stoker executor` under the agent simulator: restarts, checks and heartbeats."""
    import getpass

    from config.document import encode
    from config.loader import load_job
    from tests.support.agent_sim import AgentSimulator, make_task_info

    job = base / "executor.aurora"
    job.write_text(EXECUTOR_JOB.format(role=getpass.getuser()))
    sandbox = Path(tempfile.mkdtemp(prefix="stoker-soak-", dir="/dev/shm")) / "sandbox"
    sandbox.mkdir()
    sim = AgentSimulator(sandbox=sandbox)
    try:
        proc = sim.launch_executor([sys.executable, "-m", "executor", "executor"], cwd=sandbox,
                                   env_overrides={"PYTHONPATH": str(REPO)})
        sim.wait_subscribed(30)
        sim.launch(make_task_info("task-1", encode(load_job(job))))
        sim.wait_for_state("task-1", "TASK_RUNNING", 30)
        time.sleep(WARMUP_SECS)
        first, beats = Reading.of(proc.pid), 0
        until = time.monotonic() + secs
        next_note = time.monotonic()
        while time.monotonic() < until and proc.poll() is None:
            sim.heartbeat()
            beats += 1
            time.sleep(0.001)
            if time.monotonic() >= next_note:
                now = Reading.of(proc.pid)
                progress(f"executor: {beats:,} heartbeats, USS {now.uss / MIB:.2f} MiB, {now.fds} fds, "
                         f"{now.threads} threads")
                next_note += secs / 4
        if proc.poll() is not None:
            raise RuntimeError(f"stoker executor ended early ({proc.returncode})")
        last = Reading.of(proc.pid)
        runs = count_events("restarts", sandbox)
        return Result(name=f"executor ({runs:,} runs, {replay(iter_records(sandbox)).health.attempts:,} "
                           "checks)", events="heartbeats", start_events=0, end_events=beats,
                      secs=last.at - first.at, first=first, last=last, biggest_checkpoint=0,
                      final_checkpoint=checkpoint_path(sandbox).stat().st_size, entries=entries(sandbox),
                      status_secs=0.0, status_lines=0)
    finally:
        pids = task_pids(sandbox)
        sim.close()
        kill_leftovers(pids)
        shutil.rmtree(sandbox.parent, ignore_errors=True)


def main(argv: list[str] | None = None, soak_one: Callable[[str, float, Path], Result] = soak) -> int:
    parser = argparse.ArgumentParser(prog="bench/soak.py")
    parser.add_argument("--quick", action="store_true", help="10 s per scenario (default 60 s)")
    parser.add_argument("--secs", type=float, help="seconds per scenario")
    parser.add_argument("--only", action="append", choices=sorted([*CONFIGS, "executor"]),
                        help="this scenario (repeatable)")
    args = parser.parse_args(argv)
    secs = args.secs or (10.0 if args.quick else 60.0)
    benchlib.compile_bytecode()
    results = []
    with benchlib.private_registry(), benchlib.workdir("soak") as base:
        for name in args.only or [*CONFIGS, "executor"]:
            progress(f"{name}: {secs:.0f} s")
            results.append(soak_executor(secs, base) if name == "executor" else soak_one(name, secs, base))
    print("\n".join(table(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
