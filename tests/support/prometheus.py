"""A real Prometheus server and `promtool` for tests: Debian's `prometheus` package (2.42).

Owns `PrometheusServer` (one server scraping one target: its own config file and TSDB
directory under a temp directory, a free 127.0.0.1 port for its web API, every flag a test
server needs and nothing of /etc/prometheus), `promtool_check_metrics(text)` (its linter of
an exposition) and `require_prometheus()` (skip the test, saying how to install it; in CI,
fail it: `.ci/run` runs `make prometheus`). The server is started with a parent-death signal,
so it dies with the test process even on `kill -9`; `close()` stops it (SIGTERM, then
SIGKILL) and removes its files, and fixtures call it in a finally.

Prometheus 2.42 hands a new target to its scrape loop at most every 5 s (its discovery
manager's update throttle, no flag in this version): the first scrape comes about 5 s after
the start, whatever the scrape interval. A test starts the server first and its target
meanwhile.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.owned_server import OwnedServer, dies_with_us
from tests.support.ports import free_ports
from tests.support.zookeeper import require

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
START_TIMEOUT_SECS = 30.0
# What Prometheus 2.42 asks a target for (scrape/scrape.go, acceptHeader): OpenMetrics first.
ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
          "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


def prometheus_missing() -> str | None:
    """Why no Prometheus server and promtool can be run here, or None when they can."""
    for path in (PROMETHEUS, PROMTOOL):
        if not Path(path).is_file():
            return (f"Prometheus is not installed ({path} is missing): `make prometheus` installs "
                    "Debian's prometheus package (.ci/run does it in CI)")
    return None


def require_prometheus() -> None:
    """Skip the calling test when Prometheus is not installed here; in CI, fail it."""
    require("Prometheus", prometheus_missing())


def promtool_check_metrics(text: str) -> subprocess.CompletedProcess[str]:
    """`promtool check metrics` of `text`: exit 0 and no output when it finds nothing."""
    return subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True,
                          timeout=60, check=False)


class PrometheusServer(OwnedServer):
    """One Prometheus on 127.0.0.1 scraping `target` (HOST:PORT) every `interval` (a
    Prometheus duration) as job `job`; `start()`, then `query` and `targets`."""

    def __init__(self, target: str, interval: str = "500ms", job: str = "stoker") -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="stoker-prometheus-"))
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = self.workdir / "prometheus.yml"
        self.log_path = self.workdir / "prometheus.log"
        # JSON is YAML: the target and job are quoted as they need.
        self.config_path.write_text(json.dumps({
            "global": {"scrape_interval": interval, "scrape_timeout": interval},
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target]}]}]}))

    def start(self, timeout_secs: float = START_TIMEOUT_SECS) -> None:
        """Starts the server and waits until it is ready (`/-/ready`)."""
        log = open(self.log_path, "ab")
        try:
            self._proc = subprocess.Popen(self._command(), stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, cwd=self.workdir, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout_secs
        while not self._ready():
            if self._proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with status {self._proc.returncode} while starting; "
                                   f"its output: {self.tail()}")
            if time.monotonic() >= deadline:
                raise RuntimeError(f"prometheus was not ready on {self.url} within {timeout_secs} s; "
                                   f"its output: {self.tail()}")
            time.sleep(0.02)

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector `promql` selects now: [{"metric": {...}, "value": [t, "v"]}]."""
        answer = self._get_json("/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        assert answer["data"]["resultType"] == "vector", answer
        return list(answer["data"]["result"])

    def targets(self) -> list[dict[str, Any]]:
        return list(self._get_json("/api/v1/targets")["data"]["activeTargets"])

    def tail(self) -> str:
        try:
            return self.log_path.read_bytes()[-3000:].decode("utf-8", "replace") or "(none)"
        except OSError:
            return "(none)"

    def _command(self) -> list[str]:
        command = [PROMETHEUS, f"--config.file={self.config_path}",
                   f"--storage.tsdb.path={self.workdir / 'data'}",
                   f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"]
        return dies_with_us(command)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as answer:
                return bool(answer.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def _get_json(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + path, timeout=10) as answer:
            doc = json.loads(answer.read())
        assert doc["status"] == "success", doc
        return dict(doc)
