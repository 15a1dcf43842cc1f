"""An early start's runs moved into the task's cgroup (`cgrouplife.take_in`, as
`Containment.settle` calls it), two checkouts interleaved (issue 14).

    .venv/bin/python bench/takein_ab.py [--pairs 12] [--n 100] [--shells] --against DIR [--repo DIR]
    .venv/bin/python bench/takein_ab.py --once REPO [--n 100] [--shells]

Each pair runs a fresh interpreter per side (B first in every other pair), which imports
that checkout's `executor.procs.cgrouplife`, makes a task cgroup (`cgroups.create`, auto),
spawns N children outside it (`sleep 600`; with --shells, `sh -c 'sleep 600; exit 0'`, a
shell waiting for a child of its own: two processes a run), waits until each is running its
command, then times one `take_in` of them (the CPU of this thread, `time.thread_time`, and
the wall clock), checks every one of them is in the cgroup, and kills and removes it all
in a `finally`. Prints each side's medians and the paired differences (B − A: the median of
the per-pair differences, and in how many pairs B was lower). `--once REPO` runs one side
once and prints its JSON (what strace -c or callgrind wrap).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib


def _running(pid: int, shells: bool) -> bool:
    """Whether `pid` runs its command (with `shells`: its shell has forked its sleep)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return False
    return bool(kids) if shells else cmd.startswith(b"sleep\0")


def once(n: int, shells: bool) -> dict[str, float]:
    """One side's measure in this interpreter (its checkout first on sys.path)."""
    from executor.procs import cgrouplife, cgroups

    made = cgroups.create(f"stoker-takein-bench-{os.getpid()}", cgroups.SETTING_AUTO)
    if isinstance(made, cgroups.NoCgroup):
        raise SystemExit(f"no cgroup: {made.reason}")
    argv = ["sh", "-c", "sleep 600; exit 0"] if shells else ["sleep", "600"]
    runs = []
    try:
        runs = [subprocess.Popen(argv) for _ in range(n)]
        deadline = time.monotonic() + 30
        while not all(_running(run.pid, shells) for run in runs):
            if time.monotonic() > deadline:
                raise SystemExit("the runs did not start within 30 s")
            time.sleep(0.005)
        cpu, wall = time.thread_time(), time.perf_counter()
        cgrouplife.take_in(made, tuple(run.pid for run in runs))
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
        inside = set(cgroups.read_pids(made.directory))
        if len(inside) != n * (2 if shells else 1):
            raise SystemExit(f"{len(inside)} processes moved in, not {n * (2 if shells else 1)}")
        return {"cpu": cpu, "wall": wall}
    finally:
        for run in runs:
            run.kill()
        problem = made.kill_and_remove(5.0)
        for run in runs:
            run.wait()
        if problem is not None:
            print(f"cgroup left: {problem}", file=sys.stderr)


def _side(repo: Path, n: int, shells: bool) -> dict[str, float]:
    argv = [sys.executable, __file__, "--once", str(repo), "--n", str(n)] + (["--shells"] if shells else [])
    out = subprocess.run(["nice", "-n", "10", *argv], check=True, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(repo))).stdout
    return json.loads(out.splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(prog="takein_ab.py")
    parser.add_argument("--once", type=Path)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--shells", action="store_true")
    parser.add_argument("--pairs", type=int, default=12)
    parser.add_argument("--against", type=Path)
    parser.add_argument("--repo", type=Path, default=benchlib.REPO)
    args = parser.parse_args()
    if args.once is not None:
        sys.path.insert(0, str(args.once.resolve()))
        print(json.dumps(once(args.n, args.shells)))
        return 0
    if args.against is None:
        parser.error("--against DIR (checkout A) is needed")
    a_repo, b_repo = args.against.resolve(), args.repo.resolve()
    results: dict[str, dict[str, list[float]]] = {"A": {}, "B": {}}
    for i in range(args.pairs):
        order = [("A", a_repo), ("B", b_repo)] if i % 2 == 0 else [("B", b_repo), ("A", a_repo)]
        for name, repo in order:
            for key, value in _side(repo, args.n, args.shells).items():
                results[name].setdefault(key, []).append(value)
        print(f"pair {i + 1}: load {os.getloadavg()[0]:.1f}", file=sys.stderr)
    for key in results["A"]:
        print(benchlib.paired(key, results["A"][key], results["B"][key], digits=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
