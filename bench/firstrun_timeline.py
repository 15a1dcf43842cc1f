"""Where a new config's `stoker run` spends its time until its first process runs (issue 14):
the parent and its planning child side by side, medians of RUNS launches, in ms from the exec.

    .venv/bin/python bench/firstrun_timeline.py [--runs 12] [--repo DIR]

Each launch is `bench_launch.launch`'s (a new config of one process, `--sandbox`, the FIFO
line as "ran"), with `bench/firstrun_tracer.py` loaded before the entry point: its marks give
each phase (wall and CPU), what the parent does while its child plans, and how long after
the child's answer the first run was spawned. `--repo` times another checkout (compiled and
warmed first, as `benchlib.compile_bytecode` does this one); with `--against DIR` too, the
two checkouts' launches alternate, and the paired differences are given (an A/B). The probes add a few ms (two writes a module): `bench_launch.py`
gives the figures; this gives their parts.
"""
from __future__ import annotations

import argparse
import math
import os
import py_compile
import statistics
import subprocess
import sys
import time
from pathlib import Path

import benchlib
from bench_launch import RUNNING, Lines, Ran, config_text, stop_run

HERE = Path(__file__).resolve().parent
ENTRY = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import firstrun_tracer; "
         "from executor.cli.start import run; sys.exit(run())")
Marks = list[tuple[str, float, float, str]]  # (process: P or C, wall ms from exec, CPU ms, what)


def launch(root: Path, i: int, repo: Path) -> tuple[Marks, float, float]:
    """One traced launch: its marks, exec → ran, exec → RUNNING line (ms)."""
    work = root / f"r{i}"
    work.mkdir()
    fifo, marks = work / "ran.fifo", work / "marks"
    os.mkfifo(fifo, 0o600)
    (work / "job.aurora").write_text(config_text(1, fifo))
    ran = Ran(fifo, 1)
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", ENTRY, "run", str(work / "job.aurora"), "--sandbox",
                             str(work / "sandbox")], cwd=work, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, start_new_session=True,
                            env=dict(os.environ, PYTHONPATH=str(repo), FIRSTRUN_MARKS=str(marks)))
    lines = Lines(proc, RUNNING, 1)
    try:
        ran_at, line_at = ran.wait("the first run") - start, lines.wait("its RUNNING line") - start
    finally:
        ran.close()
        stop_run(proc, work / "sandbox", lines.join)
    parsed = []
    for line in marks.read_text().splitlines():
        pid, wall, cpu, what = line.split(" ", 3)
        parsed.append(("P" if int(pid) == proc.pid else "C", (float(wall) - start) * 1000, float(cpu) * 1000, what))
    return parsed, ran_at * 1000, line_at * 1000


def at(marks: Marks, who: str, what: str) -> tuple[float, float]:
    """(wall, CPU) of `who`'s first mark `what` (`forked` with any pid); NaN when there is none."""
    return next(((w, c) for p, w, c, m in marks if p == who and (m == what or m.startswith("forked ") and what == "forked")),
                (float("nan"), float("nan")))


def between(marks: Marks, who: str, begin: str, end: str) -> tuple[float, float]:
    """(wall, CPU) from `who`'s mark `begin` to its mark `end`."""
    (w0, c0), (w1, c1) = at(marks, who, begin), at(marks, who, end)
    return w1 - w0, c1 - c0


CHILD_STEPS = ("config.loader.load_job", "config.loader.check_bound", "executor.local.planning.allocate_ports",
               "config.bind.bind", "config.plan.open_problem", "encode")
ENCODES = ("executor.local.planform.encode", "executor.local.plancache.encode")  # where it is, where it was


def phases(marks: Marks, ran: float) -> dict[str, tuple[float, float]]:
    """The phases of one launch: (wall ms, CPU ms of the process it is in; NaN across two)."""
    nan = float("nan")
    fork, child, answered = at(marks, "P", "forked"), at(marks, "C", "child"), at(marks, "C", "exit 0")
    ready, start = at(marks, "P", "call executor.cli.launchfirst.start_first"), at(marks, "P", "call executor.cli.launchfirst._start_ahead")
    spawn = at(marks, "P", "call executor.procs.earlyfork.spawn_run")
    pystachio = between(marks, "C", "load pystachio", "loaded pystachio")
    schema = between(marks, "C", "load config.schema", "loaded config.schema")
    modules = between(marks, "C", "return executor.codecache.also", "call config.loader.load_job")
    encode = next((name for name in ENCODES if not math.isnan(at(marks, "C", f"call {name}")[0])), ENCODES[0])
    marks = [(p, w, c, m.replace(encode, "encode")) for p, w, c, m in marks]
    return {
        "P exec -> tracer loaded (the interpreter's start)": (at(marks, "P", "entry")[0], at(marks, "P", "entry")[1]),
        "P tracer -> fork (the entry point's imports)": between(marks, "P", "entry", "forked"),
        "C fork -> child running": (child[0] - fork[0], nan),
        "C code cache (plan)": between(marks, "C", "call executor.codecache.also", "return executor.codecache.also"),
        "C import pystachio": pystachio,
        "C import config.schema": schema,
        "C the other config modules": (modules[0] - pystachio[0] - schema[0], modules[1] - pystachio[1] - schema[1]),
        **{f"C {name.rsplit('.', 1)[-1]}": between(marks, "C", f"call {name}", f"return {name}") for name in CHILD_STEPS},
        "C encode -> answered and ended": between(marks, "C", "return encode", "exit 0"),
        "C the whole child, fork -> answer": (answered[0] - fork[0], answered[1]),
        "P fork -> settings read (start_first)": between(marks, "P", "forked", "call executor.cli.launchfirst.start_first"),
        "P the child's answer -> start seen": (start[0] - answered[0], nan),
        "P start -> first spawn (decode, lease, sandbox, watchdog)": (spawn[0] - start[0], spawn[1] - start[1]),
        "P spawn -> ran (the run's exec, its echo)": (ran - spawn[0], nan),
        "= exec -> fork": (fork[0], fork[1]),
        "= exec -> parent ready (start_first)": (ready[0], ready[1]),
        "= exec -> child's answer": (answered[0], nan),
        "= exec -> ran": (ran, nan),
        # the one chain a new config's first process waits for when the plan comes last (newcfg3):
        # the parent's CPU to its fork, then the child's to its plan's encoding (its CPU from 0 at the fork)
        "= the plan's chain, CPU: exec -> fork (P) + fork -> plan encoded (C)":
            (nan, fork[1] + at(marks, "C", "return encode")[1]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/firstrun_timeline.py")
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--repo", type=Path, default=benchlib.REPO)
    parser.add_argument("--against", type=Path, help="another checkout, its launches interleaved with --repo's "
                        "(compiled and warmed before, as --repo is here): both columns and the paired difference")
    args = parser.parse_args()
    repos = [args.repo] if args.against is None else [args.against, args.repo]
    for repo in repos:  # (was: this checkout's alone, and another one's launches compiled every source)
        benchlib.compile_bytecode(repo.resolve())
    # the tracer's own `.pyc`: imported from its source, its `compile()` made `ast`'s 119 classes
    # (0.8-1.1 ms) in the parent, and the child had them from the fork (plancut)
    py_compile.compile(str(HERE / "firstrun_tracer.py"), doraise=True)
    rows: dict[str, list[list[tuple[float, float]]]] = {}
    with benchlib.private_registry(), benchlib.workdir("firstrun") as root:
        for repo in repos:  # unmeasured: the code cache and docstring-free files warmed
            launch(root, -1 - repos.index(repo), repo)
        for i in range(args.runs):
            for j in (range(len(repos)) if i % 2 == 0 else reversed(range(len(repos)))):
                marks, ran, _ = launch(root, i * len(repos) + j, repos[j])
                for name, value in phases(marks, ran).items():
                    rows.setdefault(name, [[] for _ in repos])[j].append(value)
    if len(repos) == 1:
        print("    wall     CPU  (ms, medians)")
    else:
        print("  A wall   A CPU  B wall   B CPU  B-A wall  B-A CPU  B lower: wall, CPU  (ms, medians; paired: B-A and "
              "in how many pairs B was lower; A = --against, B = --repo)")
    for name, columns in rows.items():
        cells = []
        for values in columns:
            cells += [statistics.median(v[0] for v in values), statistics.median(v[1] for v in values)]
        lower = ""
        if len(columns) == 2:
            cells.append(statistics.median(b[0] - a[0] for a, b in zip(*columns)))
            wall = [b[0] - a[0] for a, b in zip(*columns) if not math.isnan(b[0] - a[0])]
            cpu = [b[1] - a[1] for a, b in zip(*columns) if not math.isnan(b[1] - a[1])]
            cells.append(statistics.median(cpu) if cpu else float("nan"))
            lower = "".join(f"  {sum(d < 0 for d in pairs):3d}/{len(pairs):3d}" if pairs else " " * 9
                            for pairs in (wall, cpu))
        print(" ".join(f"{cell:7.1f}" for cell in cells) + f"{lower}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
