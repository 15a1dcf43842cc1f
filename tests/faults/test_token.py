"""Fault 5b: the executor's auth token appears in no log line, file or process a task can read.

The real `stoker executor` runs with MESOS_EXECUTOR_AUTHENTICATION_TOKEN set, at DEBUG, once
with text logs (HTTP health check, then KILL) and once with JSON logs (shell health check,
then SHUTDOWN). The task's processes and its health command dump their environments. Then
every byte of the executor log, the sandbox (checkpoint, process logs, anything written) and
the live task processes' /proc environments is searched for the token.

The attack: with the token and the `MESOS_*` variables it was given, a task process could
post a forged TASK_FINISHED that the agent accepts. So a task process and a shell health
command each read every /proc/PID/environ and /proc/PID/cmdline (and each thread's) on the
host that their uid can read, the executor's, its threads', the watchdog's and their own
included, and their parent's environment as an attacker would; the token must be in none,
and the agent's endpoint and the framework and executor IDs must not be in the task's
environment (unless the `pass_agent_env` setting asks for them). This runs once with the
executor as the test's own user (here often root, who may read every environ: the token
must be gone from the executor's environment block itself) and once as an unprivileged
user, whose task must not be able to read the executor's environment at all.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from config.document import encode
from config.loader import load_job
from tests.support import proc_scan
from tests.support.agent_sim import AgentSimulator, make_task_info
from tests.support.ports import free_ports
from tests.support.shellwords import FAKE_TASK, fake_sh, in_aurora, sh
from tests.support.stoker_proc import checkpoint_records, task_pids
from tests.support.users import reachable, stoker_as
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]

EXECUTOR = [sys.executable, "-m", "executor", "executor"]
# Unique per run: another test run on the same host has executors with its own token.
TOKEN = f"faults-T0k3n-{uuid.uuid4().hex}"
TOKEN_VAR = "MESOS_EXECUTOR_AUTHENTICATION_TOKEN"
AGENT_VARS = ("MESOS_AGENT_ENDPOINT", "MESOS_FRAMEWORK_ID", "MESOS_EXECUTOR_ID", "MESOS_SLAVE_PID")
KEPT_VARS = ("MESOS_SANDBOX", "MESOS_DIRECTORY")
NOBODY = 65534


def _config(tmp_path: Path, health: str) -> Path:
    serve = (f"exec {fake_sh()} --serve-health {{{{thermos.ports[health]}}}} "
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
    web_out = sim.sandbox / ".logs/web/0/stdout"
    # The shell check passes at once, so the stop could come before `web` has started (and
    # a SIGTERM then ends it before it ignores SIGTERM or prints): wait for its line too.
    wait_for(lambda: (sim.sandbox / "environ.bin").exists() and
             sum(r.get("kind") == "health" for r in checkpoint_records(sim.sandbox)) >= 3 and
             web_out.exists() and TOKEN_VAR in web_out.read_text(), 10)
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
    assert "status_update_sent" in log and "DEBUG" in log, "the executor did not log at DEBUG"
    stdout = web_out.read_text()
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
    # Nor in what `stoker ps`, `status` and `observe` read beyond the sandbox (the host
    # registry), nor in any status update the agent got (its message and every field).
    root = Path(os.environ["STOKER_ROOT"])
    _, _, registry_leaks = _scan_files(root)
    assert any(str(sim.sandbox).encode() in p.read_bytes() for p in root.rglob("*") if p.is_file())
    assert not registry_leaks, f"the token is in the registry: {registry_leaks}"
    updates = json.dumps([r.status for r in sim.updates("task-1")])
    assert "TASK_KILLED" in updates and TOKEN not in updates


# ---- the attack: a task reads every process it can, its parent first ----


def _hunt_config(tmp_path: Path, python: str, fake_task: str) -> Path:
    hunt = f"--hunt-secret {TOKEN.encode().hex()}"
    prints = " ".join(f"--print-env {name}" for name in (TOKEN_VAR, *AGENT_VARS, *KEPT_VARS))
    web = f"exec {sh(python, fake_task)} {prints} {hunt} --hunt-out web_hunt.json"
    check = f"{sh(python, fake_task)} {hunt} --hunt-out health_hunt.json --exit-after 0"
    path = tmp_path / "hunt.aurora"
    path.write_text(
        f"web = Process(name='web', cmdline={web!r})\n"
        "jobs = [Service(cluster='local', role='me', environment='test', name='hunt',\n"
        "                task=Task(processes=[web], finalization_wait=0.5,\n"
        "                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)),\n"
        "                health_check_config=HealthCheckConfig(\n"
        "                    initial_interval_secs=2, interval_secs=0.2, timeout_secs=3,\n"
        "                    health_checker=HealthCheckerConfig(shell=ShellHealthChecker(\n"
        f"                        shell_command={check!r}))))]\n")
    return path


def _sandbox_for(user: str, tmp_path: Path) -> Path:
    if user == "same":
        sandbox = tmp_path / "sandbox"
        sandbox.mkdir()
        return sandbox
    # An unprivileged executor needs a sandbox it owns on a path it can reach (pytest's
    # tmp_path is private to the test's user).
    sandbox = Path(tempfile.mkdtemp(prefix="stoker-token-"))
    os.chown(sandbox, NOBODY, NOBODY)
    return sandbox


def _executor_for(user: str) -> tuple[list[str], str, str]:
    """The executor's command line, and the Python and fake_task.py its task runs: the test's
    own, or, for the unprivileged user, a Python and a copy of this checkout's code it may
    read (`stoker_as`); skips where there is none."""
    if user == "same":
        return EXECUTOR, sys.executable, str(FAKE_TASK)
    stoker = stoker_as(NOBODY, NOBODY)
    if stoker is None:
        pytest.skip("no Python an unprivileged user may run this checkout with")
    return [*stoker, "executor"], stoker[stoker.index("-m") - 1], reachable(FAKE_TASK, stoker)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@pytest.mark.parametrize("user", [
    "same",
    pytest.param("unprivileged", marks=pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("setpriv") is None,
        reason="running the executor as another user needs root and setpriv")),
], ids=["executor as the test's user", "executor as an unprivileged user"])
def test_no_process_a_task_can_read_shows_the_token(tmp_path, figures, user):
    executor_command, python, fake_task = _executor_for(user)
    sandbox = _sandbox_for(user, tmp_path)
    sim = AgentSimulator(sandbox=sandbox, auth_token=TOKEN)
    marker = None
    try:
        proc = sim.launch_executor(executor_command, cwd=sandbox)
        sim.wait_subscribed(timeout_secs=15)
        sim.launch(make_task_info("task-1", encode(load_job(_hunt_config(tmp_path, python, fake_task)))))
        running = sim.wait_for_state("task-1", "TASK_RUNNING", 20)
        assert running.healthy is True
        web = wait_for(lambda: _read_json(sandbox / "web_hunt.json"), 10)
        health = wait_for(lambda: _read_json(sandbox / "health_hunt.json"), 10)
        marker = proc_scan.task_marker_of(web["pid"])
        executor = proc.pid  # setpriv execs the executor: the same pid
        started = proc_scan.children(executor)
        # (a health command may exit meanwhile: read_bytes gives b"" for a vanished process)
        watchdogs = [p for p in started if b"stoker-watchdog" in proc_scan.read_bytes(f"/proc/{p}/cmdline")]
        # From the test's side too (root reads everything): the executor, each of its threads,
        # and every process it started.
        views = [f"/proc/{executor}/task/{tid}/{kind}" for tid in os.listdir(f"/proc/{executor}/task")
                 for kind in ("environ", "cmdline")]
        views += [f"/proc/{p}/{kind}" for p in started for kind in ("environ", "cmdline")]
        seen = [v for v in views if TOKEN.encode() in proc_scan.read_bytes(v)]
        stdout = (sandbox / ".logs/web/0/stdout").read_text()
        log = sim.executor_log()
        sim.kill("task-1", grace_secs=0.5)
        sim.wait_for_state("task-1", "TASK_KILLED", 15)
        assert sim.wait_exit(15) == 0
    finally:
        sim.close()
        if marker:
            proc_scan.kill_carrying(f"{proc_scan.TASK_MARKER}={marker}")
        if user != "same":
            shutil.rmtree(sandbox, ignore_errors=True)

    label = "same user" if user == "same" else "unprivileged"
    for name, report in (("task process", web), ("shell health command", health)):
        figures.add(f"{label}: /proc environ and cmdline files a {name} read", report["read"])
        figures.add(f"{label}: token occurrences a {name} found", len(report["hits"]))
    calls = [r for r in sim.requests if r.call_type in ("SUBSCRIBE", "UPDATE")]
    assert calls and all(r.header("Authorization") == f"Bearer {TOKEN}" for r in calls)
    assert "secrets_hidden dumpable=False erased=1" in log, log
    assert web["ppid"] == executor and health["ppid"] == executor
    assert not web["hits"], f"a task process found the token in {web['hits']}"
    assert not health["hits"], f"a health command found the token in {health['hits']}"
    assert not seen, f"the token is in {seen}"
    # The attack itself: the parent's environment holds no token.
    parent = web["parent_environ"]
    if user == "same":
        assert parent == {"readable": True, "secret": False, "variable": False}, parent
        threads = [p for p in web["parent_paths_read"] if "/task/" in p and p.endswith("/environ")]
        assert len(threads) >= 2, web["parent_paths_read"]  # the executor has several threads
    else:
        assert parent == {"readable": False, "error": "EACCES"}, parent
    assert executor in web["cmdline_read"]
    assert len(watchdogs) == 1 and watchdogs[0] in web["environ_read"], watchdogs
    assert f"{TOKEN_VAR} is unset" in stdout
    for name in AGENT_VARS:
        assert f"{name} is unset" in stdout, stdout
    for name in KEPT_VARS:
        assert f"{name}={sandbox}" in stdout, stdout


def test_the_agent_variables_reach_tasks_only_when_a_setting_asks(tmp_path):
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    prints = " ".join(f"--print-env {name}" for name in (TOKEN_VAR, *AGENT_VARS))
    config = tmp_path / "pass.aurora"
    config.write_text(
        f"p = Process(name='p', cmdline='exec {in_aurora(fake_sh())} {prints}')\n"
        "jobs = [Service(cluster='local', role='me', environment='test', name='pass',\n"
        "                task=Task(processes=[p], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]\n")
    sim = AgentSimulator(sandbox=sandbox, auth_token=TOKEN)
    marker = None
    try:
        sim.launch_executor(EXECUTOR, cwd=sandbox, env_overrides={"STOKER_PASS_AGENT_ENV": "1"})
        sim.wait_subscribed(timeout_secs=15)
        sim.launch(make_task_info("task-1", encode(load_job(config))))
        sim.wait_for_state("task-1", "TASK_RUNNING", 20)
        log = sandbox / ".logs/p/0/stdout"
        stdout = wait_for(lambda: (lambda t: t if t.count("\n") >= 1 + len(AGENT_VARS) else None)(
            log.read_text() if log.exists() else ""), 10)
        pids = task_pids(sandbox)
        marker = proc_scan.task_marker_of(next(iter(pids))) if pids else None
        sim.kill("task-1", grace_secs=0.5)
        sim.wait_for_state("task-1", "TASK_KILLED", 15)
    finally:
        sim.close()
        if marker:
            proc_scan.kill_carrying(f"{proc_scan.TASK_MARKER}={marker}")
    assert f"{TOKEN_VAR} is unset" in stdout
    assert f"MESOS_AGENT_ENDPOINT={sim.endpoint}" in stdout
    assert f"MESOS_FRAMEWORK_ID={sim.framework_id}" in stdout
    assert f"MESOS_EXECUTOR_ID={sim.executor_id}" in stdout
    assert "MESOS_SLAVE_PID=slave(1)@" in stdout


# ---- the start-up window: how much loads while the token is still in /proc/PID/environ ----

# What the entry point loads before it hides the token (`executor/cli/start.py`, `hide_early`):
# its own package and start module, the hardening module, and ctypes (with the C modules and
# the standard library modules ctypes' import brings). Everything else (the code cache,
# attrs, the settings, the command's modules, which kept the token readable 2 to 5 times longer
# when `executor.cli.main` hid it: docs/mesos.md §6) comes after, with the token gone.
BEFORE_HIDING = {"executor", "executor.cli", "executor.cli.start", "executor.procs", "executor.procs.hardening",
                 "ctypes", "_ctypes", "struct", "_struct", "ctypes._endian", "__future__"}


def test_the_executor_hides_the_token_before_it_loads_anything_else(tmp_path):
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(Path(__file__).parents[2]), TOKEN_VAR: TOKEN,
           "MESOS_AGENT_ENDPOINT": "127.0.0.1:1", "MESOS_FRAMEWORK_ID": "f", "MESOS_EXECUTOR_ID": "e",
           "MESOS_SLAVE_ID": "s", "MESOS_DIRECTORY": str(sandbox), "MESOS_SANDBOX": str(sandbox),
           "STOKER_ROOT": str(tmp_path / "registry"), "STOKER_LAUNCH_TIMEOUT": "0.1"}
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "executor", "executor"], cwd=sandbox, env=env,
                          capture_output=True, text=True, timeout=30)
    names = [line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines()
             if line.startswith("import time:") and line.count("|") == 2]
    assert "executor.procs.hardening" in names, done.stderr
    before = names[:names.index("executor.procs.hardening") + 1]
    loaded_at_start = set(names[:names.index("executor")])  # the interpreter's own start-up
    assert sorted(set(before) - loaded_at_start - BEFORE_HIDING) == []
    assert {"attr", "executor.codecache", "executor.cli.main"} <= set(names)  # it sees what came after
    assert "secrets_hidden dumpable=False erased=1" in done.stderr
    assert TOKEN not in done.stderr and TOKEN not in done.stdout


def test_the_early_hiding_knows_every_secret_the_settings_know():
    from config.settings import SECRET_VARIABLES
    from executor.procs import hardening

    assert hardening.SECRET_VARIABLES == SECRET_VARIABLES


HIDE_EARLY = """
import json, os
from executor.procs import hardening
hidden = hardening.hide_early(os.environ)
with open("/proc/self/environ", "rb") as block:
    shown = block.read()
print(json.dumps({"taken": hardening.taken, "early": hidden is hardening.early, "dumpable": hidden.dumpable,
                  "erased": hidden.erased, "problems": list(hidden.problems), "left": os.environ.get(VAR),
                  "shown": TOKEN.encode() in shown}))
"""


def test_hide_early_keeps_the_token_for_the_settings_erases_it_and_records_what_it_did():
    """`hardening.hide_early` as the entry point's first step, in a process of its own (it
    makes that process undumpable): the token kept in `taken` (the settings read it there),
    gone from `os.environ` and the block /proc shows, the outcome kept in `early` (logged once
    logging is set up) and returned; a variable not set is not taken."""
    pythonpath = os.pathsep.join(filter(None, (str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH"))))
    program = f"VAR, TOKEN = {TOKEN_VAR!r}, {TOKEN!r}\n" + HIDE_EARLY
    with_token = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=30,
                                env={**os.environ, TOKEN_VAR: TOKEN, "PYTHONPATH": pythonpath})
    assert json.loads(with_token.stdout) == {"taken": {TOKEN_VAR: TOKEN}, "early": True, "dumpable": False,
                                             "erased": 1, "problems": [], "left": None, "shown": False}, with_token.stderr
    without = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=30,
                             env={**{k: v for k, v in os.environ.items() if k != TOKEN_VAR}, "PYTHONPATH": pythonpath})
    assert json.loads(without.stdout) == {"taken": {}, "early": True, "dumpable": False,
                                          "erased": 0, "problems": [], "left": None, "shown": False}, without.stderr
