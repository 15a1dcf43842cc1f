"""Thermos' executor flags, which Aurora's scheduler passes to `stoker executor` verbatim
(docs/aurora.md §13): the real executor under the agent simulator, each flag with the
effect Thermos gives it."""
from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from config.document import encode
from config.loader import load_job
from tests.support.agent_sim import AgentSimulator, make_task_info
from tests.support.aurora_tasks import assigned_task, client_json
from tests.support.configs import UMASKS
from tests.support.stoker_proc import live, task_pids
from tests.support.users import needs_root, open_agent_sim, throwaway_user
from tests.support.waiting import read_when_there, wait_for

EXECUTOR = [sys.executable, "-m", "executor", "executor"]
TID = "task-1"
ME = "root" if os.geteuid() == 0 else os.environ.get("USER", "nobody")

# `plain` sets no logger: the cluster's --runner-logger-* flags are its logger. `own` sets
# its own rotate logger without sizes: Thermos gives it 100 MiB / 5, never the flags' sizes.
# Both write 2.5 MiB to stdout, then wait with SIGTERM ignored (the stop timeout ends them).
WRITE = "head -c 2621440 /dev/zero"
LOGGERS = """
    plain = Process(name='plain', cmdline='''trap "" TERM; %(write)s; echo done >> done.txt; exec sleep 600''')
    own = Process(name='own', cmdline='''trap "" TERM; %(write)s; echo done >> done.txt; exec sleep 600''',
                  logger=Logger(destination='file', mode='rotate'))
    jobs = [Service(cluster='devcluster', role='%(role)s', environment='test', name='logs',
                    task=Task(processes=[plain, own], resources=Resources(cpu=0.1, ram=8*MB, disk=8*MB),
                              finalization_wait=30))]
"""
FLAGS = ["--runner-logger-mode", "rotate", "--runner_rotate_log_size_mb=1", "--runner-rotate-log-backups", "1",
         "--runner-logger-destination", "file", "--stop_timeout_in_secs", "0.2"]


def job_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / f"job{time.monotonic_ns()}.aurora"
    path.write_text(textwrap.dedent(body))
    return path


def data_for(form: str, path: Path, role: str, name: str) -> bytes:
    """TaskInfo.data for the job at `path`: Aurora's AssignedTask, or Stoker's own document."""
    if form == "aurora":
        return assigned_task(client_json(path), role=role, name=name)
    return encode(load_job(path))


def start(sim: AgentSimulator, flags: list[str], data: bytes | None, **kw) -> None:
    sim.launch_executor([*EXECUTOR, *flags], cwd=sim.sandbox, **kw)
    sim.wait_subscribed(timeout_secs=10)
    if data is not None:
        sim.launch(make_task_info(TID, data))


def test_logger_flags_reach_processes_without_a_logger_and_the_stop_timeout_bounds_a_kill(agent, tmp_path):
    # (Stoker's own task document carries an unset logger alike: tests/unit/test_thermos_flags.py)
    body = LOGGERS % dict(role=ME, write=WRITE)
    start(agent, FLAGS, data_for("aurora", job_file(tmp_path, body), ME, "logs"))
    agent.wait_for_state(TID, "TASK_RUNNING", 15)
    done = agent.sandbox / "done.txt"
    wait_for(lambda: done.exists() and len(done.read_text().split()) == 2, 10)
    plain, own = (agent.sandbox / f".logs/{name}/0" for name in ("plain", "own"))
    wait_for(lambda: (plain / "stdout.1").exists(), 5)  # rotated at 1 MiB, one backup kept
    assert not (plain / "stdout.2").exists()
    assert (plain / "stdout.1").stat().st_size <= 1024 * 1024
    wait_for(lambda: (own / "stdout").stat().st_size == 2621440, 5)  # its pump has copied it all
    assert sorted(p.name for p in own.iterdir() if p.name.startswith("stdout")) == ["stdout"]  # 100 MiB
    pids = task_pids(agent.sandbox)
    killed_at = time.monotonic()
    agent.kill(TID)  # its grace: finalization_wait, 30 s; SIGTERM is ignored
    agent.wait_for_state(TID, "TASK_KILLED", 10)
    assert time.monotonic() - killed_at < 5
    assert "the stop is not over 0.2 s after it began (--stop-timeout-in-secs)" in agent.executor_log()
    assert not live(pids)
    assert agent.wait_exit(10) == 0


def test_a_launch_timeout_exits_when_no_task_comes_and_image_flags_are_accepted(agent):
    flags = ["--mesos-containerizer-path", "/usr/libexec/mesos/mesos-containerizer", "--no-create-user",
             "--sandbox_mount_point=/mnt/mesos/sandbox", "--log-level", "debug"]
    started = time.monotonic()
    start(agent, flags, None, env_overrides={"STOKER_LAUNCH_TIMEOUT": "150ms"})
    assert agent.wait_exit(10) == 0  # as after a SHUTDOWN with no task
    assert time.monotonic() - started < 5
    log = agent.executor_log()
    assert "launch_timeout reason=\"no task was launched within 0.15 s (--launch-timeout): exiting" in log
    import executor

    assert log.count(" executor_start ") == 1 and f" version={executor.version()}\n" in log  # its build, once
    assert "image_flags mesos_containerizer_path=/usr/libexec/mesos/mesos-containerizer " \
           "no_create_user=True sandbox_mount_point=/mnt/mesos/sandbox" in log
    assert not agent.calls("UPDATE")


# ---- users (root only) ----

@pytest.fixture
def user():
    with throwaway_user() as (entry, _group):
        yield entry


@pytest.fixture
def open_agent():
    """An agent whose sandbox another user can reach."""
    with open_agent_sim() as sim:
        yield sim


WHO = """
    who = Process(name='who', cmdline='''echo 'touch profiled-by-$(id -un)' > .thermos_profile; id -un > who.txt
                                         exec sleep 600''')
    jobs = [Service(cluster='devcluster', role='%(role)s', environment='test', name='who',
                    task=Task(processes=[who], resources=Resources(cpu=0.1, ram=8*MB, disk=8*MB),
                              finalization_wait=1),
                    health_check_config=HealthCheckConfig(
                      health_checker=HealthCheckerConfig(shell=ShellHealthChecker(
                        shell_command='touch checked-by-$(id -un)')),
                      initial_interval_secs=2.0, interval_secs=0.1))]
"""


@needs_root
def test_execute_as_user_runs_the_task_as_that_user_not_the_role(user, open_agent, tmp_path):
    sandbox = open_agent.sandbox
    data = data_for("aurora", job_file(tmp_path, WHO % dict(role="root")), "root", "who")
    start(open_agent, ["--execute-as-user", user.pw_name], data)
    open_agent.wait_for_state(TID, "TASK_RUNNING", 15)
    assert read_when_there(sandbox / "who.txt") == user.pw_name
    assert os.stat(sandbox).st_uid == user.pw_uid
    assert (sandbox / f"checked-by-{user.pw_name}").exists()  # its checks too
    wait_for(lambda: (sandbox / f"profiled-by-{user.pw_name}").exists(), 5)  # as the processes' user: with the profile
    open_agent.kill(TID, grace_secs=0.5)
    open_agent.wait_for_state(TID, "TASK_KILLED", 10)
    assert f"run_as task=who.0 user={user.pw_name}" in open_agent.executor_log()


@needs_root
def test_nosetuid_health_checks_run_shell_checks_as_the_executor_s_user(user, open_agent, tmp_path):
    sandbox = open_agent.sandbox
    data = data_for("aurora", job_file(tmp_path, WHO % dict(role=user.pw_name)), user.pw_name, "who")
    start(open_agent, ["--nosetuid-health-checks"], data)
    running = open_agent.wait_for_state(TID, "TASK_RUNNING", 15)
    assert running.healthy is True
    assert read_when_there(sandbox / "who.txt") == user.pw_name  # the processes: as the role
    assert (sandbox / "checked-by-root").exists() and not (sandbox / f"checked-by-{user.pw_name}").exists()
    for _ in range(2):  # the second check seen again started after .thermos_profile (before who.txt) was there
        (sandbox / "checked-by-root").unlink()
        wait_for(lambda: (sandbox / "checked-by-root").exists(), 5)
    assert not (sandbox / "profiled-by-root").exists()  # root never runs the role's .thermos_profile
    open_agent.kill(TID, grace_secs=0.5)
    open_agent.wait_for_state(TID, "TASK_KILLED", 10)


@needs_root
def test_nosetuid_health_checks_start_with_the_agents_umask_as_the_processes_do(user, open_agent, tmp_path):
    """Thermos' checks run in its executor, with the agent's umask; here root's checks had
    the umask the executor relaxed to keep the logs readable (0022 under an agent's 0077)."""
    sandbox = open_agent.sandbox
    data = data_for("aurora", job_file(tmp_path, UMASKS % dict(role=user.pw_name)), user.pw_name, "work")
    open_agent.launch_executor(["/bin/sh", "-c", 'umask 077 && exec "$@"', "sh", *EXECUTOR,
                                "--nosetuid-health-checks"], cwd=sandbox)
    open_agent.wait_subscribed(timeout_secs=10)
    open_agent.launch(make_task_info(TID, data))
    try:
        assert open_agent.wait_for_state(TID, "TASK_RUNNING", 15).healthy is True
        assert [read_when_there(sandbox / name) for name in ("run-umask", "check-umask")] == ["0077"] * 2
    finally:
        open_agent.kill(TID, grace_secs=0.5)
        open_agent.wait_for_state(TID, "TASK_KILLED", 10)


@needs_root
@pytest.mark.parametrize("also", [[], ["--execute-as-user"]], ids=["alone", "with-execute-as-user"])
def test_nosetuid_runs_the_task_as_the_executor_s_user_and_says_why(user, open_agent, tmp_path, also):
    """Thermos' --nosetuid: the processes run as the executor's user (root), not as the role,
    and not as --execute-as-user's either (--nosetuid wins); the run_as line says which."""
    sandbox = open_agent.sandbox
    data = data_for("aurora", job_file(tmp_path, WHO % dict(role=user.pw_name)), user.pw_name, "who")
    start(open_agent, ["--nosetuid", *[f"{flag}={user.pw_name}" for flag in also]], data)
    open_agent.wait_for_state(TID, "TASK_RUNNING", 15)
    assert read_when_there(sandbox / "who.txt") == "root"
    open_agent.kill(TID, grace_secs=0.5)
    open_agent.wait_for_state(TID, "TASK_KILLED", 10)
    override = f" nor as --execute-as-user={user.pw_name} (--nosetuid wins, as in Thermos)" if also else ""
    assert (f"run_as task=who.0 user=root uid=0 reason=\"--nosetuid: not as the role '{user.pw_name}'"
            f"{override}\"") in open_agent.executor_log()
