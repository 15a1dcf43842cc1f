"""The supervisor's path to its first RUNNING line, two checkouts interleaved (issue 14,
importcut): a re-run (its plan kept: the early start) and a new config (planned by its
child), each of one process, as `bench_launch.py` launches them.

    .venv/bin/python bench/importcut_ab.py [--pairs 8] [--imports 0] --against DIR [--repo DIR]

Each checkout (`--against`, A; `--repo`, B, this one by default) is compiled and its code
cache warmed first (`benchlib.ab_repos`), keeps its plans in a cache of its own, and runs
its kept config twice unmeasured (planned, then its early start's files warmed). Each pair
then runs A and B (B first in every other pair): a re-run, then a new config (a config file
never seen). For each launch: exec → the process ran its first command (its line on a
FIFO), exec → the `WAITING → RUNNING` line read from `stoker run`'s stdout, and the
supervisor's CPU time when that line was read (every thread's, `benchlib.cpu_secs_of`,
read by the thread that read the line: what the supervisor spent on its path, less
sensitive to the load than the wall clock; a new config's planning child is not in it).
Prints each side's medians, the paired differences (B − A: the median of the per-pair
differences, and in how many pairs B was lower), and the 1-minute load before and after.

`--imports N`: N more pairs of the supervisor's imports alone, `stoker run`'s as
`bench_launch.PLAIN_IMPORTS` names them (`executor.cli.main`, `executor.local.run`), each in a
fresh interpreter with the docstring-free loader and the code cache installed as the entry
point installs them: the CPU time they take (`time.process_time`), a figure whose noise is
the machine's caches, not the run queue.

Every `stoker run` is stopped with SIGTERM (`bench_launch.stop_run`) and its task's pids
checked dead in a `finally`; the work directory is removed.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import benchlib
from bench_launch import ENTRY_POINTS, RUNNING, WAIT_SECS, Ran, config_text, stoker_argv, stop_run

# as `bench_launch.ENTRY_POINTS`, with `stoker run`'s code bundle (`executor/codebundle.py`) where the checkout has it,
# and the modules it defers deferred as the entry point does (`executor/cli/start.py`: after the bundle, before
# `codecache`, whose `pathlib` imports three of them; undeferred, a bundle without them read slower here only)
IMPORTS = ("import time\nstart = time.process_time()\nfrom executor import nodocs\nnodocs.install()\n"
           "import os\nif os.path.exists(os.path.join(os.path.dirname(nodocs.__file__), 'codebundle.py')):\n"
           "    from executor import codebundle\n    codebundle.install()\n"
           "from executor import deferred\ndeferred.defer()\n" + ENTRY_POINTS["stoker run"] +
           "\nprint(time.process_time() - start, flush=True)\nimport os\nos._exit(0)")


def import_cpu_secs(repo: Path) -> float:
    """CPU time of `stoker run`'s imports in a fresh interpreter of checkout `repo`."""
    out = subprocess.run([sys.executable, "-c", IMPORTS], check=True, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(repo)), stdin=subprocess.DEVNULL,
                         cwd=repo).stdout  # (`-c` puts the working directory first on the path)
    return float(out.strip().splitlines()[-1])


class FirstLine:
    """Reads a child's stdout on a thread: when its first RUNNING line arrived, and the
    child's CPU time then; drains the rest so the child never blocks on a full pipe."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.at: float | None = None
        self.cpu: float | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if self.at is None and RUNNING in line:
                self.at = time.monotonic()
                self.cpu = benchlib.cpu_secs_of(proc.pid)
                self._done.set()
        self._done.set()

    def wait(self) -> tuple[float, float]:
        if not self._done.wait(WAIT_SECS) or self.at is None or self.cpu is None:
            raise RuntimeError(f"no RUNNING line within {WAIT_SECS} s")
        return self.at, self.cpu

    def join(self) -> None:
        self._thread.join(10)


class Side:
    """One checkout: its own plan cache and registry, its kept config and FIFO."""

    def __init__(self, root: Path, name: str, repo: Path) -> None:
        self.root, self.name = root, name
        self.env = benchlib.ab_env(root, name, repo)
        self.fifo = root / f"{name}.fifo"
        os.mkfifo(self.fifo, 0o600)
        self.kept = root / f"{name}-kept.aurora"
        self.kept.write_text(config_text(1, self.fifo))
        self.launches = 0

    def launch(self, new: bool) -> tuple[float, float, float]:
        """One `stoker run` of the kept config (or, `new`, of a config file never seen):
        exec → ran, exec → RUNNING line, CPU at that line (s)."""
        self.launches += 1
        work = self.root / f"{self.name}-{self.launches}"
        work.mkdir()
        config = self.kept
        if new:
            config = work / "new.aurora"
            config.write_text(config_text(1, self.fifo) + f"# {self.name} {self.launches}\n")
        ran = Ran(self.fifo, 1)
        start = time.monotonic()
        proc = subprocess.Popen([*stoker_argv(), "run", str(config), "--sandbox", str(work / "sandbox")],
                                cwd=work, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        line = FirstLine(proc)
        try:
            ran_at = ran.wait(f"{self.name}: the process running") - start
            line_at, cpu = line.wait()
            return ran_at, line_at - start, cpu
        finally:
            ran.close()
            stop_run(proc, work / "sandbox", line.join, self.name)


def main() -> int:
    parser = benchlib.ab_parser("bench/importcut_ab.py", pairs=8)
    parser.add_argument("--imports", type=int, default=0, help="pairs of the imports alone (0: none)")
    args = parser.parse_args()
    repos = benchlib.ab_repos(args)
    names = [f"{kind} {what}" for kind in ("re-run", "new config")
             for what in ("exec → ran", "exec → RUNNING line", "CPU at the line")]
    figures: dict[str, list[list[float]]] = {name: [[], []] for name in names}
    loads = [os.getloadavg()[0]]
    with benchlib.workdir("importcut-ab") as root:
        sides = [Side(root, "A", repos[0]), Side(root, "B", repos[1])]
        for side in sides:  # planned, then a re-run: its plan kept, its early start's files warmed
            side.launch(False)
            side.launch(False)
        for i in range(args.pairs):
            for kind, new in (("re-run", False), ("new config", True)):
                for j in ((0, 1) if i % 2 == 0 else (1, 0)):
                    values = sides[j].launch(new)
                    for what, value in zip(("exec → ran", "exec → RUNNING line", "CPU at the line"), values):
                        figures[f"{kind} {what}"][j].append(value)
            loads.append(os.getloadavg()[0])
    if args.imports:
        figures["`stoker run`'s imports, CPU"] = [[], []]
        for i in range(args.imports):
            for j in ((0, 1) if i % 2 == 0 else (1, 0)):
                figures["`stoker run`'s imports, CPU"][j].append(import_cpu_secs(repos[j]))
        loads.append(os.getloadavg()[0])
    print(f"A = {repos[0]}, B = {repos[1]}; {args.pairs} pairs; 1-minute load {min(loads):.1f}-{max(loads):.1f}")
    for name, (a, b) in figures.items():
        if not a:  # --pairs 0: the imports alone
            continue
        print(benchlib.paired(name, a, b, digits=2 if "CPU" in name else 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
