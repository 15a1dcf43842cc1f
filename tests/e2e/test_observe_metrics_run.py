"""`stoker observe`'s `/metrics` against a real `stoker run` task: a process that failed
twice before its third run stayed up shows 3 runs, 2 of them failed; a shell health check
that starts failing shows its consecutive failures; the reservation is the task's
Resources. The text is checked with the tests' strict parser (tests/support/exposition.py)."""
from __future__ import annotations

import textwrap

import pytest

from tests.support.exposition import Parsed, parse
from tests.support.observer import ObservedHost
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(120)

FLAKY = "n=$(cat .runs 2>/dev/null || echo 0); echo $((n+1)) > .runs; [ $n -ge 2 ] && exec sleep 1000; exit 1"
MB = 1024 * 1024
PATIENT = {"timeout_secs": 30.0, "interval_secs": 0.05}  # a busy host may be slow; each look is a scrape


def _has(m: Parsed, name: str, at_least: float, **labels: str) -> bool:
    """Whether the one sample of `name` with `labels` is there, at `at_least` or more."""
    found = m.samples(name, **labels)
    return len(found) == 1 and found[0].value >= at_least


def test_a_real_task_s_runs_health_and_reservation_are_its_metrics(tmp_path):
    config = tmp_path / "flaky.aurora"
    config.write_text(textwrap.dedent(f"""
        jobs = [Service(cluster='local', role='me', environment='test', name='flaky',
                        task=Task(processes=[Process(name='flaky', cmdline={FLAKY!r}, max_failures=5,
                                                     min_duration=0)],
                                  resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB), finalization_wait=2),
                        health_check_config=HealthCheckConfig(
                            health_checker=HealthCheckerConfig(shell=ShellHealthChecker(shell_command='test ! -e sick')),
                            initial_interval_secs=0.05, interval_secs=0.05, max_consecutive_failures=100000),
                        lifecycle=DisableLifecycle)]
    """))
    host = ObservedHost(tmp_path)
    try:
        run = host.run(config)
        host.observe()

        def scraped() -> Parsed:
            status, headers, body = host.get("/metrics")
            assert status == 200 and headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            return parse(body)
        process = {"job_name": "flaky", "process": "flaky"}
        m = wait_for(lambda: _has(m := scraped(), "stoker_process_runs_total", 3, **process) and m, **PATIENT)
        assert m.value("stoker_process_runs_total", **process) == 3
        assert m.value("stoker_process_state", **process, state="RUNNING") == 1  # the third run stays
        assert m.value("stoker_process_failed_runs", **process) == 2
        assert m.value("stoker_task_state", job_name="flaky", state="RUNNING") == 1
        assert m.value("stoker_task_health_consecutive_failures", job_name="flaky") == 0
        assert m.value("stoker_task_cpu_reserved_cores", job_name="flaky") == 0.1
        assert m.value("stoker_task_memory_reserved_bytes", job_name="flaky") == MB
        assert m.value("stoker_task_disk_reserved_bytes", job_name="flaky") == MB
        assert m.value("stoker_task_memory_rss_bytes", job_name="flaky") > 0
        (run.sandbox / "sick").touch()
        m = wait_for(lambda: _has(m := scraped(), "stoker_task_health_consecutive_failures", 2, job_name="flaky")
                     and m, **PATIENT)
        assert m.value("stoker_task_health_consecutive_successes", job_name="flaky") == 0
        assert m.value("stoker_task_health_checks_total", job_name="flaky") >= 3
        assert m.value("stoker_task_health_recent_checks", job_name="flaky", outcome="failed") >= 2
        assert m.value("stoker_task_health_state", job_name="flaky", state="RUNNING") == 1
        assert 0 < m.value("stoker_task_health_last_check_duration_seconds", job_name="flaky") < 5
        assert m.value("stoker_process_runs_total", **process) == 3  # the health check restarts nothing
    finally:
        host.close()
