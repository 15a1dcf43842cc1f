"""Stoker when the machine runs out of threads: a pids cgroup that is full (the Mesos pids
isolator's limit covers the executor as well as its task). Disk, inodes and descriptors
are in test_audit_limits.py.

Each test makes the shortage for real, in a pids cgroup of its own (removed after), and
checks what an operator needs: the supervision goes on, one line names what failed.

- A run whose log pump (the thread that copies a rotating or `both` logger's output) could
  not start, in a full pids cgroup, was forked first and then raised RuntimeError out of the
  spawn, which ends the whole task as an internal error. The pump now starts before the
  fork, and a run that cannot have it fails alone, like a fork that fails.
- `stoker executor` in a full pids cgroup: a kill whose lifecycle endpoints' thread could
  not start ended the task TASK_FAILED as an internal error (and `stoker run` with a bare
  traceback); it now goes on to its signals and ends TASK_KILLED. A LAUNCH whose task
  thread could not start left the task STAGING with no update at all; it now fails with
  the reason."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from config.document import encode
from config.loader import load_job
from tests.support.agent_sim import make_task_info
from tests.support.http_server import Reply, ScriptedHTTPServer
from tests.support.limits import pids_cgroup
from tests.support.ports import free_ports
from tests.support.stoker_proc import REPO
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]

EXECUTOR = [sys.executable, "-m", "executor", "executor"]


# A Supervisor in a pids cgroup of its own, whose limit leaves room for one more fork or
# thread, not two: before the fix the run forked, and then its log pump's thread could not
# start: a RuntimeError out of `spawn`, which the owner takes for an internal error and ends
# the whole task with. Now the pump starts before the fork: whichever of the two cannot
# start, the spawn fails that run alone (SpawnError), and once there is room again the
# next run starts and its output is copied.
PIDS_CHILD = r"""
import json, os, sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
cg, sandbox = Path(sys.argv[1]), Path(sys.argv[2])
(cg / "cgroup.procs").write_text(str(os.getpid()))
from config.spec import LoggerSpec, LogMode, ProcessSpec
from executor.procs.supervisor import SpawnError, Supervisor
sup = Supervisor(sandbox=sandbox, task_label="limits.0", env={}, post=lambda e: None,
                 cgroups="off")
out = {}
try:
    sup.start()
    plain = sup.spawn(ProcessSpec("plain", "sleep 30"), 0)
    copied = ProcessSpec("copied", "echo copied; sleep 30", logger=LoggerSpec(mode=LogMode.ROTATE))
    now = int((cg / "pids.current").read_text())
    (cg / "pids.max").write_text(str(now + 1))  # one more fork or thread, not both
    out["room"] = now + 1 - int((cg / "pids.current").read_text())
    try:
        out["run0"] = f"started {sup.spawn(copied, 0)}"
    except SpawnError as e:
        out["run0"] = f"SpawnError: {e}"
    except Exception as e:
        out["run0"] = f"{type(e).__name__}: {e}"
    (cg / "pids.max").write_text("max")
    out["plain"] = plain in sup.task_pids()
    out["run1"] = sup.spawn(copied, 1)
finally:
    print(json.dumps(out), flush=True)
    if "run1" in out:
        log = sandbox / ".logs" / "copied" / "1" / "stdout"
        import time
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not (log.exists() and log.read_bytes()):
            time.sleep(0.01)
        print(json.dumps({"log": log.read_text() if log.exists() else None}), flush=True)
    sup.close()
"""


def test_a_run_whose_log_pump_cannot_start_fails_alone(tmp_path: Path) -> None:
    (tmp_path / "sb").mkdir()
    with pids_cgroup() as cg:
        done = subprocess.run([sys.executable, "-c", PIDS_CHILD, str(cg), str(tmp_path / "sb"),
                               str(REPO)], capture_output=True, text=True, timeout=30)
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0 and len(lines) == 2, (done.stdout, done.stderr)
    out, log = lines
    assert out["room"] == 1, out  # the limit left room for exactly one
    assert out["run0"].startswith("SpawnError:"), out
    assert "Resource temporarily unavailable" in out["run0"] or "can't start new thread" in out["run0"], out
    assert out["plain"], "the task's other process was lost"
    assert log == {"log": "copied\n"}, log


# ---- `stoker executor` in a pids cgroup that fills up (the Mesos pids isolator's limit
# covers the executor as well as its task) ----


def _pids_full(cg: Path) -> None:
    """No new process or thread in `cg` from now (until its pids.max is `max` again): a
    limit below what it holds (the kernel allows it), not at it. At it, a thread then still
    under way (the task's first disk sample) freed its slot as it ended, and the thread the
    test wanted refused started in it (1 run in 2 under load)."""
    (cg / "pids.max").write_text("1")


def _lifecycle_task(tmp_path: Path) -> bytes:
    path = tmp_path / "lifecycle.aurora"
    path.write_text(
        "p = Process(name='web', cmdline='echo {{thermos.ports[admin]}}; exec sleep 1000')\n"
        "jobs = [Service(cluster='local', role='me', environment='test', name='web',\n"
        "                task=Task(processes=[p], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)),\n"
        "                lifecycle=LifecycleConfig(http=HttpLifecycleConfig(port='admin',\n"
        "                    graceful_shutdown_wait_secs=0.2, shutdown_wait_secs=0.2)))]\n")
    return encode(load_job(path))


def test_a_kill_whose_lifecycle_thread_cannot_start_goes_on_to_its_signals(sim, tmp_path: Path) -> None:
    """Before: the lifecycle's thread could not start, the owner took it for an internal
    error and the task ended TASK_FAILED ("executor internal error: RuntimeError"), with a
    traceback, instead of TASK_KILLED."""
    with pids_cgroup() as cg:
        proc = sim.launch_executor(EXECUTOR, cwd=sim.sandbox)
        (cg / "cgroup.procs").write_text(str(proc.pid))
        sim.wait_subscribed(timeout_secs=15)
        sim.launch(make_task_info("task-1", _lifecycle_task(tmp_path), ports=free_ports(1)))
        sim.wait_for_state("task-1", "TASK_RUNNING", 10)
        _pids_full(cg)
        sim.kill("task-1", grace_secs=1.0)
        killed = sim.wait_for_state("task-1", "TASK_KILLED", 5)
        (cg / "pids.max").write_text("max")
        assert sim.wait_exit(10) == 0
    log = sim.executor_log()
    assert sim.states("task-1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"], killed
    assert "lifecycle_failed" in log and "can't start new thread" in log, log[-2000:]
    assert "Traceback" not in log, log[-3000:]


def test_a_launch_whose_task_thread_cannot_start_fails_the_task_with_the_reason(sim, tmp_path: Path) -> None:
    """Before: the LAUNCH callback raised, the agent heard nothing about the task (it stayed
    STAGING) and the executor waited on for a task that never ran."""
    with pids_cgroup() as cg:
        proc = sim.launch_executor(EXECUTOR, cwd=sim.sandbox)
        (cg / "cgroup.procs").write_text(str(proc.pid))
        sim.wait_subscribed(timeout_secs=15)
        sim.message(b"ping")  # its callbacks' thread, the driver's last, answers: all started
        wait_for(lambda: "framework_message" in sim.executor_log(), 5)
        _pids_full(cg)
        sim.launch(make_task_info("task-1", _lifecycle_task(tmp_path), ports=free_ports(1)))
        failed = sim.wait_for_state("task-1", "TASK_FAILED", 5)
        (cg / "pids.max").write_text("max")
        assert sim.wait_exit(10) == 0
    assert "could not start" in failed.message and "can't start new thread" in failed.message, failed
    log = sim.executor_log()
    assert "launch_failed" in log and "Traceback" not in log, log[-3000:]


# An HTTP health check in a full pids cgroup: before, each attempt started a watchdog thread
# for its deadline, and with no thread to be had every attempt was "internal health check
# error: RuntimeError: can't start new thread" with a traceback, and the task was killed as
# unhealthy while its endpoint answered. The deadline now needs no thread of its own.
HEALTH_CHILD = r"""
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from healthcheck.http_check import HttpChecker
cg = Path(sys.argv[1])
(cg / "cgroup.procs").write_text(str(__import__("os").getpid()))
(cg / "pids.max").write_text((cg / "pids.current").read_text().strip())  # no thread left
attempt = HttpChecker(port=int(sys.argv[2]), timeout_secs=2.0).check()
print(attempt.outcome.value, attempt.reason, flush=True)
"""


def test_an_http_health_check_needs_no_thread_of_its_own(tmp_path: Path) -> None:
    with ScriptedHTTPServer([Reply(200, b"ok")]) as server, pids_cgroup() as cg:
        done = subprocess.run([sys.executable, "-c", HEALTH_CHILD, str(cg), str(server.port),
                               str(REPO)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("passed ") and "answered HTTP 200" in done.stdout, done.stdout
    assert "Traceback" not in done.stderr, done.stderr


# `stoker run` and `stoker executor` started in a pids cgroup that is already full: before,
# each died with a bare traceback and exit status 1 (the driver's start, the spool's thread,
# the reaper); now one `stoker: error:` line saying what ran out, exit status 2.
FULL_START = ("import os, sys; cg = sys.argv[1]; "
              "open(cg + '/cgroup.procs', 'w').write(str(os.getpid())); "
              "open(cg + '/pids.max', 'w').write(open(cg + '/pids.current').read().strip()); "
              "os.execv(sys.executable, [sys.executable, '-m', 'executor', *sys.argv[2:]])")


@pytest.mark.parametrize("command", ["run", "executor"])
def test_stoker_started_with_no_thread_to_be_had_ends_with_one_line(tmp_path: Path,
                                                                    command: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if command == "executor":
        env.update(MESOS_AGENT_ENDPOINT="127.0.0.1:1", MESOS_FRAMEWORK_ID="f",
                   MESOS_EXECUTOR_ID="e", MESOS_SANDBOX=str(tmp_path))
    args = (["run", str(REPO / "examples" / "hello_world.aurora"), "--sandbox",
             str(tmp_path / "sb")] if command == "run" else ["executor"])
    with pids_cgroup() as cg:
        done = subprocess.run([sys.executable, "-c", FULL_START, str(cg), *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=30)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("stoker: error:")]
    assert len(errors) == 1 and "cannot go on: " in errors[0], done.stderr[-2000:]
    assert "pids.max" in errors[0] and "ulimit -v" not in errors[0], errors[0]
    assert done.returncode == 2, done.stderr[-2000:]


# A supervisor whose start found no thread for its reaper: before, its close() failed on an
# assertion (a second traceback over the first), and the reaper kept the thread that never
# started, so no later start in the process could reap anything.
SUPERVISOR_CHILD = r"""
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from executor.procs.supervisor import Supervisor
cg, sandbox = Path(sys.argv[1]), Path(sys.argv[2])
(cg / "cgroup.procs").write_text(str(__import__("os").getpid()))
out = {}
def supervisor():
    return Supervisor(sandbox=sandbox, task_label="limits.0", env={}, post=lambda e: None,
                      cgroups="off")
first = supervisor()
(cg / "pids.max").write_text((cg / "pids.current").read_text().strip())  # no thread left
try:
    first.start()
except RuntimeError as exc:
    out["start"] = str(exc)
try:
    first.close()
    out["close"] = "closed"
except BaseException as exc:
    out["close"] = f"{type(exc).__name__}: {exc}"
(cg / "pids.max").write_text("max")
second = supervisor()
second.start()
from executor.procs.reaper import Reaper
out["reaper"] = Reaper.acquire({}).thread.is_alive()
Reaper.acquire({}).release()
second.close()
print(json.dumps(out), flush=True)
"""


def test_a_supervisor_that_found_no_thread_for_its_reaper_closes_and_the_next_one_starts(
        tmp_path: Path) -> None:
    (tmp_path / "sb").mkdir()
    with pids_cgroup() as cg:
        done = subprocess.run([sys.executable, "-c", SUPERVISOR_CHILD, str(cg),
                               str(tmp_path / "sb"), str(REPO)],
                              capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out == {"start": "can't start new thread", "close": "closed", "reaper": True}, out


# `stoker run`'s console spool with no thread to be had: before, `put` raised RuntimeError
# (so did every log line through it: a line logged before the early start's runs were
# killed left them running after `stoker run` had exited), and kept the thread that never
# started; now the line is written at once, and the thread is tried again at the next.
SPOOL_CHILD = r"""
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from executor.spool import Spool
cg = Path(sys.argv[1])
(cg / "cgroup.procs").write_text(str(__import__("os").getpid()))
spool = Spool()
(cg / "pids.max").write_text((cg / "pids.current").read_text().strip())  # no thread left
spool.put(sys.stdout, "written at once\n", lambda exc: None)
(cg / "pids.max").write_text("max")
spool.put(sys.stdout, "written by the spool\n", lambda exc: None)
assert spool.drain(5)
"""


def test_a_console_line_put_with_no_thread_to_be_had_is_written_at_once(tmp_path: Path) -> None:
    with pids_cgroup() as cg:
        done = subprocess.run([sys.executable, "-c", SPOOL_CHILD, str(cg), str(REPO)],
                              capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == "written at once\nwritten by the spool\n", done.stdout


# `stoker run` in a pids cgroup with room for 1 to 3 threads or processes more than it
# holds at its start: it stops with `cannot go on: ...` before its task recorded anything,
# at a point that moves with the room (its control socket's thread, the task's owner's).
# Before, the registry entry kept that reason only where the control socket's thread could
# not start: with room for 1 (the task's owner failing before its header), `stoker status`
# said its supervisor "let go of the sandbox before it recorded anything", as if asked to,
# and the reason was on its stderr alone.
ROOMY_START = ("import os, sys; cg, room = sys.argv[1], int(sys.argv[2]); "
               "open(cg + '/cgroup.procs', 'w').write(str(os.getpid())); "
               "open(cg + '/pids.max', 'w').write(str(int(open(cg + '/pids.current').read()) + room)); "
               "os.execv(sys.executable, [sys.executable, '-m', 'executor', *sys.argv[3:]])")


@pytest.mark.parametrize("room", [1, 2, 3])
def test_stoker_run_that_cannot_go_on_before_its_first_record_says_why_in_its_status(
        tmp_path: Path, room: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "STOKER_ROOT": str(tmp_path / "root")}
    sandbox = tmp_path / "sb"
    with pids_cgroup() as cg:
        done = subprocess.run([sys.executable, "-c", ROOMY_START, str(cg), str(room), "run",
                               str(REPO / "examples" / "hello_world.aurora"), "--sandbox", str(sandbox)],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("stoker: error:")]
    assert done.returncode == 2 and len(errors) == 1, done.stderr[-2000:]
    status = subprocess.run([sys.executable, "-m", "executor", "status", str(sandbox)], env=env,
                            capture_output=True, text=True, timeout=30)
    said = errors[0].removeprefix("stoker: error: ")
    assert said in status.stdout, (said, status.stdout)


# `stoker run` of 6 processes in a pids cgroup whose room runs out midway through the start:
# some runs forked, the next ones' forks refused (EAGAIN), then no thread for the task's
# owner: the task ends FAILED `could not go on`. Before, its checkpoint kept the runs whose
# fork was refused RUNNING (no pid) and those to be restarted WAITING: `stoker status`
# showed a FAILED task with processes running. The rooms that cut the start midway depend on
# how many threads this Python starts; each run is checked, and the test needs one cut.
SIX = ("procs = [Process(name='p%d' % i, cmdline='sleep 2; exit 1', max_failures=0) for i in range(6)]\n"
       "jobs = [Service(cluster='local', role='me', environment='test', name='six',\n"
       "        task=Task(name='six', processes=procs, resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)),\n"
       "        health_check_config=HealthCheckConfig(initial_interval_secs=1, interval_secs=1,\n"
       "            health_checker=HealthCheckerConfig(shell=ShellHealthChecker(shell_command='true'))))]\n")


def test_a_start_cut_midway_by_the_pids_limit_leaves_no_process_running_in_the_failed_task(
        tmp_path: Path) -> None:
    (tmp_path / "six.aurora").write_text(SIX)
    env = {**os.environ, "PYTHONPATH": str(REPO), "STOKER_ROOT": str(tmp_path / "root")}
    cut = 0
    for room in range(6, 12):
        sandbox = tmp_path / f"sb{room}"
        with pids_cgroup() as cg:
            try:
                done = subprocess.run([sys.executable, "-c", ROOMY_START, str(cg), str(room), "run",
                                       str(tmp_path / "six.aurora"), "--sandbox", str(sandbox)],
                                      cwd=tmp_path, env=env, capture_output=True, text=True, timeout=3)
            except subprocess.TimeoutExpired:  # room for every run, retried: not a cut start
                continue
        if done.returncode != 2:
            continue
        status = subprocess.run([sys.executable, "-m", "executor", "status", "--json", str(sandbox)],
                                env=env, capture_output=True, text=True, timeout=30)
        view = json.loads(status.stdout)
        if view.get("state") != "FAILED":  # stopped before its first record
            continue
        runs = {p["name"]: p["runs"][-1] for p in view["attempts"][-1]["processes"]}
        assert {run["state"] for run in runs.values()} <= {"KILLED", "FAILED"}, (room, runs)
        cut += any(run["pid"] is None for run in runs.values())
    if not cut:
        pytest.skip("no room from 6 to 11 cut the start between two forks here")
