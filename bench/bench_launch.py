"""Bench: start-up (issue 14). How long `stoker run` takes from its exec to N processes
RUNNING (N = 1, 10, 100, 500), what each entry point's imports cost, and where the launch
time goes, next to the floors of the same run:

- `python3 -c pass`: the interpreter's own start (the venv's interpreter, `site` included);
- a minimal Python supervisor: the same interpreter, started the same way, that
  `posix_spawn`s N `/bin/bash -c 'sleep 100000'` (each in its own session) and prints one
  line: what any supervisor written in Python pays, whatever it does besides;
- the same in C (`bench/floor_spawner.c`, built with the machine's `cc -O2` into the bench's
  work directory; the row says so when there is no compiler): what a supervisor written in C
  pays on this machine. For N=100 the children's own start (bash, then `sleep`) keeps both
  cores busy, so this is the machine's floor for any supervisor;
- `python3 -c 'import attrs, pystachio'`: the interpreter with the two third-party packages
  `stoker run` plans a new config with (the Aurora schema is pystachio's; a re-run of a
  kept plan loads attrs only);
- N × `subprocess.Popen` (vfork+exec) and N × `os.posix_spawn` of the same command from this
  process.

"Launch → N RUNNING" is measured for a config run for the first time (a new file: the job is
loaded, checked and bound) and for a re-run of an unchanged one (its plan kept by the run
before: `executor/local/plancache.py`, in a cache of the bench's own), from just before
`Popen` of `python3 -m executor run` to
the moment this process reads the Nth `WAITING → RUNNING` line from its stdout (a pipe:
`stoker run` flushes every line). Each launch runs alone and is stopped with SIGTERM before
the next; the repetitions of N and of its floor are interleaved, so both see the same machine.
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
import threading
import time
from pathlib import Path

import benchlib
from benchlib import REPO, Row, med_max, ms, progress, summary, workdir

from tests.support.stoker_proc import kill_leftovers, task_pids

NS = (1, 10, 100, 500)
TARGETS = {1: 0.040, 100: 0.150}  # launch → N RUNNING, medians (issue 14)
REPS = {1: 9, 10: 7, 100: 5, 500: 3}
QUICK_REPS = {1: 2, 10: 2, 100: 1, 500: 1}
CMD = "sleep 100000"
WAIT_SECS = 120.0
STOP_SECS = 60.0
RUNNING = "WAITING → RUNNING".encode()
# The modules each command imports before it does anything of its own, with the attrs code
# cache installed first as the entry point does (`executor.codecache`; the files are warmed by
# benchlib.compile_bytecode), and without it.
PLAIN_IMPORTS = {
    "stoker run": "import executor.cli.main, executor.local.run",
    "stoker executor": "import executor.cli.main, executor.mesos.executor, executor.mesos.transport",
}
ENTRY_POINTS = {
    name: f"from executor import codecache; codecache.install({name.split()[1]!r}); {statement}"
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


def config_text(n: int) -> str:
    return (f"jobs = [Job(cluster='local', role='bench', environment='test', name='launch{n}',\n"
            f"  task=Task(processes=[Process(name='p%d' % i, cmdline={CMD!r}) for i in range({n})],\n"
            f"            resources=Resources(cpu=0.1, ram=16*MB, disk=16*MB), finalization_wait=5))]\n")


def stoker_argv() -> list[str]:
    """`python -m executor`, the same as the `stoker` console script (which imports one
    module less), and the same at every commit, so a run of this script at an older commit
    measures that commit's product."""
    return [sys.executable, "-m", "executor"]


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


def launch(root: Path, n: int, tag: str, config: Path | None = None) -> float:
    """One `stoker run` of n sleeps, alone: exec → the nth RUNNING line; always stopped. A
    new config file (a first run: planned) unless `config` names one run before (its plan kept)."""
    workdir_ = root / f"{tag}-{n}"
    workdir_.mkdir()
    if config is None:
        config = workdir_ / "launch.aurora"
        config.write_text(config_text(n))
    sandbox = workdir_ / "sandbox"
    with open(workdir_ / "stderr", "wb") as err:
        start = time.monotonic()
        proc = subprocess.Popen([*stoker_argv(), "run", str(config), "--sandbox", str(sandbox)],
                                cwd=workdir_, env=child_env(), stdout=subprocess.PIPE, stderr=err,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    lines = Lines(proc, RUNNING, n)
    try:
        return lines.wait(f"stoker run: {n} processes RUNNING") - start
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_SECS)
        except subprocess.TimeoutExpired:
            progress(f"N={n}: stoker run did not exit within {STOP_SECS} s of SIGTERM; killing it")
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        lines.join()
        assert proc.stdout is not None
        proc.stdout.close()
        kill_leftovers(task_pids(sandbox))


def spawner(n: int, binary: Path | None = None) -> float:
    """The minimal Python supervisor (or, given `binary`, the C one): exec → its line saying
    n children were spawned."""
    argv = [str(binary)] if binary is not None else [sys.executable, "-c", SPAWNER]
    start = time.monotonic()
    proc = subprocess.Popen([*argv, str(n), CMD], stdout=subprocess.PIPE,
                            stdin=subprocess.PIPE, env=child_env())
    lines = Lines(proc, b"running", 1)
    try:
        return lines.wait(f"the floor's {n} spawns") - start
    finally:
        assert proc.stdin is not None
        proc.stdin.close()  # it kills and reaps its children, then exits
        proc.wait(STOP_SECS)
        lines.join()
        assert proc.stdout is not None
        proc.stdout.close()


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
    """n spawns of `bash -c CMD` from this process (Popen, or os.posix_spawn): the loop's time."""
    pids: list[int] = []
    procs: list[subprocess.Popen] = []
    start = time.monotonic()
    for _ in range(n):
        if posix:
            pids.append(os.posix_spawn("/bin/bash", ["/bin/bash", "-c", CMD], os.environ))
        else:
            procs.append(subprocess.Popen(["/bin/bash", "-c", CMD]))
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
            progress(f"launch → {n} RUNNING: {reps[n]} × stoker run, each after its floors")
            stoker, again, in_python, in_c = [], [], [], []
            kept = root / f"kept-{n}.aurora"  # run once unmeasured, so its plan is kept
            kept.write_text(config_text(n))
            launch(root, n, "planning", kept)
            for i in range(reps[n]):
                pythons.append(python_run("pass"))
                in_python.append(spawner(n))
                if c_binary is not None:
                    in_c.append(spawner(n, c_binary))
                stoker.append(launch(root, n, f"r{i}"))
                again.append(launch(root, n, f"a{i}", kept))
            target = TARGETS.get(n)
            python = summary(pythons).median
            floor = (f"`python3 -c pass`: {ms(python, 1)}; a Python process that posix_spawns {n} "
                     f"`bash -c '{CMD}'` and prints a line: {med_max(in_python)}; the same in C: "
                     f"{med_max(in_c) if in_c else 'not built (no C compiler)'}")
            for label, secs in (("a new config (planned)", stoker),
                                ("the same config again (its plan kept)", again)):
                rows.append(Row(f"`stoker run` exec → N={n} processes RUNNING, {label}, alone",
                                med_max(secs), floor, f"≤ {ms(target, 0)} median" if target else "—",
                                summary(secs).median if target else None, target))
        progress("spawn floors from this process")
        for n in (1, 100):
            loops = [(spawn_loop(n, False), spawn_loop(n, True)) for _ in range(reps[1])]
            rows.append(Row(f"Spawn floor: {n} × `bash -c '{CMD}'` from one Python process",
                            f"Popen (vfork+exec): {med_max([a for a, _ in loops], 2)}",
                            f"os.posix_spawn: {med_max([b for _, b in loops], 2)}", "—"))
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
