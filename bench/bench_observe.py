"""`stoker observe` (issue 12): what it costs while idle, and how fast a task's page is.

A private registry holds 100 tasks: 99 that ended (hand-made checkpoints whose supervisors
are long gone) and one live task of 100 processes (real `sleep`s this bench started, its
supervisor recorded as this bench process, so its page reads the CPU and memory of 100
process trees). The real `stoker observe` serves it on a free loopback port.

- Idle: after a few requests, the observer's CPU time and context switches (every thread)
  over `IDLE_SECS`, against a sleeping Python, and a Python thread that wakes every
  `Limits.loop_secs` as the observer's I/O loop did with no connection open (it no longer
  wakes then: `executor/observe/deadline.py`'s `QuietLoop`). What a wake costs is the
  machine's: on the same 2-core VM such a thread was charged about 0.1 ms a wake one day
  and 2-4 ms another (its CPU time counts the wake-up from a long idle).
- A task page with 100 processes: `GET /tasks/ID` over HTTP (replay, 100 psutil trees,
  rendering, the response), and in process the read (`Reader.task`) and the rendering
  (`task_page`) apart. The list of 100 tasks and the observer's memory, for information.
- `GET /metrics` of the 100 tasks (every task read as its page reads it, the live one's 100
  process trees from /proc), with its size.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import benchlib
import psutil
from benchlib import Row, SleepingPython, med_p95, memory_of, progress, summary, timed, workdir

from config.registry import RegistrySettings
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.identity import own_identity
from executor.host.registry import Registry
from executor.observe.pages import task_page
from executor.observe.reader import Reader
from executor.observe.server import Limits

TASKS = 100
PROCESSES = 100
IDLE_SECS, QUICK_IDLE_SECS = 20.0, 5.0
PAGE_LIMIT_SECS = 0.100
IDLE_CPU_LIMIT_SECS = 0.010
LOOP_SECS = Limits().loop_secs
# a Python thread that wakes as often as the observer's I/O loop did when idle
WAKING = benchlib.waking(LOOP_SECS)


def _write_checkpoint(sandbox: Path, records: list[dict]) -> None:
    (sandbox / ".stoker").mkdir(parents=True)
    (sandbox / ".stoker/checkpoint.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def _header(name: str, pid: int, start: int | None, boot: str, processes: list[str], wall: float) -> dict:
    return {"kind": "header", "wall": wall, "task": f"{name}.0", "job_key": f"bench/me/test/{name}",
            "task_id": f"{name}-0", "sandbox": "", "ports": {"http": 31000}, "supervisor_pid": pid,
            "supervisor_start": start, "supervisor_boot": boot, "processes": processes,
            "health": "none"}


def _ended_task(registry: Registry, base: Path, i: int, now: float) -> None:
    name = f"done{i:03d}"
    sandbox = base / name
    pid, start = 4_000_000 - i, 1000 + i  # a supervisor long gone
    _write_checkpoint(sandbox, [
        _header(name, pid, start, "gone", ["work"], now - 600),
        {"kind": "task", "wall": now - 600, "to": "STARTING", "reason": "task launched"},
        {"kind": "process", "wall": now - 600, "process": "work", "run": 0, "from": "WAITING",
         "to": "RUNNING", "reason": "started", "pid": 100 + i},
        {"kind": "process", "wall": now - 500, "process": "work", "run": 0, "from": "RUNNING",
         "to": "SUCCESS", "reason": "exit status 0", "pid": 100 + i, "exit_code": 0},
        {"kind": "task", "wall": now - 500, "from": "RUNNING", "to": "FINISHED", "reason": "done"},
    ])
    registry.write(RegistryEntry(sandbox=str(sandbox), supervisor_pid=pid, supervisor_start=start,
                                 supervisor_boot="gone", front_end=FrontEnd.RUN,
                                 registered_wall=now - 600, task_id=f"{name}-0",
                                 job_key=f"bench/me/test/{name}", ended_wall=now - 500))


def _live_task(registry: Registry, base: Path, sleeps: list[subprocess.Popen[bytes]], now: float) -> str:
    me = own_identity()
    names = [f"p{i:03d}" for i in range(PROCESSES)]
    records = [_header("big", me.pid, me.start_ticks, me.boot_id, names, now),
               {"kind": "task", "wall": now, "to": "STARTING", "reason": "task launched"}]
    for name, proc in zip(names, sleeps):
        records.append({"kind": "process", "wall": psutil.Process(proc.pid).create_time(),
                        "process": name, "run": 0, "from": "WAITING", "to": "RUNNING",
                        "reason": "starting run 0", "pid": proc.pid})
    records.append({"kind": "task", "wall": now, "from": "STARTING", "to": "RUNNING",
                    "reason": "processes started"})
    _write_checkpoint(base / "big", records)
    registry.write(RegistryEntry(sandbox=str(base / "big"), supervisor_pid=me.pid,
                                 supervisor_start=me.start_ticks, supervisor_boot=me.boot_id,
                                 front_end=FrontEnd.RUN, registered_wall=now, task_id="big-0",
                                 job_key="bench/me/test/big"))
    return "big-0"


def _get(url: str, gzip: bool = False) -> bytes:
    """The body, as sent (`gzip`: asked for gzipped, as Prometheus asks)."""
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"} if gzip else {})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.read()


def _start_observer(root: Path, cwd: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = dict(os.environ, PYTHONPATH=str(benchlib.REPO), STOKER_ROOT=str(root))
    proc = subprocess.Popen([sys.executable, "-m", "executor", "observe", "--port", "0"],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if not line.startswith("stoker observe: http://"):
        proc.kill()
        raise RuntimeError(f"stoker observe did not start: {line!r}")
    return proc, line.split()[2].rstrip("/")


def _idle_row(pid: int, idle_secs: float) -> tuple[Row, int]:
    """The observer `pid`'s CPU and wakeups over `idle_secs`, beside a sleeping Python and one
    that wakes as its loop did; and its thread count."""
    progress(f"idle observer for {idle_secs:.0f} s")
    time.sleep(1.0)  # let the last request's connection close
    cpu0, wake0 = benchlib.cpu_secs_of(pid), benchlib.wakeups_of(pid)
    with SleepingPython() as control, SleepingPython(WAKING) as waking:
        controls = (control.pid, waking.pid)
        before = [(benchlib.cpu_secs_of(p), benchlib.wakeups_of(p)) for p in controls]
        time.sleep(idle_secs)
        idle_cpu, idle_wake = benchlib.cpu_secs_of(pid) - cpu0, benchlib.wakeups_of(pid) - wake0
        (control_cpu, control_wake), (waking_cpu, waking_wake) = [
            (benchlib.cpu_secs_of(p) - cpu, benchlib.wakeups_of(p) - wakes) for p, (cpu, wakes) in zip(controls, before)]
    threads = benchlib.thread_count(pid)
    return Row(f"Observer idle with {TASKS} registered tasks: CPU and wakeups per {idle_secs:.0f} s ({threads} threads)",
               f"{idle_cpu * 1000:.2f} ms CPU, {idle_wake} wakeups",
               f"sleeping Python: {control_cpu * 1000:.2f} ms, {control_wake} wakeups (a Python thread waking every "
               f"{LOOP_SECS} s, as the observer's loop did: {waking_cpu * 1000:.2f} ms, {waking_wake} wakeups)",
               f"≈ 0: ≤ {IDLE_CPU_LIMIT_SECS * 1000:.0f} ms CPU", value=idle_cpu, limit=IDLE_CPU_LIMIT_SECS), threads


def run(quick: bool) -> tuple[list[Row], list[str]]:
    idle_secs = QUICK_IDLE_SECS if quick else IDLE_SECS
    repeat = 5 if quick else 20
    rows: list[Row] = []
    sleeps: list[subprocess.Popen[bytes]] = []
    observer = None
    with workdir("observe") as base:
        try:
            settings = RegistrySettings(registry_root=str(base / "root"), registry_retention_secs=86400.0)
            registry = Registry(settings)
            now = time.time()
            progress(f"registering {TASKS} tasks, one of {PROCESSES} processes")
            for i in range(TASKS - 1):
                _ended_task(registry, base, i, now)
            sleeps = [subprocess.Popen(["sleep", "3600"], stdin=subprocess.DEVNULL) for _ in range(PROCESSES)]
            big = _live_task(registry, base, sleeps, now)
            observer, url = _start_observer(base / "root", base)
            progress("task page with 100 processes, over HTTP and in process")
            _get(f"{url}/tasks/{big}")
            page = timed(lambda: _get(f"{url}/tasks/{big}"), repeat)
            reader = Reader(settings)
            detail = reader.task(big)
            assert len(detail.usage) == PROCESSES, f"usage of {len(detail.usage)} processes"
            read = timed(lambda: reader.task(big), repeat)
            render = timed(lambda: task_page(detail, time.time()), repeat)
            listing = timed(lambda: _get(f"{url}/"), max(3, repeat // 4))
            progress(f"GET /metrics of {TASKS} tasks")
            scraped, zipped = _get(f"{url}/metrics"), _get(f"{url}/metrics", gzip=True)
            scrape = timed(lambda: _get(f"{url}/metrics", gzip=True), repeat)
            memory = memory_of(observer.pid)
            idle, threads = _idle_row(observer.pid, idle_secs)
        finally:
            if observer is not None:
                observer.kill()
                observer.wait(10)
            for proc in sleeps:
                proc.kill()
                proc.wait(10)
    stats = summary(page)
    rows.append(Row(f"Observer: GET /tasks/ID of a task with {PROCESSES} processes (replay, "
                    f"{PROCESSES} process trees, HTML)", med_p95(page),
                    f"in process: read {med_p95(read)}, render {med_p95(render)}",
                    f"< {PAGE_LIMIT_SECS * 1000:.0f} ms median", value=stats.median,
                    limit=PAGE_LIMIT_SECS))
    rows.append(Row(f"Observer: GET / with {TASKS} registered tasks", med_p95(listing), "—", "—"))
    series = sum(1 for line in scraped.splitlines() if line and not line.startswith(b"#"))
    rows.append(Row(f"Observer: GET /metrics with {TASKS} registered tasks (one of {PROCESSES} processes: "
                    f"{PROCESSES} process trees read; gzipped, as Prometheus asks)", med_p95(scrape),
                    f"{series} series, {len(scraped) / 1000:.0f} KB, gzipped {len(zipped) / 1000:.0f} KB",
                    f"< {PAGE_LIMIT_SECS * 1000:.0f} ms median",
                    value=summary(scrape).median, limit=PAGE_LIMIT_SECS))
    rows.append(idle)
    rows.append(Row("Observer memory after serving those pages",
                    f"RSS {memory.rss / 1e6:.1f} MB, PSS {memory.pss / 2**20:.2f} MiB, "
                    f"USS {memory.uss / 2**20:.1f} MiB", "—", "—"))
    notes = [f"The observer's I/O loop (waitress') wakes every {LOOP_SECS} s while a connection is open, to "
             f"close idle ones, and not at all while none is; its {threads - 1} worker threads wait on a "
             "condition."]
    return rows, notes


if __name__ == "__main__":
    sys.exit(benchlib.main("bench_observe", run))
