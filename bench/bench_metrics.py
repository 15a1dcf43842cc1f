"""`stoker observe`'s `GET /metrics` on a busy agent: what one scrape costs.

Two private registries, each served by the real `stoker observe` on a free loopback port:

- running: 100 running tasks of 10 processes each. Each task's supervisor is a real `sh`
  this bench started, whose 10 children are real `sleep`s (the task's running runs), so
  each scrape reads 100 supervisors and 1,000 process trees from /proc.
- ended: 1,000 tasks that ended an hour ago (10 processes each, hand-made checkpoints of
  supervisors long gone, each entry marked ended as a supervisor that let go marks it):
  what a host launching a task a minute keeps for its registry's retention.
- lost: 1,000 LOST tasks, lost an hour ago (supervisors gone without letting go, each
  attempt with its `STOKER_TASK_MARKER`, none of whose processes runs): each scrape
  inspects each (a LOST entry says no end) and looks for its leftover processes, in the
  process table the running tasks' 1,100 processes fill (`stoker_task_leftover_processes`
  keeps one with leftovers exported past `--metrics-ended-secs`).

- growing: 50 running tasks as above whose checkpoints hold 250 health checks each (about
  60 KB, near the 64 KiB compaction threshold), each of which gets one more before each
  scrape, as a health-checked service's does between two scrapes: the observer reads each
  checkpoint from where its last replay ended (`executor/task/viewcache.py`), not whole.

Each is scraped gzipped (as Prometheus asks) after one warm-up scrape (which replays every
checkpoint once). `STOKER_BENCH_REPO=PATH` runs the observer of another checkout (a
before/after comparison on the same machine state: interleave the two); `STOKER_BENCH_OBSERVE_ARGS`
adds arguments to `stoker observe` (e.g. `--metrics-ended-secs 86400` to export the ended
tasks again).
"""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import benchlib
from benchlib import Row, med_p95, progress, summary, workdir

from config.registry import RegistrySettings
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.identity import boot_id, identity_of
from executor.host.registry import Registry

RUNNING, ENDED, PROCESSES = 100, 1000, 10
GROWING, HEALTH_CHECKS = 50, 250
SCRAPE_LIMIT_SECS = 1.0


def _checkpoint(sandbox: Path, records: list[dict]) -> None:
    (sandbox / ".stoker").mkdir(parents=True)
    (sandbox / ".stoker/checkpoint.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def _header(name: str, pid: int, start: int, boot: str, wall: float) -> dict:
    return {"kind": "header", "wall": wall, "task": f"{name}.0", "job_key": f"devcluster/me/prod/{name}",
            "task_id": f"{name}-0", "sandbox": "", "ports": {"http": 31000}, "supervisor_pid": pid,
            "supervisor_start": start, "supervisor_boot": boot,
            "processes": [f"p{n}" for n in range(PROCESSES)], "health": "none"}


def _started(n: int, pid: int, wall: float) -> dict:
    return {"kind": "process", "wall": wall, "process": f"p{n}", "run": 0, "from": "WAITING",
            "to": "RUNNING", "reason": "started", "pid": pid}


def _ended(registry: Registry, base: Path, i: int, now: float) -> None:
    name, pid, start = f"done{i:04d}", 4_000_000 - i, 1000 + i  # a supervisor long gone
    records = [_header(name, pid, start, "gone", now - 4000),
               {"kind": "task", "wall": now - 4000, "to": "STARTING", "reason": "task launched"}]
    for n in range(PROCESSES):
        records += [_started(n, 100 + n, now - 4000),
                    {"kind": "process", "wall": now - 3600, "process": f"p{n}", "run": 0, "from": "RUNNING",
                     "to": "SUCCESS", "reason": "exit status 0", "pid": 100 + n, "exit_code": 0}]
    records.append({"kind": "task", "wall": now - 3600, "from": "RUNNING", "to": "FINISHED", "reason": "done"})
    _checkpoint(base / name, records)
    registry.write(RegistryEntry(sandbox=str(base / name), supervisor_pid=pid, supervisor_start=start,
                                 supervisor_boot="gone", front_end=FrontEnd.RUN, registered_wall=now - 4000,
                                 task_id=f"{name}-0", job_key=f"devcluster/me/prod/{name}",
                                 ended_wall=now - 3600), prune=False)


def _lost(registry: Registry, base: Path, i: int, now: float) -> None:
    name, pid, start = f"lost{i:04d}", 3_000_000 - i, 1000 + i  # a supervisor gone without letting go
    header = dict(_header(name, pid, start, "gone", now - 4000), marker=f"bench-lost-{i:04d}")
    records = [header, {"kind": "task", "wall": now - 4000, "to": "STARTING", "reason": "task launched"},
               *(_started(n, 100 + n, now - 3600) for n in range(PROCESSES)),
               {"kind": "task", "wall": now - 3600, "from": "STARTING", "to": "RUNNING", "reason": "started"}]
    _checkpoint(base / name, records)
    registry.write(RegistryEntry(sandbox=str(base / name), supervisor_pid=pid, supervisor_start=start,
                                 supervisor_boot="gone", front_end=FrontEnd.RUN, registered_wall=now - 4000,
                                 task_id=f"{name}-0", job_key=f"devcluster/me/prod/{name}",
                                 marker=f"bench-lost-{i:04d}"), prune=False)


def _health(n: int, wall: float) -> str:
    return json.dumps({"kind": "health", "wall": wall, "outcome": "passed", "attempts": n,
                       "reason": "200 OK from http://127.0.0.1:31000/health", "consecutive_failures": 0,
                       "consecutive_successes": n, "state": "RUNNING", "latency_secs": 0.002}) + "\n"


def _grow(checkpoints: list[Path], first: int, count: int) -> None:
    for path in checkpoints:
        with open(path, "a") as f:
            f.write("".join(_health(n, time.time()) for n in range(first, first + count)))


def _children(pid: int) -> list[int]:
    for _ in range(500):
        found = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        if len(found) >= PROCESSES:
            return found
        time.sleep(0.01)
    raise RuntimeError(f"sh {pid} did not start its {PROCESSES} sleeps")


def _running(registry: Registry, base: Path, i: int, now: float, shells: list[subprocess.Popen[bytes]],
             sleeps: list[int]) -> None:
    shell = subprocess.Popen(["sh", "-c", "for n in " + " ".join(map(str, range(PROCESSES))) +
                              "; do sleep 3600 & done; wait"], stdin=subprocess.DEVNULL)
    shells.append(shell)
    me = identity_of(shell.pid)
    assert me is not None
    name, children = f"run{i:03d}", _children(shell.pid)
    sleeps.extend(children)
    records = [_header(name, me.pid, me.start_ticks, me.boot_id, now),
               {"kind": "task", "wall": now, "to": "STARTING", "reason": "task launched"},
               *(_started(n, pid, now) for n, pid in enumerate(children)),
               {"kind": "task", "wall": now, "from": "STARTING", "to": "RUNNING", "reason": "started"}]
    _checkpoint(base / name, records)
    registry.write(RegistryEntry(sandbox=str(base / name), supervisor_pid=me.pid, supervisor_start=me.start_ticks,
                                 supervisor_boot=boot_id(), front_end=FrontEnd.EXECUTOR, registered_wall=now,
                                 task_id=f"{name}-0", job_key=f"devcluster/me/prod/{name}", label=f"{name}.0"),
                   prune=False)


def _observer(root: Path, cwd: Path) -> tuple[subprocess.Popen[bytes], str]:
    repo = os.environ.get("STOKER_BENCH_REPO") or str(benchlib.REPO)
    env = dict(os.environ, PYTHONPATH=repo, STOKER_ROOT=str(root))
    extra = shlex.split(os.environ.get("STOKER_BENCH_OBSERVE_ARGS", ""))
    proc = subprocess.Popen([sys.executable, "-m", "executor", "observe", "--port", "0",
                             "--registry-retention", "7days", *extra], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if not line.startswith("stoker observe: http://"):
        proc.kill()
        proc.wait(10)
        raise RuntimeError(f"stoker observe did not start: {line!r}")
    return proc, line.split()[2].rstrip("/")


def _scrapes(root: Path, cwd: Path, repeat: int, growing: list[Path] | None = None) -> tuple[list[float], int, int, int]:
    """Timings of `repeat` gzipped scrapes (each after one more health check in each of
    `growing`); the series, bytes and gzipped bytes of one."""
    observer, url = _observer(root, cwd)
    try:
        def get(gzip: bool) -> bytes:
            request = urllib.request.Request(f"{url}/metrics", headers={"Accept-Encoding": "gzip"} if gzip else {})
            with urllib.request.urlopen(request, timeout=60) as answer:
                return answer.read()
        text, zipped = get(False), get(True)
        took = []
        for n in range(repeat):
            if growing:
                _grow(growing, HEALTH_CHECKS + n, 1)
            started = time.perf_counter()
            get(True)
            took.append(time.perf_counter() - started)
    finally:
        observer.kill()
        observer.wait(10)
    series = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))
    return took, series, len(text), len(zipped)


def run(quick: bool) -> tuple[list[Row], list[str]]:
    repeat = 5 if quick else 15
    rows: list[Row] = []
    shells: list[subprocess.Popen[bytes]] = []
    sleeps: list[int] = []
    with workdir("metrics") as base:
        try:
            now = time.time()
            running = Registry(RegistrySettings(registry_root=str(base / "running"), registry_retention_secs=7 * 86400))
            progress(f"{RUNNING} running tasks of {PROCESSES} processes ({RUNNING * (PROCESSES + 1)} processes)")
            for i in range(RUNNING):
                _running(running, base, i, now, shells, sleeps)
            ended = Registry(RegistrySettings(registry_root=str(base / "ended"), registry_retention_secs=7 * 86400))
            progress(f"{ENDED} tasks that ended an hour ago")
            for i in range(ENDED):
                _ended(ended, base, i, now)
            lost = Registry(RegistrySettings(registry_root=str(base / "lost"), registry_retention_secs=7 * 86400))
            progress(f"{ENDED} LOST tasks, lost an hour ago")
            for i in range(ENDED):
                _lost(lost, base, i, now)
            grows = Registry(RegistrySettings(registry_root=str(base / "growing"), registry_retention_secs=7 * 86400))
            progress(f"{GROWING} running tasks with {HEALTH_CHECKS} health checks each, growing")
            for i in range(RUNNING, RUNNING + GROWING):
                _running(grows, base, i, now, shells, sleeps)
            growing = [base / f"run{i:03d}/.stoker/checkpoint.jsonl" for i in range(RUNNING, RUNNING + GROWING)]
            _grow(growing, 1, HEALTH_CHECKS - 1)
            for label, root in ((f"{RUNNING} running tasks × {PROCESSES} processes", base / "running"),
                                (f"{ENDED} tasks that ended an hour ago, {PROCESSES} processes each", base / "ended"),
                                (f"{ENDED} LOST tasks lost an hour ago, none with leftovers", base / "lost"),
                                (f"{GROWING} running tasks, ~60 KB checkpoints, each one health check longer",
                                 base / "growing")):
                progress(f"GET /metrics: {label}")
                took, series, size, zipped = _scrapes(root, base, repeat, growing if root.name == "growing" else None)
                rows.append(Row(f"Observer: GET /metrics, {label} (gzipped)", med_p95(took),
                                f"{series} series, {size / 1000:.0f} KB, gzipped {zipped / 1000:.0f} KB",
                                f"< {SCRAPE_LIMIT_SECS * 1000:.0f} ms median", value=summary(took).median,
                                limit=SCRAPE_LIMIT_SECS))
        finally:
            for pid in sleeps:  # the shells' children, each this bench started
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            for shell in shells:
                shell.kill()
                shell.wait(10)
    return rows, []


if __name__ == "__main__":
    sys.exit(benchlib.main("bench_metrics", run))
