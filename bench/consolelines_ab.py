"""The console's first lines through `stoker run`'s spool, two checkouts interleaved (issue
14, threadstart): what a re-run's first RUNNING line costs between its first console line and
its arrival, without the rest of a launch's noise.

    .venv/bin/python bench/consolelines_ab.py [--pairs 40] --against DIR [--repo DIR]

Each launch is a fresh interpreter (the spool's thread, when one starts, is its first): it
loads `executor.logs` and `executor.local.console` from its checkout, stamps
`time.monotonic()` on stderr, and writes a re-run's four first console lines (the sandbox,
the root warning, the task's NEW → STARTING and the process's WAITING → RUNNING) through
`Output` and `spool()`, its stdout a pipe this script reads. Figures: the stamp → the fourth
line read here, the CPU of the four writes, and the CPU until the spool has written them all
(`drain_spool`). Prints each side's medians and the paired differences (B − A, B first in
every other pair) and the 1-minute load before and after.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import benchlib

CHILD = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
try:
    from executor.spool import spool
except ImportError:  # a checkout from before the spool left executor.logs
    from executor.logs import spool
from executor.local.console import Output
out = Output(sys.stdout, spool())
lines = ["stoker run: sandbox /dev/shm/bench/w0/sandbox\n",
         "stoker run: warning: running as root: the task's processes run as root" + "." * 90 + "\n",
         "10:43:41.969  launch1.0    task             NEW → STARTING  task launched" + " " * 36 + "\n",
         "10:43:41.970  launch1.0    p0[0]            WAITING → RUNNING  started\n"]
os.write(2, f"{time.monotonic():.7f}\n".encode())
cpu = time.process_time()
for line in lines:
    out.write(line)
written = time.process_time()
logs.drain_spool()
os.write(2, f"{written - cpu:.7f} {time.process_time() - cpu:.7f}\n".encode())
"""


def launch(repo: Path) -> tuple[float, float, float]:
    """One child of `repo`: stamp → the 4th line read, CPU of the writes, CPU to drained (s)."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(repo)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert child.stdout is not None and child.stderr is not None
    got = b""
    try:
        while got.count(b"\n") < 4:
            chunk = os.read(child.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError(f"the child of {repo} ended before its 4th line: {got!r}")
            got += chunk
        read_at = time.monotonic()
        stamp, writes, drained = (float(word) for word in child.stderr.read().split())
    finally:
        child.stdout.close()
        child.stderr.close()
        child.wait()
    return read_at - stamp, writes, drained


def main() -> int:
    args = benchlib.ab_parser("bench/consolelines_ab.py", pairs=40).parse_args()
    repos = benchlib.ab_repos(args)
    names = ["first console line → the RUNNING line read", "CPU of the four writes", "CPU until written"]
    figures: list[list[list[float]]] = [[[], []] for _ in names]
    loads = [os.getloadavg()[0]]
    for repo in repos:  # each side's files read once before the pairs
        launch(repo)
    for i in range(args.pairs):
        for j in ((0, 1) if i % 2 == 0 else (1, 0)):
            for k, value in enumerate(launch(repos[j])):
                figures[k][j].append(value)
        loads.append(os.getloadavg()[0])
    print(f"A = {repos[0]}, B = {repos[1]}; {args.pairs} pairs; 1-minute load {min(loads):.1f}-{max(loads):.1f}")
    for name, (a, b) in zip(names, figures):
        print(benchlib.paired(name, a, b, digits=3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
