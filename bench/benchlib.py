"""Shared helpers for the bench scripts: result rows, statistics, memory and wakeup readings,
the machine description, timing probes and the command line every bench script shares.

Owns: `Row` (one line of the results table and its verdict rule), `summary` statistics,
`memory_of(pid)` (RSS/PSS/USS from psutil), `wakeups_of(pid)` (context switches summed over
every thread, which psutil's `num_ctx_switches` does not do: it reads the main thread only),
`machine()` (the header of RESULTS.md), `compile_bytecode()` (what an installed Stoker
starts from), `Probe` (wraps functions of the product to time
them, for the breakdowns only, never for the headline figures) and `main()` (each script's
`--quick` / `--json FILE` entry point).

It never changes product code or state: probes wrap module attributes inside the bench
process and restore them. It only talks to 127.0.0.1 and never leaves a process behind.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import attrs
import psutil

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `tests.support` is not installed; the product packages are
    sys.path.insert(0, str(REPO))

MB = 1_000_000
MIB = 1024 * 1024


# ---- results ----


@attrs.frozen
class Row:
    """One figure: what was measured, the floor or bound it is compared to, the target and
    the verdict. `value` / `limit` drive the verdict (None: an informational row)."""

    figure: str
    measured: str
    floor: str
    target: str
    value: float | None = None  # the statistic the target is about (e.g. the median)
    limit: float | None = None
    worst: float | None = None  # the worst repetition, when the target holds for each one

    @property
    def verdict(self) -> str:
        if self.value is None or self.limit is None:
            return "info"
        if self.value > self.limit:
            return "misses"
        if self.worst is not None and self.worst > self.limit:
            return "misses at max (median meets)"
        return "meets"


def error_row(name: str, message: str) -> Row:
    return Row(f"{name}: bench failed", message, "—", "—", value=1.0, limit=0.0)


@attrs.frozen
class Stats:
    count: int
    median: float
    p95: float
    minimum: float
    maximum: float


def summary(values: Sequence[float]) -> Stats:
    if not values:
        raise ValueError("no samples")
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return Stats(len(ordered), statistics.median(ordered), p95, ordered[0], ordered[-1])


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    """How long each of `repeat` calls of `fn` took, in seconds (`time.perf_counter`)."""
    took = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        took.append(time.perf_counter() - started)
    return took


def ms(secs: float, digits: int = 2) -> str:
    return f"{secs * 1000:.{digits}f} ms"


def med_p95(values: Sequence[float], digits: int = 2) -> str:
    s = summary(values)
    return f"median {ms(s.median, digits)}, p95 {ms(s.p95, digits)} (n={s.count})"


def med_max(values: Sequence[float], digits: int = 1) -> str:
    s = summary(values)
    return f"median {ms(s.median, digits)}, max {ms(s.maximum, digits)} (n={s.count})"


# ---- process readings ----


@attrs.frozen
class Memory:
    rss: int
    pss: int
    uss: int

    def describe(self) -> str:
        return (f"RSS {self.rss / MB:.1f} MB, PSS {self.pss / MIB:.2f} MiB, "
                f"USS {self.uss / MIB:.1f} MiB")


def memory_of(pid: int) -> Memory:
    info = psutil.Process(pid).memory_full_info()
    return Memory(rss=info.rss, pss=info.pss, uss=info.uss)


def cpu_secs_of(pid: int) -> float:
    """CPU time of every thread of the process (not of its children), in seconds.

    Summed from each thread's /proc/PID/task/TID/schedstat (nanoseconds): psutil's
    `cpu_times` reads /proc/PID/stat, counted in clock ticks of 10 ms, too coarse to tell a
    few wakeups from none. Falls back to psutil where schedstat is missing.
    """
    total_ns = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total_ns += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue  # a thread that ended between the listing and the read
        return total_ns / 1e9
    except OSError:
        t = psutil.Process(pid).cpu_times()
        return t.user + t.system


def wakeups_of(pid: int) -> int:
    """Voluntary + involuntary context switches summed over every thread of `pid`."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except (OSError, ValueError):
            continue  # a thread that ended between the listing and the read
    return total


def thread_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def waking(every_secs: float) -> str:
    """A SleepingPython's statement: a thread that wakes every `every_secs` (a control)."""
    return ("import threading, time\n"
            f"threading.Thread(target=lambda: [time.sleep({every_secs}) for _ in range(3600)], daemon=True).start()")


class SleepingPython:
    """The same interpreter, importing `statement` and then sleeping: a floor for memory
    and idle cost. A context manager; the process is killed and waited for on exit."""

    def __init__(self, statement: str = "pass") -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        code = f"{statement}\nimport time\nprint('ready', flush=True)\ntime.sleep(3600)"
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, env=env)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != b"ready":
            self.close()
            raise RuntimeError(f"a sleeping Python running {statement!r} did not start")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> SleepingPython:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- the machine ----


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "executor",
                                "config", "healthcheck"], capture_output=True, text=True,
                               timeout=5).stdout.strip()
        if commit and dirty:
            commit += " (with uncommitted changes to the product)"
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "cpu": cpu,
        "cores": f"{os.cpu_count()} (usable {len(os.sched_getaffinity(0))})",
        "memory": mem,
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": commit or "unknown",
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


# ---- probes (breakdowns only) ----


class Probe:
    """Times calls of product functions by wrapping them in the bench process.

    `probe.wrap(module_or_class, "name", "label")` replaces the attribute; `restore()`
    puts every original back. Each call is recorded as (label, start, end) on the
    monotonic clock. Wrapping costs about a microsecond a call, so headline figures are
    measured without probes and the probes only explain where the time goes.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, float, float]] = []
        self._saved: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)
        calls = self.calls

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.monotonic()
            try:
                return original(*args, **kwargs)
            finally:
                calls.append((label, start, time.monotonic()))

        self._saved.append((owner, name, original))
        setattr(owner, name, timed)

    def restore(self) -> None:
        while self._saved:
            owner, name, original = self._saved.pop()
            setattr(owner, name, original)

    def between(self, start: float, end: float, label: str) -> list[tuple[float, float]]:
        return [(s, e) for (lab, s, e) in self.calls if lab == label and start <= s < end]

    def total(self, label: str, start: float = float("-inf"), end: float = float("inf")) -> tuple[int, float]:
        spans = self.between(start, end, label)
        return len(spans), sum(e - s for s, e in spans)


# ---- A/B scripts: two checkouts, interleaved ----


def ab_parser(prog: str, pairs: int) -> argparse.ArgumentParser:
    """An A/B script's arguments: --pairs (`pairs` by default), --against (checkout A) and
    --repo (checkout B, this one by default); the script adds its own."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--pairs", type=int, default=pairs)
    parser.add_argument("--against", type=Path, required=True, help="checkout A (main, say)")
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout B (this one by default)")
    return parser


def ab_repos(args: argparse.Namespace) -> list[Path]:
    """Checkouts A and B of `ab_parser`'s arguments, resolved, each one's bytecode written."""
    repos = [args.against.resolve(), args.repo.resolve()]
    for repo in repos:
        compile_bytecode(repo)
    return repos


def ab_env(root: Path, name: str, repo: Path) -> dict[str, str]:
    """The environment side `name` of an A/B script runs `stoker` in: checkout `repo` on
    PYTHONPATH, and a registry and plan cache of its own under `root`, so that neither side
    finds the other's plans or supervisors."""
    return dict(os.environ, PYTHONPATH=str(repo), STOKER_ROOT=str(root / f"{name}-root"),
                STOKER_PLAN_CACHE=str(root / f"{name}-plans"))


# ---- workspace and cleanup ----


def compile_bytecode(repo: Path = REPO) -> None:
    """Write the product's `__pycache__` (git-ignored) in `repo` (this checkout, or another
    one a bench times), as installing Stoker does: with PYTHONDONTWRITEBYTECODE set, every
    `stoker` process would compile its sources again, and a start-up figure would measure
    the compiler. The same for attrs' generated methods (`python -m executor.codecache`)."""
    import compileall

    for package in ("executor", "config", "healthcheck"):
        if not compileall.compile_dir(str(repo / package), quiet=1):
            raise RuntimeError(f"cannot compile {repo / package}")
    if (repo / "executor" / "codecache.py").exists():  # attrs' methods, as the first runs would
        subprocess.run([sys.executable, "-m", "executor.codecache"], cwd=repo, check=True,
                       env=dict(os.environ, PYTHONPATH=str(repo)))


def run_logs(logs: Path, i: int) -> tuple[BinaryIO, BinaryIO]:
    """Run i's log directory `logs/pI/0` (two mkdirs) and its stdout and stderr, created
    O_EXCL and open for writing, as `bench/floor_spawner.c` makes them: what the sandbox
    layout asks of any supervisor before a run's spawn (the floors that keep logs)."""
    run = logs / f"p{i}"
    run.mkdir()
    (run / "0").mkdir()
    return open(run / "0" / "stdout", "xb"), open(run / "0" / "stderr", "xb")


@contextlib.contextmanager
def workdir(name: str) -> Iterator[Path]:
    """A fresh directory for sandboxes and configs, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=f"stoker-bench-{name}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def private_registry() -> Iterator[None]:
    """The supervisors a bench starts register in a registry of their own (STOKER_ROOT) and
    keep their plans in a cache of their own (STOKER_PLAN_CACHE), never the machine's or the
    user's, unless the caller chose them."""
    names = [name for name in ("STOKER_ROOT", "STOKER_PLAN_CACHE") if not os.environ.get(name)]
    with workdir("registry") as root:
        for name in names:
            os.environ[name] = str(root / name.lower())
        try:
            yield
        finally:
            for name in names:
                os.environ.pop(name, None)


def progress(text: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# ---- the entry point every bench script shares ----


def _terminated(signum: int, _frame: object) -> None:
    raise SystemExit(f"bench stopped by signal {signum}")



def main(name: str, run: Callable[[bool], tuple[list[Row], list[str]]]) -> int:
    """`python bench/X.py [--quick] [--json FILE]`: run, print the rows, or write them as JSON
    (what run_all.py reads)."""
    parser = argparse.ArgumentParser(prog=f"bench/{name}")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke test)")
    parser.add_argument("--json", metavar="FILE", help="write rows and notes as JSON to FILE")
    args = parser.parse_args()
    # run_all.py stops a bench that overruns with SIGTERM: unwind, so every `finally` kills
    # what that bench started.
    signal.signal(signal.SIGTERM, _terminated)
    compile_bytecode()
    with private_registry():
        rows, notes = run(args.quick)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "rows": [attrs.asdict(r) | {"verdict": r.verdict} for r in rows],
            "notes": notes,
        }, indent=1))
    else:
        for r in rows:
            print(f"{r.figure} | {r.measured} | {r.floor} | {r.target} | {r.verdict}")
        for n in notes:
            print(n)
    return 0


def paired(name: str, a: Sequence[float], b: Sequence[float], digits: int = 1, scale: float = 1e3,
           unit: str = " ms", each: bool = False) -> str:
    """Two checkouts' interleaved figures (A then B per pair; seconds, shown in ms, unless
    `scale` and `unit` say otherwise) as one line: each side's median, the median of the
    per-pair differences (B − A) and in how many pairs B was lower; `each`: then every
    pair's difference."""
    diffs = [y - x for x, y in zip(a, b)]
    line = (f"{name}: A {statistics.median(a) * scale:.{digits}f}{unit}, B {statistics.median(b) * scale:.{digits}f}{unit}; "
            f"B − A {statistics.median(diffs) * scale:+.{digits}f}{unit} (median of pairs), B lower in "
            f"{sum(d < 0 for d in diffs)} of {len(diffs)}")
    return line + (f": {', '.join(f'{d * scale:+.0f}' for d in diffs)}" if each else "")


def print_ab(repos: Sequence[Path], pairs: int, loads: Sequence[float],
             figures: dict[str, list[list[float]]], each: bool = False) -> None:
    """An A/B script's summary, its figures in their own units (`figures`: name -> [A's, B's],
    pair by pair): the checkouts, the pairs and the 1-minute load's range, then one `paired`
    line per figure (`each`: with every pair's difference)."""
    print(f"A = {repos[0]}, B = {repos[1]}; {pairs} pairs; 1-minute load {min(loads):.1f}-{max(loads):.1f}")
    for name, (a, b) in figures.items():
        print(paired(name, a, b, scale=1, unit="", each=each))
