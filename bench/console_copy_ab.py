"""A `destination='both'` logger's console copies on a terminal, by experiment: what they
cost `stoker run` and the task (docs/benchmarks.md, "Console copies on a terminal"). Not
part of `make bench`: an A/B of source trees, interleaved.

    .venv/bin/python bench/console_copy_ab.py NAME=TREE,NAME=TREE[,...] [--kinds plain,colour,random]
                                              [--pairs 8] [--mb 200]

Each round runs, for each kind and each tree (the order reversed every other round),
`stoker run` of that tree on a pseudo-terminal (`os.forkpty`: its session's controlling
terminal, its live view on) whose other end this process reads as fast as it can, with one
process whose logger is `both` writing MB megabytes as fast as it can: `plain` log lines,
`colour` ones (two SGR escapes a line), `random` bytes (most of them not UTF-8). Per run:
the writer's own time for its writes (a pump held up fills the pipe and holds the task
up), `stoker run`'s CPU (its threads', from /proc) once the writer is done and at its last
sample, and the bytes that reached the terminal. Prints the medians per tree and in how
many rounds each tree was lower than the first.

Run `python -m executor.codecache` in each tree first (PYTHONDONTWRITEBYTECODE=1 here).
Every sandbox and file is made under one temporary directory, removed at the end.
"""
from __future__ import annotations

import argparse
import os
import select
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

WRITER = """
import os, random, sys, time
kind, size, done = sys.argv[1], int(sys.argv[2]) << 20, sys.argv[3]
line = b"2026-12-02 10:59:01,123 INFO web.handler GET /api/v1/items?id=42 200 0.003s user=alice\\n"
if kind == "plain":
    chunk = line * (65536 // len(line))
elif kind == "colour":
    chunk = (b"\\x1b[32mINFO\\x1b[0m " + line) * (65536 // (len(line) + 14))
else:
    chunk = random.Random(7).randbytes(65536)
written, start = 0, time.monotonic()
while written < size:
    written += os.write(1, chunk)
with open(done + ".tmp", "w") as f:
    f.write(f"{time.monotonic() - start:.4f}")
os.rename(done + ".tmp", done)
"""
CONFIG = """
main = Process(name='main', cmdline='{python} {writer} {kind} {mb} {done}', logger=Logger(destination='both'))
jobs = [Job(cluster='local', role='me', environment='test', name='copies',
            task=Task(processes=[main], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
"""
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_secs(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS


def one_run(tree: str, config: Path, work: Path) -> tuple[float, float, float, int]:
    """(writer secs, stoker CPU at the writer's end, stoker CPU last seen, terminal bytes)."""
    sandbox, done = work / "sandbox", work / "done"
    shutil.rmtree(sandbox, ignore_errors=True)
    done.unlink(missing_ok=True)
    env = dict(os.environ, PYTHONPATH=tree, TERM="xterm", STOKER_ROOT=str(work / "registry"))
    pid, fd = os.forkpty()
    if pid == 0:
        try:
            os.chdir(tree)
            os.execve(sys.executable, [sys.executable, "-m", "executor", "run", str(config),
                                       "--sandbox", str(sandbox)], env)
        finally:
            os._exit(127)
    seen, at_done, last = 0, None, 0.0
    try:
        while True:
            if select.select([fd], [], [], 0.05)[0]:
                try:
                    data = os.read(fd, 1 << 16)
                except OSError:  # every slave side closed: stoker run is done
                    break
                if not data:
                    break
                seen += len(data)
            last = cpu_secs(pid) or last
            if at_done is None and done.exists():
                at_done = last
    finally:
        os.close(fd)
        os.waitpid(pid, 0)
    return float(done.read_text()), at_done if at_done is not None else last, last, seen


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("trees", help="NAME=TREE,NAME=TREE,...: the first is the one compared against")
    parser.add_argument("--kinds", default="plain,colour,random")
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--mb", type=int, default=200)
    args = parser.parse_args()
    trees = dict(part.split("=", 1) for part in args.trees.split(","))
    kinds = args.kinds.split(",")
    work = Path(tempfile.mkdtemp(prefix="stoker-console-copy-"))
    try:
        (work / "writer.py").write_text(WRITER)
        configs = {}
        for kind in kinds:
            configs[kind] = work / f"{kind}.aurora"
            configs[kind].write_text(CONFIG.format(python=sys.executable, writer=work / "writer.py", kind=kind,
                                                   mb=args.mb, done=work / "done"))
        print(f"load at start {os.getloadavg()[0]:.2f}")
        results: dict[tuple[str, str], list[tuple[float, float, float, int]]] = {}
        for round_ in range(args.pairs):
            for kind in kinds:
                for name in list(trees) if round_ % 2 == 0 else list(trees)[::-1]:
                    results.setdefault((name, kind), []).append(one_run(trees[name], configs[kind], work))
        print(f"load at end {os.getloadavg()[0]:.2f}")
        report(results, list(trees), kinds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(results: dict[tuple[str, str], list[tuple[float, float, float, int]]], names: list[str],
           kinds: list[str]) -> None:
    for kind in kinds:
        first = results[(names[0], kind)]
        for index, what in ((0, "writer secs"), (1, "stoker CPU secs at its end"), (2, "stoker CPU secs")):
            medians = "  ".join(f"{name} {statistics.median(r[index] for r in results[(name, kind)]):.3f}"
                                for name in names)
            lower = "  ".join(f"{name} lower in {sum(o[index] < f[index] for f, o in zip(first, results[(name, kind)]))}"
                              f" of {len(first)}" for name in names[1:])
            print(f"{kind:7s} {what:27s} {medians}   ({lower})")
        print(f"{kind:7s} {'terminal bytes':27s} " + "  ".join(
            f"{name} {statistics.median(r[3] for r in results[(name, kind)]):.0f}" for name in names))


if __name__ == "__main__":
    main()
