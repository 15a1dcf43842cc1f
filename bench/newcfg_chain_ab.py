"""The CPU of the chain a new config's first process waits for when its plan comes last
(issue 14, newcfg3), two checkouts interleaved: `stoker run`'s work from its exec to its
planning child's fork, then the child's to its plan's `marshal.dumps` (the plan sent,
before its answer), as one process's CPU. On a busy shared host the wall clock, and the
CPU of two processes side by side, follow the other processes' load; this is the work on
the one path, done alone.

    .venv/bin/python bench/newcfg_chain_ab.py [--pairs 40] --against DIR [--repo DIR]

Each launch is `stoker run` of a config file never seen before (`newcfg_ab.new_config`),
its entry point run with `os.fork` answering 0 (and `os.getppid` then its own pid, the
parent it forked from): the process goes on as the planning child would (`launchfirst._fork_ahead`'s child branch: its code cache, its bundle, the config
planned), and an audit hook ends it at the child's first `marshal.dumps` (the plan's
encoding), writing its CPU since the exec (`time.process_time()`). No task is started.
Prints each side's medians, the paired differences (B − A, and in how many pairs B was
lower) and the 1-minute load. Set TMPDIR=/dev/shm to keep the file system out.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import benchlib
from newcfg_ab import new_config

STAMPS = "STOKER_AB_STAMPS"
HOOKED = f"""
import os, sys, time
_forked, _getppid = [], os.getppid
os.fork = lambda: _forked.append(1) or 0  # the planning child's branch, in this process,
os.getppid = lambda: os.getpid() if _forked else _getppid()  # whose parent is itself (`die_with`)
def _hook(event, args):
    if event == 'marshal.dumps':
        cpu = time.process_time()
        fd = os.open(os.environ['{STAMPS}'], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, f'{{cpu:.6f}}'.encode())
        os._exit(0)
sys.addaudithook(_hook)
from executor.cli.start import run
sys.exit(run())
"""


def chain_cpu(root: Path, name: str, repo: Path, launch: int) -> float:
    """One launch of a new config as its own planning child: its CPU from the exec to the
    plan's encoding (s)."""
    work = root / f"{name}-{launch}"
    work.mkdir()
    stamps = work / "stamps"
    config = new_config(work, 1, f"{name}{launch}", work / "ran.fifo")
    subprocess.run([sys.executable, "-c", HOOKED, "run", str(config), "--sandbox", str(work / "sandbox")],
                   cwd=work, env=dict(benchlib.ab_env(root, name, repo), **{STAMPS: str(stamps)}),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, timeout=60,
                   check=True)
    return float(stamps.read_text())


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
    print(benchlib.paired("CPU: exec → the planning fork → the plan encoded", chains[0], chains[1], digits=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
