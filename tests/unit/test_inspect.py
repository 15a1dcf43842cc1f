"""`stoker inspect` describes the job Stoker will run: the bound JobSpec, not the raw config."""
from __future__ import annotations

import json

import pytest

from config.document import encode
from config.loader import load_job
from executor.cli.inspect import describe_job
from executor.cli.main import main
from tests.support.agent_sim import make_task_info
from tests.support.aurora_tasks import assigned_task, client_json
from tests.support.configs import EXAMPLES, REPO, job_text, write_config


def inspect(capsys, *argv: str) -> str:
    assert main(["inspect", *map(str, argv)]) == 0
    return capsys.readouterr().out


def test_hello_world_has_no_health_check_and_no_lifecycle(capsys):
    out = inspect(capsys, REPO / "examples/hello_world.aurora")
    assert out.startswith("job devcluster/www-data/prod/hello\n")
    assert "  health: none (no port named health)\n" in out
    assert "  lifecycle: none (no port named health)\n" in out
    assert "  ports: (none)\n" in out
    assert "http" not in out.lower()  # nothing says HTTP: it has no HTTP check, no lifecycle
    assert "      |       echo hello world\n" in out


def test_http_service_shows_its_http_check_and_lifecycle_on_the_health_port(capsys):
    out = inspect(capsys, REPO / "examples/http_service.aurora")
    # every address is 127.0.0.1, then ::1 (healthcheck/loopback.py): the name is not resolved
    assert ('  health: HTTP GET http://localhost:{{thermos.ports[health]}}/health (127.0.0.1, then ::1), '
            'expects body "ok", any status\n') in out
    assert ("    initial_interval_secs=2.0 interval_secs=1.0 timeout_secs=1.0 "
            "max_consecutive_failures=2 min_consecutive_successes=1\n") in out
    assert ("    failures of the first 2 attempts ignored (grace); RUNNING after 1 consecutive "
            "pass within 5 attempts\n") in out
    assert ("  lifecycle: on a kill, POST http://localhost:{{thermos.ports[health]}}/quitquitquit, "
            "wait up to 2.0 s; POST http://localhost:{{thermos.ports[health]}}/abortabortabort, "
            "wait up to 1.0 s; then SIGTERM, SIGKILL (localhost: 127.0.0.1, then ::1)\n") in out
    assert "  ports: health\n" in out


def test_shell_health_shows_its_shell_check_as_written(capsys):
    out = inspect(capsys, REPO / "examples/shell_health.aurora")
    assert ("  health: shell: test -f alive && exec 3<>/dev/tcp/127.0.0.1/{{thermos.ports[http]}}\n"
            in out)
    assert "  lifecycle: none (no port named health)\n" in out
    assert "  ports: http\n" in out


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_json_is_still_the_task_document(capsys, path):
    assert inspect(capsys, path, "--json") == encode(load_job(path)).decode("utf-8") + "\n"


@pytest.mark.parametrize("extra, expected", [
    (", health_check_config=HealthCheckConfig(health_checker=HealthCheckerConfig(tcp=TcpHealthChecker()))",
     "  health: TCP connect to localhost:{{thermos.ports[health]}} (127.0.0.1, then ::1)\n"),
    (", lifecycle=DisableLifecycle", "  lifecycle: none (no HTTP lifecycle configured)\n"),
    (", lifecycle=LifecycleConfig(http=HttpLifecycleConfig(port='admin'))",
     "  lifecycle: on a kill, POST http://localhost:{{thermos.ports[admin]}}/quitquitquit, wait up to 5.0 s;"),
    (", health_check_config=HealthCheckConfig(health_checker=HealthCheckerConfig("
     "http=HttpHealthChecker(endpoint='/ready', expected_response='', expected_response_code=204)))",
     "  health: HTTP GET http://localhost:{{thermos.ports[health]}}/ready (127.0.0.1, then ::1), expects any body, "
     "HTTP 204\n"),
])
def test_the_bound_spec_decides_what_is_shown(tmp_path, extra, expected):
    text = job_text("[Process(name='web', cmdline='serve {{thermos.ports[health]}}')]", extra=extra)
    out = describe_job(load_job(write_config(tmp_path, text)))
    assert expected in out


def test_a_container_with_an_image_is_shown_and_none_is_not(tmp_path):
    boxed = job_text(extra=", container=Mesos(image=AppcImage(name='example.com/debian', image_id='sha512-1'))")
    assert ("  resources cpu=0.1 disk=1048576 gpu=0 ram=1048576\n"
            "  container: Mesos, appc image example.com/debian (id sha512-1) (`stoker run` runs the processes "
            "on this host, not in the image)\n  processes:\n") in describe_job(load_job(write_config(tmp_path, boxed)))
    assert "container" not in describe_job(load_job(write_config(tmp_path, job_text(extra=", container=Mesos()"))))


def test_a_sidecar_that_takes_the_only_slot_is_a_warning(tmp_path):
    text = job_text("[Process(name='side', cmdline='sleep 1000', ephemeral=True), Process(name='web', cmdline='x')]",
                    task_extra=", max_concurrency=1")
    assert ("  warning: job.task.max_concurrency = 1: ephemeral process 'side' starts before 'web' and holds "
            "the only slot while it runs; if it never ends, 'web' never starts and the task never finishes "
            "(as under Thermos): raise max_concurrency to 2 or more, or list the processes the task waits "
            "for first\n") in describe_job(load_job(write_config(tmp_path, text)))


def test_a_tcp_checker_without_a_health_port_is_no_check(tmp_path):
    text = job_text(extra=", health_check_config=HealthCheckConfig("
                          "health_checker=HealthCheckerConfig(tcp=TcpHealthChecker()))")
    assert "  health: none (no port named health)\n" in describe_job(load_job(write_config(tmp_path, text)))


def test_a_job_with_an_unbound_reference_is_refused_as_the_aurora_client_refuses_it(tmp_path, capsys):
    path = write_config(tmp_path, job_text("[Process(name='web', cmdline='echo {{nowhere}}')]"))
    assert main(["inspect", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"stoker: error: '{path}': job c/r/e/web: Config contains unbound variables: {{{{nowhere}}}} "
        "(bind them in the file, or with --bind NAME=VALUE)\n")
    assert "      | echo here\n" in inspect(capsys, path, "--bind", "nowhere=here")


def test_a_reference_thermos_never_binds_is_refused_naming_the_file(tmp_path, capsys):
    path = write_config(tmp_path, job_text("[Process(name='web', cmdline='echo {{thermos.nope}}')]"))
    assert main(["inspect", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"stoker: error: '{path}': job c/r/e/web: unbound template references: {{{{thermos.nope}}}}\n")


# ---- aliases, warnings, --bind ----


def test_a_static_port_in_the_portmap_is_shown_as_its_number(tmp_path, capsys):
    # A portmap value that is a number is a static port (docs/contract.md §3); it crashed inspect.
    text = job_text("[Process(name='web', cmdline='serve {{thermos.ports[http]}}')]",
                    extra=", announce=Announcer(portmap={'http': '8080'})")
    out = inspect(capsys, write_config(tmp_path, text))
    assert "  ports: (none); aliases: http → 8080 (static)\n" in out


def test_a_portmap_alias_is_shown_and_decides_the_check(tmp_path, capsys):
    text = job_text("[Process(name='web', cmdline='serve {{thermos.ports[http]}}')]",
                    extra=", announce=Announcer(portmap={'health': 'http'})")
    out = inspect(capsys, write_config(tmp_path, text))
    assert ("  health: HTTP GET http://localhost:{{thermos.ports[http]}}/health (127.0.0.1, then ::1), "
            "expects body \"ok\", any status\n") in out
    assert "  ports: http; aliases: health → http\n" in out


def test_an_http_check_without_a_health_port_is_a_warning_that_names_the_fix(tmp_path, capsys):
    text = job_text(extra=", health_check_config=HealthCheckConfig(interval_secs=2)")
    out = inspect(capsys, write_config(tmp_path, text))
    assert "  health: none (no port named health)\n" in out
    assert ("  warning: job.health_check_config configures an HTTP health check, but the task has no port "
            "named 'health', so it is not health-checked: reference {{thermos.ports[health]}}") in out


def test_a_bad_bind_is_a_usage_error(tmp_path, capsys):
    assert main(["inspect", str(write_config(tmp_path, job_text())), "--bind", "oops"]) == 2
    assert "stoker: error: --bind 'oops' is not KEY=VALUE" in capsys.readouterr().err


# ---- --task-info ----

AURORA_JOB = """
    web = Process(name='web_{{mesos.instance}}', cmdline='serve {{thermos.ports[http]}} on {{mesos.hostname}}')
    jobs = [Service(cluster='devcluster', role='www-data', environment='prod', name='web',
                    task=Task(processes=[web], resources=Resources(cpu=0.5, ram=64*MB, disk=64*MB)),
                    announce=Announcer(portmap={'health': 'http'}))]
"""


def task_info_file(tmp_path, data: bytes, **kw):
    path = tmp_path / "task_info.json"
    path.write_text(json.dumps(make_task_info("task-9", data, **kw)))
    return path


def test_task_info_with_an_assigned_task_prints_the_bound_task(tmp_path, capsys):
    data = assigned_task(client_json(write_config(tmp_path, AURORA_JOB)), role="www-data", name="web",
                         environment="prod", task_id="task-9", host="agent3", instance=2, ports={"http": 31005})
    out = inspect(capsys, "--task-info", task_info_file(tmp_path, data))
    assert out.startswith("task task-9 (Aurora AssignedTask; job devcluster/www-data/prod/web)\n"
                          "  instance=2 hostname=agent3 user=www-data\n"
                          "  runs as: www-data when the executor is root (unless --nosetuid, or "
                          "--execute-as-user names another), else the executor's user\n"
                          "  ports: health=31005, http=31005\n")
    assert "    web_2  [max_failures=1 min_duration=5.0]\n      | serve 31005 on agent3\n" in out
    assert "  health: HTTP GET http://localhost:31005/health" in out
    assert "  lifecycle: on a kill, POST http://localhost:31005/quitquitquit" in out


def test_task_info_with_a_filesystem_image_says_the_task_runs_inside_it(tmp_path, capsys):
    data = assigned_task(client_json(write_config(tmp_path, AURORA_JOB)), role="www-data", name="web",
                         environment="prod", task_id="task-9", ports={"http": 31005}, container_kind="appc-image")
    out = inspect(capsys, "--task-info", task_info_file(tmp_path, data))
    assert ("  runs as: www-data when the executor is root (unless --nosetuid, or --execute-as-user names another), "
            "inside its filesystem image (appc image example.com/debian) through mesos-containerizer launch; "
            "a non-root executor fails it\n") in out


def test_task_info_json_is_one_object(tmp_path, capsys):
    data = assigned_task(client_json(write_config(tmp_path, AURORA_JOB)), role="www-data", name="web",
                         environment="prod", task_id="task-9", host="agent3", instance=2, ports={"http": 31005})
    shown = json.loads(inspect(capsys, "--task-info", task_info_file(tmp_path, data), "--json"))
    assert {k: shown[k] for k in ("task_id", "instance", "hostname", "user", "ports", "job", "format")} == {
        "task_id": "task-9", "instance": 2, "hostname": "agent3", "user": "www-data",
        "ports": {"health": 31005, "http": 31005}, "job": "devcluster/www-data/prod/web", "format": "aurora"}
    assert shown["task"] == {
        "name": "web_2", "processes": [{"name": "web_2", "cmdline": "serve 31005 on agent3", "max_failures": 1,
                                        "daemon": False, "ephemeral": False, "min_duration": 5.0,
                                        "final": False}],
        "constraints": [], "resources": {"cpu": 0.5, "ram": 64 << 20, "disk": 64 << 20, "gpu": 0},
        "max_failures": 1, "max_concurrency": 0, "finalization_wait": 30.0}
    assert shown["health_check"]["kind"] == "http" and shown["health_check"]["port"] == 31005
    assert shown["lifecycle"]["port"] == 31005 and shown["warnings"] == []


def test_a_task_info_file_saved_with_a_byte_order_mark_is_read(tmp_path, capsys):
    """It was `Unexpected UTF-8 BOM (decode using utf-8-sig)`, where a config with one loads."""
    path = task_info_file(tmp_path, encode(load_job(REPO / "examples/http_service.aurora")), ports=[32001])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert json.loads(inspect(capsys, "--task-info", path, "--json"))["ports"] == {"health": 32001}


def test_task_info_with_stoker_s_document_takes_the_ranges(tmp_path, capsys):
    document = encode(load_job(REPO / "examples/http_service.aurora"))
    shown = json.loads(inspect(capsys, "--task-info", task_info_file(tmp_path, document, ports=[32001]), "--json"))
    assert (shown["format"], shown["ports"], shown["user"]) == ("stoker", {"health": 32001}, "www-data")
    assert shown["health_check"]["port"] == 32001


@pytest.mark.parametrize("content, words", [
    ("{not json", "task_info.json': Expecting property name"),
    ("[1]", "task_info.json': it holds a JSON list, not a TaskInfo object"),
    ('{"task_id": {"value": "t"}, "data": "AAAA"}', "invalid task: invalid Aurora task in TaskInfo.data (3 bytes: 00 00 00"),
    ("[" * 100_000, "task_info.json': it is nested too deeply to read"),  # past json.loads' limit on 3.13 too
])
def test_a_task_info_that_cannot_be_used_is_one_error(tmp_path, capsys, content, words):
    path = tmp_path / "task_info.json"
    path.write_text(content)
    assert main(["inspect", "--task-info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stoker: error: ") and words in err and "Traceback" not in err


def test_task_info_shows_what_the_executor_s_flags_change(tmp_path, capsys, monkeypatch):
    """inspect took no executor flag, so it showed no --runner-logger-* default, nor what
    --nosetuid or --stop_timeout_in_secs change: `unrecognized arguments`, exit 2."""
    monkeypatch.delenv("STOKER_STOP_TIMEOUT", raising=False)
    monkeypatch.setenv("STOKER_RUNNER_ROTATE_LOG_BACKUPS", "3")  # the executor's variables too
    data = assigned_task(client_json(write_config(tmp_path, AURORA_JOB)), role="www-data", name="web",
                         environment="prod", task_id="task-9", host="agent3", instance=2, ports={"http": 31005})
    path = task_info_file(tmp_path, data)
    out = inspect(capsys, "--task-info", path, "--runner-logger-destination", "both", "--runner-logger-mode",
                  "rotate", "--nosetuid", "--stop_timeout_in_secs", "30", "--nosetuid-health-checks")
    assert "  runs as: the executor's user (--nosetuid)\n" in out
    assert "    web_2  [max_failures=1 min_duration=5.0 logger=both/rotate(100 MiB x3) (--runner-logger-*)]\n" in out
    assert "  executor: stop_timeout=30.0 s disk_limit=checked every 60.0 s cgroups=auto announces=no " \
           "(no --announcer-ensemble)\n    shell health checks run as the executor's user;" in out
    shown = json.loads(inspect(capsys, "--task-info", path, "--json", "--execute-as-user", "nobody",
                               "--disk-limit", "off"))
    assert shown["loggers"]["web_2"] == {"destination": "file", "mode": "standard", "log_size_bytes": 100 << 20,
                                         "backups": 3, "from": "the executor's --runner-logger-* flags or defaults"}
    assert shown["executor"]["runs_as"].startswith("nobody (--execute-as-user")
    assert (shown["executor"]["stop_timeout_secs"], shown["executor"]["disk_check_secs"]) == (120.0, None)


def test_the_executor_s_flags_without_task_info_are_an_error(capsys):
    assert main(["inspect", str(REPO / "examples/hello_world.aurora"), "--nosetuid"]) == 2
    assert "--nosetuid: the executor's flags go with --task-info only" in capsys.readouterr().err


# ---- the command's refusals, each one line ----

@pytest.mark.parametrize("argv, line", [
    ([], "inspect needs a CONFIG file (or --task-info FILE)"),
    ([str(REPO / "examples/hello_world.aurora"), "--nosetuid", "--stop_timeout_in_secs", "30"],
     "--nosetuid, --stop-timeout-in-secs: the executor's flags go with --task-info only (a config's job runs "
     "under `stoker run`)"),
    (["--task-info", "task_info.json", str(REPO / "examples/hello_world.aurora")],  # a CONFIG alone, or --bind
     "--task-info takes no CONFIG, JOBKEY or --bind: the TaskInfo holds the task"),
    (["--task-info", "task_info.json", "--bind", "a=b"],
     "--task-info takes no CONFIG, JOBKEY or --bind: the TaskInfo holds the task"),
    (["--task-info", "/nonexistent/stoker-test/task_info.json"],
     "'/nonexistent/stoker-test/task_info.json': No such file or directory"),  # the OSError's words alone
])
def test_a_refused_inspect_is_one_error_line(capsys, argv, line):
    assert main(["inspect", *argv]) == 2
    assert capsys.readouterr() == ("", f"stoker: error: {line}\n")


def test_the_job_a_key_names_is_the_one_shown(tmp_path, capsys):
    config = write_config(tmp_path, """
        task = Task(processes=[Process(name='p', cmdline='true')], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB))
        jobs = [Job(cluster='c', role='r', environment='e', name=name, task=task) for name in ('a', 'b')]
    """)
    assert json.loads(inspect(capsys, config, "c/r/e/b", "--json"))["job"]["name"] == "b"


def test_a_task_infos_json_is_indented_by_two(tmp_path, capsys):
    document = encode(load_job(REPO / "examples/http_service.aurora"))
    out = inspect(capsys, "--task-info", task_info_file(tmp_path, document, ports=[32001]), "--json")
    assert out.startswith('{\n  "') and out.endswith("\n}\n")
