"""Bench: the supervisor at rest (issues 3, 6 and 14). `stoker run` runs, as a subprocess, a
generated job of N idle `sleep` processes (N = 1, 10, 100, 500); we read its CPU time (the
per-thread schedstat nanoseconds, summed) and its wakeups (context switches summed over all
its threads) over an idle window, and the memory of Stoker's own processes, the supervisor
and its `/bin/sh` watchdog (psutil `memory_full_info`: RSS, PSS and USS of each, summed;
never the task's). Floor: a bare `python -c 'import time; time.sleep(...)'` of the same
interpreter, read the same way, and the same interpreter with the two third-party packages
`stoker run` plans a config with (attrs, pystachio) and with every module it imports for a
kept plan (attrs, no pystachio).

Two phases, so that each figure is fair:
- CPU and wakeups: the N values run CONCURRENTLY, one `stoker run` each, in one window.
  CPU time and context switches are counted per process, and idle processes do not compete
  for the CPU, so running them side by side changes nothing but the wall time.
- Memory and stop time: each N runs ALONE (only this script and nothing else of ours
  alive), because PSS splits shared pages (the interpreter, libraries) among every process
  mapping them, so concurrent Python processes would make each other look smaller. The
  bare-Python floor is read alone too.

Every `stoker run` is stopped with SIGTERM (then SIGKILL of its session after a bounded
wait), and every task pid in its checkpoint is checked dead and killed if not.

Also owns the memory notes bench_mesos.py shares: `footprint_note` (what each import adds to
a fresh sleeping interpreter) and `mapping_note` (a process's PSS by mapping).
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import benchlib
import psutil
from benchlib import (
    MB,
    MIB,
    Memory,
    Row,
    SleepingPython,
    cpu_secs_of,
    memory_of,
    ms,
    progress,
    thread_count,
    wakeups_of,
    workdir,
)

from tests.support.stoker_proc import CONSOLE_ENTRY, StokerProcess, kill_leftovers, live, task_pids

NS = (1, 10, 100, 500)
SETTLE_SECS = 1.0  # after the last RUNNING line, before a window opens or memory is read
START_SECS = 120.0
STOP_SECS = 60.0
RSS_TARGET = 35 * MB  # the supervisor's (issue 3)
PSS_TARGET = 12 * MIB  # the supervisor's and the watchdog's together (issue 14)
CPU_LIMIT_SECS = 0.010  # "≈ 0": at most 10 ms of CPU per 20 s window (0.05 %)
WAKEUP_LIMIT = 2  # "no periodic wakeups": at most 2 context switches per 20 s window
DEPENDENCIES = "import attrs, pystachio"
# What `stoker run` imports to start, after its entry point installed the loader of modules
# without docstrings (`executor.nodocs`) and the attrs code cache:
# all it needs for a kept plan (a first run of a config loads pystachio and the config
# modules on top, to plan it).
IMPORTS = ("from executor import nodocs; nodocs.install(); from executor import codecache; codecache.install('run'); "
           "import executor.cli.main, executor.local.run")
# attrs and the standard modules a running supervisor uses (its sandbox and checkpoint paths
# are pathlib's): the least any supervisor written with attrs holds, before its own code.
STEADY = ("import attrs, logging, json, socket, selectors, subprocess, queue, signal, struct, heapq, "
          "threading, copy, enum, re, pathlib")
_RUNNING = re.compile(r"\bp\d+\[0\]\s+WAITING → RUNNING")


def import_footprints(statements: Sequence[str]) -> list[tuple[str, Memory]]:
    """Memory of a fresh sleeping Python after each statement, one process at a time."""
    out = []
    for statement in statements:
        with SleepingPython(statement) as py:
            out.append((statement, memory_of(py.pid)))
    return out


def footprint_note(what: str, statements: Sequence[str]) -> str:
    """'Import footprint ...: `pass` PSS 5.4 MiB; `import attrs` +1.2 MiB; ...'"""
    results = import_footprints(["pass", *statements])
    base = results[0][1]
    parts = [f"bare `python -c pass` RSS {base.rss / MB:.1f} MB / PSS {base.pss / MIB:.1f} MiB"]
    for statement, mem in results[1:]:
        parts.append(f"`{statement}` RSS {mem.rss / MB:.1f} MB / PSS {mem.pss / MIB:.1f} MiB "
                     f"(+{(mem.pss - base.pss) / MIB:.1f} MiB PSS)")
    return f"Import footprint ({what}; each in a fresh interpreter, alone): " + "; ".join(parts) + "."


def mapping_note(pid: int, what: str) -> str:
    """Where a process's PSS lives: anonymous memory and heap (Python objects, code objects
    of imported modules) versus the interpreter library and other shared objects."""
    groups: dict[str, int] = {}
    for m in psutil.Process(pid).memory_maps(grouped=True):
        path = m.path
        if path in ("[anon]", "[heap]", "") or path.startswith("[anon"):
            key = "anonymous + heap (Python objects, imported modules' code)"
        elif "libpython" in path:
            key = "libpython"
        elif path.endswith(".so") or ".so." in path:
            key = "other shared libraries and extension modules"
        else:
            key = "other mappings"
        groups[key] = groups.get(key, 0) + m.pss
    total = sum(groups.values())
    parts = [f"{k} {v / MIB:.1f} MiB" for k, v in sorted(groups.items(), key=lambda kv: -kv[1])]
    return f"PSS of {what} by mapping ({total / MIB:.1f} MiB in all): " + "; ".join(parts) + "."


def config_text(n: int) -> str:
    return (
        f"jobs = [Job(cluster='local', role='bench', environment='test', name='idle{n}',\n"
        f"            task=Task(processes=[Process(name='p%d' % i, cmdline='sleep 100000')\n"
        f"                                 for i in range({n})],\n"
        f"                      resources=Resources(cpu=0.1, ram=16*MB, disk=16*MB),\n"
        f"                      finalization_wait=5))]\n"
    )


class Supervised:
    """One `stoker run` of n idle sleeps; close() always leaves nothing behind."""

    def __init__(self, root: Path, n: int, tag: str, config: Path | None = None) -> None:
        """A new config file (planned at start), unless `config` names one run before (its
        plan kept: executor/local/plancache.py)."""
        self.n = n
        self.dir = root / f"{tag}-{n}"
        self.dir.mkdir()
        self.sandbox = self.dir / "sandbox"
        if config is None:
            config = self.dir / "idle.aurora"
            config.write_text(config_text(n))
        self.config = config
        self.started_at = time.monotonic()
        self.proc = StokerProcess(["run", str(self.config), "--sandbox", str(self.sandbox)], self.dir,
                                  entry=CONSOLE_ENTRY)
        self.up_secs: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        out = self.proc.stdout()
        return len(_RUNNING.findall(out)) >= self.n and "STARTING → RUNNING" in out

    def poll_up(self) -> bool:
        if self.up_secs is None and self.running():
            self.up_secs = time.monotonic() - self.started_at
        if self.proc.proc.poll() is not None:
            raise RuntimeError(f"stoker run with N={self.n} exited with "
                               f"{self.proc.proc.returncode}: {self.proc.stderr()[-2000:]}")
        return self.up_secs is not None

    def watchdog_pid(self) -> int | None:
        import psutil

        try:
            for child in psutil.Process(self.pid).children():
                if "stoker-watchdog" in " ".join(child.cmdline()):
                    return child.pid
        except psutil.Error:
            return None
        return None

    def stop(self) -> float:
        """SIGTERM, then wait (bounded) for the exit; returns the seconds it took."""
        start = time.monotonic()
        self.proc.signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_SECS)
        except subprocess.TimeoutExpired:
            progress(f"N={self.n}: stoker run did not exit within {STOP_SECS} s of SIGTERM")
        return time.monotonic() - start

    def close(self) -> None:
        self.proc.close()
        pids = task_pids(self.sandbox)
        if live(pids):
            progress(f"N={self.n}: {len(live(pids))} task processes outlived stoker; killing them")
        kill_leftovers(pids)


def wait_all_up(sups: list[Supervised]) -> None:
    deadline = time.monotonic() + START_SECS
    while not all(s.poll_up() for s in sups):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not every stoker run was up within {START_SECS} s")
        time.sleep(0.01)


def sleeps_stop_secs(n: int) -> float:
    """Floor for a stop: posix_spawn n `sleep`s, SIGTERM each and wait for each."""
    sleep = "/bin/sleep" if os.path.exists("/bin/sleep") else "/usr/bin/sleep"
    pids = [os.posix_spawn(sleep, ["sleep", "100000"], os.environ) for _ in range(n)]
    try:
        time.sleep(0.1)  # each has exec'd by now
        start = time.monotonic()
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        for pid in pids:
            os.waitpid(pid, 0)
        pids = []
        return time.monotonic() - start
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def reading(pid: int) -> tuple[float, int]:
    return cpu_secs_of(pid), wakeups_of(pid)


CONTROL = benchlib.waking(1.0)


def idle_window(root: Path, ns: tuple[int, ...], window_secs: float) -> tuple[dict, tuple, tuple]:
    """CPU and wakeups of every N at once, of the floor, and of a control that wakes once a
    second (it shows the method sees periodic wakeups), over one window."""
    sups: list[Supervised] = []
    floor = SleepingPython()
    control = SleepingPython(CONTROL)
    try:
        for n in ns:
            sups.append(Supervised(root, n, "cpu"))
        wait_all_up(sups)
        time.sleep(SETTLE_SECS)
        dogs = {s.n: s.watchdog_pid() for s in sups}
        outputs = {s.n: len(s.proc.stdout()) for s in sups}
        before = {s.n: reading(s.pid) for s in sups}
        dog_before = {n: reading(p) for n, p in dogs.items() if p}
        floor_before = reading(floor.pid)
        control_before = reading(control.pid)
        time.sleep(window_secs)
        after = {s.n: reading(s.pid) for s in sups}
        dog_after = {n: reading(p) for n, p in dogs.items() if p}
        floor_after = reading(floor.pid)
        control_after = reading(control.pid)
        results = {}
        for s in sups:
            quiet = len(s.proc.stdout()) == outputs[s.n]
            cpu = after[s.n][0] - before[s.n][0]
            wake = after[s.n][1] - before[s.n][1]
            dog = None
            if s.n in dog_before and s.n in dog_after:
                dog = (dog_after[s.n][0] - dog_before[s.n][0], dog_after[s.n][1] - dog_before[s.n][1])
            results[s.n] = (cpu, wake, dog, thread_count(s.pid), quiet)
        floor_result = (floor_after[0] - floor_before[0], floor_after[1] - floor_before[1])
        control_result = (control_after[0] - control_before[0], control_after[1] - control_before[1])
        progress("stopping the idle supervisors")
        for s in sups:
            s.proc.signal(signal.SIGTERM)
        for s in sups:
            try:
                s.proc.wait(STOP_SECS)
            except subprocess.TimeoutExpired:
                pass
        return results, floor_result, control_result
    finally:
        floor.close()
        control.close()
        for s in sups:
            s.close()


def solo(root: Path, n: int, tag: str = "mem", config: Path | None = None) -> tuple[Memory, Memory, float, str]:
    """One N alone: (the supervisor's memory once up, the watchdog's, SIGTERM → exit, the
    supervisor's PSS by mapping)."""
    s = Supervised(root, n, tag, config)
    try:
        wait_all_up([s])
        time.sleep(SETTLE_SECS)
        mem = memory_of(s.pid)
        dog_pid = s.watchdog_pid()
        if dog_pid is None:
            raise RuntimeError(f"N={n}: stoker run has no watchdog")
        dog = memory_of(dog_pid)
        maps = mapping_note(s.pid, f"`stoker run` with N={n}")
        stop = s.stop()
        return mem, dog, stop, maps
    finally:
        s.close()


def run(quick: bool) -> tuple[list[Row], list[str]]:
    window = 2.0 if quick else 20.0
    rows: list[Row] = []
    notes: list[str] = []
    with workdir("idle") as root:
        progress("floors: a bare sleeping Python, then with attrs and pystachio, then with "
                 "attrs and the standard modules the supervisor uses, then every module stoker run imports for a "
                 "kept plan, each alone")
        with SleepingPython() as floor:
            floor_mem = memory_of(floor.pid)
        with SleepingPython(DEPENDENCIES) as deps:
            deps_mem = memory_of(deps.pid)
        with SleepingPython(STEADY) as steady:
            steady_mem = memory_of(steady.pid)
        with SleepingPython(IMPORTS) as imports:
            imports_mem = memory_of(imports.pid)

        progress(f"idle window of {window:.0f} s with N = {', '.join(map(str, NS))} concurrently")
        idle, floor_idle, control = idle_window(root, NS, window)
        per = f"per {window:.0f} s"
        floor_text = (f"bare sleeping Python: {floor_idle[0] * 1000:.2f} ms CPU, {floor_idle[1]} "
                      f"wakeups {per} (control, a Python thread waking every 1 s: "
                      f"{control[0] * 1000:.2f} ms, {control[1]} wakeups)")
        scale = 20.0 / window
        for n in NS:
            cpu, wake, dog, threads, quiet = idle[n]
            dog_text = f"; watchdog sh: {dog[0] * 1000:.2f} ms, {dog[1]} wakeups" if dog else ""
            note = "" if quiet else " (the task printed a state change in the window: not idle)"
            rows.append(Row(
                f"Idle supervisor (`stoker run`), N={n} idle sleeps: CPU and wakeups {per}",
                f"{cpu * 1000:.2f} ms CPU, {wake} wakeups ({threads} threads){dog_text}{note}",
                floor_text, "≈ 0: ≤ 10 ms CPU and ≤ 2 wakeups per 20 s",
                max(cpu * scale / CPU_LIMIT_SECS, wake * scale / WAKEUP_LIMIT), 1.0))

        stops: dict[int, float] = {}
        mems: dict[int, Memory] = {}
        floors = (f"bare sleeping Python: PSS {floor_mem.pss / MIB:.2f} MiB; with `{DEPENDENCIES}`: "
                  f"{deps_mem.pss / MIB:.2f} MiB; with attrs and the standard modules the running supervisor "
                  f"uses: {steady_mem.pss / MIB:.2f} MiB; with every module `stoker run` imports for a kept plan: "
                  f"{imports_mem.pss / MIB:.2f} MiB")
        for n in NS:
            progress(f"N={n} alone: memory and stop time")
            mem, dog, stop, maps = solo(root, n)
            stops[n] = stop
            mems[n] = mem
            if n == 100:
                notes.append(maps)
            target = "PSS (supervisor + watchdog) ≤ 12 MiB and RSS ≤ 35 MB at N=100"
            both = mem.pss + dog.pss
            value = max(mem.rss / RSS_TARGET, both / PSS_TARGET) if n == 100 else None
            rows.append(Row(f"Stoker's own memory (`stoker run` and its watchdog, alone), N={n} idle sleeps",
                            f"PSS {both / MIB:.2f} MiB (supervisor {mem.describe()}; watchdog PSS "
                            f"{dog.pss / MIB:.2f} MiB)", floors,
                            target if n == 100 else f"({target})", value, 1.0))
            if n == 100:  # the same file again: its plan kept, no pystachio loaded
                mem, dog, _, _ = solo(root, n, "again", root / f"mem-{n}" / "idle.aurora")
                both = mem.pss + dog.pss
                rows.append(Row(f"Stoker's own memory, N={n}, the same config run again (its plan kept)",
                                f"PSS {both / MIB:.2f} MiB (supervisor {mem.describe()}; watchdog PSS "
                                f"{dog.pss / MIB:.2f} MiB)", floors, target,
                                max(mem.rss / RSS_TARGET, both / PSS_TARGET), 1.0))
        for n in NS:
            rows.append(Row(f"`stoker run` stop, N={n} processes that exit on SIGTERM: "
                            f"SIGTERM → exit (alone)", ms(stops[n], 0),
                            f"SIGTERM + wait of {n} posix_spawned sleeps: {ms(sleeps_stop_secs(n), 1)}",
                            "—"))
        progress("import footprints")
        notes.append(footprint_note("what `stoker run` imports", [
            "import attrs", "import pystachio", DEPENDENCIES, "import executor.cli.main", IMPORTS]))
    per_process = (mems[NS[-1]].uss - mems[NS[0]].uss) / (NS[-1] - NS[0])
    notes.append(f"Supervisor memory per supervised process (USS growth from N={NS[0]} to "
                 f"N={NS[-1]}): {per_process / 1024:.1f} KiB each.")
    notes.append(f"Idle CPU: the N values ran concurrently (one `stoker run` each) in one "
                 f"{window:.0f} s window; memory and stop times were measured with each N alone.")
    return rows, notes


if __name__ == "__main__":
    sys.exit(benchlib.main("bench_idle", run))
