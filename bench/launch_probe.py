"""One `stoker run` of N idle sleeps, in this process, with probes on the launch path: prints
one JSON object, seconds per phase from the first import to the Nth RUNNING line (what
`bench_launch.py` turns into its breakdown note). Not a benchmark of its own: the probes
cost a few microseconds a call, so the headline figures are measured without them.

    .venv/bin/python bench/launch_probe.py 100

Phases (each the sum of the probed calls in it): the imports of `stoker run`; the plan
(made in a child process: its fork, the config modules' imports there, the load, the
unbound-reference check, the ports, binding, the answer read back; the config is a new
file, so it is planned, as at its first run); the plan cache (the look-up that misses, keeping the plan);
the host session (sandbox lock, registry entry, control socket; the task's registry entry);
the checkpoint (opening it, then every sync before the Nth RUNNING); the task's cgroup (made,
then entered: the move runs on a thread, so this counts what the launch still waited for
it); the watchdog's fork; the spawns; and the rest (argument parsing, the
owner's own work, printing). The job's sandbox is a temporary directory, removed after;
SIGTERM to this process stops the task once the Nth process is RUNNING.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

# Only modules `stoker run` imports anyway (or the interpreter has at start) are imported
# before the clock starts, so that its imports are measured whole.
SPANS: list[tuple[str, float, float]] = []
DONE: list[float] = []


def wrap(owner: Any, name: str, label: str) -> None:
    original = getattr(owner, name, None)
    if original is None:
        return

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            SPANS.append((label, start, time.perf_counter()))

    setattr(owner, name, timed)


def on_nth_running(n: int, reporter: Any) -> None:
    original: Callable[..., None] = reporter.on_transition
    seen = [0]

    def counted(self: Any, transition: Any) -> None:
        original(self, transition)
        if getattr(transition, "process", None) and getattr(getattr(transition, "to", None), "name", "") == "RUNNING":
            seen[0] += 1
            if seen[0] == n:
                DONE.append(time.perf_counter())
                os.kill(os.getpid(), signal.SIGTERM)  # stoker run's graceful stop

    reporter.on_transition = counted


def main() -> int:
    n = int(sys.argv[1])
    work = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"stoker-launch-probe-{os.getpid()}")
    os.mkdir(work, 0o700)
    for name in ("STOKER_ROOT", "STOKER_PLAN_CACHE"):  # bench_launch.py's own, else the probe's (never the host's)
        os.environ.setdefault(name, os.path.join(work, name.lower()))
    config = os.path.join(work, "job.aurora")
    with open(config, "w") as f:
        f.write(f"jobs = [Job(cluster='local', role='bench', environment='test', name='probe{n}',\n"
                f"  task=Task(processes=[Process(name='p%d' % i, cmdline='sleep 100000') for i in range({n})],\n"
                f"            resources=Resources(cpu=0.1, ram=16*MB, disk=16*MB), finalization_wait=5))]\n")
    start = time.perf_counter()
    from executor import nodocs
    nodocs.install()  # as the entry point does (executor/cli/start.py)
    from executor import codecache
    codecache.install("run")
    import executor.cli.main as cli
    import executor.local.run as local
    SPANS.append(("imports", start, time.perf_counter()))
    from executor.local import console, plancache, planning
    from executor.procs import containment, supervisor, watchdog
    from executor.task import checkpoint, wiring
    wrap(planning, "plan_apart", "plan (in its child process: load, checks, ports, bind)")
    wrap(plancache, "lookup", "plan cache (look up, keep)")
    wrap(plancache, "store", "plan cache (look up, keep)")
    wrap(local, "hold_sandbox", "host session (lock, registry, control socket)")
    wrap(wiring._SessionPort, "task_started", "host session (lock, registry, control socket)")
    wrap(wiring, "open_writer", "checkpoint (open, syncs)")
    wrap(checkpoint.CheckpointWriter, "append_many", "checkpoint (open, syncs)")
    wrap(containment.Containment, "prepare", "cgroup (make, enter)")
    wrap(containment.Containment, "enter", "cgroup (make, enter)")
    wrap(containment.Containment, "settle", "cgroup (make, enter)")  # the wait for the move left
    wrap(watchdog.WatchdogKeeper, "start", "watchdog")
    wrap(supervisor.Supervisor, "spawn_many", "spawn")
    on_nth_running(n, console.ConsoleReporter)
    sys.stdout.flush()
    saved = os.dup(1)  # what the task prints goes nowhere; the figures go to our stdout
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        cli.main(["run", config, "--sandbox", os.path.join(work, "sandbox")])
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    if not DONE:
        raise SystemExit(f"the {n}th process never reported RUNNING")
    end = DONE[0]
    phases: dict[str, float] = {}
    for label, s, e in SPANS:
        if s < end:
            phases[label] = phases.get(label, 0.0) + min(e, end) - s
    phases["rest"] = (end - start) - sum(phases.values())
    phases["total"] = end - start
    import json

    print(json.dumps(phases))
    return 0


if __name__ == "__main__":
    sys.exit(main())
