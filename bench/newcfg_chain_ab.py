"""The CPU of the chain a new config's first process waits for when its plan comes last
(issue 14, newcfg3), two checkouts interleaved: `stoker run`'s CPU from its exec to its
planning child's fork, plus the child's from the fork to its plan's `marshal.dumps` (the
plan sent, before its answer). Both processes run side by side after the fork, so the
wall clock of a shared host mixes them; this sum is the work on the one path.

    .venv/bin/python bench/newcfg_chain_ab.py [--pairs 40] --against DIR [--repo DIR]

Each launch is a config file never seen before (`newcfg_ab.new_config`), run with an audit
hook installed before the entry point: `os.fork` (the parent's CPU then; the hook fires in
the parent before the fork) and the child's first `marshal.dumps` (its CPU since the fork:
a child's CPU times start at 0). The hook's cost is paid on both sides alike (audit events
are few: no per-module marks, unlike `firstrun_timeline.py`). Prints each side's medians,
the paired differences (B − A, and in how many pairs B was lower) and the 1-minute load.
Set TMPDIR=/dev/shm to keep the file system out.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import benchlib
from bench_launch import RUNNING, Lines, Ran, stop_run
from newcfg_ab import new_config

STAMPS = "STOKER_AB_STAMPS"
HOOKED = f"""
import os, sys, time
_parent = os.getpid()
def _hook(event, args):
    mine = os.getpid() == _parent
    if event == 'os.fork' and mine or event == 'marshal.dumps' and not mine:
        cpu = time.process_time()
        fd = os.open(os.environ['{STAMPS}'], os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.write(fd, f'{{"P" if mine else "C"}} {{cpu:.6f}}\\n'.encode())
        os.close(fd)
sys.addaudithook(_hook)
from executor.cli.start import run
sys.exit(run())
"""


def chain_cpu(root: Path, name: str, repo: Path, launch: int) -> float:
    """One hooked launch of a new config: the parent's CPU at its fork plus the child's at
    its plan's encoding (s)."""
    work = root / f"{name}-{launch}"
    work.mkdir()
    fifo, stamps = work / "ran.fifo", work / "stamps"
    os.mkfifo(fifo, 0o600)
    config = new_config(work, 1, f"{name}{launch}", fifo)
    ran = Ran(fifo, 1)
    proc = subprocess.Popen([sys.executable, "-c", HOOKED, "run", str(config), "--sandbox", str(work / "sandbox")],
                            cwd=work, env=dict(benchlib.ab_env(root, name, repo), **{STAMPS: str(stamps)}),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    lines = Lines(proc, RUNNING, 1)
    try:
        ran.wait(f"{name}: the process running")
    finally:
        ran.close()
        stop_run(proc, work / "sandbox", lines.join)
    marks: dict[str, float] = {}
    for line in stamps.read_text().splitlines():
        who, cpu = line.split()
        marks.setdefault(who, float(cpu))  # each process's first
    return marks["P"] + marks["C"]


def main() -> int:
    parser = benchlib.ab_parser("bench/newcfg_chain_ab.py", pairs=40)
    args = parser.parse_args()
    repos = benchlib.ab_repos(args)
    chains: list[list[float]] = [[], []]
    loads = [os.getloadavg()[0]]
    with benchlib.private_registry(), benchlib.workdir("newcfg-chain-ab") as root:
        for j, name in enumerate("AB"):  # unmeasured: each side's code cache and bundles read once
            chain_cpu(root, name, repos[j], -1)
        for i in range(args.pairs):
            for j in ((0, 1) if i % 2 == 0 else (1, 0)):
                chains[j].append(chain_cpu(root, "AB"[j], repos[j], i))
            loads.append(os.getloadavg()[0])
            time.sleep(0.01)
    print(f"A = {repos[0]}, B = {repos[1]}; {args.pairs} pairs, each a new config; "
          f"1-minute load {min(loads):.1f}-{max(loads):.1f}")
    print(benchlib.paired("CPU: exec → fork (P) + fork → plan encoded (C)", chains[0], chains[1], digits=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
