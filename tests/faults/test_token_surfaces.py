"""Fault 5c: the agent's token is in nothing the host's readers show of a task.

test_token.py searches what the executor itself writes (its log, text and JSON, the
sandbox with its checkpoint, the registry, the status updates) and what a task can read.
This file asks everyone else who looks at a task run by a real `stoker executor` given a
known MESOS_EXECUTOR_AUTHENTICATION_TOKEN: `stoker ps` and `stoker ps --json`, `stoker
status` and `--json`, the observer's every page, API answer and log view and its
/metrics, the control socket's answers to `stoker restart` and `stoker kill`, and the
TASK_FAILED of a task whose data is no job. None of these reads a process's environment
(the token's one home, gone from the executor's own at its start: docs/mesos.md §6), so
each must hold no byte of it; each answer is also checked to be about the task, so that
an empty answer does not pass for a clean one.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from config.document import encode
from config.loader import load_job
from config.registry import RegistrySettings
from executor.cli.main import main
from executor.observe.reader import Reader
from executor.observe.server import ObserverApp
from tests.support import proc_scan
from tests.support.agent_sim import AgentSimulator, make_task_info
from tests.support.shellwords import fake_sh
from tests.support.stoker_proc import task_pids
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]

EXECUTOR = [sys.executable, "-m", "executor", "executor"]
TOKEN = f"surfaces-T0k3n-{os.urandom(16).hex()}"


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "surfaces.aurora"
    path.write_text(
        f"web = Process(name='web', cmdline='echo started; exec {fake_sh()} --ignore-sigterm')\n"
        "jobs = [Service(cluster='local', role='me', environment='test', name='surfaces',\n"
        "                task=Task(processes=[web], finalization_wait=0.5,\n"
        "                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)),\n"
        "                health_check_config=HealthCheckConfig(initial_interval_secs=2.0, interval_secs=0.05,\n"
        "                    timeout_secs=1.0, health_checker=HealthCheckerConfig(shell=ShellHealthChecker(\n"
        "                        shell_command='true'))))]\n")
    return path


@pytest.fixture
def sim(tmp_path, monkeypatch):
    # a registry of its own: the readers look the task up by its id, and another module's
    # `task-1` on this worker, ended in the session's registry, made the id name two (300)
    monkeypatch.setenv("STOKER_ROOT", str(tmp_path / "root"))
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    sim = AgentSimulator(sandbox=sandbox, auth_token=TOKEN)
    sim.launch_executor(EXECUTOR, cwd=sandbox, shutdown_grace="5secs",
                        env_overrides={"STOKER_LOG_LEVEL": "DEBUG", "STOKER_LOG_FORMAT": "json"})
    sim.wait_subscribed(timeout_secs=15)
    yield sim
    markers = {proc_scan.task_marker_of(pid) for pid in task_pids(sandbox)} - {None, ""}
    sim.close()
    for marker in markers:
        proc_scan.kill_carrying(f"{proc_scan.TASK_MARKER}={marker}", task_pids(sandbox))


def _cli(capsys, *args: str) -> str:
    main(list(args))
    out, err = capsys.readouterr()
    return out + err


def _observed(task_id: str) -> dict[str, str]:
    """Every page, API answer and log view the observer serves of `task_id`, and /metrics."""
    app = ObserverApp(Reader(RegistrySettings.from_env(os.environ)), loopback=True)
    tid = quote(task_id)
    answers = {}
    got: list[str] = []
    for url in ("/", "/tasks", f"/tasks/{tid}", f"/tasks/{tid}/processes/web/logs", "/api/tasks",
                f"/api/tasks/{tid}", f"/api/tasks/{tid}/processes/web/logs", "/metrics"):
        got.clear()
        body = b"".join(app({"REQUEST_METHOD": "GET", "RAW_URI": url, "PATH_INFO": url, "QUERY_STRING": "",
                             "HTTP_HOST": "localhost"}, lambda status, headers, *_: got.append(status)))
        assert got[0].startswith("200"), (url, got, body[:300])
        answers[url] = body.decode("utf-8", "replace")
    return answers


def test_no_reader_of_a_running_task_shows_the_token(sim, tmp_path, capsys, figures):
    sandbox = sim.sandbox
    sim.launch(make_task_info("task-1", encode(load_job(_config(tmp_path)))))
    assert sim.wait_for_state("task-1", "TASK_RUNNING", 20).healthy is True
    wait_for(lambda: (sandbox / ".logs/web/0/stdout").exists() and
             "started" in (sandbox / ".logs/web/0/stdout").read_text(), 10)
    said = {"ps": _cli(capsys, "ps"), "ps --json": _cli(capsys, "ps", "--json"),
            "status": _cli(capsys, "status", str(sandbox)),
            "status --json": _cli(capsys, "status", str(sandbox), "--json")}
    said.update(_observed("task-1"))
    said["restart"] = _cli(capsys, "restart", str(sandbox), "web")
    wait_for(lambda: (sandbox / ".logs/web/1/stdout").exists(), 10)
    said["kill"] = _cli(capsys, "kill", str(sandbox), "--grace", "0.5")
    sim.wait_for_state("task-1", "TASK_KILLED", 15)
    assert sim.wait_exit(15) == 0
    said["updates"] = json.dumps([r.status for r in sim.updates("task-1")])

    calls = [r for r in sim.requests if r.call_type in ("SUBSCRIBE", "UPDATE")]
    assert calls and all(r.header("Authorization") == f"Bearer {TOKEN}" for r in calls)
    about = {name: text for name, text in said.items() if any(mark in text for mark in
             ("task-1", str(sandbox), "surfaces.0", "started"))}
    assert sorted(set(said) - set(about)) == [], {k: said[k][:300] for k in set(said) - set(about)}
    figures.add("answers of ps, status, the observer, the control socket and the agent searched", len(said))
    figures.add("their bytes", sum(len(t) for t in said.values()))
    leaks = sorted(name for name, text in said.items() if TOKEN in text)
    figures.add("answers holding the token", len(leaks))
    assert leaks == []
    assert TOKEN not in sim.executor_log()


def test_the_failure_of_a_task_that_is_no_job_holds_no_token(sim, capsys):
    sim.launch(make_task_info("task-bad", b'{"not": "a job"'))
    failed = sim.wait_for_state("task-bad", "TASK_FAILED", 20)
    assert sim.wait_exit(15) is not None
    message = json.dumps(failed.status)
    assert "task-bad" in message and failed.status.get("message"), message
    status = _cli(capsys, "ps", "--json") + _cli(capsys, "status", str(sim.sandbox))
    assert TOKEN not in message and TOKEN not in status
    assert TOKEN not in sim.executor_log()
    leaks = [str(p) for p in sim.sandbox.rglob("*") if p.is_file() and not p.is_symlink()
             and TOKEN.encode() in p.read_bytes()]
    assert leaks == []
