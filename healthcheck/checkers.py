"""Health checkers: each runs ONE attempt and turns every outcome into an `Attempt`.

Owns the HTTP, TCP and shell checks (docs/contract.md §5): how one attempt is made, bounded in
time and judged, and the reason sentence for each way it can fail. Never raises out of
`check()` (an unexpected exception becomes "internal health check error: ..."), never decides
STARTING/RUNNING/FAILED (that is `healthcheck.policy`), never schedules attempts (that is
`healthcheck.loop`), and never talks to anything but localhost. Reasons quote at most 1 KiB
of any body or output.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

import attrs

from config.spec import CheckKind, HealthSpec
from healthcheck.policy import Attempt
from healthcheck.reasons import MAX_BODY_BYTES, QUOTE_CHARS, Checker, _never_raises, _secs
from healthcheck.shell import CommandResult, RunCommand, ShellChecker, subprocess_runner

__all__ = [
    "MAX_BODY_BYTES", "QUOTE_CHARS", "Checker", "CommandResult", "RunCommand", "ShellChecker",
    "subprocess_runner", "TcpChecker", "make_checker",
]


def __getattr__(name: str):
    # HttpChecker lives in http_check, which imports requests: load it only when asked for.
    if name == "HttpChecker":
        from healthcheck.http_check import HttpChecker

        return HttpChecker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---- TCP ----


@attrs.frozen(slots=True)
class TcpChecker:
    """A TCP connect to localhost:PORT, closed at once."""

    port: int
    timeout_secs: float = 1.0

    def describe(self) -> str:
        return f"TCP connect to localhost:{self.port}"

    @_never_raises
    def check(self) -> Attempt:
        try:
            with socket.create_connection(("localhost", self.port), timeout=self.timeout_secs):
                return Attempt.passed(f"{self.describe()} succeeded")
        except ConnectionRefusedError:
            return Attempt.failed(f"{self.describe()}: connection refused")
        except TimeoutError:
            return Attempt.failed(
                f"{self.describe()}: timed out after {_secs(self.timeout_secs)} s"
            )
        except OSError as exc:
            return Attempt.failed(f"{self.describe()}: {exc.strerror or exc}")

# ---- factory ----


def make_checker(spec: HealthSpec, run_command: RunCommand | None) -> Checker | None:
    """The checker `spec` asks for; None for CheckKind.NONE.

    A shell check without `run_command` runs through `subprocess_runner` in the current
    directory with the current environment (standalone use only).
    """
    if spec.kind is CheckKind.NONE:
        return None
    if spec.kind is CheckKind.SHELL:
        if run_command is None:
            run_command = subprocess_runner(Path.cwd(), os.environ)
        return ShellChecker(spec.shell_command, spec.timeout_secs, run_command)
    if spec.port is None:
        raise ValueError(f"a {spec.kind.value} health check needs a port, and none is bound")
    if spec.kind is CheckKind.HTTP:
        from healthcheck.http_check import HttpChecker

        return HttpChecker(
            port=spec.port,
            endpoint=spec.endpoint,
            expected_response=spec.expected_response,
            expected_response_code=spec.expected_response_code,
            timeout_secs=spec.timeout_secs,
        )
    if spec.kind is CheckKind.TCP:
        return TcpChecker(port=spec.port, timeout_secs=spec.timeout_secs)
    raise ValueError(f"unknown health check kind {spec.kind!r}")

