"""`stoker inspect`'s text read whole (`executor/cli/inspect.py`): a config's job with every
kind of line (a multi-line command, an order, a rotated logger, a shell check, ports with an
alias and a static number), the same job as a TaskInfo would launch it, with and without
the executor's flags, and an Aurora task in a Docker image that announces itself."""
from __future__ import annotations

import json
import socket

import pytest

from config.document import encode
from config.loader import load_job
from tests.support.aurora_tasks import assigned_task, client_json
from tests.support.configs import write_config
from tests.unit.test_inspect import inspect as inspected
from tests.unit.test_inspect import task_info_file

JOB = """
setup = Process(name='setup', cmdline='\\n  mkdir -p data\\n  echo ready\\n')
web = Process(name='web', cmdline='serve {{thermos.ports[http]}}', max_failures=3, daemon=True,
              logger=Logger(destination='both', mode='rotate', rotate=RotatePolicy(log_size=5*MB, backups=2)))
tidy = Process(name='tidy', cmdline='rm -rf data', final=True)
jobs = [Job(cluster='local', role='www-data', environment='prod', name='web', instances=2,
            task=Task(name='web', processes=[setup, web, tidy], constraints=order(setup, web),
                      resources=Resources(cpu=0.5, ram=64*MB, disk=64*MB)),
            health_check_config=HealthCheckConfig(
                health_checker=HealthCheckerConfig(shell=ShellHealthChecker(shell_command='test -e data')),
                min_consecutive_successes=2, initial_interval_secs=1.5),
            announce=Announcer(primary_port='http', portmap={'admin': 'http', 'stats': 8080}))]
"""
BODY = """\
  task web: max_failures=1 max_concurrency=0 finalization_wait=30.0
  resources cpu=0.5 disk=67108864 gpu=0 ram=67108864
  processes:
    setup  [max_failures=1 min_duration=5.0]
      |   mkdir -p data
      |   echo ready
    web  [daemon max_failures=3 min_duration=5.0 logger=both/rotate(5 MiB x2)]
      | serve {http}
    tidy  [final max_failures=1 min_duration=5.0]
      | rm -rf data
  order setup → web
  health: shell: test -e data
    initial_interval_secs=1.5 interval_secs=10.0 timeout_secs=1.0 max_consecutive_failures=0 \
min_consecutive_successes=2
    failures of the first 1 attempts ignored (grace); RUNNING after 2 consecutive passes within 3 attempts
  lifecycle: none (no port named health)
"""


@pytest.fixture
def task_info(tmp_path) -> str:
    return str(task_info_file(tmp_path, encode(load_job(write_config(tmp_path, JOB))), ports=[32001]))


def test_a_config_s_job_reads_line_by_line(tmp_path, capsys):
    assert inspected(capsys, write_config(tmp_path, JOB)) == (
        "job local/www-data/prod/web\n  service=False instances=2 max_task_failures=1\n"
        + BODY.format(http="{{thermos.ports[http]}}")
        + "  ports: http; aliases: admin → http, stats → 8080 (static)\n")


def test_a_task_info_s_task_reads_as_the_executor_would_run_it(capsys, task_info):
    assert inspected(capsys, "--task-info", task_info) == (
        f"task task-9 (Stoker task document; job local/www-data/prod/web)\n"
        f"  instance=0 hostname={socket.gethostname()} user=www-data\n  runs as: the executor's user\n"
        "  ports: admin=32001, http=32001, stats=8080\n  service=False max_task_failures=1\n"
        + BODY.format(http="32001")
        + "  executor: stop_timeout=120.0 s disk_limit=checked every 60.0 s cgroups=auto announces=no (no "
          "--announcer-ensemble)\n    shell health checks run as the processes' user; the processes' environment: "
          "PATH, MESOS_SANDBOX, MESOS_DIRECTORY, HOME, USER, LOGNAME\n")


def test_the_executor_s_flags_read_in_the_runs_as_and_executor_lines(capsys, task_info, monkeypatch):
    monkeypatch.delenv("STOKER_STOP_TIMEOUT", raising=False)
    lines = inspected(capsys, "--task-info", task_info, "--nosetuid", "--execute-as-user", "nobody",
                      "--preserve-env", "--pass-agent-env", "--disk-limit", "off",
                      "--announcer-ensemble", "127.0.0.1:2181").splitlines()
    assert lines[2] == "  runs as: the executor's user (--nosetuid, which wins over --execute-as-user=nobody)"
    assert lines[-2:] == [
        "  executor: stop_timeout=120.0 s disk_limit=off cgroups=auto announces=yes",
        "    shell health checks run as the processes' user; the processes' environment: the executor's whole "
        "environment, less the token and the agent's MESOS_* variables"]
    lines = inspected(capsys, "--task-info", task_info, "--execute-as-user", "nobody").splitlines()
    assert lines[2] == "  runs as: nobody (--execute-as-user; the executor must be root, or be nobody)"
    assert lines[2] == inspected(capsys, "--task-info", task_info, "--nosetuid-health-checks",
                                 "--execute-as-user", "nobody").splitlines()[2]
    assert inspected(capsys, "--task-info", task_info, "--nosetuid-health-checks").splitlines()[-1].startswith(
        "    shell health checks run as the executor's user; the processes' environment: PATH,")


def test_an_aurora_task_in_a_docker_image_runs_as_the_executor_s_user_and_says_which_form_it_is(
        tmp_path, capsys):
    job = ("jobs = [Service(cluster='c', role='www-data', environment='prod', name='web', task=Task(processes="
           "[Process(name='web', cmdline='serve')], resources=Resources(cpu=0.5, ram=64*MB, disk=64*MB)))]")
    data = assigned_task(client_json(write_config(tmp_path, job)), role="www-data", name="web", environment="prod",
                         task_id="task-9", host="agent3", container_kind="docker")
    lines = inspected(capsys, "--task-info", task_info_file(tmp_path, data)).splitlines()
    assert lines[:5] == ["task task-9 (Aurora AssignedTask; job c/www-data/prod/web)",
                         "  instance=0 hostname=agent3 user=www-data",
                         "  runs as: the executor's user, inside the Docker image (no switch, as with Thermos)",
                         "  ports: (none)", "  service=True max_task_failures=1"]
    assert lines[-4:-2] == ["  health: none (no port named health)",
                            "  lifecycle: none (no port named health)"]


PLAIN = """
jobs = [Job(cluster='local', role='www-data', environment='prod', name='desk',
            task=Task(name='desk', processes=[
                Process(name='x', cmdline='Xvfb :99'),
                Process(name='serve', cmdline='serve {{thermos.ports[http]}} {{thermos.ports[admin]}}',
                        logger=Logger(destination='console'))],
                      resources=Resources(cpu=0.5, ram=64*MB, disk=64*MB)))]
"""


def test_a_job_with_no_announcer_health_port_or_rotation_says_so_and_each_port(tmp_path, capsys):
    config = write_config(tmp_path, PLAIN)
    lines = inspected(capsys, config).splitlines()
    assert lines[5:10] == ["    x  [max_failures=1 min_duration=5.0]", "      | Xvfb :99",
                          "    serve  [max_failures=1 min_duration=5.0 logger=console/standard]",
                          "      | serve {{thermos.ports[http]}} {{thermos.ports[admin]}}",
                          "  health: none (no port named health)"]
    assert lines[10:] == ["  lifecycle: none (no port named health)", "  ports: admin, http"]
    path = task_info_file(tmp_path, encode(load_job(config)), ports=[32001, 32002])
    lines = inspected(capsys, "--task-info", path).splitlines()
    assert "      | Xvfb :99" in lines and lines[-2] == "  executor: stop_timeout=120.0 s disk_limit=checked " \
                                                     "every 60.0 s cgroups=auto"
    shown = json.loads(inspected(capsys, "--task-info", path, "--json"))
    assert shown["lifecycle"] is None and shown["ports"] == {"admin": 32001, "http": 32002}
    assert [shown["loggers"][p]["from"] for p in ("x", "serve")] == [
        "the executor's --runner-logger-* flags or defaults", "the job"]
