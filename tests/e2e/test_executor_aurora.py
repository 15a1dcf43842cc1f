"""`stoker executor` as Aurora's scheduler starts Thermos: the real executor under the agent
simulator, given TaskInfo.data as a Thrift AssignedTask (written by thriftpy2's encoder)
whose executorConfig.data is the Aurora client's job JSON (docs/aurora.md §13)."""
from __future__ import annotations

import getpass
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.support.agent_sim import AgentSimulator, make_task_info
from tests.support.aurora_tasks import assigned_task, client_json
from tests.support.configs import UMASKS
from tests.support.ports import free_ports
from tests.support.shellwords import FAKE_TASK, in_aurora, python_sh, sh
from tests.support.stoker_proc import checkpoint_records, live, task_pids
from tests.support.users import as_nobody, as_user, needs_root, open_agent_sim, throwaway_user
from tests.support.waiting import read_when_there, wait_for

EXECUTOR = [sys.executable, "-m", "executor", "executor"]
ME = getpass.getuser()
TID = "www-data-test-web-2-3a9e7c1d-5b2f-4e8a-9c6d-7f0e1a2b3c4d"
HOST = "agent7.example.com"


def aurora_data(tmp_path: Path, body: str, *, role: str = ME, name: str = "web", bindings=(), **kw) -> bytes:
    """The AssignedTask for the job in BODY, as the scheduler sends it to Thermos."""
    path = tmp_path / f"job{time.monotonic_ns()}.aurora"
    path.write_text(textwrap.dedent(body))
    return assigned_task(client_json(path, bindings=tuple(bindings)), role=role, name=name, **kw)


def launch(sim: AgentSimulator, data: bytes, task_id: str = TID, ports=(), umask: str | None = None,
           **kw) -> None:
    argv = EXECUTOR if umask is None else ["/bin/sh", "-c", f'umask {umask} && exec "$@"', "sh", *EXECUTOR]
    sim.launch_executor(argv, cwd=sim.sandbox, **kw)
    sim.wait_subscribed(timeout_secs=10)
    sim.launch(make_task_info(task_id, data, ports=list(ports)))


ALIASED = """
    web = Process(name='web_{{mesos.instance}}', cmdline='''
      echo "host={{mesos.hostname}} task={{thermos.task_id}} instance={{mesos.instance}} \\
    http={{thermos.ports[http]}} health={{thermos.ports[health]}} user={{thermos.user}}"
      exec %(python)s %(fake)s --serve-health {{thermos.ports[http]}} --lifecycle-log %(log)s --exit-on-quit
    ''')
    jobs = [Service(cluster='devcluster', role='%(role)s', environment='test', name='web',
                    task=Task(processes=[web], resources=Resources(cpu=0.1, ram=8*MB, disk=8*MB),
                              finalization_wait=2),
                    announce=Announcer(portmap={'health': 'http'}),
                    health_check_config=HealthCheckConfig(initial_interval_secs=1.0, interval_secs=0.1))]
"""


def test_an_assigned_task_is_checked_through_a_portmap_alias_binds_aurora_s_values_and_is_killed(
        agent, tmp_path):
    [port] = free_ports(1)
    log = tmp_path / "lifecycle.log"
    body = ALIASED % dict(python=in_aurora(python_sh()), fake=in_aurora(sh(FAKE_TASK)), log=in_aurora(sh(log)), role=ME)
    data = aurora_data(tmp_path, body, task_id=TID, host=HOST, instance=2, ports={"http": port})
    launch(agent, data)
    running = agent.wait_for_state(TID, "TASK_RUNNING", 15)
    assert running.healthy is True and "healthy" in running.message
    header = next(r for r in checkpoint_records(agent.sandbox) if r["kind"] == "header")
    assert header["ports"] == {"health": port, "http": port}  # health -> http, through the portmap
    stdout = agent.sandbox / ".logs/web_2/0/stdout"  # the process name's template is bound
    assert wait_for(lambda: stdout.exists() and stdout.read_text().strip()) == (
        f"host={HOST} task={TID} instance=2 http={port} health={port} user={ME}")
    pids = task_pids(agent.sandbox)
    agent.kill(TID, grace_secs=2.0)
    killed = agent.wait_for_state(TID, "TASK_KILLED", 15)
    assert "KILL" in killed.message
    assert agent.states(TID) == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"]
    assert log.read_text().split() == ["quitquitquit"]  # the lifecycle used the aliased port
    assert not live(pids)
    assert agent.wait_exit(10) == 0
    assert agent.refused_calls() == []


SHELL_CHECKED = """
    web = Process(name='web', cmdline='exec sleep 600 # {{thermos.ports[http]}}')
    jobs = [Service(cluster='devcluster', role='%(role)s', environment='test', name='web',
                    task=Task(processes=[web], resources=Resources(cpu=0.1, ram=8*MB, disk=8*MB),
                              finalization_wait=5),
                    lifecycle=LifecycleConfig(http=HttpLifecycleConfig(port='admin')),
                    health_check_config=HealthCheckConfig(
                      health_checker=HealthCheckerConfig(shell=ShellHealthChecker(shell_command=
                        'echo "{{thermos.ports[http]}} {{mesos.instance}} {{mesos.hostname}} {{thermos.task_id}}"'
                        ' > checked.txt')),
                      initial_interval_secs=1.0, interval_secs=0.1))]
"""


def test_a_shell_check_is_bound_and_a_lifecycle_port_aurora_never_assigns_means_no_lifecycle(agent, tmp_path):
    # Aurora's client asks only for `http` (the process names it); Thermos runs this task and
    # stops it without the lifecycle, straight to SIGTERM (docs/aurora.md §13).
    data = aurora_data(tmp_path, SHELL_CHECKED % dict(role=ME), task_id=TID, host=HOST, instance=4,
                       ports={"http": 31555})
    launch(agent, data)
    running = agent.wait_for_state(TID, "TASK_RUNNING", 15)
    assert running.healthy is True
    assert (agent.sandbox / "checked.txt").read_text() == f"31555 4 {HOST} {TID}\n"
    agent.kill(TID)
    agent.wait_for_state(TID, "TASK_KILLED", 15)
    assert agent.states(TID) == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"]
    log = agent.executor_log()
    assert "job.lifecycle.http.port is 'admin', a port the task does not have" in log
    assert "quitquitquit" not in log
    assert agent.wait_exit(10) == 0


PROFILE = """
    setup_env = Process(name='setup_env', cmdline='''cat <<EOF > .thermos_profile
    export IT_WORKED=hello
    EOF''')
    read_env = Process(name='read_env', cmdline='echo "$IT_WORKED" > it_worked.txt; env > env.txt')
    jobs = [Job(cluster='devcluster', role='%(role)s', environment='test', name='profile',
                task=SequentialTask(processes=[setup_env, read_env],
                                    resources=Resources(cpu=0.1, ram=8*MB, disk=8*MB)))]
"""
BASH_ADDS = {"PWD", "SHLVL", "_"}


@pytest.mark.parametrize("preserve", [False, True])
def test_thermos_profile_is_sourced_by_a_later_process_in_thermos_environment(agent, tmp_path, preserve):
    data = aurora_data(tmp_path, PROFILE % dict(role=ME), name="profile", task_id=TID)
    overrides = {"SOME_AGENT_SETTING": "x", "STOKER_PRESERVE_ENV": "1" if preserve else None}
    launch(agent, data, env_overrides=overrides)
    agent.wait_for_state(TID, "TASK_FINISHED", 15)
    assert (agent.sandbox / "it_worked.txt").read_text() == "hello\n"
    env = dict(line.split("=", 1) for line in (agent.sandbox / "env.txt").read_text().splitlines() if "=" in line)
    sandbox = str(agent.sandbox)
    assert {k: env[k] for k in ("HOME", "USER", "LOGNAME", "MESOS_SANDBOX", "BASH_ENV")} == {
        "HOME": sandbox, "USER": ME, "LOGNAME": ME, "MESOS_SANDBOX": sandbox,
        "BASH_ENV": f"{sandbox}/.thermos_profile"}
    assert env["PATH"] == os.environ["PATH"]
    assert ("SOME_AGENT_SETTING" in env) is preserve
    assert "MESOS_AGENT_ENDPOINT" not in env and "MESOS_FRAMEWORK_ID" not in env
    if not preserve:
        assert set(env) - BASH_ADDS == {"HOME", "USER", "LOGNAME", "PATH", "MESOS_SANDBOX", "MESOS_DIRECTORY",
                                        "BASH_ENV", "STOKER_TASK_MARKER", "STOKER_RUN_MARKER", "IT_WORKED"}
    assert agent.refused_calls() == []


DOCKER = """
    who = Process(name='who', cmdline='id -un > who.txt')
    jobs = [Job(cluster='devcluster', role='www-data', environment='test', name='who',
                task=Task(processes=[who], resources=Resources(cpu=0.1, ram=8*MB, disk=8*MB)),
                container=Docker(image='debian:bookworm'),
                health_check_config=HealthCheckConfig(interval_secs=1))]
"""


def test_a_docker_task_runs_as_the_executor_s_user_and_a_check_without_a_port_is_a_warning(agent, tmp_path):
    data = aurora_data(tmp_path, DOCKER, role="www-data", name="who", container_kind="docker")
    launch(agent, data)
    finished = agent.wait_for_state(TID, "TASK_FINISHED", 15)
    assert agent.states(TID) == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
    assert finished.healthy is None  # no check ran: there is no health port
    assert (agent.sandbox / "who.txt").read_text() == f"{ME}\n"
    log = agent.executor_log()
    assert "a Docker task runs as the image's user" in log
    assert ("task_warning task=who.0 reason=\"job.health_check_config configures an HTTP health check, but the "
            "task has no port named 'health'") in log


HELLO = """
    hello = Process(name='hello', cmdline='echo {{thermos.ports[http]}}')
    jobs = [Job(cluster='devcluster', role='%(role)s', environment='test', name='hello',
                task=Task(processes=[hello], resources=Resources(cpu=0.1, ram=8*MB, disk=8*MB)))]
"""


@pytest.mark.parametrize("case, words", [
    ("executor-name", "task.executorConfig.name is 'MyExecutor', not 'AuroraExecutor'"),
    ("unbound", "the task requires unbound ports: http (the scheduler assigned none"),
    ("not-json", "task.executorConfig.data is not JSON"),
    ("unknown-key", "has keys Stoker's schema does not know: 'fancy_new_field'"),
])
def test_an_unusable_assigned_task_fails_with_reason_task_invalid(agent, tmp_path, case, words):
    path = tmp_path / "hello.aurora"
    path.write_text(textwrap.dedent(HELLO % dict(role=ME)))
    job = client_json(path)
    kw: dict = dict(role=ME, name="hello", ports={"http": 31000})
    if case == "executor-name":
        kw["executor_name"] = "MyExecutor"
    elif case == "unbound":
        kw["ports"] = {}
    elif case == "not-json":
        job = "{not json"
    elif case == "unknown-key":
        job = job[:-1] + ', "fancy_new_field": 1}'
    launch(agent, assigned_task(job, **kw))
    failed = agent.wait_for_state(TID, "TASK_FAILED", 15)
    assert agent.states(TID) == ["TASK_FAILED"]
    assert words in failed.message and failed.reason == "REASON_TASK_INVALID", failed.message
    assert agent.wait_exit(15) == 0
    assert agent.refused_calls() == []


# ---- running as the role's user (root only) ----

@pytest.fixture
def role_user():
    with throwaway_user() as user:
        yield user


@pytest.fixture
def open_agent():
    """An agent whose sandbox the role's user can reach."""
    with open_agent_sim() as sim:
        yield sim


AS_ROLE = """
    work = Process(name='work', cmdline='''
      { id -u; id -g; id -G; echo "$HOME $USER $LOGNAME"; } > ids.txt
      touch made-by-task
      echo hello
      exec sleep 600
    ''')
    jobs = [Service(cluster='devcluster', role='%(role)s', environment='test', name='work',
                    task=Task(processes=[work], resources=Resources(cpu=0.1, ram=8*MB, disk=8*MB),
                              finalization_wait=2),
                    health_check_config=HealthCheckConfig(
                      health_checker=HealthCheckerConfig(shell=ShellHealthChecker(
                        shell_command='test -O made-by-task && touch checked-by-$(id -un)')),
                      initial_interval_secs=2.0, interval_secs=0.1))]
"""


@needs_root
def test_a_root_role_under_a_root_executor_starts_with_the_agents_umask(open_agent, tmp_path):
    """The role is the executor's own user: its process and its shell check had the umask
    the executor relaxed to keep the logs readable (0022), not the agent's (0077)."""
    launch(open_agent, aurora_data(tmp_path, UMASKS % dict(role="root"), role="root", name="work"), umask="077")
    assert open_agent.wait_for_state(TID, "TASK_RUNNING", 15).healthy is True
    sandbox = open_agent.sandbox
    pids = task_pids(sandbox)
    try:
        # (healthy may come first: the check can pass before the process ran its first command)
        assert [read_when_there(sandbox / name) for name in ("run-umask", "check-umask")] == ["0077"] * 2
    finally:
        open_agent.kill(TID, grace_secs=1.0)
        open_agent.wait_for_state(TID, "TASK_KILLED", 15)
    assert not live(pids)


@needs_root
def test_as_root_the_task_runs_as_its_role_with_its_groups_in_a_sandbox_it_owns(role_user, open_agent, tmp_path):
    # An agent whose umask lets nobody else read its files (077): the role still reads its
    # logs (Aurora's e2e: `aurora task ssh JOB/0 --command='tail -1 .logs/read_env/0/stdout'`),
    # and its processes still start with the agent's umask, as under Thermos.
    user, group = role_user
    sandbox = open_agent.sandbox
    launch(open_agent, aurora_data(tmp_path, AS_ROLE % dict(role=user.pw_name), role=user.pw_name, name="work"),
           umask="077")
    running = open_agent.wait_for_state(TID, "TASK_RUNNING", 15)
    assert running.healthy is True  # the shell check ran as the role: it owns made-by-task
    assert (sandbox / f"checked-by-{user.pw_name}").exists()
    info = os.stat(sandbox)
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (user.pw_uid, user.pw_gid, 0o700)
    made = os.stat(sandbox / "made-by-task")
    assert (made.st_uid, made.st_mode & 0o777) == (user.pw_uid, 0o600)
    log = sandbox / ".logs/work/0/stdout"
    assert wait_for(lambda: as_user(user.pw_uid, user.pw_gid, lambda: read_or_error(log))) == "hello\n"
    uid, gid, groups, names = wait_for(lambda: (sandbox / "ids.txt").read_text().splitlines()
                                       if (sandbox / "ids.txt").exists() else None)
    assert (int(uid), int(gid)) == (user.pw_uid, user.pw_gid)
    assert set(map(int, groups.split())) == {user.pw_gid, group.gr_gid}
    assert names == f"{sandbox} {user.pw_name} {user.pw_name}"
    pids = task_pids(sandbox)
    # Another role's user (a task of another role on the same agent) gets nothing of it:
    # neither its logs nor its checkpoint, nor a signal to its processes or its supervisor.
    assert as_nobody(lambda: read_or_error(log)) == f"cannot read {log}: Permission denied"
    checkpoint = sandbox / ".stoker/checkpoint.jsonl"
    assert as_nobody(lambda: read_or_error(checkpoint)) == f"cannot read {checkpoint}: Permission denied"
    supervisor = checkpoint_records(sandbox)[0]["supervisor_pid"]
    assert as_nobody(lambda: " ".join(_signal_refused(pid) for pid in [*pids, supervisor])) == \
        " ".join(["EPERM"] * (len(pids) + 1))
    open_agent.kill(TID, grace_secs=1.0)  # the root supervisor signals the role's processes
    open_agent.wait_for_state(TID, "TASK_KILLED", 15)
    assert not live(pids)
    assert open_agent.wait_exit(10) == 0
    assert f"run_as task=work.0 user={user.pw_name}" in open_agent.executor_log()


def _signal_refused(pid: int) -> str:
    """How a signal 0 to `pid` is answered: 'EPERM' when refused, else what happened."""
    try:
        os.kill(pid, 0)
    except PermissionError:
        return "EPERM"
    except OSError as exc:
        return exc.strerror or str(exc)
    return "sent"


def read_or_error(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"


@needs_root
def test_a_role_that_is_no_user_fails_the_task_naming_it(agent, tmp_path):
    data = aurora_data(tmp_path, HELLO % dict(role="stkr-nobody-here"), role="stkr-nobody-here",
                       name="hello", ports={"http": 31000})
    launch(agent, data)
    failed = agent.wait_for_state(TID, "TASK_FAILED", 15)
    assert "the job's role 'stkr-nobody-here' is the user the task runs as" in failed.message
    assert "there is no user 'stkr-nobody-here'" in failed.message
    assert failed.reason == "REASON_TASK_INVALID"
    assert agent.states(TID) == ["TASK_FAILED"]  # no TASK_STARTING first (Aurora's: docs/aurora.md §11)
