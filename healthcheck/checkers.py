"""Health checkers: each runs ONE attempt and turns every outcome into an `Attempt`.

Owns the TCP check and `make_checker`, the one place a `HealthSpec` becomes a checker: one
factory per kind in `_FACTORIES`, each next to (or importing) its class, so adding a kind
touches one table. The HTTP check is `healthcheck.http_check` (imported by its factory only,
so a task without one never loads it), the shell check `healthcheck.shell`.

Every checker (docs/contract.md §5) bounds its attempt in time, gives each way it can fail its
own reason, quotes at most 1 KiB of any body or output, talks to nothing but the loopback addresses (`healthcheck.loopback`), and
never raises out of `check()`. None decides STARTING/RUNNING/FAILED (that is
`healthcheck.policy`) or schedules attempts (that is `healthcheck.loop`).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from config.spec import CheckKind, HealthSpec
from healthcheck import loopback
from healthcheck.base import MAX_BODY_BYTES, QUOTE_CHARS, never_raises, secs
from healthcheck.policy import Attempt
from healthcheck.shell import CommandResult, RunCommand, ShellChecker

if TYPE_CHECKING:  # a Protocol for the type checker only (healthcheck/base.py)
    from healthcheck.base import Checker as Checker

__all__ = [
    "MAX_BODY_BYTES", "QUOTE_CHARS", "CommandResult", "RunCommand", "ShellChecker",
    "TcpChecker", "make_checker",
]


@attrs.frozen(slots=True)
class TcpChecker:
    """A TCP connect to localhost:PORT (127.0.0.1, then ::1: `healthcheck.loopback`), closed
    at once; `timeout_secs` covers both tries, given again once when this process was not
    running at its end (`loopback.Deadline`, as the HTTP check's)."""

    port: int
    timeout_secs: float = 1.0

    def describe(self) -> str:
        return f"TCP connect to localhost:{self.port}"

    @never_raises
    def check(self) -> Attempt:
        try:
            with loopback.Deadline(self.timeout_secs, self.describe()).connect(self.port):
                return Attempt.passed(f"{self.describe()} succeeded")
        except (loopback.Unreachable, loopback.NoSocket) as exc:
            return Attempt.failed(f"{self.describe()}: {exc.reason}")
        except TimeoutError:
            return Attempt.failed(
                f"{self.describe()}: timed out after {secs(self.timeout_secs)} s"
            )
        except OSError as exc:
            return Attempt.failed(f"{self.describe()}: {exc.strerror or exc}")


# ---- one factory per kind ----


def _port_of(spec: HealthSpec) -> int:
    if spec.port is None:
        raise ValueError(f"a {spec.kind.value} health check needs a port, and none is bound")
    return spec.port


def _http(spec: HealthSpec, run_command: RunCommand) -> Checker:
    from healthcheck.http_check import HttpChecker  # only for HTTP checks (`requests` is not used)

    return HttpChecker(
        port=_port_of(spec),
        endpoint=spec.endpoint,
        expected_response=spec.expected_response,
        expected_response_code=spec.expected_response_code,
        timeout_secs=spec.timeout_secs,
    )


def _tcp(spec: HealthSpec, run_command: RunCommand) -> Checker:
    return TcpChecker(port=_port_of(spec), timeout_secs=spec.timeout_secs)


def _shell(spec: HealthSpec, run_command: RunCommand) -> Checker:
    return ShellChecker(spec.shell_command, spec.timeout_secs, run_command)


_FACTORIES: dict[CheckKind, Callable[[HealthSpec, RunCommand], Checker]] = {
    CheckKind.HTTP: _http,
    CheckKind.TCP: _tcp,
    CheckKind.SHELL: _shell,
}


def make_checker(spec: HealthSpec, run_command: RunCommand) -> Checker | None:
    """The checker `spec` asks for; None for CheckKind.NONE.

    `run_command` runs a shell check's command: the supervisor's, which spawns it in the
    sandbox and lets the one reaper wait for it. It is required, so that no check can ever
    fall back to a runner that waits for its own child.
    """
    if spec.kind is CheckKind.NONE:
        return None
    return _FACTORIES[spec.kind](spec, run_command)
