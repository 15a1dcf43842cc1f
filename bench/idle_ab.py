"""The supervisor at rest, two checkouts interleaved (issue 14, gcstart): a re-run's memory
once all N processes are RUNNING, and its CPU and wakeups idle after that.

    .venv/bin/python bench/idle_ab.py [--pairs 8] [--n 100,1] [--idle-secs 5] [--new-config] --against DIR [--repo DIR]

Each checkout (`--against`, A; `--repo`, B, this one by default) is compiled and its code
cache warmed first (`benchlib.ab_repos`), keeps its plans in a cache of its own, and runs
each config (N `command`s of `bench_launch.config_text`) twice unmeasured (planned, then its
early start's files warmed). Each pair then runs A and B (B first in every other pair), one
launch of each N: once the Nth `WAITING → RUNNING` line is read and a second more, the
supervisor's USS and PSS (psutil, as mem11), then its CPU time (every thread's,
`benchlib.cpu_secs_of`) and context switches (`benchlib.wakeups_of`) over `--idle-secs`.
Prints each side's medians, the paired differences (B − A: the median of the per-pair
differences, and in how many pairs B was lower), and the 1-minute load before and after.

With `--new-config` (newcfg5), each measured launch runs a config file never seen before
(a new path, its text naming the launch: no plan kept), so the figures are a first run's:
its planning child's plan, its parent's imports around the fork, as `make bench`'s "PSS at
N=100, new config" row reads them.

Every `stoker run` is stopped with SIGTERM (`bench_launch.stop_run`) and its task's pids
checked dead in a `finally`.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import benchlib
from bench_launch import RUNNING, Lines, Ran, config_text, stoker_argv, stop_run

KIB = 1024


class Side:
    """One checkout: its own plan cache and registry, a kept config and FIFO per N."""

    def __init__(self, root: Path, name: str, repo: Path, sizes: list[int]) -> None:
        self.root, self.name = root, name
        self.env = benchlib.ab_env(root, name, repo)
        self.fifos = {n: root / f"{name}-{n}.fifo" for n in sizes}
        self.configs = {n: root / f"{name}-{n}.aurora" for n in sizes}
        for n in sizes:
            os.mkfifo(self.fifos[n], 0o600)
            self.configs[n].write_text(config_text(n, self.fifos[n]))
        self.launches = 0

    def launch(self, n: int, idle_secs: float, new_config: bool = False) -> dict[str, float]:
        """One `stoker run` of the kept config of n (a new one, `new_config`), measured at
        rest (see the docstring)."""
        self.launches += 1
        work = self.root / f"{self.name}-{self.launches}"
        work.mkdir()
        ran = Ran(self.fifos[n], n)
        config = self.configs[n]
        if new_config:  # a text no launch has planned
            config = work / f"new{n}.aurora"
            config.write_text(config_text(n, self.fifos[n]) + f"# {self.name}{self.launches}\n")
        proc = subprocess.Popen([*stoker_argv(), "run", str(config), "--sandbox", str(work / "sandbox")],
                                cwd=work, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        lines = Lines(proc, RUNNING, n)
        try:
            ran.wait(f"{self.name}: {n} processes running")
            lines.wait(f"{self.name}: {n} processes RUNNING")
            time.sleep(1.0)
            memory = benchlib.memory_of(proc.pid)
            cpu, woke = benchlib.cpu_secs_of(proc.pid), benchlib.wakeups_of(proc.pid)
            time.sleep(idle_secs)
            return {"USS KiB": memory.uss / KIB, "PSS KiB": memory.pss / KIB,
                    "idle CPU ms": (benchlib.cpu_secs_of(proc.pid) - cpu) * 1000,
                    "idle wakeups": benchlib.wakeups_of(proc.pid) - woke}
        finally:
            ran.close()
            stop_run(proc, work / "sandbox", lines.join, self.name)


def main() -> int:
    parser = benchlib.ab_parser("bench/idle_ab.py", pairs=8)
    parser.add_argument("--n", default="100,1", help="the sizes, comma-separated")
    parser.add_argument("--idle-secs", type=float, default=5.0, help="the idle window")
    parser.add_argument("--new-config", action="store_true", help="measure first runs (a new config each)")
    args = parser.parse_args()
    sizes = [int(n) for n in args.n.split(",")]
    repos = benchlib.ab_repos(args)
    figures: dict[str, list[list[float]]] = {}
    loads = [os.getloadavg()[0]]
    with benchlib.workdir("idle-ab") as root:
        sides = [Side(root, "A", repos[0], sizes), Side(root, "B", repos[1], sizes)]
        for side in sides:
            for n in sizes:  # planned, then a re-run: its plan kept, its early start's files warmed
                side.launch(n, 0)
                side.launch(n, 0)
        for i in range(args.pairs):
            for n in sizes:
                for j in ((0, 1) if i % 2 == 0 else (1, 0)):
                    for name, value in sides[j].launch(n, args.idle_secs, args.new_config).items():
                        figures.setdefault(f"N={n} {name}", [[], []])[j].append(value)
            benchlib.progress(f"pair {i + 1} of {args.pairs}")
    loads.append(os.getloadavg()[0])
    benchlib.print_ab(repos, args.pairs, loads, figures, each=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
