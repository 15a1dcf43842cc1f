"""Bench: start-up (issue 14). How long `stoker run` takes from its exec to N processes
running and to its N RUNNING lines (N = 1, 10, 100, 500), what each entry point's imports
cost, and where the launch time goes, next to the floors of the same run:

- `python3 -c pass`: the interpreter's own start (the venv's interpreter, `site` included);
- a minimal Python supervisor: the same interpreter, started the same way, that
  `posix_spawn`s N `/bin/bash -c CMD` (each in its own session) and prints one line: what
  any supervisor written in Python pays, whatever it does besides;
- the same in C (`bench/floor_spawner.c`, built with the machine's `cc -O2` into the bench's
  work directory; the row says so when there is no compiler): what a supervisor written in C
  pays on this machine. For N=100 the children's own start (bash, then `sleep`) keeps both
  cores busy, so this is the machine's floor for any supervisor;
- the C spawner again, with what the sandbox layout asks of any supervisor that keeps
  Thermos' logs: each run's directory (`pI/0`, two mkdirs) and its `stdout` and `stderr`
  files made before its spawn, on the file system the bench's sandboxes are on (named in a
  note, with what those files cost there);
- `python3 -c 'import attrs, pystachio'`: the interpreter with the two third-party packages
  `stoker run` plans a new config with (the Aurora schema is pystachio's; a re-run of a
  kept plan loads attrs only);
- N × `subprocess.Popen` (vfork+exec) and N × `os.posix_spawn` of the same command from this
  process.

CMD is `echo > FIFO; exec sleep 100000`: each process, once running, writes one line to a
FIFO this process reads (opened read-write, so it never sees an end), then becomes the idle
`sleep`. Launches are measured for a config run for the first time (a new file: the job is
loaded, checked and bound) and for a re-run of an unchanged one (its plan kept by the run
before: `executor/local/plancache.py`, in a cache of the bench's own, so the early start of
`executor/cli/launch.py` starts the first processes), from just before `Popen` of `stoker
run` (`python3 -c` running the console script's two lines, as `stoker` does) to:
- "running": the moment this process has read N lines from the FIFO: every process has run
  its first command. The floors are measured the same way: exec of the spawner → N lines.
- "RUNNING line": the moment it reads the Nth `WAITING → RUNNING` line from `stoker run`'s
  stdout (a pipe: `stoker run` flushes every line), the supervisor's report that the process
  runs; the floors' figure is their one line.
Each launch runs alone and is stopped with SIGTERM before the next; the repetitions of N and
of its floors are interleaved, so all see the same machine.
The product's bytecode is compiled first (`benchlib.main` does it for every bench), as an
installed Stoker's is.

The breakdown note comes from one more `stoker run` per N, in-process, with probes on the
functions of the launch path (`bench/launch_probe.py`); the headline rows use none.

Every `stoker run` is killed with its session and its task pids checked dead in a `finally`;
every floor's children are killed and waited for.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import benchlib
from benchlib import REPO, Row, med_max, ms, progress, summary, workdir

from tests.support.stoker_proc import CONSOLE_ENTRY, kill_leftovers, task_pids

NS = (1, 10, 100, 500)
TARGETS = {1: 0.040, 100: 0.150}  # launch → N RUNNING, medians (issue 14)
REPS = {1: 9, 10: 7, 100: 5, 500: 3}
QUICK_REPS = {1: 2, 10: 2, 100: 1, 500: 1}
IDLE = "sleep 100000"  # what every process becomes; the spawn loops start it alone
WAIT_SECS = 120.0
STOP_SECS = 60.0
RUNNING = "WAITING → RUNNING".encode()
# The modules each command imports before it does anything of its own, with the loader of
# modules without docstrings and the attrs code cache installed first as the entry point does
# (`executor.nodocs`, `executor.codecache`; their files are warmed by
# benchlib.compile_bytecode), and without them.
PLAIN_IMPORTS = {
    "stoker run": "import executor.cli.main, executor.local.run",
    "stoker executor": "import executor.cli.main, executor.mesos.process, executor.mesos.transport",
}
ENTRY_POINTS = {
    name: (f"from executor import nodocs; nodocs.install(); from executor import codecache; "
           f"codecache.install({name.split()[1]!r}); {statement}")
    for name, statement in PLAIN_IMPORTS.items()
}
DEPENDENCIES = "import attrs, pystachio"
SPAWNER = """
import os, sys
pids = [os.posix_spawn('/bin/bash', ['/bin/bash', '-c', sys.argv[2]], os.environ, setsid=True)
        for _ in range(int(sys.argv[1]))]
print('running', flush=True)
sys.stdin.read()
for pid in pids:
    os.kill(pid, 9)
for pid in pids:
    os.waitpid(pid, 0)
"""


def command(fifo: Path) -> str:
    """Each process's command: a line to `fifo` once running, then idle."""
    return f"echo > {fifo}; exec {IDLE}"


def config_text(n: int, fifo: Path) -> str:
    return (f"jobs = [Job(cluster='local', role='bench', environment='test', name='launch{n}',\n"
            f"  task=Task(processes=[Process(name='p%d' % i, cmdline={command(fifo)!r}) for i in range({n})],\n"
            f"            resources=Resources(cpu=0.1, ram=16*MB, disk=16*MB), finalization_wait=5))]\n")


def stoker_argv() -> list[str]:
    """What the `stoker` console script runs (`python -m executor` would load runpy, 7 ms
    more), the same at every commit, so a run of this script at an older commit measures that
    commit's product."""
    return [sys.executable, *CONSOLE_ENTRY]


def child_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO))


class Lines:
    """Reads a child's stdout on a thread: notes when the `count`th line holding `needle`
    arrived, and drains the rest so the child never blocks on a full pipe."""

    def __init__(self, proc: subprocess.Popen, needle: bytes, count: int) -> None:
        self.at: float | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(proc, needle, count), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen, needle: bytes, count: int) -> None:
        assert proc.stdout is not None
        seen = 0
        for line in proc.stdout:
            if self.at is None and needle in line:
                seen += 1
                if seen >= count:
                    self.at = time.monotonic()
                    self._done.set()
        self._done.set()

    def wait(self, what: str) -> float:
        if not self._done.wait(WAIT_SECS) or self.at is None:
            raise RuntimeError(f"{what} did not happen within {WAIT_SECS} s")
        return self.at

    def join(self) -> None:
        self._thread.join(10)


class Ran:
    """The FIFO the processes write a line to once running: `wait` gives when the nth line
    arrived. Opened read-write, so a read never sees an end between writers."""

    def __init__(self, fifo: Path, count: int) -> None:
        self._fd = os.open(fifo, os.O_RDWR | os.O_CLOEXEC)
        self._count = count
        self.at: float | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        seen = 0
        while seen < self._count:
            data = os.read(self._fd, 65536)
            seen += data.count(b"\n")
        self.at = time.monotonic()

    def wait(self, what: str) -> float:
        self._thread.join(WAIT_SECS)
        if self.at is None:
            raise RuntimeError(f"{what} did not happen within {WAIT_SECS} s")
        return self.at

    def close(self) -> None:
        if self._thread.is_alive():  # a failed launch: wake the reader with the lines it waits for
            os.write(self._fd, b"\n" * self._count)
            self._thread.join(10)
        os.close(self._fd)


def stop_run(proc: subprocess.Popen, sandbox: Path, join_reader: Callable[[], object],
             what: str = "stoker run") -> None:
    """Stops a `stoker run` a bench started with its stdout a pipe: SIGTERM, its session
    SIGKILLed if it overstays STOP_SECS (`what` names it in that progress line); then the
    reader of that pipe joined (`join_reader`: it has seen the pipe's end) and the pipe
    closed; and every pid of its task (`sandbox`'s checkpoint) checked dead."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_SECS)
    except subprocess.TimeoutExpired:
        progress(f"{what} did not exit within {STOP_SECS} s of SIGTERM; killing it")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    join_reader()
    assert proc.stdout is not None
    proc.stdout.close()
    kill_leftovers(task_pids(sandbox))


def timed_run(config: Path, work: Path, fifo: Path, n: int, env: dict[str, str], what: str,
              stderr: IO[bytes] | int = subprocess.DEVNULL) -> tuple[float, float]:
    """One `stoker run` of `config` (n processes, each writing a line to `fifo` once running)
    in `work`, its sandbox `work/sandbox`: exec → all n ran their first command, and exec →
    the nth RUNNING line, in seconds; always stopped (`stop_run`). `what` names it in the
    message of a wait that times out and of a stop that overstays."""
    ran = Ran(fifo, n)
    start = time.monotonic()
    proc = subprocess.Popen([*stoker_argv(), "run", str(config), "--sandbox", str(work / "sandbox")],
                            cwd=work, env=env, stdout=subprocess.PIPE, stderr=stderr,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    lines = Lines(proc, RUNNING, n)
    try:
        return (ran.wait(f"{what}: {n} processes running") - start,
                lines.wait(f"{what}: {n} processes RUNNING") - start)
    finally:
        ran.close()
        stop_run(proc, work / "sandbox", lines.join, what)


def launch(root: Path, n: int, tag: str, fifo: Path, config: Path | None = None,
           env: dict[str, str] | None = None) -> tuple[float, float]:
    """One `stoker run` of n processes, alone: exec → all n ran their first command, and exec
    → the nth RUNNING line; always stopped. A new config file (a first run: planned) unless
    `config` names one (run before: its plan kept). `env`: its environment (`child_env()`'s
    by default: this checkout)."""
    workdir_ = root / f"{tag}-{n}"
    workdir_.mkdir()
    if config is None:
        config = workdir_ / "launch.aurora"
        config.write_text(config_text(n, fifo))
    with open(workdir_ / "stderr", "wb") as err:
        return timed_run(config, workdir_, fifo, n, env or child_env(), f"N={n}: stoker run", err)


def spawner(n: int, fifo: Path, binary: Path | None = None, logs: Path | None = None) -> tuple[float, float]:
    """The minimal Python supervisor (or, given `binary`, the C one; with `logs`, a new
    directory, the C one making each run's log directory and files there): exec → its n
    children ran their first command, and exec → its line saying they were spawned."""
    argv = [str(binary)] if binary is not None else [sys.executable, "-c", SPAWNER]
    if logs is not None:
        logs.mkdir()
    ran = Ran(fifo, n)
    start = time.monotonic()
    proc = subprocess.Popen([*argv, str(n), command(fifo), *([str(logs)] if logs is not None else [])],
                            stdout=subprocess.PIPE, stdin=subprocess.PIPE, env=child_env())
    lines = Lines(proc, b"running", 1)
    try:
        return ran.wait(f"the floor's {n} processes running") - start, lines.wait(f"the floor's {n} spawns") - start
    finally:
        ran.close()
        assert proc.stdin is not None
        proc.stdin.close()  # it kills and reaps its children, then exits
        proc.wait(STOP_SECS)
        lines.join()
        assert proc.stdout is not None
        proc.stdout.close()


def file_system(path: Path) -> str:
    """The type and mount point of the file system `path` is on (the longest mount above it)."""
    best, kind = "", "unknown"
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            fields = line.split()
            point = fields[1].replace("\\040", " ")
            if len(point) > len(best) and (str(path) == point or str(path).startswith(point.rstrip("/") + "/")):
                best, kind = point, fields[2]
    return f"{kind} ({best})"


def log_files_secs(root: Path, n: int) -> float:
    """n runs' log directories and files, as the C floor makes them, made from this process
    in a new directory under `root` (removed after): the loop's time."""
    where = Path(tempfile.mkdtemp(dir=root))
    try:
        start = time.monotonic()
        for i in range(n):
            for file in benchlib.run_logs(where, i):
                file.close()
        return time.monotonic() - start
    finally:
        shutil.rmtree(where, ignore_errors=True)


def build_c_spawner(root: Path) -> Path | None:
    """bench/floor_spawner.c, built with `cc -O2` in `root`; None (said once) without a compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        progress("no C compiler (cc): the C spawner floor is left out")
        return None
    binary = root / "floor_spawner"
    built = subprocess.run([cc, "-O2", "-o", str(binary), str(Path(__file__).with_name("floor_spawner.c"))],
                           capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if built.returncode != 0:
        progress(f"the C spawner did not build, so its floor is left out: {built.stderr.strip()[-500:]}")
        return None
    return binary


def python_run(statement: str) -> float:
    """Exec → exit of the interpreter running `statement`."""
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", statement], check=True, env=child_env(),
                   stdin=subprocess.DEVNULL)
    return time.monotonic() - start


def spawn_loop(n: int, posix: bool) -> float:
    """n spawns of `bash -c IDLE` from this process (Popen, or os.posix_spawn): the loop's time."""
    pids: list[int] = []
    procs: list[subprocess.Popen] = []
    start = time.monotonic()
    for _ in range(n):
        if posix:
            pids.append(os.posix_spawn("/bin/bash", ["/bin/bash", "-c", IDLE], os.environ))
        else:
            procs.append(subprocess.Popen(["/bin/bash", "-c", IDLE]))
    took = time.monotonic() - start
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    for p in procs:
        p.kill()
        p.wait()
    return took


def import_secs(statement: str) -> float:
    """How long `statement` takes in a fresh interpreter, timed inside it (the interpreter's
    own start and exit left out)."""
    code = ("import time\nstart = time.perf_counter()\n" + statement +
            "\nprint(time.perf_counter() - start, flush=True)\nimport os\nos._exit(0)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         env=child_env(), stdin=subprocess.DEVNULL).stdout
    return float(out.strip().splitlines()[-1])


def module_set(statement: str) -> list[str]:
    code = f"import sys, json\nbefore = set(sys.modules)\n{statement}\nprint(json.dumps(sorted(set(sys.modules) - before)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         env=child_env()).stdout
    return list(json.loads(out.strip().splitlines()[-1]))


def probe(n: int) -> dict[str, float]:
    """Where one launch of n goes (bench/launch_probe.py, in a fresh interpreter)."""
    out = subprocess.run([sys.executable, str(Path(__file__).with_name("launch_probe.py")), str(n)],
                         check=True, capture_output=True, text=True, env=child_env(),
                         stdin=subprocess.DEVNULL, timeout=WAIT_SECS).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def breakdown_note(n: int, phases: dict[str, float], python: float) -> str:
    parts = "; ".join(f"{name} {ms(secs, 1)}" for name, secs in phases.items() if name != "total")
    return (f"Launch of N={n}, in-process with probes (`bench/launch_probe.py`; add the "
            f"interpreter's own start, {ms(python, 1)} in this run): {parts}; "
            f"{ms(phases['total'], 1)} from the first import until all {n} were RUNNING.")


def run(quick: bool) -> tuple[list[Row], list[str]]:
    reps = QUICK_REPS if quick else REPS
    rows: list[Row] = []
    notes: list[str] = []
    pythons: list[float] = []
    with workdir("launch") as root:
        c_binary = build_c_spawner(root)
        for n in NS:
            progress(f"launch → {n} running: {reps[n]} × stoker run, each after its floors")
            fifo = root / f"ran-{n}.fifo"
            os.mkfifo(fifo, 0o600)
            stoker, again, in_python, in_c, in_c_logs = [], [], [], [], []
            kept = root / f"kept-{n}.aurora"  # run once unmeasured, so its plan is kept
            kept.write_text(config_text(n, fifo))
            launch(root, n, "planning", fifo, kept)
            for i in range(reps[n]):
                pythons.append(python_run("pass"))
                in_python.append(spawner(n, fifo))
                if c_binary is not None:
                    in_c.append(spawner(n, fifo, c_binary))
                    in_c_logs.append(spawner(n, fifo, c_binary, root / f"floor-logs-{n}-{i}"))
                stoker.append(launch(root, n, f"r{i}", fifo))
                again.append(launch(root, n, f"a{i}", fifo, kept))
            target = TARGETS.get(n)
            python = summary(pythons).median
            for which, what in ((0, "processes running (each ran its first command)"),
                                (1, "processes RUNNING (the Nth RUNNING line read)")):
                c_floor = (f"the same in C: {med_max([t[which] for t in in_c])}; in C with each run's "
                           f"log directory and files made first: {med_max([t[which] for t in in_c_logs])}"
                           if in_c else "the same in C: not built (no C compiler)")
                floor = (f"`python3 -c pass`: {ms(python, 1)}; a Python process that posix_spawns {n} "
                         f"`bash -c CMD`{' (until they ran)' if which == 0 else ' and prints a line'}: "
                         f"{med_max([t[which] for t in in_python])}; {c_floor}")
                for label, runs in (("a new config (planned)", stoker),
                                    ("the same config again (its plan kept: early start)", again)):
                    secs = [t[which] for t in runs]
                    rows.append(Row(f"`stoker run` exec → N={n} {what}, {label}, alone",
                                    med_max(secs), floor, f"≤ {ms(target, 0)} median" if target else "—",
                                    summary(secs).median if target else None, target))
        progress("spawn floors from this process")
        for n in (1, 100):
            loops = [(spawn_loop(n, False), spawn_loop(n, True)) for _ in range(reps[1])]
            rows.append(Row(f"Spawn floor: {n} × `bash -c '{IDLE}'` from one Python process",
                            f"Popen (vfork+exec): {med_max([a for a, _ in loops], 2)}",
                            f"os.posix_spawn: {med_max([b for _, b in loops], 2)}", "—"))
        progress("the sandboxes' file system")
        here = [log_files_secs(root, 100) for _ in range(reps[1])]
        shm = Path("/dev/shm")
        in_memory = [log_files_secs(shm, 100) for _ in range(reps[1])] if shm.is_dir() else []
        notes.append(f"The bench's sandboxes are on {file_system(root)}: making 100 runs' log "
                     f"directories and files there (two mkdirs and two O_EXCL creates each, from "
                     f"Python) took {med_max(here)}"
                     + (f"; on {file_system(shm)}: {med_max(in_memory)}." if in_memory else "."))
        progress("import time and module sets of each entry point")
        deps = [import_secs(DEPENDENCIES) for _ in range(reps[1])]
        for name, statement in ENTRY_POINTS.items():
            times, plain = [], []
            for _ in range(reps[1]):
                times.append(import_secs(statement))
                plain.append(import_secs(PLAIN_IMPORTS[name]))
            mods = module_set(statement)
            ours = sum(m.split(".")[0] in ("executor", "config", "healthcheck") for m in mods)
            heavy = [m for m in ("requests", "urllib3", "ssl", "http.client", "pystachio", "psutil",
                                 "kazoo", "thriftpy2", "importlib.metadata", "pkg_resources")
                     if m in mods]
            rows.append(Row(
                f"`{name}`: its imports (`{statement}`, timed in a fresh interpreter)",
                f"{med_max(times)}; {len(mods)} modules ({ours} of Stoker's), of note: "
                f"{', '.join(heavy) or 'none'}",
                f"the interpreter's start (`python3 -c pass`, exec → exit): "
                f"{ms(summary(pythons).median, 1)}; `{DEPENDENCIES}`: {med_max(deps)}; the same "
                f"imports without the attrs code cache: {med_max(plain)}", "—"))
        progress("where the launch time goes (probed)")
        for n in (1, 100):
            notes.append(breakdown_note(n, probe(n), summary(pythons).median))
    return rows, notes


if __name__ == "__main__":
    sys.exit(benchlib.main("bench_launch", run))
