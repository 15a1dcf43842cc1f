"""Service discovery end to end: `stoker run --announce` and `stoker executor --announcer-*`
against a real ZooKeeper server (tests/support/zookeeper.py), read by a plain kazoo client as
Finagle or Aurora's tools would read a ServerSet.

The task's process (tests/support/serverset_task.py) lists its own ServerSet the moment it
gets SIGTERM: the member must be gone by then, whoever stopped the task (an operator's or
the agent's kill, a failed health check, a SIGTERM to the supervisor); a kazoo watch here
notes when the member vanished, as a client would. Also: the member's ServerSet JSON, the
member back after ZooKeeper restarts or expires the session, the task FAILED with Aurora's
message when ZooKeeper is down from the start, and no ZooKeeper client loaded by a
supervisor whose task does not announce (the supervisor's own import log says so).
"""
from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException

from config.document import encode
from config.loader import load_job
from executor.task.serverset import TIMED_OUT_REASON
from tests.support.agent_sim import AgentSimulator, make_task_info
from tests.support.ports import free_ports
from tests.support.shellwords import python_sh
from tests.support.stoker_proc import (
    REPO,
    StokerProcess,
    checkpoint_records,
    stoker_runs,
    task_pids,
)
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]

TASK = REPO / "tests/support/serverset_task.py"
EXECUTOR = [sys.executable, "-m", "executor", "executor"]
HOST = "host-7.example"
# RUNNING as soon as the process has its ZooKeeper session; a failed check after the 1 s grace
# fails the task after 6 attempts (1.2 s); the first announcement may take 1 + 5 x 0.2 = 2 s.
HEALTH = ("HealthCheckConfig(initial_interval_secs=1.0, interval_secs=0.2, max_consecutive_failures=5,"
          " health_checker=HealthCheckerConfig(shell=ShellHealthChecker("
          "shell_command='test -e ready && test ! -e unhealthy')))")
# Nothing to connect: the first announcement's bound, 0.5 + 2 x 0.25 = 1 s, runs out.
QUICK_HEALTH = ("HealthCheckConfig(initial_interval_secs=0.5, interval_secs=0.25, max_consecutive_failures=2,"
                " health_checker=HealthCheckerConfig(shell=ShellHealthChecker(shell_command='true')))")




class Reader:
    """A ServerSet reader: a kazoo session of its own, and a watch noting each membership."""

    def __init__(self, ensemble: str) -> None:
        self.client = KazooClient(hosts=ensemble, timeout=4.0)
        self.client.start(timeout=20)
        self.seen: list[tuple[float, list[str]]] = []  # (wall time, members) after each change
        self._lock = threading.Lock()

    def watch(self, path: str) -> None:
        self.client.ensure_path(path)

        def changed(children: list[str]) -> None:
            with self._lock:
                self.seen.append((time.time(), sorted(children)))

        self.client.ChildrenWatch(path, changed)

    def members(self, path: str) -> list[str]:
        """The members now; none while this reader's own session is being re-established."""
        try:
            return sorted(self.client.get_children(path)) if self.client.exists(path) else []
        except KazooException:
            return []

    def member_json(self, path: str, member: str) -> dict:
        return json.loads(self.client.get(f"{path}/{member}")[0])

    def vanished_at(self) -> float | None:
        """When the watch first saw the ServerSet empty after a member was in it."""
        with self._lock:
            seen = list(self.seen)
        had = False
        for wall, members in seen:
            had = had or bool(members)
            if had and not members:
                return wall
        return None

    def close(self) -> None:
        self.client.stop()
        self.client.close()


@pytest.fixture
def readers():
    made: list[Reader] = []

    def make(ensemble: str) -> Reader:
        made.append(Reader(ensemble))
        return made[-1]

    yield make
    for reader in made:
        reader.close()


def write_job(tmp_path: Path, ensemble: str, path: str, *, service: bool = True, health: str | None = HEALTH,
              announce: str | None = "Announcer()", cmdline: str | None = None) -> Path:
    """A job whose process reads its ServerSet at SIGTERM; it requests the ports http and admin.
    `health` or `announce` None: the job has none."""
    if cmdline is None:
        cmdline = (f"exec {python_sh(TASK)} {ensemble} {path} sigterm.json "
                   "{{thermos.ports[http]}} {{thermos.ports[admin]}}")
    kind = "Service" if service else "Job"
    extra = "" if service else ", max_task_failures=1"
    extra += "" if health is None else f", health_check_config={health}"
    extra += "" if announce is None else f", announce={announce}"
    job = tmp_path / f"hello-{uuid.uuid4().hex[:6]}.aurora"
    job.write_text(textwrap.dedent(f"""
        web = Process(name='web', cmdline={cmdline!r})
        jobs = [{kind}(cluster='devcluster', role='www-data', environment='prod', name='hello',
                       task=Task(processes=[web], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB),
                                 finalization_wait=3){extra})]
    """))
    return job


def announce_records(sandbox: Path) -> list[dict]:
    return [r for r in checkpoint_records(sandbox) if r["kind"] == "announce"]


def root() -> str:
    return f"/t-{uuid.uuid4().hex[:10]}"


def sigterm_report(sandbox: Path) -> dict:
    return json.loads(wait_for(lambda: (sandbox / "sigterm.json").exists() and
                               (sandbox / "sigterm.json").read_text(), 15, message="the process's SIGTERM report"))


def assert_left_before_sigterm(reader: Reader, sandbox: Path, asked_at: float) -> dict:
    """The process listed its ServerSet when SIGTERM reached it and found it empty: the order
    is proven there, on the process's side. The test's own watch saw the member go after the
    stop was asked; when its notification arrived depends on this process's scheduling (and on
    the ZooKeeper server's, a JVM on the same loaded cores: 5 s went by once), so it bounds
    nothing, and is awaited as long as the report."""
    report = sigterm_report(sandbox)
    assert report["members"] == [], report
    vanished = wait_for(reader.vanished_at, 15, message="the member's deletion seen by the watch")
    assert asked_at <= vanished, (asked_at, vanished, report)
    return {"member_gone_secs": vanished - asked_at, "sigterm_secs": report["sigterm_wall"] - asked_at}


# ---- stoker run --announce ----


@pytest.fixture
def runs(tmp_path):
    """Each run in a work directory of its own (run0, run1...)."""
    works = (tmp_path / f"run{n}" for n in itertools.count())
    with stoker_runs(tmp_path) as start:

        def in_own_dir(job: Path, *args: str, env: dict[str, str] | None = None) -> StokerProcess:
            work = next(works)
            work.mkdir()
            return start(str(job), *args, work=work, env=env)

        yield in_own_dir


def stoker(*args: str) -> str:
    import subprocess

    done = subprocess.run([sys.executable, "-m", "executor", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_run_announces_a_healthy_task_and_a_stoker_kill_removes_it_before_sigterm(zk, readers, runs, tmp_path):
    path = f"{root()}/www-data/prod/hello"
    reader = readers(zk.ensemble)
    reader.watch(path)
    run = runs(write_job(tmp_path, zk.ensemble, path, announce=f"Announcer(zk_path='{path}')"),
               "--announce", zk.ensemble, "--instance", "2")
    [member] = wait_for(lambda: reader.members(path), 20, message="the member")
    ports = {k: v for r in checkpoint_records(run.sandbox) if r["kind"] == "header" for k, v in r["ports"].items()}
    host = socket.gethostname()
    assert reader.member_json(path, member) == {
        "serviceEndpoint": {"host": host, "port": ports["http"]},
        "additionalEndpoints": {name: {"host": host, "port": ports[name]} for name in ("admin", "aurora", "http")},
        "status": "ALIVE", "shard": 2}
    # put at the attempt's start, but written by stoker run's spool thread: waited for, not read at once
    run.wait_output(f"stoker run: announcing at {path} in ZooKeeper {zk.ensemble} once RUNNING")

    status = json.loads(stoker("status", str(run.sandbox), "--json"))
    shown = status["attempts"][-1]["announcement"]
    assert (shown["state"], shown["path"], shown["member"]) == ("JOINED", path, member)
    assert f"announced: {path}/{member} since " in stoker("status", str(run.sandbox))
    [row] = [r for r in json.loads(stoker("ps", "--json")) if r["sandbox"] == str(run.sandbox)]
    assert row["announcement"]["member_path"] == f"{path}/{member}"

    asked_at = time.time()
    stoker("kill", str(run.sandbox), "--grace", "2")
    assert_left_before_sigterm(reader, run.sandbox, asked_at)
    assert run.wait(20) == 0
    assert json.loads(stoker("status", str(run.sandbox), "--json"))["attempts"][-1]["announcement"]["state"] == "CLOSED"


def test_run_a_failed_health_check_removes_the_member_before_sigterm(zk, readers, runs, tmp_path):
    path = f"{root()}/www-data/prod/hello"
    reader = readers(zk.ensemble)
    reader.watch(path)
    run = runs(write_job(tmp_path, zk.ensemble, path, service=False, announce=f"Announcer(zk_path='{path}')"),
               "--announce", zk.ensemble)
    wait_for(lambda: reader.members(path), 20, message="the member")
    asked_at = time.time()
    (run.sandbox / "unhealthy").write_text("")
    assert_left_before_sigterm(reader, run.sandbox, asked_at)
    assert run.wait(20) == 1
    assert "FAILED: health check failed" in run.stdout()


def test_run_a_session_expired_while_running_ends_with_a_new_member(zk, readers, runs, tmp_path):
    """The supervisor stalls (SIGSTOP) past its ZooKeeper session's timeout: ZooKeeper expires
    the session and deletes the member; once the supervisor runs again the task, still
    RUNNING, joins with a new member. A SIGTERM to `stoker run` then removes that member
    before the process's SIGTERM."""
    path = f"{root()}/www-data/prod/hello"
    run = runs(write_job(tmp_path, zk.ensemble, path, announce=f"Announcer(zk_path='{path}')"),
               "--announce", zk.ensemble)
    reader = readers(zk.ensemble)
    [first] = wait_for(lambda: reader.members(path), 20, message="the member")
    before = len(announce_records(run.sandbox))
    os.kill(run.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: not reader.members(path), 15, message="the session expired")  # 4 s here
    finally:
        os.kill(run.pid, signal.SIGCONT)
    [again] = wait_for(lambda: reader.members(path), 20, message="a new member")
    assert again != first
    wait_for(lambda: ("JOINED", again) in [(r["state"], r["member"]) for r in announce_records(run.sandbox)[before:]],
             10, message="the new member recorded")
    history = [(r["state"], r["connection"]) for r in announce_records(run.sandbox)[before:]]
    assert ("JOINING", "LOST") in history, history  # the session expired, and the member with it
    assert [r["to"] for r in checkpoint_records(run.sandbox) if r["kind"] == "task"][-1] == "RUNNING"
    reader.watch(path)
    asked_at = time.time()
    run.signal(signal.SIGTERM)
    assert_left_before_sigterm(reader, run.sandbox, asked_at)
    assert run.wait(20) == 143


def test_run_zookeeper_down_at_the_start_fails_the_task_after_the_bound(runs, tmp_path):
    ensemble = f"127.0.0.1:{free_ports(1)[0]}"  # nothing listens there
    run = runs(write_job(tmp_path, ensemble, "/unused", service=False, health=QUICK_HEALTH,
                         cmdline="sleep 60"), "--announce", ensemble)
    assert run.wait(30) == 1
    out = run.stdout()
    assert f"FAILED: {TIMED_OUT_REASON}" in out, out
    tasks = [r for r in checkpoint_records(run.sandbox) if r["kind"] == "task"]
    running = next(r["wall"] for r in tasks if r["to"] == "RUNNING")
    killing = next(r for r in tasks if r["to"] == "KILLING")
    assert killing["reason"] == TIMED_OUT_REASON and killing["wall"] - running >= 1.0
    [last] = announce_records(run.sandbox)[-1:]
    assert (last["state"], last["member"]) == ("CLOSED", None)


def test_run_a_task_that_does_not_announce_never_loads_kazoo(zk, runs, tmp_path):
    """The supervisor's own import log (PYTHONPROFILEIMPORTTIME) names every module it
    loaded: kazoo only when its task announces (the second run shows the check can fail)."""
    quiet = runs(write_job(tmp_path, zk.ensemble, "/unused", health=None, announce=None, cmdline="sleep 60"),
                 "--announce", zk.ensemble, env={"PYTHONPROFILEIMPORTTIME": "1"})
    loud = runs(write_job(tmp_path, zk.ensemble, "/unused", health=None,
                          announce=f"Announcer(zk_path='{root()}/x')", cmdline="sleep 60"),
                "--announce", zk.ensemble, env={"PYTHONPROFILEIMPORTTIME": "1"})
    for run in (quiet, loud):
        run.wait_output("STARTING → RUNNING", 20)
    assert "the job has no `announce = Announcer(...)`; nothing is announced" in quiet.stdout()
    wait_for(lambda: "announcing at" in loud.stdout() and "kazoo.client" in loud.stderr(), 10)
    for run in (quiet, loud):
        run.signal(signal.SIGTERM)
        assert run.wait(20) == 143
    assert "executor.task.owner" in quiet.stderr()  # the log is there, and complete
    assert "kazoo" not in quiet.stderr() and "executor.task.announcer" not in quiet.stderr()


# ---- stoker executor --announcer-* ----


def launch(sim: AgentSimulator, job: Path, ensemble: str, serverset_root: str,
           env: dict[str, str] | None = None, shutdown_grace: str = "3secs") -> None:
    flags = ["--announcer-ensemble", ensemble, "--announcer-serverset-path", serverset_root,
             "--announcer-hostname", HOST]
    sim.launch_executor(EXECUTOR + flags, cwd=sim.sandbox, env_overrides=env, shutdown_grace=shutdown_grace)
    sim.wait_subscribed(timeout_secs=10)
    sim.launch(make_task_info("task-1", encode(load_job(job), instance=3), ports=free_ports(2)))


def test_executor_announces_aurora_s_serverset_member_and_a_kill_removes_it_before_sigterm(
        zk, readers, agent, tmp_path):
    top = root()
    path = f"{top}/www-data/prod/hello"
    reader = readers(zk.ensemble)
    reader.watch(path)
    launch(agent, write_job(tmp_path, zk.ensemble, path), zk.ensemble, top)
    agent.wait_for_state("task-1", "TASK_RUNNING", 20)
    [member] = wait_for(lambda: reader.members(path), 10, message="the member")
    ports = next(r["ports"] for r in checkpoint_records(agent.sandbox) if r["kind"] == "header")
    assert reader.member_json(path, member) == {
        "serviceEndpoint": {"host": HOST, "port": ports["http"]},
        "additionalEndpoints": {name: {"host": HOST, "port": ports[name]} for name in ("admin", "aurora", "http")},
        "status": "ALIVE", "shard": 3}
    asked_at = time.time()
    agent.kill("task-1", grace_secs=2.0)
    assert_left_before_sigterm(reader, agent.sandbox, asked_at)
    agent.wait_for_state("task-1", "TASK_KILLED", 15)
    assert agent.wait_exit(10) == 0


def test_executor_a_failed_health_check_removes_the_member_before_sigterm(zk, readers, agent, tmp_path):
    top = root()
    path = f"{top}/www-data/prod/hello"
    reader = readers(zk.ensemble)
    reader.watch(path)
    launch(agent, write_job(tmp_path, zk.ensemble, path), zk.ensemble, top)
    wait_for(lambda: reader.members(path), 20, message="the member")
    asked_at = time.time()
    (agent.sandbox / "unhealthy").write_text("")
    assert_left_before_sigterm(reader, agent.sandbox, asked_at)
    failed = agent.wait_for_state("task-1", "TASK_FAILED", 15)
    assert "health check failed" in failed.message


def test_executor_a_zookeeper_restart_ends_with_the_member_present(private_zk, readers, agent, tmp_path):
    private_zk.start()
    top = root()
    path = f"{top}/www-data/prod/hello"
    launch(agent, write_job(tmp_path, private_zk.ensemble, path), private_zk.ensemble, top)
    agent.wait_for_state("task-1", "TASK_RUNNING", 20)
    reader = readers(private_zk.ensemble)
    wait_for(lambda: reader.members(path), 10, message="the member")
    reader.close()
    private_zk.stop()
    wait_for(lambda: "SUSPENDED" in [r["connection"] for r in checkpoint_records(agent.sandbox)
                                     if r["kind"] == "announce"], 15, message="the announcer saw it go")
    private_zk.start()  # same port, same data directory
    reader = readers(private_zk.ensemble)
    # One member in the end, the one the announcer last recorded as joined: the same one if
    # the session survived the restart, else a new one (the old session's member goes when
    # the restarted server expires that session, so for a while the listing may show it
    # alone, or both).
    def settled() -> bool:
        last = announce_records(agent.sandbox)[-1]
        return ((last["state"], last["connection"]) == ("JOINED", "CONNECTED")
                and reader.members(path) == [last["member"]])

    wait_for(settled, 40, message="joined again, and the only member")
    assert agent.states("task-1") == ["TASK_STARTING", "TASK_RUNNING"]
    agent.kill("task-1", grace_secs=2.0)
    agent.wait_for_state("task-1", "TASK_KILLED", 15)
    assert wait_for(lambda: not reader.members(path), 5)


def test_executor_zookeeper_down_at_the_start_fails_the_task_with_aurora_s_message(agent, tmp_path):
    ensemble = f"127.0.0.1:{free_ports(1)[0]}"
    launch(agent, write_job(tmp_path, ensemble, "/unused", health=QUICK_HEALTH, cmdline="sleep 60"),
           ensemble, "/aurora")
    running = agent.wait_for_state("task-1", "TASK_RUNNING", 20)
    failed = agent.wait_for_state("task-1", "TASK_FAILED", 15)
    assert failed.message == TIMED_OUT_REASON
    assert agent.states("task-1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_FAILED"]
    assert running is not None and agent.wait_exit(10) == 0


def test_executor_refuses_a_custom_path_unless_allowed(agent, tmp_path):
    """Aurora's rule: Announcer.zk_path needs --announcer-allow-custom-serverset-path; the
    task fails at launch, naming it, and nothing starts."""
    ensemble = f"127.0.0.1:{free_ports(1)[0]}"
    launch(agent, write_job(tmp_path, ensemble, "/unused", announce="Announcer(zk_path='/my/service')",
                            cmdline="sleep 60"), ensemble, "/aurora")
    failed = agent.wait_for_state("task-1", "TASK_FAILED", 15)
    assert failed.message == ("invalid task: Announcer.zk_path = '/my/service' needs the executor to be "
                              "started with --announcer-allow-custom-serverset-path")
    assert agent.states("task-1") == ["TASK_FAILED"] and task_pids(agent.sandbox) == set()


def test_executor_a_task_that_does_not_announce_never_loads_kazoo(zk, agent, tmp_path):
    launch(agent, write_job(tmp_path, zk.ensemble, "/unused", health=None, announce=None, cmdline="sleep 60"),
           zk.ensemble, "/aurora", env={"PYTHONPROFILEIMPORTTIME": "1"})
    agent.wait_for_state("task-1", "TASK_RUNNING", 20)
    agent.kill("task-1", grace_secs=1.0)
    agent.wait_for_state("task-1", "TASK_KILLED", 15)
    assert agent.wait_exit(10) == 0
    log = agent.executor_log()
    assert "executor.task.owner" in log and "executor.mesos.executor" in log  # the import log
    assert "kazoo" not in log and "executor.task.announcer" not in log
