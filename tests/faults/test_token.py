"""Fault 5b: the executor's auth token appears in no log line and in no task environment.

The real `stoker executor` runs with MESOS_EXECUTOR_AUTHENTICATION_TOKEN set, at DEBUG, once
with text logs (HTTP health check, then KILL) and once with JSON logs (shell health check,
then SHUTDOWN). The task's processes and its health command dump their environments. Then
every byte of the executor log, the sandbox (checkpoint, process logs, anything written) and
the live task processes' /proc environments is searched for the token.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from config.document import encode
from config.loader import load_job
from tests.support import proc_scan
from tests.support.agent_sim import AgentSimulator, make_task_info
from tests.support.ports import free_ports
from tests.support.stoker_proc import REPO, checkpoint_records, task_pids
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]

FAKE = REPO / "tests/support/fake_task.py"
EXECUTOR = [sys.executable, "-m", "executor", "executor"]
TOKEN = "faults-T0k3n-5f1c9e27d4b8a6"
TOKEN_VAR = "MESOS_EXECUTOR_AUTHENTICATION_TOKEN"


def _config(tmp_path: Path, health: str) -> Path:
    serve = (f"exec {sys.executable} {FAKE} --serve-health {{{{thermos.ports[health]}}}} "
             f"--print-env {TOKEN_VAR} --ignore-sigterm")
    if health == "http":
        # A grace of 2 s (40 attempts) covers the fake service's start-up on a loaded machine;
        # the check passes as soon as it answers, so the test is not slower.
        check = "HealthCheckConfig(initial_interval_secs=2.0, interval_secs=0.05, timeout_secs=0.5)"
    else:
        check = ("HealthCheckConfig(initial_interval_secs=2.0, interval_secs=0.05, timeout_secs=1.0,"
                 " health_checker=HealthCheckerConfig(shell=ShellHealthChecker("
                 "shell_command='env >> health_env.txt; env')))")
    path = tmp_path / f"token_{health}.aurora"
    path.write_text(
        f"web = Process(name='web', cmdline={serve!r})\n"
        "envdump = Process(name='envdump', cmdline='env; env >&2; cat /proc/self/environ > environ.bin;"
        " exec sleep 1000')\n"
        "jobs = [Service(cluster='local', role='me', environment='test', name='tok',\n"
        "                task=Task(processes=[web, envdump], finalization_wait=0.5,\n"
        "                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)),\n"
        f"                health_check_config={check},\n"
        "                lifecycle=LifecycleConfig(http=HttpLifecycleConfig(\n"
        "                    graceful_shutdown_wait_secs=0.1, shutdown_wait_secs=0.1)))]\n")
    return path




def _scan_files(root: Path) -> tuple[int, int, list[str]]:
    """(files read, lines read, files that contain the token) under `root`."""
    files = lines = 0
    leaks = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        files += 1
        lines += data.count(b"\n")
        if TOKEN.encode() in data:
            leaks.append(str(path.relative_to(root)))
    return files, lines, leaks


@pytest.fixture
def agent(tmp_path):
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    sim = AgentSimulator(sandbox=sandbox, auth_token=TOKEN)
    markers: list[str] = []
    yield sim, markers
    sim.close()
    for marker in markers:
        proc_scan.kill_carrying(f"{proc_scan.TASK_MARKER}={marker}", task_pids(sandbox))


@pytest.mark.parametrize("log_format, health, stop", [
    ("text", "http", "kill"),
    ("json", "shell", "shutdown"),
])
def test_the_token_is_in_no_log_line_file_or_task_environment(agent, tmp_path, figures,
                                                              log_format, health, stop):
    sim, markers = agent
    sim.launch_executor(EXECUTOR, cwd=sim.sandbox, shutdown_grace="5secs",
                        env_overrides={"STOKER_LOG_LEVEL": "DEBUG", "STOKER_LOG_FORMAT": log_format})
    sim.wait_subscribed(timeout_secs=15)
    sim.launch(make_task_info("task-1", encode(load_job(_config(tmp_path, health))),
                              ports=free_ports(2)))
    running = sim.wait_for_state("task-1", "TASK_RUNNING", 20)
    assert running.healthy is True
    pids = wait_for(lambda: (lambda p: p if len(p) >= 2 else None)(task_pids(sim.sandbox)), 10)
    marker = proc_scan.task_marker_of(next(iter(pids)))
    assert marker
    markers.append(marker)
    wait_for(lambda: (sim.sandbox / "environ.bin").exists() and
             sum(r.get("kind") == "health" for r in checkpoint_records(sim.sandbox)) >= 3, 10)
    # The live task processes (and whatever they forked) hold no token in their environment.
    live = proc_scan.task_pids_by_marker(marker)
    holders = [pid for pid in live if any(e.startswith(TOKEN_VAR.encode()) or TOKEN.encode() in e
                                          for e in proc_scan.environ(pid))]
    assert not holders, f"task processes {holders} carry the token in their environment"
    if stop == "kill":
        sim.kill("task-1", grace_secs=0.5)
    else:
        sim.shutdown()
    sim.wait_for_state("task-1", "TASK_KILLED", 15)
    assert sim.wait_exit(15) == 0
    assert not sim.destroyed_after_grace

    # The token was really in use: every call carried it.
    calls = [r for r in sim.requests if r.call_type in ("SUBSCRIBE", "UPDATE")]
    assert calls and all(r.header("Authorization") == f"Bearer {TOKEN}" for r in calls)
    log = sim.executor_log()
    assert "status_update_queued" in log and "DEBUG" in log, "the executor did not log at DEBUG"
    stdout = (sim.sandbox / ".logs/web/0/stdout").read_text()
    assert f"{TOKEN_VAR} is unset" in stdout, stdout
    assert "PATH=" in (sim.sandbox / ".logs/envdump/0/stdout").read_text()
    if health == "shell":
        assert "PATH=" in (sim.sandbox / "health_env.txt").read_text()
    files, lines, leaks = _scan_files(sim.sandbox)
    figures.add(f"{log_format} logs, {health} check, {stop}: files searched", files)
    figures.add(f"{log_format} logs, {health} check, {stop}: lines searched", lines)
    figures.add(f"{log_format} logs, {health} check, {stop}: task processes' environments searched",
                len(live))
    figures.add(f"{log_format} logs, {health} check, {stop}: token occurrences",
                len(leaks) + len(holders))
    assert TOKEN not in log
    assert not leaks, f"the token is in {leaks}"
