"""A re-run's exec → its RUNNING lines, two checkouts interleaved (issue 14, runline): an
A/B of the path from the early start's runs to the supervisor's report of them, as
`bench_launch.py` measures it.

    .venv/bin/python bench/runline_ab.py [--pairs 8] [--n 1,100] --against DIR [--repo DIR]

Each checkout (`--against`, A; `--repo`, B, this one by default) is compiled and its code
cache warmed first (`benchlib.compile_bytecode`), keeps its plans in a cache of its own,
and runs each config (N processes, each N of `--n`) twice unmeasured (planned, then its
early start's files warmed). Then each pair runs A and B (B first in every other pair), one
launch of each N: exec → all N ran their first command (their lines on a FIFO), and exec →
the Nth `WAITING → RUNNING` line read from `stoker run`'s stdout. Prints each side's
medians, the paired differences (B − A: the median of the per-pair differences, and in how
many pairs B was lower), and the 1-minute load before and after the pairs.

Every `stoker run` is stopped with SIGTERM (`bench_launch.stop_run`) and its task's pids checked
dead in a `finally`.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import benchlib
from bench_launch import config_text, timed_run


class Side:
    """One checkout: its own plan cache and registry, a kept config and FIFO per N."""

    def __init__(self, root: Path, name: str, repo: Path, sizes: list[int]) -> None:
        self.root, self.name = root, name
        self.env = benchlib.ab_env(root, name, repo)
        self.fifos: dict[int, Path] = {}
        self.configs: dict[int, Path] = {}
        for n in sizes:
            self.fifos[n] = root / f"{name}-{n}.fifo"
            os.mkfifo(self.fifos[n], 0o600)
            self.configs[n] = root / f"{name}-{n}.aurora"
            self.configs[n].write_text(config_text(n, self.fifos[n]))
        self.launches = 0

    def launch(self, n: int) -> tuple[float, float]:
        """One `stoker run` of the kept config of n: exec → all ran, exec → the nth RUNNING line (s)."""
        self.launches += 1
        work = self.root / f"{self.name}-{self.launches}"
        work.mkdir()
        return timed_run(self.configs[n], work, self.fifos[n], n, self.env, self.name)


def main() -> int:
    parser = benchlib.ab_parser("bench/runline_ab.py", pairs=8)
    parser.add_argument("--n", default="1,100", help="the sizes, comma-separated")
    args = parser.parse_args()
    sizes = [int(n) for n in args.n.split(",")]
    repos = benchlib.ab_repos(args)
    figures: dict[str, list[list[float]]] = {}
    for n in sizes:
        figures[f"N={n} exec → {n} running"] = [[], []]
        figures[f"N={n} exec → {n}th RUNNING line"] = [[], []]
    loads = [os.getloadavg()[0]]
    with benchlib.workdir("runline-ab") as root:
        sides = [Side(root, "A", repos[0], sizes), Side(root, "B", repos[1], sizes)]
        for side in sides:  # planned, then a re-run: its plan kept, its early start's files warmed
            for n in sizes:
                side.launch(n)
                side.launch(n)
        for i in range(args.pairs):
            for n in sizes:
                for j in ((0, 1) if i % 2 == 0 else (1, 0)):
                    ran, line = sides[j].launch(n)
                    figures[f"N={n} exec → {n} running"][j].append(ran)
                    figures[f"N={n} exec → {n}th RUNNING line"][j].append(line)
            loads.append(os.getloadavg()[0])
    print(f"A = {repos[0]}, B = {repos[1]}; {args.pairs} pairs; 1-minute load {min(loads):.1f}-{max(loads):.1f}")
    for name, (a, b) in figures.items():
        print(benchlib.paired(name, a, b))
    return 0


if __name__ == "__main__":
    sys.exit(main())
