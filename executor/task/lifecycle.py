"""The HTTP lifecycle of a graceful kill (Aurora's HttpLifecycleConfig): POST the graceful
endpoint, give the task its wait, POST the shutdown endpoint, give it its wait — then the
owner's staged kill (SIGTERM, SIGKILL) takes over. A thin adapter: one thread per kill,
never raises, never touches task state. The owner tells it when every regular process has
ended (`regular_processes_gone`: the waits end early) or when the kill no longer needs it
(`cancel`); it reports back once, through the `done` callback.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from config.spec import LifecycleSpec
from executor.logs import log_event

logger = logging.getLogger(__name__)


def post_endpoint(port: int, endpoint: str, timeout_secs: float = 1.0) -> tuple[bool, str]:
    """POST an empty body; (handled, detail). Any HTTP answer, 4xx/5xx included, is handled."""
    import requests  # only tasks with a lifecycle port pay for it (requests pulls in ssl)

    url = f"http://localhost:{port}{endpoint}"
    try:
        with requests.post(url, data=b"", timeout=timeout_secs, allow_redirects=False, stream=True) as resp:
            return True, f"POST {url} answered HTTP {resp.status_code}"
    except requests.ConnectionError as exc:
        return False, f"POST {url} failed: connection refused or reset ({type(exc).__name__})"
    except requests.Timeout:
        return False, f"POST {url} timed out after {timeout_secs:.1f} s"
    except Exception as exc:  # an adapter never raises: every outcome becomes a result
        return False, f"POST {url} failed: {type(exc).__name__}: {exc}"


class LifecycleShutdown:
    """Runs graceful → shutdown endpoints on its own thread, then calls `done(summary)`."""

    def __init__(self, spec: LifecycleSpec, task_label: str, done: Callable[[str], None]) -> None:
        self._spec = spec
        self._task = task_label
        self._done = done
        self._over = threading.Event()  # set by the owner's messages; ends every wait early
        self._why = ""
        self._thread = threading.Thread(target=self._run, name=f"lifecycle-{task_label}", daemon=True)

    def start(self) -> LifecycleShutdown:
        self._thread.start()
        return self

    def regular_processes_gone(self) -> None:
        """Every regular process has ended (final ones may still run): stop waiting."""
        self._end("processes exited")

    def cancel(self) -> None:
        """The kill went on without the endpoints (or the task is over): stop waiting."""
        self._end("lifecycle cancelled")

    def _end(self, why: str) -> None:
        if not self._over.is_set():
            self._why = why
            self._over.set()

    def _run(self) -> None:
        steps = (
            (self._spec.graceful_shutdown_endpoint, self._spec.graceful_shutdown_wait_secs),
            (self._spec.shutdown_endpoint, self._spec.shutdown_wait_secs),
        )
        summary = "lifecycle endpoints done; processes still running"
        for endpoint, wait_secs in steps:
            if self._over.is_set():
                summary = f"{self._why} during the lifecycle"
                break
            handled, detail = post_endpoint(self._spec.port, endpoint)
            log_event(logger, logging.INFO, "lifecycle", task=self._task, endpoint=endpoint,
                      handled=handled, detail=detail)
            if handled and self._over.wait(wait_secs):
                summary = f"{self._why} after {endpoint}"
                break
        try:
            self._done(summary)
        except Exception as exc:
            logger.error("lifecycle task=%s done callback failed: %s: %s", self._task, type(exc).__name__, exc)
