"""Bench: operating Stoker on a host (issue 11). Four figures:

- `stoker tail -n 5` of a 200 MB log: the command itself, in this process (`main(["tail",
  ...])` with stdout to /dev/null), median of many; the log is 200 MB of zeros (sparse) and
  ten lines. Floor: one `pread` of the last 64 KiB block of the same file. Also the whole
  `stoker tail` process, against the floor of `stoker --help`.
- A task doing 100,000 health attempts (10,000 with --quick): a real `stoker run` of a
  service whose TCP health check runs every 0.1 ms against its own port (a 30 s grace
  covers the attempts before the port is open), its sandbox on
  /dev/shm (a tmpfs: the fsync per step costs microseconds there, so the attempts come
  fast; on a disk the file would grow the same way, only slower). The checkpoint's size is
  read every 20 ms while it runs; its largest is the figure (target: under 1 MB).
- `stoker status` of that task once it reached its attempts: in this process (the
  checkpoint read and replayed, the supervisor checked, the text formatted), median of
  many; and the whole process, against the floor of `stoker --help`. Target: under 100 ms.
- The registry on launch: `HostSession.open` + `task_started` (the sandbox lock, the
  registry entry written twice, the control socket bound and its thread started), and
  `close`, median of many. Floor: writing one small file and renaming it over another
  (on ext4 a rename over a file flushes the new one; the entry's writes cost that).

Info rows: `stoker status` of a 300,000-attempt checkpoint written before compaction
existed (66 MB), and what the next writer's first append costs (it compacts the file).
Every `stoker run` is SIGTERMed (then its session SIGKILLed) and its task pids checked.
"""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib
from benchlib import Row, med_p95, ms, progress, summary, timed, workdir

from executor.cli.main import main as stoker_main
from executor.cli.status import figures_of
from executor.cli.views import format_status
from executor.host.entry import FrontEnd
from executor.host.session import HostSession
from executor.task.checkpoint import COMPACT_MIN_BYTES, CheckpointWriter, checkpoint_path, iter_records
from executor.task.inspection import inspect_sandbox, marker_of
from executor.task.replay import replay
from tests.support.stoker_proc import REPO, StokerProcess, kill_leftovers, task_pids

FAKE = REPO / "tests/support/fake_task.py"
LOG_BYTES = 200 * 1024 * 1024
ATTEMPTS, QUICK_ATTEMPTS = 100_000, 10_000
SIZE_LIMIT = 1_000_000
STATUS_LIMIT_SECS = 0.100
TAIL_LIMIT_SECS = 0.100
RUN_LIMIT_SECS = 480.0

# the interpreter and the script quoted for bash: a checkout at "/a b/stoker" ran `exec /a`
WEB = f"exec {shlex.quote(sys.executable)} {shlex.quote(str(FAKE))} --accept-tcp {{{{thermos.ports[health]}}}}"
CONFIG = f"""
web = Process(name='web', cmdline={WEB!r})
jobs = [Service(cluster='local', role='bench', environment='test', name='checks',
                task=Task(processes=[web], resources=Resources(cpu=0.1, ram=16*MB, disk=16*MB),
                          finalization_wait=2),
                health_check_config=HealthCheckConfig(
                    health_checker=HealthCheckerConfig(tcp=TcpHealthChecker()),
                    initial_interval_secs=30.0, interval_secs=0.0001, timeout_secs=1.0),
                lifecycle=DisableLifecycle)]
"""


def process_secs(args: list[str], repeat: int) -> list[float]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    took = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "executor", *args], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, env=env, check=True, timeout=60)
        took.append(time.perf_counter() - started)
    return took


@contextlib.contextmanager
def quiet_stdout():
    """`stoker tail` writes to sys.stdout.buffer: send it to /dev/null while timing."""
    saved = sys.stdout
    with open(os.devnull, "w") as null:
        sys.stdout = null
        try:
            yield
        finally:
            sys.stdout = saved


def bench_tail(base: Path, quick: bool) -> list[Row]:
    sandbox = base / "tail"
    log = sandbox / ".logs" / "web" / "0" / "stdout"
    log.parent.mkdir(parents=True)
    with open(log, "wb") as f:
        f.truncate(LOG_BYTES)
        f.seek(0, os.SEEK_END)
        f.write(b"".join(b"line %d\n" % n for n in range(10)))
    args = ["tail", str(sandbox), "web", "-n", "5"]
    with quiet_stdout():
        inproc = timed(lambda: stoker_main(args), 20 if quick else 200)
    fd = os.open(log, os.O_RDONLY)
    try:
        floor = timed(lambda: os.pread(fd, 65536, LOG_BYTES - 65536), 200)
    finally:
        os.close(fd)
    whole = process_secs(args, 3 if quick else 15)
    help_floor = process_secs(["--help"], 3 if quick else 15)
    return [
        Row("tail -n 5 of a 200 MB log (the command, in process)", med_p95(inproc, 3),
            f"one 64 KiB pread: {med_p95(floor, 3)}", f"< {ms(TAIL_LIMIT_SECS, 0)}",
            value=summary(inproc).median, limit=TAIL_LIMIT_SECS),
        Row("tail -n 5 of a 200 MB log (the whole `stoker tail` process)", med_p95(whole, 1),
            f"`stoker --help`: {med_p95(help_floor, 1)}", "info"),
    ]


def run_checks(base: Path, attempts: int) -> tuple[Path, int, float, float]:
    """A real `stoker run` until its health attempts reach `attempts`; returns the sandbox,
    the checkpoint's largest size, the time taken, and the attempts per second."""
    config = base / "checks.aurora"
    config.write_text(CONFIG)
    shm = Path(tempfile.mkdtemp(prefix="stoker-bench-ops-", dir="/dev/shm"))
    sandbox = shm / "sandbox"
    run = StokerProcess(["run", str(config), "--sandbox", str(sandbox)], base)
    biggest = 0
    started = time.monotonic()
    try:
        run.wait_output("task             STARTING → RUNNING", timeout_secs=60)
        next_note = 0
        while True:
            path = checkpoint_path(sandbox)
            biggest = max(biggest, path.stat().st_size if path.exists() else 0)
            done = replay(iter_records(sandbox)).health.attempts
            if done >= attempts:
                break
            if time.monotonic() - started > RUN_LIMIT_SECS:
                raise TimeoutError(f"only {done} health attempts in {RUN_LIMIT_SECS:.0f} s")
            if done >= next_note:
                progress(f"{done} health attempts, checkpoint {biggest} bytes at most")
                next_note += attempts // 5
            time.sleep(0.02)
        took = time.monotonic() - started
        return sandbox, biggest, took, done / took
    except BaseException:
        shutil.rmtree(shm, ignore_errors=True)
        raise
    finally:
        run.signal(signal.SIGTERM)
        try:
            run.wait(30)
        except subprocess.TimeoutExpired:
            pass
        run.close()
        kill_leftovers(task_pids(sandbox))


def bench_checkpoint(base: Path, quick: bool) -> list[Row]:
    attempts = QUICK_ATTEMPTS if quick else ATTEMPTS
    sandbox, biggest, took, rate = run_checks(base, attempts)
    try:
        def status() -> None:  # as `stoker status` does it: its use against its reservation too
            found = inspect_sandbox(sandbox)
            assert found.view is not None
            format_status(found.view, time.time(), found.truth, figures=figures_of(found, marker_of(found)))

        inproc = timed(status, 20 if quick else 100)
        whole = process_secs(["status", str(sandbox)], 3 if quick else 15)
        help_floor = process_secs(["--help"], 3 if quick else 15)
        final = checkpoint_path(sandbox).stat().st_size
    finally:
        shutil.rmtree(sandbox.parent, ignore_errors=True)
    s = summary(inproc)
    return [
        Row(f"checkpoint of a task doing {attempts:,} health attempts (largest while it ran)",
            f"{biggest:,} bytes ({final:,} at the end; {took:.0f} s, {rate:,.0f} attempts/s)",
            f"the file's compaction threshold: {COMPACT_MIN_BYTES:,} bytes", f"< {SIZE_LIMIT:,} bytes",
            value=biggest, limit=SIZE_LIMIT),
        Row("stoker status of that task (in process: read, replay, check, its use, format)",
            med_p95(inproc, 2), "-", f"< {ms(STATUS_LIMIT_SECS, 0)}",
            value=s.median, limit=STATUS_LIMIT_SECS),
        Row("stoker status of that task (the whole process)", med_p95(whole, 1),
            f"`stoker --help`: {med_p95(help_floor, 1)}", "info"),
    ]


def bench_registry(base: Path, quick: bool) -> list[Row]:
    sandbox = base / "registry-sandbox"
    sandbox.mkdir()
    posted: list[object] = []

    launched, closed = [], []
    for _ in range(20 if quick else 200):
        started = time.perf_counter()
        session = HostSession.open(sandbox, front_end=FrontEnd.RUN)
        session.task_started(task_id="t-1", job_key="c/r/e/t", label="t.0", marker="m",
                             post=posted.append)
        between = time.perf_counter()
        session.close()
        launched.append(between - started)
        closed.append(time.perf_counter() - between)
    floor_dir = base / "floor"
    floor_dir.mkdir()

    def small_file() -> None:
        tmp = floor_dir / ".entry.tmp"
        tmp.write_bytes(b"{}" * 100)
        tmp.rename(floor_dir / "entry.json")

    floor = timed(small_file, 200)
    return [Row("registry, lock and control socket on launch (open and task started: the lock, "
                "the entry written twice, the socket and its thread)",
                med_p95(launched, 2), f"a small file written and renamed over another: "
                                      f"{med_p95(floor, 3)}", "info"),
            Row("... and at the end (close: the thread stopped, the entry marked ended)",
                med_p95(closed, 2), "-", "info")]


def bench_old_checkpoint(base: Path, quick: bool) -> list[Row]:
    """A checkpoint written before compaction: 300,000 health records in one attempt."""
    n = 30_000 if quick else 300_000
    sandbox = base / "old"
    path = checkpoint_path(sandbox)
    path.parent.mkdir(parents=True)
    header = {"kind": "header", "task": "old.0", "task_id": "old-0", "processes": ["web"],
              "supervisor_pid": 1, "wall": 1.0}
    with open(path, "w") as f:
        f.write(json.dumps(header) + "\n")
        for i in range(1, n + 1):
            f.write(json.dumps({"kind": "health", "outcome": "passed", "reason": "",
                                "latency_secs": 0.0001, "state": "RUNNING", "attempts": i,
                                "consecutive_failures": 0, "consecutive_successes": i,
                                "wall": 1.0 + i}) + "\n")
    size = path.stat().st_size

    def status() -> None:
        found = inspect_sandbox(sandbox)
        format_status(found.view, time.time(), found.truth)

    read = summary(timed(status, 3))
    started = time.perf_counter()
    writer = CheckpointWriter(sandbox)
    writer.append({"kind": "task", "from": "RUNNING", "to": "RUNNING", "reason": "x"})
    writer.close()
    compacting = time.perf_counter() - started
    after = path.stat().st_size
    again = summary(timed(status, 20))
    return [Row(f"status of an uncompacted {n:,}-attempt checkpoint ({size / 1e6:.0f} MB)",
                f"median {ms(read.median, 0)}", "-", "info"),
            Row("the next writer's first append compacts it",
                f"{ms(compacting, 0)}, to {after:,} bytes; status then median {ms(again.median, 2)}",
                "-", "info")]


def run(quick: bool) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    with workdir("ops") as base:
        progress("tail -n 5 of a 200 MB log")
        rows += bench_tail(base, quick)
        progress(f"a task doing {QUICK_ATTEMPTS if quick else ATTEMPTS:,} health attempts")
        rows += bench_checkpoint(base, quick)
        progress("registry overhead on launch")
        rows += bench_registry(base, quick)
        progress("an uncompacted checkpoint")
        rows += bench_old_checkpoint(base, quick)
    notes = ["The health-attempt task's sandbox is on /dev/shm (tmpfs): the fsync per step is "
             "nearly free there, so 100,000 attempts take about a minute instead of an hour; "
             "the checkpoint's size does not depend on the file system."]
    return rows, notes


if __name__ == "__main__":
    sys.exit(benchlib.main("bench_ops.py", run))
