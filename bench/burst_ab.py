"""The start burst, by experiment (issue 14): other orders of a start of N runs' log files and
spawns, and where a re-run's exec → N running goes. Not part of `make bench`: an A/B to run
again on a quiet machine before building any of these orders into the supervisor
(docs/design.md §5, "A start's batch").

    .venv/bin/python bench/burst_ab.py orders [ROUNDS] [--dir DIR] [--orders A,B,...]
    .venv/bin/python bench/burst_ab.py timeline [ROUNDS]
    .venv/bin/python bench/burst_ab.py floor [ROUNDS] [--dir DIR] [--no-cgroup-too]

`orders`: N `bash -c CMD` started from this process by `posix_spawn`, each with what the
sandbox layout asks before it (`.logs/pI/0/stdout` and `stderr`, made as
`spawn.LogRoot.run_dir` and `spawn.open_stdio` make them: one lstat of `.logs`, each level
made then opened relative to the one above, the files O_EXCL|O_NOFOLLOW), in these orders,
each round running every order once (rotated), each in a fresh directory under DIR
(default: a bench work directory under the system's temporary directory):
  sequential  every run's files first, then the spawns back to back (what the supervisor's
              `spawn_many` and the early start do);
  preparer    a second thread makes each run's files while this one spawns the runs ready;
  split       the files first, then the spawns split over two threads;
  paths       as sequential, each run's creates by paths relative to `.logs` (4 calls, not 9);
  tmpfile     as sequential, each log file by O_TMPFILE, then linked to its name.
Prints each order's median (owner's clock: first create → last spawn returned) and its paired
difference against sequential (the median of the per-round differences, and in how many
rounds it was faster).

`timeline`: a re-run (its plan kept: the early start) of `stoker run` of N processes,
exec → each ran its first command, as `bench_launch.py` measures it, with audit-hook stamps
in the launched interpreter (its first line; the early start's module imported; the
watchdog's spawn, the first, 65th and last run's spawn, each as its call begins;
`executor.cli.main` imported),
interleaved with the C floor with log files (`bench/floor_spawner.c`). Prints each launch's
stamps, then the medians.

`floor`: the in-process start of N (`bench_supervisor.start_n`: owner created → Nth fork)
beside the C floor in the same directory (a bench work directory under DIR, by default under
the system's temporary directory), each once a round (the owner first in every other round),
nothing deleted between them (what a create costs there follows what was deleted near it just
before); with --no-cgroup-too, a third start each round without a cgroup (STOKER_CGROUPS=off:
no move into the task's cgroup to wait for): `bench/floor_spawner.c`
spawning N `bash -c CMD` without and with each run's log directory and files (exec → its line
saying they were spawned: its own exec included), and the owner's start with stamps
(`benchlib.Probe`): its first step's log files (`RunLogs.ready_ahead`), its first and Nth
fork. Prints each round, then the medians.

Every process started is killed and waited for, every directory removed, in a `finally`.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import benchlib

N = 100
CMD = ["/bin/bash", "-c", "sleep 1000"]
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
Files = tuple[int, int]


# ---- one run's log directory and files ----


def made_as_stoker(logs: int, i: int) -> Files:
    """The supervisor's calls: lstat `.logs`, mkdir+open `pI`, mkdir+open `0`, two creates, two closes."""
    os.lstat(".", dir_fd=logs)
    os.mkdir(f"p{i}", 0o755, dir_fd=logs)
    outer = os.open(f"p{i}", DIR_FLAGS, dir_fd=logs)
    try:
        os.mkdir("0", 0o755, dir_fd=outer)
        run = os.open("0", DIR_FLAGS, dir_fd=outer)
    finally:
        os.close(outer)
    try:
        return os.open("stdout", FILE_FLAGS, 0o644, dir_fd=run), os.open("stderr", FILE_FLAGS, 0o644, dir_fd=run)
    finally:
        os.close(run)


def made_by_paths(logs: int, i: int) -> Files:
    """The four creates alone, by paths relative to `.logs` (no level opened)."""
    os.mkdir(f"p{i}", 0o755, dir_fd=logs)
    os.mkdir(f"p{i}/0", 0o755, dir_fd=logs)
    return (os.open(f"p{i}/0/stdout", FILE_FLAGS, 0o644, dir_fd=logs),
            os.open(f"p{i}/0/stderr", FILE_FLAGS, 0o644, dir_fd=logs))


def made_by_tmpfile(logs: int, i: int) -> Files:
    """The directories as the supervisor makes them, each file by O_TMPFILE then linkat."""
    os.mkdir(f"p{i}", 0o755, dir_fd=logs)
    os.mkdir(f"p{i}/0", 0o755, dir_fd=logs)
    run = os.open(f"p{i}/0", DIR_FLAGS, dir_fd=logs)
    try:
        fds = []
        for name in ("stdout", "stderr"):
            fds.append(os.open(".", os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o644, dir_fd=run))
            os.link(f"/proc/self/fd/{fds[-1]}", name, dst_dir_fd=run)
        return fds[0], fds[1]
    finally:
        os.close(run)


def spawn(files: Files) -> int:
    out, err = files
    try:
        return os.posix_spawn(CMD[0], CMD, os.environ, setsid=True,
                              file_actions=[(os.POSIX_SPAWN_DUP2, out, 1), (os.POSIX_SPAWN_DUP2, err, 2)])
    finally:
        os.close(out)
        os.close(err)


# ---- the orders: each starts N runs under `.logs` (an open fd), into `pids` ----


def sequential(logs: int, pids: list[int], make: Callable[[int, int], Files] = made_as_stoker) -> None:
    ready = [make(logs, i) for i in range(N)]
    pids.extend(spawn(files) for files in ready)


def preparer(logs: int, pids: list[int]) -> None:
    made: queue.SimpleQueue[Files | None] = queue.SimpleQueue()

    def prepare() -> None:
        try:
            for i in range(N):
                made.put(made_as_stoker(logs, i))
        finally:
            made.put(None)

    thread = threading.Thread(target=prepare, name="burst-preparer")
    thread.start()
    try:
        while (files := made.get()) is not None:
            pids.append(spawn(files))
    finally:
        thread.join()


def split(logs: int, pids: list[int]) -> None:
    ready = [made_as_stoker(logs, i) for i in range(N)]
    theirs: list[int] = []
    thread = threading.Thread(target=lambda: theirs.extend(spawn(f) for f in ready[N // 2:]), name="burst-split")
    thread.start()
    try:
        pids.extend(spawn(files) for files in ready[:N // 2])
    finally:
        thread.join()
        pids.extend(theirs)


ORDERS: dict[str, Callable[[int, list[int]], None]] = {
    "sequential": sequential,
    "preparer": preparer,
    "split": split,
    "paths": lambda logs, pids: sequential(logs, pids, made_by_paths),
    "tmpfile": lambda logs, pids: sequential(logs, pids, made_by_tmpfile),
}


def one_start(order: Callable[[int, list[int]], None], root: Path) -> float:
    sandbox = Path(tempfile.mkdtemp(dir=root))
    (sandbox / ".logs").mkdir()
    logs = os.open(sandbox / ".logs", DIR_FLAGS)
    pids: list[int] = []
    try:
        start = time.monotonic()
        order(logs, pids)
        return time.monotonic() - start
    finally:
        os.close(logs)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        for pid in pids:
            os.waitpid(pid, 0)
        shutil.rmtree(sandbox)


def orders(rounds: int, base: str | None, names: list[str]) -> None:
    took: dict[str, list[float]] = {name: [] for name in names}
    with benchlib.workdir("burst") as default:
        root = Path(tempfile.mkdtemp(dir=base)) if base else default
        try:
            for r in range(rounds):
                for name in names[r % len(names):] + names[:r % len(names)]:
                    took[name].append(one_start(ORDERS[name], root))
        finally:
            if base:
                shutil.rmtree(root, ignore_errors=True)
    for name in names:
        diffs = [b - a for a, b in zip(took["sequential"], took[name])]
        print(f"{name:11s} median {benchlib.ms(statistics.median(took[name]), 1)} "
              f"(min {benchlib.ms(min(took[name]), 1)}); against sequential "
              f"{statistics.median(diffs) * 1e3:+.1f} ms, faster in {sum(d < 0 for d in diffs)} of {rounds}")


# ---- timeline ----

STAMPED = r"""
import os, sys, time
_out = os.open(os.environ['BURST_STAMPS'], os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
_spawns = [0]
_NAMES = {1: 'watchdog spawn', 2: 'run 1 spawn', 66: 'run 65 spawn', 101: 'run 100 spawn'}
def _stamp(what):
    os.write(_out, f'{time.monotonic():.6f} {what}\n'.encode())
def _hook(event, args):
    if event == 'os.posix_spawn':
        _spawns[0] += 1
        if _spawns[0] in _NAMES:
            _stamp(_NAMES[_spawns[0]])
    elif event == 'import' and args[0] in ('executor.cli.launch', 'executor.cli.main'):
        _stamp('import ' + args[0])
_stamp('interpreter up')
sys.addaudithook(_hook)
from executor.cli.start import run
sys.exit(run())
"""


def timeline(rounds: int) -> None:
    import bench_launch as launch  # its launch and floors, measured the same way

    stamps = Path(tempfile.mkstemp(prefix="burst-stamps-")[1])
    os.environ["BURST_STAMPS"] = str(stamps)
    launch.stoker_argv = lambda: [sys.executable, "-c", STAMPED]
    benchlib.compile_bytecode()
    seen: list[dict[str, float]] = []
    try:
        with benchlib.private_registry(), benchlib.workdir("burst-timeline") as root:
            c_binary = launch.build_c_spawner(root)
            fifo = root / "ran.fifo"
            os.mkfifo(fifo, 0o600)
            kept = root / "kept.aurora"
            kept.write_text(launch.config_text(N, fifo))
            launch.launch(root, N, "planning", fifo, kept)  # unmeasured: its plan is kept
            for i in range(rounds):
                row = {"C floor with log files": launch.spawner(N, fifo, c_binary, root / f"floor-{i}")[0]
                       } if c_binary is not None else {}
                stamps.write_text("")
                start = time.monotonic()
                row[f"all {N} ran"] = launch.launch(root, N, f"again-{i}", fifo, kept)[0]
                for line in stamps.read_text().splitlines():
                    at, what = line.split(" ", 1)
                    row.setdefault(what, float(at) - start)
                seen.append(row)
                print(json.dumps({k: round(v * 1e3, 1) for k, v in row.items()}), flush=True)
    finally:
        stamps.unlink(missing_ok=True)
    print("medians (ms from exec):", json.dumps({
        k: round(statistics.median(r[k] for r in seen if k in r) * 1e3, 1) for k in seen[0]}))


# ---- floor ----


def c_floor(binary: Path, logs: Path | None) -> float:
    """exec → `bench/floor_spawner.c`'s line saying its N runs were spawned (with `logs`, a new
    directory: each run's log directory and files made first); its runs killed after."""
    import subprocess

    argv = [str(binary), str(N), " ".join(CMD[2:])] + ([str(logs)] if logs is not None else [])
    if logs is not None:
        logs.mkdir()
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdin is not None
    try:
        line = proc.stdout.readline()
        took = time.monotonic() - start
    finally:
        proc.stdin.close()  # it kills and reaps its runs, then exits
        proc.wait(60)
        proc.stdout.close()
    if line.strip() != b"running":
        raise RuntimeError(f"the C floor said {line!r}")
    return took


def owner_start(probe: benchlib.Probe, sandbox: Path, cgroups: str = "auto") -> dict[str, float]:
    """One in-process start of N (`bench_supervisor.start_n`), with `probe`'s stamps: its
    first step's files, its first and Nth fork, its Nth RUNNING."""
    import bench_supervisor

    probe.calls.clear()
    start = time.monotonic()
    to_fork, to_report, _, (created, _) = bench_supervisor.start_n(sandbox, N, cgroups)
    files = probe.between(start, start + 60, "files")
    forks = probe.between(start, start + 60, "fork")
    who = "owner" if cgroups == "auto" else "owner, no cgroup"
    return {f"{who}: files made": sum(e - s for s, e in files), f"{who}: created → 1st fork": forks[0][0] - created,
            f"{who}: 1st → {N}th fork": forks[-1][1] - forks[0][0], f"{who}: created → {N}th fork": to_fork,
            f"{who}: → {N}th RUNNING": to_report}


def floor(rounds: int, base: str | None, no_cgroup_too: bool) -> None:
    import bench_launch as launch

    from executor.procs import runlogs, spawn

    probe = benchlib.Probe()
    probe.wrap(runlogs.RunLogs, "ready_ahead", "files")
    probe.wrap(spawn, "fork_run", "fork")
    seen: list[dict[str, float]] = []
    try:
        with benchlib.workdir("burst-floor") as scratch:
            root = Path(tempfile.mkdtemp(dir=base)) if base else scratch
            try:
                binary = launch.build_c_spawner(root)
                if binary is None:
                    raise SystemExit("no C compiler: no C floor")
                for i in range(rounds):
                    row: dict[str, float] = {}
                    sides = ["C", "owner"] + (["off"] if no_cgroup_too else [])
                    for side in sides[i % len(sides):] + sides[:i % len(sides)]:
                        if side == "C":
                            row["C spawns"] = c_floor(binary, None)
                            row["C files + spawns"] = c_floor(binary, root / f"c-{i}")
                        else:
                            row.update(owner_start(probe, root / f"{side}-{i}", "auto" if side == "owner" else "off"))
                    seen.append(row)
                    print(json.dumps({k: round(v * 1e3, 1) for k, v in row.items()}, ensure_ascii=False), flush=True)
            finally:
                if base:
                    shutil.rmtree(root, ignore_errors=True)
    finally:
        probe.restore()
    print(f"medians (ms), load {os.getloadavg()[0]:.2f}:", json.dumps(
        {k: round(statistics.median(r[k] for r in seen) * 1e3, 1) for k in seen[0]}, ensure_ascii=False))


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/burst_ab.py")
    parser.add_argument("what", choices=("orders", "timeline", "floor"))
    parser.add_argument("rounds", type=int, nargs="?", default=12)
    parser.add_argument("--dir", help="orders, floor: where each start's sandbox is made")
    parser.add_argument("--no-cgroup-too", action="store_true", help="floor: a start without a cgroup too")
    parser.add_argument("--orders", default=",".join(ORDERS), help="orders: which, comma-separated (sequential first)")
    args = parser.parse_args()
    if args.what == "orders":
        orders(args.rounds, args.dir, ["sequential"] + [o for o in args.orders.split(",") if o != "sequential"])
    elif args.what == "floor":
        floor(args.rounds, args.dir, args.no_cgroup_too)
    else:
        timeline(args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
