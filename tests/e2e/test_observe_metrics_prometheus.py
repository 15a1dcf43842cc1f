"""`stoker observe`'s `/metrics` read by the real thing, not only by the tests' own parser:
real tasks (a `stoker executor` under the agent simulator whose task id holds quotes,
backslashes, a line feed, a carriage return, a tab, non-ASCII letters and an emoji; a
`stoker run` task with a shell health check in a sandbox whose path holds the same kinds),
read by

- prometheus_client's parser (`text_string_to_metric_families`): every family, its type,
  its help and every sample as the tests' strict parser reads them, the label values exactly
  the task ids and sandboxes the API gives, asked for as Prometheus asks (OpenMetrics first,
  gzip);
- a real Prometheus (Debian's 2.42) scraping the observer every 500 ms (its scrape
  timeout too: long enough that a loaded host's slow answer is no failed scrape): its query API
  returns the series with the same labels and values as a scrape, its target is up with no
  scrape error, and each sample it scraped is a series of its own; a registry the observer
  cannot read takes the target down (503: `up` 0), and back up once readable;
- `promtool check metrics` (names, help, types, units): nothing on a scrape nor on any family.

The Prometheus tests are skipped, saying so, where Debian's package is missing (`make
prometheus` installs it; CI does, and fails them instead of skipping). The first test is
Prometheus': its server starts before the tasks and the observer (on a port chosen for it),
so that its 5 s wait before a first scrape (tests/support/prometheus.py) overlaps theirs.
"""
from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from executor.observe.exposition import COUNTER, Family, render
from executor.observe.metrics import FAMILIES
from tests.support.exposition import parse
from tests.support.observer import ObservedHost
from tests.support.odd_tasks import ODD_ID, ODD_SANDBOX, odd_tasks
from tests.support.ports import free_ports
from tests.support.prometheus import ACCEPT, PrometheusServer, promtool_check_metrics, require_prometheus
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(120)

PATIENT = {"timeout_secs": 30.0, "interval_secs": 0.05}
# Families whose series and values stay put while the tasks run (no clock, CPU or disk in them).
STEADY = ("stoker_task_info", "stoker_task_state", "stoker_task_attempt", "stoker_task_supervisor_alive",
          "stoker_task_cpu_reserved_cores", "stoker_task_memory_reserved_bytes", "stoker_process_state",
          "stoker_process_runs_total", "stoker_process_failed_runs", "stoker_task_health_state")
# Non-empty while the target's last scrape had more samples than the series it stored.
DISTINCT = 'scrape_samples_scraped{job="stoker"} != on() count({job="stoker", __name__=~"stoker_.+"})'


@pytest.fixture(scope="module")
def observer_port() -> int:
    return free_ports(1)[0]


@pytest.fixture(scope="module")
def prometheus(observer_port) -> Iterator[PrometheusServer]:
    require_prometheus()
    server = PrometheusServer(f"127.0.0.1:{observer_port}", interval="500ms")
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def odd(tmp_path_factory, observer_port) -> Iterator[ObservedHost]:
    with odd_tasks(tmp_path_factory.mktemp("odd-metrics"), observer_port) as host:
        yield host


def _scrape(host: ObservedHost) -> str:
    """/metrics as Prometheus asks for it, once the health check has run."""
    def checked() -> str | None:
        status, headers, body = host.get("/metrics", {"Accept": ACCEPT, "Accept-Encoding": "gzip"})
        assert status == 200, body[:300]
        assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"  # never OpenMetrics
        assert headers["Content-Encoding"] == "gzip"
        text = gzip.decompress(body).decode("utf-8")
        return text if "stoker_task_health_last_check_time_seconds{" in text else None
    return wait_for(checked, **PATIENT)


def _labels(series: dict[str, str]) -> frozenset[tuple[str, str]]:
    """A series' own labels: those Prometheus adds (`__name__`, `job`, `instance`) left out."""
    return frozenset((k, v) for k, v in series.items() if k not in ("__name__", "job", "instance"))


def _target_up(prometheus: PrometheusServer) -> dict[str, Any] | None:
    """The observer's target once Prometheus scraped it up; None while it lists no target yet
    (it lists its static target a moment after it is ready: a test first in the module, run
    alone or shuffled, failed on the empty list in 3 of 3 runs)."""
    targets = prometheus.targets()
    if not targets:
        return None
    (target,) = targets
    return target if target["health"] == "up" and target["lastError"] == "" else None


def test_prometheus_scrapes_the_real_tasks_with_the_labels_and_values_of_a_scrape(prometheus, odd):
    def both_tasks_scraped() -> list[dict[str, Any]] | None:
        found = prometheus.query("stoker_task_health_checks_total or stoker_task_state == 1")
        return found if len(found) == 3 and _target_up(prometheus) else None
    wait_for(both_tasks_scraped, **PATIENT)
    target = _target_up(prometheus)
    assert target is not None and target["scrapeUrl"] == f"{odd.url}/metrics", target
    assert [s["value"][1] for s in prometheus.query('up{job="stoker"}')] == ["1"]
    # each sample of a scrape is a series of its own (Prometheus 2.42 keeps one of two samples
    # of the same series in a scrape and says nothing: no error, no counter)
    wait_for(lambda: prometheus.query(DISTINCT) == [], **PATIENT, message="each sample scraped a series of its own")
    scraped = [s for f in text_string_to_metric_families(_scrape(odd)) for s in f.samples]
    for name in STEADY:
        stored = {_labels(s["metric"]): float(s["value"][1]) for s in prometheus.query(name)}
        assert stored == {frozenset(s.labels.items()): s.value for s in scraped if s.name == name}, name
    tasks = {t["task_id"]: t for t in odd.json("/api/tasks")}
    assert ODD_ID in tasks and len(tasks) == 2
    for series in prometheus.query("stoker_task_info"):
        task = tasks[series["metric"]["task_id"]]
        assert (series["metric"]["sandbox"], series["metric"]["supervisor"]) == (task["sandbox"], task["supervisor"])
    assert {s["metric"]["sandbox"] for s in prometheus.query("stoker_task_info")} >= {str(odd.tmp / ODD_SANDBOX)}


def test_a_registry_the_observer_cannot_read_takes_the_target_down_in_prometheus(prometheus, odd):
    """The README's promise: 503, so `up` goes 0 (and the series go stale, as at any failed
    scrape) rather than an answer without the tasks that `up` 1 would vouch for."""
    wait_for(lambda: _target_up(prometheus), **PATIENT)
    mode = odd.root.stat().st_mode & 0o7777
    os.chmod(odd.root, 0o777)  # anyone could plant an entry there: the observer trusts it no more
    try:
        def down() -> dict[str, Any] | None:
            (target,) = prometheus.targets()
            return target if target["health"] == "down" else None
        target = wait_for(down, **PATIENT)
        assert "503" in target["lastError"], target
        wait_for(lambda: [s["value"][1] for s in prometheus.query('up{job="stoker"}')] == ["0"], **PATIENT)
        assert prometheus.query("stoker_task_state") == []  # stale: no task is said to be in any state
    finally:
        os.chmod(odd.root, mode)
    wait_for(lambda: _target_up(prometheus) and len(prometheus.query('stoker_task_state{state="RUNNING"} == 1')) == 2,
             **PATIENT)


def test_promtool_finds_nothing_to_lint_in_a_scrape_nor_in_any_family(odd):
    require_prometheus()
    lint = promtool_check_metrics(_scrape(odd))
    assert (lint.returncode, lint.stdout, lint.stderr) == (0, "", "")
    # Every family, those this scrape has no series of (a LOST task's leftovers) included.
    every = render([Family(name, kind, text, [((("task_id", "t"),), 1)]) for name, (kind, text) in FAMILIES.items()])
    lint = promtool_check_metrics(every)
    assert (lint.returncode, lint.stdout, lint.stderr) == (0, "", "")
    # and promtool does lint: a counter named without _total
    lint = promtool_check_metrics(render([Family("stoker_task_restarts", COUNTER, "Restarts.", [((), 1)])]))
    assert lint.returncode != 0 and 'counter metrics should have "_total" suffix' in lint.stdout + lint.stderr


def test_prometheus_client_reads_every_family_sample_and_help_as_the_strict_parser(odd):
    text = _scrape(odd)
    ours = parse(text).families
    theirs = {f.name: f for f in text_string_to_metric_families(text)}
    # prometheus_client names a counter's family without its _total, as OpenMetrics does
    assert sorted(theirs) == sorted(n.removesuffix("_total") if f.kind == COUNTER else n for n, f in ours.items())
    assert {"stoker_task_health_state", "stoker_process_runs", "stoker_observer_task_errors"} <= set(theirs)
    for name, family in ours.items():
        their = theirs[name.removesuffix("_total") if family.kind == COUNTER else name]
        assert (their.type, their.documentation) == (family.kind, family.help) == FAMILIES[name], name
        assert [(s.name, s.labels, s.value) for s in their.samples] == \
            [(name, s.labels, s.value) for s in family.samples], name


def test_odd_task_ids_and_sandboxes_are_read_back_by_prometheus_client_as_themselves(odd):
    text = _scrape(odd)
    info = {s.labels["task_id"]: s.labels for f in text_string_to_metric_families(text)
            if f.name == "stoker_task_info" for s in f.samples}
    tasks = {t["task_id"]: t for t in odd.json("/api/tasks")}
    assert set(info) == set(tasks) and ODD_ID in info
    for task_id, labels in info.items():
        task = tasks[task_id]
        assert (labels["sandbox"], labels["supervisor"], labels["job_key"]) == \
            (task["sandbox"], task["supervisor"], task["job_key"])
    assert {labels["sandbox"] for labels in info.values()} >= {str(odd.tmp / ODD_SANDBOX)}
    # every series of the odd task carries its id whole: as many as the lines that name it
    written = 'task_id="' + ODD_ID.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    odd_series = [s for f in text_string_to_metric_families(text) for s in f.samples
                  if s.labels.get("task_id") == ODD_ID]
    assert len(odd_series) == text.count(written) > len(FAMILIES) // 2
