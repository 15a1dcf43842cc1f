"""Where the supervisor bench's time goes: the probes it installs on the product's functions
for one extra pass, and the sentences that turn their records into notes under the table.

Owns only formatting and the choice of probed functions; it measures nothing on its own
except `scan_costs`, which calls `executor.procs.proctree`'s scans and walk directly.
"""
from __future__ import annotations

import os
import time

from benchlib import Probe, ms, summary

from executor.procs import containment, proctree, reaper, spawn, supervisor
from executor.task import checkpoint
from executor.task.planner import Planner


def scan_costs(count: int = 20, foreign: tuple[int, ...] = ()) -> tuple[float, float, float, int]:
    """Median cost of one marker scan and one full scan of /proc (what each exit and each
    signal cost before issue 14), of one walk of this process's children but `foreign`
    (what they cost now: the supervisor does not walk into children it had before it
    started), and the process count."""
    marker = (b"STOKER_RUN_MARKER=bench-no-such-marker",)
    markers, full, walks = [], [], []
    for _ in range(count):
        start = time.monotonic()
        proctree.scan_markers(marker)
        markers.append(time.monotonic() - start)
        start = time.monotonic()
        procs = proctree.scan()
        full.append(time.monotonic() - start)
        start = time.monotonic()
        proctree.walk([c for c in proctree.children(os.getpid()) if c not in foreign])
        walks.append(time.monotonic() - start)
    return summary(markers).median, summary(full).median, summary(walks).median, len(procs)


def scan_note(quiet: tuple[float, float, float, int], busy: tuple[float, float, float, int]) -> str:
    return (f"/proc scans and walks (`executor.procs.proctree`, called directly): with "
            f"{quiet[3]} processes on the host a marker scan takes {ms(quiet[0])} and a full "
            f"scan {ms(quiet[1])}; with {busy[3]} processes {ms(busy[0])} and {ms(busy[1])}: both "
            f"grow with every process on the host. They are used only where Stoker could not "
            f"become a subreaper. What each exit and each signal does instead, a walk of this "
            f"process's subtree (`/proc/PID/task/TID/children`), takes {ms(quiet[2])} on the "
            f"quiet host and {ms(busy[2])} on the busy one: it follows the task's size.")


def install_probes() -> Probe:
    probe = Probe()
    probe.wrap(reaper.Reaper, "_dispatch", "reaper")
    probe.wrap(containment.Containment, "kill_leftovers", "kill_leftovers")
    probe.wrap(proctree, "walk", "walk")
    probe.wrap(proctree, "scan", "scan")
    probe.wrap(proctree, "scan_markers", "scan_markers")
    probe.wrap(supervisor.Supervisor, "spawn_many", "spawn")
    for name in ("signal_run", "signal_runs"):  # one run at a time, or a batch where it exists
        if hasattr(supervisor.Supervisor, name):
            probe.wrap(supervisor.Supervisor, name, "signal")
    # a run's fork: `fork_run` (posix_spawn, or Popen where it cannot) where it exists
    probe.wrap(spawn, "fork_run" if hasattr(spawn, "fork_run") else "fork_exec", "fork_exec")
    probe.wrap(spawn, "open_stdio", "open_stdio")
    if hasattr(spawn, "LogRoot"):  # SANDBOX/.logs kept open by the supervisor
        probe.wrap(spawn.LogRoot, "run_dir", "log_dir")
    else:
        probe.wrap(spawn, "log_dir", "log_dir")
    if hasattr(supervisor.Supervisor, "idle"):  # the next run's log directory, made when idle
        from executor.procs import logstage
        probe.wrap(logstage.LogStage, "take", "staged")
        probe.wrap(supervisor.Supervisor, "idle", "idle")
    # Every checkpoint sync: `append_many` (one write and one fsync per owner step) where the
    # writer has it, else `append`.
    writer = checkpoint.CheckpointWriter
    probe.wrap(writer, "append_many" if hasattr(writer, "append_many") else "append", "checkpoint")
    probe.wrap(Planner, "decide", "decide")
    return probe


def restart_breakdown(probe: Probe, windows: list[tuple[float, float]]) -> str:
    """`windows`: (SIGKILL at, next run reported at) of each restart, in order."""
    parts: dict[str, list[float]] = {k: [] for k in (
        "wake", "leftovers", "handoff", "spawn", "fork", "stdio", "paths", "staged", "idle",
        "ckpt", "ckpt_n", "after", "report")}
    bounds = [w[0] for w in windows[1:]] + [float("inf")]
    for (start, done), next_kill in zip(windows, bounds):
        dispatch = probe.between(start, done, "reaper")
        spawns = probe.between(start, done, "spawn")
        if not dispatch or not spawns:
            continue
        (d0, d1), (s0, s1) = dispatch[0], spawns[0]
        parts["wake"].append(d0 - start)
        parts["leftovers"].append(probe.total("kill_leftovers", start, done)[1])
        parts["handoff"].append(s0 - d1)
        parts["spawn"].append(s1 - s0)
        parts["fork"].append(probe.total("fork_exec", start, done)[1])
        parts["stdio"].append(probe.total("open_stdio", start, done)[1])
        parts["paths"].append(probe.total("log_dir", start, done)[1])
        parts["staged"].append(probe.total("staged", start, done)[1])
        parts["idle"].append(probe.total("idle", done, next_kill)[1])
        n, secs = probe.total("checkpoint", s1, done)  # before the report
        after = probe.between(done, next_kill, "checkpoint")[:1]  # the step's sync after it
        parts["ckpt"].append(secs)
        parts["ckpt_n"].append(n)
        parts["after"].append(after[0][1] - after[0][0] if after else 0.0)
        parts["report"].append(done - s1)
    if not parts["wake"]:
        return "restart breakdown: no probed restart was recorded"
    med = {k: summary(v).median for k, v in parts.items()}
    return (f"Restart breakdown (probed pass, median of {len(parts['wake'])} restarts): SIGKILL → "
            f"reaper wakes {ms(med['wake'])}; leftover kill of the dead run's group and of "
            f"whatever the task left unclaimed (one killpg, one walk of Stoker's children) "
            f"{ms(med['leftovers'])}; hand-off to the owner (queue, "
            f"planner) {ms(med['handoff'])}; `Supervisor.spawn_many` {ms(med['spawn'])} (of which "
            f"the fork {ms(med['fork'])}, log directory (`log_dir`/`LogRoot.run_dir`) {ms(med['paths'])}, log "
            f"files (`open_stdio`) {ms(med['stdio'])}, the staged directory put in place (`LogStage.take`: "
            f"a rename) {ms(med['staged'])}); after the report, off the restart's path, the idle "
            f"owner's staging of the next run's directory and files {ms(med['idle'])}. After the fork, until the reporter hears "
            f"of it: {ms(med['report'])}, of which {int(med['ckpt_n'])} checkpoint syncs "
            f"{ms(med['ckpt'])}; the checkpoint sync that follows the report "
            f"{ms(med['after'])}.")


def start_breakdown(probe: Probe, window: tuple[float, float], n: int, until: float) -> str:
    """`window`: (owner created, nth run reported); `until`: when the kill was requested."""
    start, done = window
    spawns = probe.between(start, done, "spawn")
    forks = probe.total("fork_exec", start, done)
    stdio = probe.total("open_stdio", start, done)
    paths = probe.total("log_dir", start, done)
    ckpt = probe.total("checkpoint", start, done)
    after = probe.total("checkpoint", done, until)
    spawn_secs = sum(e - s for s, e in spawns)
    rest = spawn_secs - forks[1] - stdio[1] - paths[1]
    first = spawns[0][0] - start if spawns else float("nan")
    last = max(e for _, e in spawns) - start if spawns else float("nan")
    return (f"Start-{n} breakdown (probed pass): owner created → first spawn {ms(first, 1)} "
            f"(checkpoint file, watchdog fork, first decide); {len(spawns)} × `Supervisor.spawn_many` "
            f"{ms(spawn_secs, 1)}, of which {forks[0]} forks {ms(forks[1], 1)}, log "
            f"directories (`log_dir`/`LogRoot.run_dir`) {ms(paths[1], 1)}, log files (`open_stdio`) "
            f"{ms(stdio[1], 1)}, the rest {ms(rest, 1)} (the CPU is shared with the {n} bash "
            f"processes starting meanwhile); nth fork at {ms(last, 1)}; {ckpt[0]} checkpoint "
            f"syncs {ms(ckpt[1], 1)} before the last report at {ms(done - start, 1)}, "
            f"{after[0]} ({ms(after[1], 1)}) after it.")


def stop_breakdown(probe: Probe, start: float, end: float, n: int) -> str:
    sig = probe.total("signal", start, end)
    walks = probe.total("walk", start, end)
    scans = probe.total("scan", start, end)
    markers = probe.total("scan_markers", start, end)
    left = probe.total("kill_leftovers", start, end)
    ckpt = probe.total("checkpoint", start, end)
    return (f"Stop-{n} breakdown (probed pass, {ms(end - start, 0)} in all): {sig[0]} signal "
            f"calls on the owner thread {ms(sig[1], 0)}; {left[0]} leftover kills on the reaper "
            f"thread {ms(left[1], 0)}; {walks[0]} walks of Stoker's subtree {ms(walks[1], 0)} in "
            f"all, {scans[0] + markers[0]} /proc scans {ms(scans[1] + markers[1], 0)}; "
            f"{ckpt[0]} checkpoint syncs {ms(ckpt[1], 0)}.")
