"""The HTTP lifecycle of a graceful kill (Aurora's HttpLifecycleConfig): POST the graceful
endpoint, give the task its wait, POST the shutdown endpoint, give it its wait — then the
owner's staged kill (SIGTERM, SIGKILL) takes over. A thin adapter: one thread per kill
(when it cannot start, the kill goes straight on to its signals), never raises, never
touches task state.

How long each wait is comes from `kill.endpoint_wait` (pure): none when the endpoint could
not be reached or answered 404/405/501 (the service does not implement it), else the
configured wait, cut so that both waits end within the kill's `within_secs`. Each answer
and the wait that follows go out through `progress` as one sentence, for whoever shows
the stop. The owner tells it when every regular process has ended
(`regular_processes_gone`: the waits end early) or when the kill no longer needs it
(`cancel`); it reports back once, through the `done` callback.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from config.spec import LifecycleSpec
from executor.logs import log_event, start_thread
from executor.task.kill import endpoint_wait

logger = logging.getLogger(__name__)


def post_endpoint(port: int, endpoint: str, timeout_secs: float = 1.0) -> tuple[int | None, str]:
    """POST an empty body straight to the task over `http.client` (no proxy: the task is on
    localhost, reached at 127.0.0.1, else ::1, the name never resolved: `healthcheck.loopback`;
    the connect waits at most `timeout_secs` for both tries, each later socket operation at
    most `timeout_secs`); (the HTTP status, or None when there was no answer; detail)."""
    import http.client

    from healthcheck import loopback
    from healthcheck.base import quote
    from healthcheck.http_check import request_path

    url = f"http://localhost:{port}{endpoint}"
    conn = http.client.HTTPConnection("localhost", port, timeout=timeout_secs)  # Host: localhost:PORT
    try:
        conn.sock = loopback.connect_within(port, timeout_secs)
        conn.sock.settimeout(timeout_secs)
        conn.request("POST", request_path(endpoint), body=b"",
                     headers={"Connection": "close", "Accept-Encoding": "identity"})
        status = conn.getresponse().status
        return status, f"POST {url} answered HTTP {status}"
    except TimeoutError:
        return None, f"POST {url} timed out after {timeout_secs:.1f} s"
    except (loopback.Unreachable, loopback.NoSocket) as exc:
        return None, f"POST {url} failed: {exc.reason}"
    except ConnectionError as exc:  # refused, reset, or closed without an answer
        return None, f"POST {url} failed: connection refused or reset ({type(exc).__name__})"
    except Exception as exc:  # an adapter never raises: every outcome becomes a result
        # (on one line: an answer's own bytes, a bad status line's `garbage\r\n`, are in its words)
        return None, f"POST {url} failed: {type(exc).__name__}: {quote(str(exc).strip())}"
    finally:
        conn.close()


class LifecycleShutdown:
    """Runs graceful → shutdown endpoints on its own thread, then calls `done(summary)`."""

    def __init__(self, spec: LifecycleSpec, task_label: str, done: Callable[[str], None], *,
                 within_secs: float | None = None,
                 progress: Callable[[str], None] = lambda text: None) -> None:
        self._spec = spec
        self._task = task_label
        self._done = done
        self._progress = progress
        self._within_secs = within_secs
        self._over = threading.Event()  # set by the owner's messages; ends every wait early
        self._why = ""
        self._thread = threading.Thread(target=self._run, name=f"lifecycle-{task_label}", daemon=True)

    def start(self) -> LifecycleShutdown:
        """Start the endpoints' thread. When no thread can start (a full pids cgroup, no
        memory) the endpoints are not called and `done` says so at once: the kill goes on
        to its signals."""
        try:
            start_thread(self._thread)
        except RuntimeError as exc:
            why = f"lifecycle endpoints not called: their thread could not start ({exc})"
            log_event(logger, logging.ERROR, "lifecycle_failed", task=self._task, reason=why)
            self._over.set()
            self._done(why)
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
        spec = self._spec
        steps = (
            (spec.graceful_shutdown_endpoint, spec.graceful_shutdown_wait_secs, "graceful_shutdown_wait_secs"),
            (spec.shutdown_endpoint, spec.shutdown_wait_secs, "shutdown_wait_secs"),
        )
        within = self._within_secs
        ends_at = None if within is None else time.monotonic() + within
        summary = "lifecycle endpoints done; processes still running"
        for endpoint, wait_secs, setting in steps:
            if self._over.is_set():
                summary = f"{self._why} during the lifecycle"
                break
            answer, detail = post_endpoint(spec.port, endpoint)
            left = wait_secs if ends_at is None else ends_at - time.monotonic()
            wait = endpoint_wait(answer, wait_secs, left, setting)
            # DEBUG: the task's `kill_stage` line says the same at INFO (`_report`)
            log_event(logger, logging.DEBUG, "lifecycle", task=self._task, endpoint=endpoint,
                      answer=answer, wait_secs=round(wait.secs, 3), detail=detail)
            self._report(f"{detail}; {wait.why}")
            if wait.secs > 0 and self._over.wait(wait.secs):
                summary = f"{self._why} after {endpoint}"
                break
        try:
            self._done(summary)
        except Exception as exc:
            log_event(logger, logging.ERROR, "lifecycle_callback_failed", task=self._task,
                      callback="done", error=f"{type(exc).__name__}: {exc}", exc_info=True)

    def _report(self, text: str) -> None:
        try:
            self._progress(text)
        except Exception as exc:
            log_event(logger, logging.ERROR, "lifecycle_callback_failed", task=self._task,
                      callback="progress", error=f"{type(exc).__name__}: {exc}", exc_info=True)
