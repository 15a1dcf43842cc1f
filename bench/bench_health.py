"""Bench: health failure detection (issue 4). `stoker run` runs a job whose one process is
`sleep 1000`, health-checked over HTTP against a `ScriptedHTTPServer` on 127.0.0.1 (its port
given with `--port health=PORT`). Once the task is RUNNING we wait a random part of one
interval (so the switch lands anywhere in the check schedule), switch the server's script
to failing at t0, and read, from the timestamps `stoker run` prints on each line:

- t0 → the FAILED decision: the `task RUNNING → KILLING  health check failed` line;
- t0 → FAILED: the `task KILLING → FAILED` line (every process gone).

Both are compared with the schedule's own bound, interval × (max_consecutive_failures + 1)
+ timeout (the checks the policy needs, each one interval after the previous ended, the
last one allowed its whole timeout). t0 is taken with `time.time()` right before the
switch; the printed stamps are wall-clock milliseconds, truncated, so each figure may read
up to 1 ms short.

Every `stoker run` is killed with its session and its task pids checked dead in a
`finally`; each server is closed.
"""
from __future__ import annotations

import random
import re
import sys
import time
from pathlib import Path

import benchlib
from benchlib import Row, med_max, ms, progress, summary, workdir

from tests.support.http_server import Reply, ScriptedHTTPServer
from tests.support.stoker_proc import StokerProcess, checkpoint_records, kill_leftovers, task_pids

INTERVAL_SECS = 0.2
TIMEOUT_SECS = 0.1
MAX_CONSECUTIVE_FAILURES = 2
BOUND_SECS = INTERVAL_SECS * (MAX_CONSECUTIVE_FAILURES + 1) + TIMEOUT_SECS
TARGET_SECS = BOUND_SECS + 0.100
WAIT_SECS = 15.0
_STAMP = r"^(\d\d):(\d\d):(\d\d)\.(\d{3})\s+\S+\s+task\s+"
_DECIDED = re.compile(_STAMP + r"RUNNING → KILLING\s+health check failed", re.M)
_FAILED = re.compile(_STAMP + r"KILLING → FAILED", re.M)
_RUNNING = re.compile(_STAMP + r"STARTING → RUNNING", re.M)

CONFIG = f"""
jobs = [Job(cluster='local', role='bench', environment='test', name='health',
            # The check talks to the bench's server on the `health` port; naming the port
            # here is what gives the job one (and a health check).
            task=Task(processes=[Process(name='svc', cmdline='sleep 1000  # {{{{thermos.ports[health]}}}}')],
                      resources=Resources(cpu=0.1, ram=16*MB, disk=16*MB),
                      finalization_wait=2),
            health_check_config=HealthCheckConfig(
                initial_interval_secs={INTERVAL_SECS}, interval_secs={INTERVAL_SECS},
                timeout_secs={TIMEOUT_SECS},
                max_consecutive_failures={MAX_CONSECUTIVE_FAILURES},
                min_consecutive_successes=1),
            lifecycle=DisableLifecycle)]
"""


def day_secs(wall: float) -> float:
    """Seconds since local midnight, as `stoker run` prints its stamps."""
    t = time.localtime(wall)
    return t.tm_hour * 3600 + t.tm_min * 60 + t.tm_sec + (wall % 1.0)


def since(match: re.Match, t0_day: float) -> float:
    h, m, s, milli = (int(g) for g in match.groups())
    stamp = h * 3600 + m * 60 + s + milli / 1000
    return (stamp - t0_day + 43200) % 86400 - 43200  # across midnight too


def wait_match(stoker: StokerProcess, pattern: re.Pattern, what: str) -> re.Match:
    deadline = time.monotonic() + WAIT_SECS
    while True:
        found = pattern.search(stoker.stdout())
        if found:
            return found
        if stoker.proc.poll() is not None and not pattern.search(stoker.stdout()):
            raise RuntimeError(f"stoker run exited before {what}:\n{stoker.stdout()[-2000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {WAIT_SECS} s:\n{stoker.stdout()[-2000:]}")
        time.sleep(0.01)


def one(root: Path, i: int, rng: random.Random) -> tuple[float, float, list[float]]:
    """One repetition: (t0 → FAILED decision, t0 → FAILED, each check's latency)."""
    directory = root / f"rep-{i}"
    directory.mkdir()
    config = directory / "health.aurora"
    config.write_text(CONFIG)
    sandbox = directory / "sandbox"
    with ScriptedHTTPServer([Reply(200, b"ok")]) as server:
        stoker = StokerProcess(["run", str(config), "--sandbox", str(sandbox),
                                "--port", f"health={server.port}"], directory)
        try:
            wait_match(stoker, _RUNNING, "task RUNNING")
            time.sleep(rng.uniform(0, INTERVAL_SECS))  # land anywhere in the schedule
            t0 = time.time()
            server.script = [Reply(503, b"failing")]
            t0_day = day_secs(t0)
            decided = since(wait_match(stoker, _DECIDED, "the FAILED decision"), t0_day)
            failed = since(wait_match(stoker, _FAILED, "task FAILED"), t0_day)
            stoker.wait(WAIT_SECS)
        finally:
            stoker.close()
            kill_leftovers(task_pids(sandbox))
    latencies = [float(r["latency_secs"]) for r in checkpoint_records(sandbox)
                 if r.get("kind") == "health" and "latency_secs" in r]
    return decided, failed, latencies


def run(quick: bool) -> tuple[list[Row], list[str]]:
    reps = 2 if quick else 7
    rng = random.Random(4)
    decided: list[float] = []
    failed: list[float] = []
    latencies: list[float] = []
    with workdir("health") as root:
        progress(f"health failure detection: {reps} repetitions")
        for i in range(reps):
            d, f, lat = one(root, i, rng)
            decided.append(d)
            failed.append(f)
            latencies.extend(lat)
    bound = (f"schedule bound: interval {INTERVAL_SECS} s × (max_consecutive_failures "
             f"{MAX_CONSECUTIVE_FAILURES} + 1) + timeout {TIMEOUT_SECS} s = {ms(BOUND_SECS, 0)}; "
             f"each check took {med_max(latencies, 1)} (checkpoint)")
    target = f"≤ bound + 100 ms = {ms(TARGET_SECS, 0)}, every repetition"
    rows = [
        Row("Health failure detection: endpoint starts failing (t0) → task FAILED decision "
            "(RUNNING → KILLING)", med_max(decided, 0), bound, target,
            summary(decided).median, TARGET_SECS, summary(decided).maximum),
        Row("Health failure detection: t0 → task FAILED (after the kill)", med_max(failed, 0),
            bound, target, summary(failed).median, TARGET_SECS, summary(failed).maximum),
    ]
    kill = [f - d for d, f in zip(decided, failed)]
    notes = [f"Health: the kill after the FAILED decision (a `sleep` that exits on SIGTERM) took "
             f"{med_max(kill, 0)}; stamps are printed at 1 ms resolution."]
    return rows, notes


if __name__ == "__main__":
    sys.exit(benchlib.main("bench_health", run))
