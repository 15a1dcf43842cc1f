"""Bench: the Mesos executor (issue 5). The real `stoker executor` runs under
`tests.support.agent_sim.AgentSimulator` on 127.0.0.1, a fresh agent and executor per
repetition, and is fed a task document built with `config.document.encode(load_job(...))`.
Times are the simulator's own records: `UpdateRecord.at` (monotonic, when the agent read the
UPDATE call) minus the monotonic time right before the LAUNCH or KILL event was queued.

Figures: LAUNCH → TASK_STARTING, LAUNCH → TASK_RUNNING (no health check), the same
with the task as Aurora's scheduler sends it (a Thrift AssignedTask whose executorConfig
holds the client's job JSON, `tests/support/aurora_tasks.py`), the same over TLS (an agent
with libprocess SSL on that requires a client certificate, an executor that verifies the
agent's against the test CA: `tests/support/agent_tls.py`), KILL →
TASK_KILLED with kill grace G for a process that ignores SIGTERM and for one that exits on
it, and the executor's RSS / PSS while its task runs. Floor: the test suite's echo executor
(`tests/support/echo_executor.py`: the same driver and the same simulator, but no task, no
supervisor: it answers LAUNCH with STARTING and RUNNING and KILL with KILLED at once),
measured the same way in the same run.

Every simulator is closed (it SIGKILLs the executor's process group) and every task pid of
the checkpoint is checked dead in a `finally`.
"""
from __future__ import annotations

import contextlib
import getpass
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import benchlib
from bench_idle import footprint_note, mapping_note, reading
from benchlib import (
    MB,
    MIB,
    REPO,
    Memory,
    Row,
    SleepingPython,
    med_max,
    memory_of,
    ms,
    progress,
    summary,
    workdir,
)

from config.document import encode
from config.loader import load_job
from tests.support import agent_sim
from tests.support.agent_sim import AgentSimulator, make_task_info
from tests.support.agent_tls import agent_context, cert, client_env
from tests.support.aurora_tasks import assigned_task, client_json
from tests.support.stoker_proc import CONSOLE_ENTRY, kill_leftovers, task_pids

STOKER = [sys.executable, *CONSOLE_ENTRY, "executor"]  # as the agent runs the `stoker` script
ECHO = [sys.executable, str(REPO / "tests/support/echo_executor.py")]
GRACE_SECS = 0.5
SETTLE_SECS = 0.3  # after RUNNING, before the memory reading: the task is running
WAIT_SECS = 15.0
STARTING_TARGET = 0.050
RUNNING_TARGET = 0.150
KILL_TARGET = GRACE_SECS + 0.100
RSS_TARGET = 35 * MB
IDLE_SECS, QUICK_IDLE_SECS = 20.0, 5.0
IDLE_CPU_LIMIT_SECS = 0.010
SETTLE_SECS = 1.0  # from RUNNING to the idle window's start (the window holds `--launch-timeout`'s 10 s mark)
DISK_CHECK_SECS = 5.0  # the disk-limit check's interval in the idle row's second executor (60 by default)
EXITS_ON_SIGTERM = "sleep 1000"
IGNORES_SIGTERM = "trap '' TERM; exec sleep 1000"  # the exec'd sleep keeps ignoring it

JOB = """
jobs = [Job(cluster='local', role={role!r}, environment='test', name='mesos',
            task=Task(processes=[Process(name='svc', cmdline={cmdline!r})],
                      resources=Resources(cpu=0.1, ram=16*MB, disk=16*MB),
                      finalization_wait=5))]
"""


@attrs.frozen
class Sample:
    subscribed: float  # executor exec → its SUBSCRIBE read by the agent
    starting: float
    running: float
    killed: float
    memory: Memory
    maps: str


def quiet_connection_resets() -> None:
    """An exiting executor resets its idle keep-alive connection while the simulator's
    handler waits for a next request, and socketserver prints each such reset as a
    traceback on stderr. In this process only, silence exactly those; any other error is
    still printed."""
    original = agent_sim._Server.handle_error

    def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        original(self, request, client_address)

    agent_sim._Server.handle_error = handle_error  # type: ignore[method-assign]


def document(directory: Path, cmdline: str, aurora: bool = False) -> bytes:
    """The job as Stoker's JSON task document, or as Aurora's AssignedTask (its role this
    user, so that a root executor runs it as root, as it runs the document)."""
    path = directory / f"job-{abs(hash(cmdline))}.aurora"
    path.write_text(JOB.format(cmdline=cmdline, role=getpass.getuser()))
    if aurora:
        return assigned_task(client_json(path), role=getpass.getuser(), name="mesos")
    return encode(load_job(path))


def agent_for(sandbox: Path, repo: Path, tls: bool) -> tuple[AgentSimulator, dict[str, str | None]]:
    """An agent for `sandbox` and the environment of an executor of checkout `repo` under it;
    with `tls`, libprocess SSL on: the agent requires a client certificate, the executor
    verifies the agent's against the test CA."""
    sim = AgentSimulator(sandbox=sandbox, tls=agent_context(require_client_cert=True) if tls else None)
    env: dict[str, str | None] = {"PYTHONPATH": str(repo)}
    if tls:
        env |= client_env("client", verify_server_cert="true", ca_file=cert("ca"),
                          hostname_validation_scheme="openssl", verify_ipadd="true")
    return sim, env


def one(root: Path, tag: str, argv: list[str], data: bytes, tls: bool = False) -> Sample:
    """One agent and executor; with `tls`, an agent with libprocess SSL on that requires
    a client certificate, and an executor that verifies the agent's against the CA."""
    sandbox = root / tag
    sandbox.mkdir()
    # PYTHONPATH: the product of this checkout, whatever the interpreter has installed
    sim, env = agent_for(sandbox, REPO, tls)
    try:
        exec_at = time.monotonic()
        proc = sim.launch_executor(argv, cwd=sandbox, env_overrides=env)
        sim.wait_subscribed(WAIT_SECS)
        subscribed = min(c.at for c in sim.calls("SUBSCRIBE")) - exec_at
        launch_at = time.monotonic()
        sim.launch(make_task_info("task-1", data))
        starting = sim.wait_for_state("task-1", "TASK_STARTING", WAIT_SECS).at - launch_at
        running = sim.wait_for_state("task-1", "TASK_RUNNING", WAIT_SECS).at - launch_at
        time.sleep(SETTLE_SECS)
        memory = memory_of(proc.pid)
        maps = mapping_note(proc.pid, "`stoker executor` running a task")
        kill_at = time.monotonic()
        sim.kill("task-1", grace_secs=GRACE_SECS)
        killed = sim.wait_for_state("task-1", "TASK_KILLED", WAIT_SECS).at - kill_at
        if argv == ECHO:
            sim.shutdown()  # the echo executor exits on SHUTDOWN only; Stoker's after KILLED
        sim.wait_exit(WAIT_SECS)
        states = sim.states("task-1")
        if states != ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"]:
            raise RuntimeError(f"{tag}: unexpected updates {states}")
        return Sample(subscribed, starting, running, killed, memory, maps)
    finally:
        pids = task_pids(sandbox)
        sim.close()
        kill_leftovers(pids)


@contextlib.contextmanager
def running(root: Path, tag: str, data: bytes, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """An agent and `stoker executor` (`env` added to its environment) whose task `data`
    is RUNNING; on the way out the simulator is closed and every task pid killed."""
    sandbox = root / tag
    sandbox.mkdir()
    sim = AgentSimulator(sandbox=sandbox)
    try:
        proc = sim.launch_executor(STOKER, cwd=sandbox, env_overrides={"PYTHONPATH": str(REPO), **env})
        sim.wait_subscribed(WAIT_SECS)
        sim.launch(make_task_info("task-1", data))
        sim.wait_for_state("task-1", "TASK_RUNNING", WAIT_SECS)
        yield proc
    finally:
        pids = task_pids(sandbox)
        sim.close()
        kill_leftovers(pids)


def idle_row(root: Path, data: bytes, quick: bool) -> Row:
    """The CPU and wakeups of an executor whose task (one sleeping process, no health
    check) runs, with the disk limit off, over a window that starts SETTLE_SECS after both
    are RUNNING and, in a full run, holds the moment `--launch-timeout` (10 s after the
    start) would fire (its timer goes with the LAUNCH); beside it, in the same window, one
    whose disk check (Thermos', on by default, every 60 s) walks the sandbox every
    DISK_CHECK_SECS, and a sleeping Python."""
    secs = QUICK_IDLE_SECS if quick else IDLE_SECS
    progress(f"idle executors for {SETTLE_SECS + secs:.0f} s")
    with running(root, "idle-off", data, {"STOKER_DISK_LIMIT": "off"}) as off, \
            running(root, "idle-on", data, {"STOKER_DISK_CHECK_INTERVAL": f"{DISK_CHECK_SECS:g}"}) as on, \
            SleepingPython() as control:
        time.sleep(SETTLE_SECS)
        pids = (off.pid, on.pid, control.pid)
        before = [reading(pid) for pid in pids]
        time.sleep(secs)
        (cpu, wakes), (check_cpu, check_wakes), (control_cpu, control_wakes) = [
            (c1 - c0, w1 - w0) for (c0, w0), (c1, w1) in zip(before, [reading(pid) for pid in pids])]
    return Row(f"Mesos: executor idle, its task (one sleeping process) running, disk limit off: CPU and "
               f"wakeups per {secs:.0f} s", f"{cpu * 1000:.2f} ms CPU, {wakes} wakeups",
               f"sleeping Python: {control_cpu * 1000:.2f} ms, {control_wakes} wakeups; with the disk limit on "
               f"and its check walking the sandbox every {DISK_CHECK_SECS:g} s (every 60 s by default): "
               f"{check_cpu * 1000:.2f} ms, {check_wakes} wakeups",
               f"≈ 0: ≤ {IDLE_CPU_LIMIT_SECS * 1000:.0f} ms CPU", value=cpu, limit=IDLE_CPU_LIMIT_SECS)


def _col(samples: list[Sample], field: str) -> list[float]:
    return [getattr(s, field) for s in samples]


@attrs.frozen
class Runs:
    """Every repetition's sample, by executor and task: the echo executor, Stoker's with a
    process that exits on SIGTERM, one that ignores it, Aurora's AssignedTask, over TLS."""

    echo: list[Sample]
    term: list[Sample]
    stubborn: list[Sample]
    aurora: list[Sample]
    tls: list[Sample]

    @property
    def both(self) -> list[Sample]:
        return self.term + self.stubborn


def _runs(root: Path, reps: int, exits: bytes) -> Runs:
    ignores = document(root, IGNORES_SIGTERM)
    thrift = document(root, EXITS_ON_SIGTERM, aurora=True)
    runs = Runs([], [], [], [], [])
    for i in range(reps):  # interleaved, so drift on the machine hits all five alike
        progress(f"executor repetition {i + 1} of {reps}: echo, exits on SIGTERM, ignores it, "
                 "Aurora's, over TLS")
        runs.echo.append(one(root, f"echo-{i}", ECHO, exits))
        runs.term.append(one(root, f"term-{i}", STOKER, exits))
        runs.stubborn.append(one(root, f"stubborn-{i}", STOKER, ignores))
        runs.aurora.append(one(root, f"aurora-{i}", STOKER, thrift))
        runs.tls.append(one(root, f"tls-{i}", STOKER, exits, tls=True))
    return runs


def _latency_rows(runs: Runs) -> list[Row]:
    echo, term = runs.echo, runs.term
    starting, running = _col(runs.both, "starting"), _col(runs.both, "running")
    rows = [
        Row("Mesos: LAUNCH → TASK_STARTING", med_max(starting), f"echo executor: "
            f"{med_max(_col(echo, 'starting'))}", "≤ 50 ms", summary(starting).median,
            STARTING_TARGET, summary(starting).maximum),
        Row("Mesos: LAUNCH → TASK_RUNNING (no health check)", med_max(running),
            f"echo executor: {med_max(_col(echo, 'running'))}", "≤ 150 ms",
            summary(running).median, RUNNING_TARGET, summary(running).maximum),
    ]
    for label, field, target, text in (("STARTING", "starting", STARTING_TARGET, "≤ 50 ms"),
                                       ("RUNNING", "running", RUNNING_TARGET, "≤ 150 ms")):
        times = _col(runs.aurora, field)
        rows.append(Row(f"Mesos: LAUNCH → TASK_{label}, the task as Aurora's scheduler sends it (a Thrift "
                        f"AssignedTask)", med_max(times), f"the same job as Stoker's JSON task document: "
                        f"{med_max(_col(term, field))}", text, summary(times).median, target,
                        summary(times).maximum))
        times = _col(runs.tls, field)
        rows.append(Row(f"Mesos: LAUNCH → TASK_{label}, over TLS (libprocess SSL on: certificates "
                        f"verified both ways)", med_max(times), f"the same over plain HTTP: "
                        f"{med_max(_col(term, field))}", text, summary(times).median, target,
                        summary(times).maximum))
    kill_floor = f"grace {ms(GRACE_SECS, 0)}; echo executor KILL → KILLED: {med_max(_col(echo, 'killed'))}"
    for label, samples in (("ignores SIGTERM", runs.stubborn), ("exits on SIGTERM", term)):
        killed = _col(samples, "killed")
        rows.append(Row(f"Mesos: KILL → TASK_KILLED, process {label}, kill grace "
                        f"G={ms(GRACE_SECS, 0)}", med_max(killed), kill_floor,
                        f"≤ G + 100 ms = {ms(KILL_TARGET, 0)}", summary(killed).median,
                        KILL_TARGET, summary(killed).maximum))
    return rows


def _memory_rows(runs: Runs) -> list[Row]:
    rss = [s.memory.rss for s in runs.both + runs.aurora]
    pss = [s.memory.pss for s in runs.both + runs.aurora]
    echo_rss = [s.memory.rss for s in runs.echo]
    echo_pss = [s.memory.pss for s in runs.echo]
    subscribed = _col(runs.both, "subscribed")
    tls_rss = [s.memory.rss for s in runs.tls]
    return [
        Row("Mesos: executor memory while running a task",
            f"RSS median {summary(rss).median / MB:.1f} MB, max {max(rss) / MB:.1f} MB; "
            f"PSS median {summary(pss).median / MIB:.1f} MiB (n={len(rss)})",
            f"echo executor: RSS {summary(echo_rss).median / MB:.1f} MB, PSS "
            f"{summary(echo_pss).median / MIB:.1f} MiB", "RSS ≤ 35 MB",
            summary(rss).median / RSS_TARGET, 1.0, max(rss) / RSS_TARGET),
        Row("Mesos: executor exec → SUBSCRIBE received by the agent", med_max(subscribed),
            f"echo executor: {med_max(_col(runs.echo, 'subscribed'))}", "—"),
        Row("Mesos: executor over TLS, exec → SUBSCRIBE received / memory while running a task",
            f"{med_max(_col(runs.tls, 'subscribed'))}; RSS median {summary(tls_rss).median / MB:.1f} MB, "
            f"PSS median {summary([s.memory.pss for s in runs.tls]).median / MIB:.1f} MiB",
            f"over plain HTTP: {med_max(subscribed)}; RSS median {summary(rss).median / MB:.1f} MB",
            "RSS ≤ 35 MB", summary(tls_rss).median / RSS_TARGET, 1.0, max(tls_rss) / RSS_TARGET),
    ]


def run(quick: bool) -> tuple[list[Row], list[str]]:
    quiet_connection_resets()
    with workdir("mesos") as root:
        exits = document(root, EXITS_ON_SIGTERM)
        runs = _runs(root, 2 if quick else 5, exits)
        idle = idle_row(root, exits, quick)
        progress("import footprints")
        footprint = footprint_note("what `stoker executor` imports", [
            "import ssl", "import http.client", "import executor.mesos.driver",
            "import executor.mesos.process"])
    return [*_latency_rows(runs), *_memory_rows(runs), idle], [runs.both[-1].maps, footprint]


if __name__ == "__main__":
    sys.exit(benchlib.main("bench_mesos", run))
