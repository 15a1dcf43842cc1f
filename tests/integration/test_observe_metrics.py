"""`GET /metrics` of a real observer (in process, on 127.0.0.1) over a private registry: a
live task (this test's process is its supervisor; its running run a real `sleep` child, so
its process tree is read from /proc) whose process failed twice and whose health check
fails, a task of a supervisor long gone whose id and process names hold quotes,
backslashes and line feeds, and two tasks of other users (root only). The answer is
checked with the tests' strict parser of the format (tests/support/exposition.py)."""
from __future__ import annotations

import contextlib
import gzip
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from config.registry import RegistrySettings
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.identity import own_identity
from executor.host.registry import Registry
from executor.observe.server import Limits
from tests.support.children import sleeping_child
from tests.support.exposition import parse
from tests.support.keptreader import kept_reader
from tests.support.observer_server import serving
from tests.support.users import STRANGER, as_user, needs_root

pytestmark = pytest.mark.timeout(60)

ALICE, BOB = STRANGER, STRANGER + 1
ODD_ID = 'we"ird\\id\nline é-0'
ODD_PROCESSES = ('quo"te', "back\\slash", "two\nlines")


def _write(sandbox: Path, records: list[dict]) -> None:
    (sandbox / ".stoker").mkdir(parents=True)
    (sandbox / ".stoker/checkpoint.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def _header(task_id: str, pid: int, start: int, boot: str, processes: list[str], wall: float,
            health: str = "none") -> dict:
    return {"kind": "header", "wall": wall, "task": "web.3", "job_key": "devcluster/www-data/prod/web",
            "task_id": task_id, "sandbox": "", "ports": {}, "supervisor_pid": pid, "supervisor_start": start,
            "supervisor_boot": boot, "processes": processes, "health": health}


def _run(process: str, run: int, pid: int, wall: float, exit_code: int | None) -> list[dict]:
    started = {"kind": "process", "wall": wall, "process": process, "run": run, "from": "WAITING",
               "to": "RUNNING", "reason": "started", "pid": pid}
    if exit_code is None:
        return [started]
    return [started, {"kind": "process", "wall": wall + 1, "process": process, "run": run, "from": "RUNNING",
                      "to": "WAITING", "reason": f"exit status {exit_code}", "pid": pid,
                      "exit_code": exit_code, "outcome": "FAILED"}]


def _health(outcome: str, attempts: int, failures: int, successes: int, wall: float) -> dict:
    return {"kind": "health", "wall": wall, "outcome": outcome, "reason": "", "latency_secs": 0.0125,
            "state": "RUNNING", "attempts": attempts, "consecutive_failures": failures,
            "consecutive_successes": successes}


def _register(settings: RegistrySettings, sandbox: Path, task_id: str, pid: int, start: int, boot: str,
              wall: float, uid: int = 0) -> None:
    if uid:
        os.chown(sandbox, uid, uid)
    Registry(settings).write(RegistryEntry(
        sandbox=str(sandbox), supervisor_pid=pid, supervisor_start=start, supervisor_boot=boot,
        front_end=FrontEnd.EXECUTOR, registered_wall=wall, task_id=task_id,
        job_key="devcluster/www-data/prod/web", label="web.3"), prune=False)


def _registry(tmp_path: Path, child: int, others: bool) -> RegistrySettings:
    me, now = own_identity(), time.time()
    settings = RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=600)
    live = tmp_path / "live"
    _write(live, [_header("live-0", me.pid, me.start_ticks, me.boot_id, ["flaky"], now - 60, "shell: check"),
                  {"kind": "task", "wall": now - 60, "to": "STARTING", "reason": "launched"},
                  *_run("flaky", 0, 4_000_001, now - 50, 1), *_run("flaky", 1, 4_000_002, now - 40, 1),
                  *_run("flaky", 2, child, now - 30, None),
                  {"kind": "task", "wall": now - 30, "from": "STARTING", "to": "RUNNING", "reason": "healthy"},
                  _health("passed", 1, 0, 1, now - 20), _health("failed", 2, 1, 0, now - 10),
                  _health("failed", 3, 2, 0, now - 5)])
    _register(settings, live, "live-0", me.pid, me.start_ticks, me.boot_id, now - 60)
    odd = tmp_path / "odd"
    _write(odd, [_header(ODD_ID, 4_000_000, 77, "gone", list(ODD_PROCESSES), now - 90),
                 {"kind": "task", "wall": now - 90, "to": "STARTING", "reason": "launched"},
                 *(r for n, p in enumerate(ODD_PROCESSES) for r in _run(p, 0, 4_000_010 + n, now - 80, None)),
                 {"kind": "task", "wall": now - 80, "from": "STARTING", "to": "RUNNING", "reason": "up"}])
    _register(settings, odd, ODD_ID, 4_000_000, 77, "gone", now - 90)
    for n, (task_id, uid) in enumerate((("alice-0", ALICE), ("bob-0", BOB)) if others else ()):
        sandbox = tmp_path / task_id
        _write(sandbox, [_header(task_id, 4_000_100 + n, 5, "gone", ["web"], now - 100),
                         {"kind": "task", "wall": now - 100, "to": "STARTING", "reason": "launched"}])
        _register(settings, sandbox, task_id, 4_000_100 + n, 5, "gone", now - 100, uid)
    return settings


@pytest.fixture
def child() -> Iterator[int]:
    yield from sleeping_child()


@contextlib.contextmanager
def _serve(settings: RegistrySettings, show_to: str) -> Iterator[int]:
    with serving(kept_reader(settings), Limits(idle_secs=2, loop_secs=1), show_to=show_to) as server:
        yield server.socket.getsockname()[1]


@pytest.fixture
def observer(tmp_path, child) -> Iterator[int]:
    with _serve(_registry(tmp_path, child, others=False), "all") as port:
        yield port


def _get(port: int, path: str = "/metrics", method: str = "GET", host: str = "") -> tuple[int, str, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                     headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert "Content-Encoding" not in answer.headers  # not asked for
            return answer.status, answer.headers["Content-Type"], answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


def _gzipped(port: int, accept: str) -> tuple[str | None, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Accept-Encoding": accept})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.headers["Vary"] == "Accept-Encoding"
        return answer.headers["Content-Encoding"], answer.read()


LIVE = {"task_id": "live-0", "process": "flaky"}


def test_the_metrics_are_prometheus_text_with_the_live_tasks_real_state(observer, child):
    status, content_type, text = _get(observer)
    assert status == 200 and content_type == "text/plain; version=0.0.4; charset=utf-8"
    m = parse(text)
    me = own_identity()
    labels = m.samples("stoker_task_info", task_id="live-0")[0].labels
    assert labels == {"task_id": "live-0", "supervisor": f"{me.pid}-{me.start_ticks}", "role": "www-data",
                      "environment": "prod", "job_name": "web", "task_instance": "3", "cluster": "devcluster",
                      "job_key": "devcluster/www-data/prod/web", "sandbox": labels["sandbox"], "front_end": "executor"}
    assert m.value("stoker_task_state", task_id="live-0", state="RUNNING") == 1
    assert sum(s.value for s in m.samples("stoker_task_state", task_id="live-0")) == 1
    assert m.value("stoker_process_runs_total", **LIVE) == 3  # run 0 and 1 failed, run 2 runs
    assert m.value("stoker_process_failed_runs", **LIVE) == 2
    assert m.value("stoker_process_state", **LIVE, state="RUNNING") == 1
    assert m.value("stoker_process_memory_rss_bytes", **LIVE) > 0  # the real `sleep`'s tree
    assert m.value("stoker_process_tree_processes", **LIVE) == 1
    assert m.value("stoker_process_stopped", **LIVE) == 0
    start = float(subprocess.run(["stat", "-c", "%Y", f"/proc/{child}"], capture_output=True,
                                 text=True, check=True).stdout)
    assert abs(m.value("stoker_process_run_start_time_seconds", **LIVE) - start) < 5  # the kernel's
    assert m.value("stoker_task_health_consecutive_failures", task_id="live-0") == 2
    assert m.value("stoker_task_health_consecutive_successes", task_id="live-0") == 0
    assert m.value("stoker_task_health_checks_total", task_id="live-0") == 3
    assert m.value("stoker_task_health_recent_checks", task_id="live-0", outcome="failed") == 2
    assert m.value("stoker_task_health_last_check_duration_seconds", task_id="live-0") == 0.0125
    assert m.value("stoker_task_health_state", task_id="live-0", state="RUNNING") == 1
    assert m.value("stoker_task_health_check_running", task_id="live-0") == 1
    assert m.value("stoker_task_supervisor_alive", task_id="live-0") == 1
    assert m.value("stoker_observer_tasks") == 2 and m.value("stoker_observer_registry_unreadable_entries") == 0
    assert 0 < m.value("stoker_observer_scrape_duration_seconds") < 10
    assert m.families["stoker_process_runs_total"].kind == "counter"


def test_odd_task_ids_and_process_names_are_escaped_and_read_back_as_themselves(observer):
    m = parse(_get(observer)[2])
    assert m.value("stoker_task_state", task_id=ODD_ID, state="LOST") == 1  # its supervisor is gone
    assert m.value("stoker_task_supervisor_alive", task_id=ODD_ID) == 0
    for name in ODD_PROCESSES:
        assert m.value("stoker_process_state", task_id=ODD_ID, process=name, state="LOST") == 1
        assert m.value("stoker_process_runs_total", task_id=ODD_ID, process=name) == 1
    assert not m.samples("stoker_task_health_state", task_id=ODD_ID)  # no check, no series


def test_prometheus_client_reads_odd_task_ids_and_process_names_back_as_themselves(observer):
    """Prometheus' own Python client's parser, on process names a real task cannot have (the
    config's rules refuse them): tests/e2e/test_observe_metrics_prometheus.py reads real tasks'
    odd ids and sandboxes with it, and with a real Prometheus."""
    samples = [s for f in text_string_to_metric_families(_get(observer)[2]) for s in f.samples]
    odd = [s for s in samples if s.name == "stoker_process_runs_total" and s.labels["task_id"] == ODD_ID]
    assert sorted(s.labels["process"] for s in odd) == sorted(ODD_PROCESSES) and {s.value for s in odd} == {1}
    assert [s.labels for s in samples if s.name == "stoker_process_state" and s.value == 1
            and s.labels["task_id"] == ODD_ID] == [{**s.labels, "state": "LOST"} for s in odd]


def test_head_errors_and_foreign_hosts_of_metrics_are_answered_as_plain_text(observer):
    assert _get(observer, method="HEAD")[:2] == (200, "text/plain; version=0.0.4; charset=utf-8")
    status, content_type, text = _get(observer, host="evil.example")
    assert (status, content_type) == (403, "text/plain; charset=utf-8") and "loopback" in text
    assert _get(observer, method="POST")[0] == 405


def test_a_registry_it_cannot_read_is_503_as_text(tmp_path):
    (tmp_path / "root").mkdir()
    os.chmod(tmp_path / "root", 0o777)  # anyone could plant an entry: not trusted
    with _serve(RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=60), "all") as port:
        status, content_type, text = _get(port)
        assert (status, content_type) == (503, "text/plain; charset=utf-8") and str(tmp_path / "root") in text


@needs_root
def test_under_show_tasks_to_owner_each_user_scrapes_only_their_own_tasks(tmp_path, child):
    with _serve(_registry(tmp_path, child, others=True), "owner") as port:
        def ids(text: str) -> set[str]:
            return {s.labels["task_id"] for s in parse(text).samples("stoker_task_info")}

        alice = as_user(ALICE, ALICE, lambda: _get(port)[2])
        assert ids(alice) == {"alice-0"} and "bob-0" not in alice and "live-0" not in alice
        assert parse(alice).value("stoker_observer_tasks") == 1
        assert not parse(alice).samples("stoker_observer_registry_unreadable_entries")  # root's to know
        assert not parse(alice).samples("stoker_observer_checkpoint_replays_total")  # bob's replays count
        assert ids(as_user(BOB, BOB, lambda: _get(port)[2])) == {"bob-0"}
        root = _get(port)[2]
        assert ids(root) == {"alice-0", "bob-0", "live-0", ODD_ID}  # root sees all
        assert parse(root).value("stoker_observer_checkpoint_replays_total") == 4  # each checkpoint once


def test_a_scraper_that_accepts_gzip_gets_the_same_metrics_gzipped(observer):
    encoding, body = _gzipped(observer, "deflate, gzip;q=0.5")  # as Prometheus asks
    assert encoding == "gzip" and len(body) < len(_get(observer)[2])
    names = {s.name for f in parse(gzip.decompress(body)).families.values() for s in f.samples}
    assert {"stoker_task_state", "stoker_process_runs_total", "stoker_observer_tasks"} <= names
    encoding, body = _gzipped(observer, "gzip;q=0, identity")
    assert encoding is None and parse(body).value("stoker_observer_tasks") == 2
