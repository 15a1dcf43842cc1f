"""`stoker executor`'s start, two checkouts interleaved (issue 14, gcstart): under the agent
simulator on 127.0.0.1, as `bench_mesos.py` runs it, its CPU time when the agent read its
TASK_RUNNING, the LAUNCH → TASK_STARTING and → TASK_RUNNING wall times, and its USS once
the task runs; with `--tls`, against an agent with libprocess SSL on that requires a client
certificate, as `bench_mesos.py`'s TLS rows.

    .venv/bin/python bench/executor_ab.py [--pairs 8] [--tls] --against DIR [--repo DIR]

Each checkout (`--against`, A; `--repo`, B, this one by default) is compiled and its code
cache warmed first (`benchlib.ab_repos`). Each pair runs a fresh executor of A and of B (B
first in every other pair), each launched with one task of one `sleep` and no health check;
the executor's CPU (every thread's, `benchlib.cpu_secs_of`) is read as soon as the
simulator has its TASK_RUNNING, and its USS `bench_mesos.SETTLE_SECS` later. Prints each
side's medians, the paired differences (B − A: the median of the per-pair differences, and
in how many pairs B was lower), and the 1-minute load before and after.

Every simulator is closed (it SIGKILLs the executor's process group) and every task pid of
the checkpoint is checked dead in a `finally`.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import benchlib
from bench_mesos import (
    EXITS_ON_SIGTERM,
    SETTLE_SECS,
    STOKER,
    WAIT_SECS,
    agent_for,
    document,
    quiet_connection_resets,
)

from tests.support.agent_sim import make_task_info
from tests.support.stoker_proc import kill_leftovers, task_pids


def one(root: Path, tag: str, repo: Path, data: bytes, tls: bool) -> dict[str, float]:
    """One executor of checkout `repo`, its task started: the figures of the docstring."""
    sandbox = root / tag
    sandbox.mkdir()
    sim, env = agent_for(sandbox, repo, tls)
    try:
        proc = sim.launch_executor(STOKER, cwd=sandbox, env_overrides=env)
        sim.wait_subscribed(WAIT_SECS)
        launch_at = time.monotonic()
        sim.launch(make_task_info("task-1", data))
        starting = sim.wait_for_state("task-1", "TASK_STARTING", WAIT_SECS).at - launch_at
        running = sim.wait_for_state("task-1", "TASK_RUNNING", WAIT_SECS).at - launch_at
        cpu = benchlib.cpu_secs_of(proc.pid)
        time.sleep(SETTLE_SECS)
        uss = benchlib.memory_of(proc.pid).uss
        return {"LAUNCH → TASK_STARTING ms": starting * 1000, "LAUNCH → TASK_RUNNING ms": running * 1000,
                "CPU at TASK_RUNNING ms": cpu * 1000, "USS KiB": uss / 1024}
    finally:
        pids = task_pids(sandbox)
        sim.close()
        kill_leftovers(pids)


def main() -> int:
    parser = benchlib.ab_parser("bench/executor_ab.py", pairs=8)
    parser.add_argument("--tls", action="store_true", help="an agent with libprocess SSL on")
    args = parser.parse_args()
    repos = benchlib.ab_repos(args)
    quiet_connection_resets()
    figures: dict[str, list[list[float]]] = {}
    loads = [os.getloadavg()[0]]
    with benchlib.workdir("executor-ab") as root:
        data = document(root, EXITS_ON_SIGTERM)
        for j in (0, 1):  # each side once unmeasured
            one(root, f"warm-{j}", repos[j], data, args.tls)
        for i in range(args.pairs):
            for j in ((0, 1) if i % 2 == 0 else (1, 0)):
                for name, value in one(root, f"{i}-{j}", repos[j], data, args.tls).items():
                    figures.setdefault(name, [[], []])[j].append(value)
    loads.append(os.getloadavg()[0])
    benchlib.print_ab(repos, args.pairs, loads, figures)
    return 0


if __name__ == "__main__":
    with benchlib.private_registry():  # never the host's registry (/var/run/stoker for root)
        sys.exit(main())
