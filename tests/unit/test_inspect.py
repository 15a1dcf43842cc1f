"""`stoker inspect` describes the job Stoker will run: the bound JobSpec, not the raw config."""
from __future__ import annotations

import pytest

from config.document import encode
from config.loader import load_job
from executor.cli.inspect import describe_job
from executor.cli.main import main
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
    assert ('  health: HTTP GET http://localhost:{{thermos.ports[health]}}/health, '
            'expects body "ok", any status\n') in out
    assert ("    initial_interval_secs=2.0 interval_secs=1.0 timeout_secs=1.0 "
            "max_consecutive_failures=2 min_consecutive_successes=1\n") in out
    assert ("    failures of the first 2 attempts ignored (grace); RUNNING after 1 consecutive "
            "pass within 5 attempts\n") in out
    assert ("  lifecycle: on a kill, POST http://localhost:{{thermos.ports[health]}}/quitquitquit, "
            "wait up to 2.0 s; POST http://localhost:{{thermos.ports[health]}}/abortabortabort, "
            "wait up to 1.0 s; then SIGTERM, SIGKILL\n") in out
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
     "  health: TCP connect to localhost:{{thermos.ports[health]}}\n"),
    (", lifecycle=DisableLifecycle", "  lifecycle: none (no HTTP lifecycle configured)\n"),
    (", lifecycle=LifecycleConfig(http=HttpLifecycleConfig(port='admin'))",
     "  lifecycle: on a kill, POST http://localhost:{{thermos.ports[admin]}}/quitquitquit, wait up to 5.0 s;"),
    (", health_check_config=HealthCheckConfig(health_checker=HealthCheckerConfig("
     "http=HttpHealthChecker(endpoint='/ready', expected_response='', expected_response_code=204)))",
     "  health: HTTP GET http://localhost:{{thermos.ports[health]}}/ready, expects any body, HTTP 204\n"),
])
def test_the_bound_spec_decides_what_is_shown(tmp_path, extra, expected):
    text = job_text("[Process(name='web', cmdline='serve {{thermos.ports[health]}}')]", extra=extra)
    out = describe_job(load_job(write_config(tmp_path, text)))
    assert expected in out


def test_a_tcp_checker_without_a_health_port_is_no_check(tmp_path):
    text = job_text(extra=", health_check_config=HealthCheckConfig("
                          "health_checker=HealthCheckerConfig(tcp=TcpHealthChecker()))")
    assert "  health: none (no port named health)\n" in describe_job(load_job(write_config(tmp_path, text)))


def test_a_job_that_cannot_be_bound_is_the_error_stoker_run_gives(tmp_path, capsys):
    path = write_config(tmp_path, job_text("[Process(name='web', cmdline='echo {{nowhere}}')]"))
    assert main(["inspect", str(path)]) == 2
    assert "unbound template references: {{nowhere}}" in capsys.readouterr().err
