"""A new config's exec → its first process running, two checkouts interleaved (issue 14,
newcfg2): an A/B of the first-run path (the planning child, its answer, the early start), as
`bench_launch.py`'s "a new config (planned)" row measures it.

    .venv/bin/python bench/newcfg_ab.py [--pairs 12] [--n 1] --against DIR [--repo DIR]

Each checkout (`--against`, A; `--repo`, B, this one by default) is compiled and its code
cache warmed first (`benchlib.compile_bytecode`), keeps its plans in a cache of its own, and
runs one config unmeasured (its code cache's files read once). Then each pair runs A and B
(B first in every other pair), each launch a config file never seen before (a new file, its
text naming the launch: no plan kept for it): exec → all N ran their first command (their
lines on a FIFO), and exec → the Nth `WAITING → RUNNING` line. Prints each side's medians,
the paired differences (B − A: the median of the per-pair differences, and in how many pairs
B was lower), and the 1-minute load before and after the pairs. Set TMPDIR=/dev/shm to keep
the file system out.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import benchlib
from bench_launch import config_text, launch


def new_config(root: Path, n: int, tag: str, fifo: Path) -> Path:
    """A config file no launch has seen: a new path, and a text of its own (`tag` in it)."""
    path = root / f"{tag}.aurora"
    path.write_text(config_text(n, fifo) + f"# {tag}\n")
    return path


def main() -> int:
    parser = benchlib.ab_parser("bench/newcfg_ab.py", pairs=12)
    parser.add_argument("--n", type=int, default=1, help="the config's processes")
    args = parser.parse_args()
    repos = benchlib.ab_repos(args)
    figures: dict[str, list[list[float]]] = {f"exec → {args.n} running": [[], []],
                                             f"exec → RUNNING line {args.n}": [[], []]}
    loads = [os.getloadavg()[0]]
    with benchlib.workdir("newcfg-ab") as root:
        fifo = root / "ran.fifo"
        os.mkfifo(fifo, 0o600)
        envs = [benchlib.ab_env(root, "A", repos[0]), benchlib.ab_env(root, "B", repos[1])]
        for j, env in enumerate(envs):  # unmeasured: each side's code cache and files read once
            launch(root, args.n, f"warm{j}", fifo, new_config(root, args.n, f"warm{j}", fifo), env)
        for i in range(args.pairs):
            for j in ((0, 1) if i % 2 == 0 else (1, 0)):
                tag = f"{'AB'[j]}{i}"
                ran, line = launch(root, args.n, tag, fifo, new_config(root, args.n, tag, fifo), envs[j])
                figures[f"exec → {args.n} running"][j].append(ran)
                figures[f"exec → RUNNING line {args.n}"][j].append(line)
            loads.append(os.getloadavg()[0])
    print(f"A = {repos[0]}, B = {repos[1]}; {args.pairs} pairs, N={args.n}, each a new config; "
          f"1-minute load {min(loads):.1f}-{max(loads):.1f}")
    for name, (a, b) in figures.items():
        print(benchlib.paired(name, a, b))
    return 0


if __name__ == "__main__":
    sys.exit(main())
