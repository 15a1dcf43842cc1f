"""Runs every Stoker benchmark and prints ONE markdown table (what `make bench` runs).

    .venv/bin/python bench/run_all.py            # full run; writes .bench/RESULTS.md (git-ignored)
    .venv/bin/python bench/run_all.py --quick    # fewer repetitions, short idle window
    .venv/bin/python bench/run_all.py --only idle --only health

Each bench is a script of its own (`bench/bench_*.py`), run here as a subprocess, one after
the other, so that none disturbs another's timing and each starts from a clean process
(the supervisor bench makes its process a child subreaper, for one). Each writes its rows as
JSON; this script joins them under a header naming the machine, prints the table and, for a
full run, writes it to .bench/RESULTS.md (git-ignored; a `--quick` or `--only` run writes a file only when
given `--output`, so a smoke test never overwrites the full results).

Columns: figure | measured | floor/bound measured in the same run | target | verdict. A
verdict is "meets" or "misses" (against the median, or every repetition where the target
says so: "misses at max" then means the median meets but some repetition did not), and
"info" for figures without a target. A bench that fails or overruns its time limit gets a
"bench failed" row, and the exit status is 1.
"""
from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib
from benchlib import Row, error_row, machine

BENCH = Path(__file__).resolve().parent
BENCHES = {  # run in this order: the long idle windows last
    "launch": ("bench_launch.py", "stoker run's launch → N RUNNING, the entry points' imports (issue 14)"),
    "supervisor": ("bench_supervisor.py", "restart latency and start of 100 processes (issue 3)"),
    "restartrun": ("bench_restart_run.py", "stoker run's restart after kill -9, timed by the kernel's "
                                           "fork/exec events (issue 14)"),
    "health": ("bench_health.py", "health failure detection (issue 4)"),
    "mesos": ("bench_mesos.py", "Mesos executor latencies and memory (issue 5)"),
    "ops": ("bench_ops.py", "tail -n of 200 MB, the checkpoint and status of a 100k-attempt task, "
                            "the registry on launch (issue 11)"),
    "observe": ("bench_observe.py", "stoker observe: idle CPU with 100 tasks, a task page of 100 "
                                    "processes, memory (issue 12)"),
    "metrics": ("bench_metrics.py", "stoker observe's /metrics: 100 running tasks of 10 processes, "
                                    "1,000 ended tasks"),
    "idle": ("bench_idle.py", "idle CPU, wakeups and memory at 1/10/100/500 processes (issues 3, 6)"),
}
LIMIT_SECS = 600.0  # per bench; a full run of all of them takes about two minutes
TERM_GRACE_SECS = 60.0  # after SIGTERM, for the bench's own cleanup


def run_one(name: str, quick: bool) -> tuple[list[Row], list[str]]:
    script, what = BENCHES[name]
    print(f"bench {name}: {what}", file=sys.stderr, flush=True)
    with tempfile.NamedTemporaryFile(prefix=f"stoker-bench-{name}-", suffix=".json") as out:
        argv = [sys.executable, str(BENCH / script), "--json", out.name] + (["--quick"] if quick else [])
        started = time.monotonic()
        proc = subprocess.Popen(argv, cwd=benchlib.REPO, stdin=subprocess.DEVNULL)
        try:
            code = proc.wait(LIMIT_SECS)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # its `finally` blocks kill what it started
            try:
                proc.wait(TERM_GRACE_SECS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            return [error_row(name, f"overran its limit of {LIMIT_SECS:.0f} s and was stopped")], []
        except BaseException:
            proc.send_signal(signal.SIGTERM)
            proc.wait(TERM_GRACE_SECS)
            raise
        took = time.monotonic() - started
        print(f"bench {name}: done in {took:.1f} s (exit {code})", file=sys.stderr, flush=True)
        if code != 0:
            return [error_row(name, f"the script exited with status {code}; its error is above")], []
        data = json.loads(Path(out.name).read_text())
    rows = [Row(**{k: v for k, v in r.items() if k != "verdict"}) for r in data["rows"]]
    return rows, list(data["notes"])


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(rows: list[Row], notes: list[str], info: dict[str, str], mode: str, took: float) -> str:
    lines = [
        "# Stoker benchmarks",
        "",
        f"Ran {info['date']} ({mode}, {took:.0f} s) at commit {info['commit']}, on: "
        f"{info['cpu']}, {info['cores']} cores, {info['memory']} memory, {info['kernel']}, "
        f"{info['python']}; load average {info['load']} at the start, {info['load_end']} at "
        f"the end (other work on the machine skews the timings).",
        "",
        "| figure | measured | floor/bound measured in the same run | target | verdict |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append("| " + " | ".join(_cell(c) for c in (r.figure, r.measured, r.floor, r.target,
                                                          r.verdict)) + " |")
    misses = [r for r in rows if r.verdict.startswith("misses")]
    lines += ["", f"{len(misses)} of {sum(r.verdict != 'info' for r in rows)} targets missed."]
    if notes:
        lines += ["", "Where the time and memory go (measured in the same run):", ""]
        lines += [f"- {n}" for n in notes]
    lines += ["", "Regenerate with `make bench` (full) or `.venv/bin/python bench/run_all.py "
              "--quick` (smoke test). Each bench script also runs alone: "
              "`.venv/bin/python bench/bench_idle.py`.", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/run_all.py", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer repetitions and a 2 s idle window (a smoke test)")
    parser.add_argument("--only", action="append", choices=sorted(BENCHES), metavar="NAME",
                        help=f"run only this bench (repeatable): {', '.join(BENCHES)}")
    parser.add_argument("--output", metavar="FILE",
                        help="where to write the table (default: .bench/RESULTS.md, git-ignored, for a full run)")
    args = parser.parse_args()
    names = [n for n in BENCHES if not args.only or n in args.only]
    info = machine()
    started = time.monotonic()
    rows: list[Row] = []
    notes: list[str] = []
    for name in names:
        got_rows, got_notes = run_one(name, args.quick)
        rows += got_rows
        notes += got_notes
    took = time.monotonic() - started
    info["load_end"] = machine()["load"]
    mode = "quick" if args.quick else "full"
    if args.only:
        mode += f", only {', '.join(names)}"
    text = render(rows, notes, info, mode, took)
    print(text)
    output = args.output or (None if args.quick or args.only else str(BENCH.parent / ".bench" / "RESULTS.md"))
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(text)
        print(f"written to {output}", file=sys.stderr)
    failed = any(r.figure.endswith("bench failed") for r in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
