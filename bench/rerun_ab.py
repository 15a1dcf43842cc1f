"""A re-run's exec → 1 running, two checkouts interleaved (issue 14): an A/B of the early
start's path, as `bench_launch.py` measures it, with the CPU that leads to the spawn.

    .venv/bin/python bench/rerun_ab.py [--pairs 12] --against DIR [--repo DIR]

Each checkout (`--against`, A; `--repo`, B, this one by default) is compiled and its code
cache warmed first (`benchlib.compile_bytecode`), keeps its plans in a cache of its own,
and runs a config of one process twice unmeasured (planned, then its early start's files
warmed). Then each pair runs A and B (B first in every other pair), two launches each:
- wall: `bench_launch.launch`'s command (`python3 -c` running the console script's two
  lines), exec → the process ran its first command (its line on the FIFO);
- CPU: the same launch with an audit hook installed before the entry point, which reads
  `time.process_time()` (user + system of the `stoker run` process since its exec) as the
  first run's `posix_spawn` begins (the second spawn: the watchdog's comes first), and the
  wall clock then. The hook is called for every audit event, on both sides alike, so these
  figures are a little above what an unhooked launch spends.
Prints each side's medians, the paired differences (B − A: the median of the per-pair
differences, and in how many pairs B was lower), and the 1-minute load before and after
every pair. CPU is the figure to read on a busy host: the wall clock follows the load.

Every `stoker run` is stopped with SIGTERM (its session SIGKILLed if it overstays,
`bench_launch.stop_run`) and its task's pids checked dead in a `finally`.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import benchlib
from bench_launch import RUNNING, Lines, Ran, config_text, stop_run

from tests.support.stoker_proc import CONSOLE_ENTRY

STAMPS = "STOKER_AB_STAMPS"
HOOKED = f"""
import os, sys, time
_spawns = [0]
def _hook(event, args):
    if event == 'os.posix_spawn':
        _spawns[0] += 1
        if _spawns[0] == 2:  # the first run's: the watchdog's is the first
            cpu, wall = time.process_time(), time.monotonic()
            fd = os.open(os.environ['{STAMPS}'], os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            os.write(fd, f'{{wall:.6f}} {{cpu:.6f}}\\n'.encode())
            os.close(fd)
sys.addaudithook(_hook)
from executor.cli.start import run
sys.exit(run())
"""


class Side:
    """One checkout: its own plan cache and registry, its kept config and FIFO."""

    def __init__(self, root: Path, name: str, repo: Path) -> None:
        self.root, self.name, self.repo = root, name, repo
        self.fifo = root / f"{name}.fifo"
        os.mkfifo(self.fifo, 0o600)
        self.config = root / f"{name}.aurora"
        self.config.write_text(config_text(1, self.fifo))
        self.env = benchlib.ab_env(root, name, repo)
        self.launches = 0

    def launch(self, entry: str, stamps: Path | None = None) -> float:
        """One `stoker run` of the kept config: its start (monotonic) and exec → ran (s)."""
        self.launches += 1
        work = self.root / f"{self.name}-{self.launches}"
        work.mkdir()
        env = dict(self.env, **({STAMPS: str(stamps)} if stamps is not None else {}))
        ran = Ran(self.fifo, 1)
        start = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-c", entry, "run", str(self.config), "--sandbox",
                                 str(work / "sandbox")], cwd=work, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True)
        lines = Lines(proc, RUNNING, 1)
        try:
            return ran.wait(f"{self.name}: the process running") - start
        finally:
            ran.close()
            stop_run(proc, work / "sandbox", lines.join)

    def spawn_cpu(self) -> tuple[float, float]:
        """(CPU to the first run's spawn, exec → that spawn), in seconds, of a hooked launch."""
        stamps = self.root / f"{self.name}.stamps"
        stamps.write_text("")
        start = time.monotonic()
        self.launch(HOOKED, stamps)
        wall, cpu = map(float, stamps.read_text().split())
        return cpu, wall - start


def main() -> int:
    parser = benchlib.ab_parser("bench/rerun_ab.py", pairs=12)
    args = parser.parse_args()
    repos = benchlib.ab_repos(args)
    plain = CONSOLE_ENTRY[1]
    figures: dict[str, list[list[float]]] = {"wall exec → ran": [[], []], "CPU → first run's spawn": [[], []],
                                             "hooked wall exec → first run's spawn": [[], []]}
    loads = [os.getloadavg()[0]]
    with benchlib.workdir("rerun-ab") as root:
        sides = [Side(root, "A", repos[0]), Side(root, "B", repos[1])]
        for side in sides:  # planned, then a re-run: its plan kept, its early start's files warmed
            side.launch(plain)
            side.launch(plain)
        for i in range(args.pairs):
            for j in ((0, 1) if i % 2 == 0 else (1, 0)):
                figures["wall exec → ran"][j].append(sides[j].launch(plain))
                cpu, wall = sides[j].spawn_cpu()
                figures["CPU → first run's spawn"][j].append(cpu)
                figures["hooked wall exec → first run's spawn"][j].append(wall)
            loads.append(os.getloadavg()[0])
    print(f"A = {repos[0]}, B = {repos[1]}; {args.pairs} pairs; 1-minute load {min(loads):.1f}-{max(loads):.1f}")
    for name, (a, b) in figures.items():
        print(benchlib.paired(name, a, b, digits=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
