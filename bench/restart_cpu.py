"""The kill -9 restart's path by thread time (issue 14), for A/B comparisons on a busy host.

For each restart of `bench_supervisor`'s one-process task (SIGKILL from this process, the
next run forked and reported), the CPU time each thread spent on the path, read with
`time.thread_time` at the entry and exit of four product calls: the reaper's
(`Reaper._dispatch`: the leftover kill, the reap, the exit status with its OOM look, the
post), the owner's from the event to the fork (`TaskOwner._handle` entered to
`os.posix_spawn` called), in `os.posix_spawn`, and from its return to
`Supervisor.spawn_many`'s; beside the wall clock of the same segments and of SIGKILL → the
reaper's wake. A thread's CPU time does not grow while it waits for a core, so it tells two
versions of the code apart where the wall clock cannot: with four other sessions on two
cores, the same code's restart median read 1.4 to 6.5 ms within an hour.

    .venv/bin/python bench/restart_cpu.py [--count N] [--rounds R] [--others K] [TREE [TREE_B]]

One TREE (default: this one): R rounds of N restarts. Two: interleaved A/B, A B then B A,
each round in a fresh interpreter that imports the product and `bench_supervisor` from its
TREE (a `git archive` of main, say, beside this worktree); run `python -m executor.codecache`
in both first. Prints each round's medians (us), then each figure's median over the rounds
and in how many rounds B read lower. `--others K`: with K idle processes of
`bench_supervisor.Background` on the host meanwhile (its foreign child, the one holding
them, is an orphan root: each exit's walk has one to walk). Every process is stopped and
every sandbox removed by `bench_supervisor.OwnedTask`, `Background` and a temporary directory.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
WARM = 3  # restarts before the measured ones: imports, the first restart's log staging
FIGURES = ("reaper_cpu", "owner_pre_cpu", "spawn_cpu", "owner_post_cpu",
           "wake", "reaper_wall", "handoff", "pre_wall", "spawn_wall", "post_wall", "forked")


def _install(marks: list[tuple[str, int, float]], on: list[bool]) -> None:
    """Note (name, thread time ns, monotonic) at the entry and exit of the four calls."""
    from executor.procs import reaper, supervisor
    from executor.task.owner import TaskOwner

    def wrap(owner: object, attr: str, name: str) -> None:
        inner = getattr(owner, attr)

        def noted(*args: object, **kwargs: object) -> object:
            if on[0]:
                marks.append((name + ">", time.thread_time_ns(), time.monotonic()))
            try:
                return inner(*args, **kwargs)
            finally:
                if on[0]:
                    marks.append((name + "<", time.thread_time_ns(), time.monotonic()))
        setattr(owner, attr, noted)

    wrap(reaper.Reaper, "_dispatch", "reaper")
    wrap(TaskOwner, "_handle", "owner")
    wrap(os, "posix_spawn", "spawn")
    wrap(supervisor.Supervisor, "spawn_many", "spawn_many")


def _segments(marks: list[tuple[str, int, float]], killed_at: float) -> dict[str, float]:
    """One restart's figures (us) from its marks, the first of each name."""
    first: dict[str, tuple[int, float]] = {}
    for name, thread_ns, at in marks:
        first.setdefault(name, (thread_ns, at))

    def cpu(a: str, b: str) -> float:
        return (first[b][0] - first[a][0]) / 1e3

    def wall(a: str, b: str) -> float:
        return (first[b][1] - first[a][1]) * 1e6

    return {"reaper_cpu": cpu("reaper>", "reaper<"), "owner_pre_cpu": cpu("owner>", "spawn>"),
            "spawn_cpu": cpu("spawn>", "spawn<"), "owner_post_cpu": cpu("spawn<", "spawn_many<"),
            "wake": (first["reaper>"][1] - killed_at) * 1e6, "reaper_wall": wall("reaper>", "reaper<"),
            "handoff": wall("reaper<", "owner>"), "pre_wall": wall("owner>", "spawn>"),
            "spawn_wall": wall("spawn>", "spawn<"), "post_wall": wall("spawn<", "spawn_many<"),
            "forked": (first["spawn_many<"][1] - killed_at) * 1e6}


def one_round(tree: Path, count: int, others: int) -> dict[str, float]:
    """`count` measured restarts with the product and bench of `tree`, `others` idle processes
    beside them; each figure's median."""
    sys.path[:0] = [str(tree), str(tree / "bench")]
    import bench_supervisor as bench

    import executor

    if not Path(executor.__file__).is_relative_to(tree):  # another tree's product would be measured
        raise SystemExit(f"the product was imported from {executor.__file__}, not from {tree}")

    marks: list[tuple[str, int, float]] = []
    on = [False]
    _install(marks, on)
    rows: list[dict[str, float]] = []
    background = bench.Background(others) if others else None
    with tempfile.TemporaryDirectory(prefix="stoker-restart-cpu-") as sandbox:
        try:
            if background is not None:
                background.wait_ready()
            task = bench.OwnedTask(1, Path(sandbox) / "task")
        except BaseException:
            if background is not None:
                background.close()
            raise
        try:
            for k in range(count + WARM):
                task.recorder.wait(lambda k=k: ("p0", k) in task.recorder.reported, f"run {k} RUNNING")
                time.sleep(bench.SETTLE_SECS)
                marks.clear()
                on[0] = k >= WARM
                killed_at = time.monotonic()
                os.kill(task.spawned[("p0", k)].pid, signal.SIGKILL)
                task.recorder.wait(lambda k=k: ("p0", k + 1) in task.recorder.reported,
                                   f"run {k + 1} RUNNING")
                on[0] = False
                if k >= WARM:
                    rows.append(_segments(marks, killed_at))
        finally:
            task.stop()
            if background is not None:
                background.close()
    return {f: statistics.median(row[f] for row in rows) for f in FIGURES} | {"load": os.getloadavg()[0]}


def rounds(trees: list[Path], count: int, how_many: int, others: int) -> list[tuple[str, dict[str, float]]]:
    """Each round in a fresh interpreter, the trees' order reversed every other round."""
    results = []
    for r in range(how_many):
        order = list(zip("AB", trees))
        for side, tree in order if r % 2 == 0 else order[::-1]:
            out = subprocess.run([sys.executable, str(HERE), "--one", str(tree), "--count", str(count),
                                  "--others", str(others)], check=True, capture_output=True, text=True).stdout
            results.append((side, json.loads(out)))
            print(side, " ".join(f"{k}={v:.1f}" for k, v in results[-1][1].items()), flush=True)
    return results


def verdict(results: list[tuple[str, dict[str, float]]]) -> None:
    """Per figure: the median over the rounds of each side, and in how many rounds B was lower."""
    a = [r for s, r in results if s == "A"]
    b = [r for s, r in results if s == "B"]
    for f in FIGURES:
        lower = sum(y[f] < x[f] for x, y in zip(a, b))
        print(f"{f:15s} A {statistics.median(r[f] for r in a):8.1f}  B {statistics.median(r[f] for r in b):8.1f}"
              f"  B lower in {lower} of {min(len(a), len(b))}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs="*", type=Path, default=[HERE.parents[1]])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--others", type=int, default=0)
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one_round(args.one.resolve(), args.count, args.others)))
        return 0
    trees = [t.resolve() for t in args.trees]
    results = rounds(trees if len(trees) == 2 else trees[:1], args.count, args.rounds, args.others)
    if len(trees) == 2:
        verdict(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
