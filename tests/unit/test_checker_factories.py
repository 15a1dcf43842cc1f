"""`make_checker`: one factory per kind, a required command runner, and no second runner
hidden in healthcheck/; and the one signal-name helper."""
from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import healthcheck.checkers as checkers
from config.spec import CheckKind, HealthSpec
from executor.events import ExitStatus
from healthcheck.base import signal_name
from healthcheck.checkers import CommandResult, ShellChecker, TcpChecker, make_checker
from healthcheck.http_check import HttpChecker

ROOT = Path(__file__).resolve().parents[2]


def refuse(command: str, timeout_secs: float) -> CommandResult:
    return CommandResult(error="not in this test")


def test_every_check_kind_but_none_has_exactly_one_factory():
    assert set(checkers._FACTORIES) == set(CheckKind) - {CheckKind.NONE}


@pytest.mark.parametrize("spec, cls", [
    (HealthSpec(kind=CheckKind.HTTP, port=31000), HttpChecker),
    (HealthSpec(kind=CheckKind.TCP, port=31000), TcpChecker),
    (HealthSpec(kind=CheckKind.SHELL, shell_command="true"), ShellChecker),
])
def test_each_kind_builds_its_own_class(spec, cls):
    assert type(make_checker(spec, refuse)) is cls


def test_each_checker_holds_every_field_of_its_spec():
    """Each value not a default, so a field the factory leaves out shows."""
    http = HealthSpec(kind=CheckKind.HTTP, port=31001, endpoint="/ready", expected_response="up",
                      expected_response_code=204, timeout_secs=2.5)
    assert make_checker(http, refuse) == HttpChecker(31001, "/ready", "up", 204, 2.5)
    tcp = HealthSpec(kind=CheckKind.TCP, port=31002, timeout_secs=0.25)
    assert make_checker(tcp, refuse) == TcpChecker(31002, 0.25)
    shell = HealthSpec(kind=CheckKind.SHELL, shell_command="test -e ready", timeout_secs=7.0)
    assert make_checker(shell, refuse) == ShellChecker("test -e ready", 7.0, refuse)
    assert make_checker(HealthSpec(kind=CheckKind.NONE, port=31003), refuse) is None


@pytest.mark.parametrize("kind", [CheckKind.HTTP, CheckKind.TCP])
def test_a_check_with_no_port_bound_is_refused_by_name(kind):
    with pytest.raises(ValueError, match=rf"^a {kind.value} health check needs a port, and none is bound$"):
        make_checker(HealthSpec(kind=kind), refuse)


def test_the_shell_checker_gets_the_runner_it_was_given():
    checker = make_checker(HealthSpec(kind=CheckKind.SHELL, shell_command="true"), refuse)
    assert checker.check().reason == "health command could not be started: not in this test"


def test_make_checker_has_no_default_runner():
    parameter = inspect.signature(make_checker).parameters["run_command"]
    assert parameter.default is inspect.Parameter.empty
    with pytest.raises(TypeError):
        make_checker(HealthSpec(kind=CheckKind.SHELL, shell_command="true"))  # type: ignore[call-arg]


def test_checkers_has_no_module_getattr_shim():
    assert "__getattr__" not in vars(checkers)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    return names | {n.module.split(".")[0] for n in ast.walk(tree)
                    if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}


@pytest.mark.parametrize("path", sorted((ROOT / "healthcheck").glob("*.py")), ids=lambda p: p.name)
def test_healthcheck_never_starts_or_waits_for_a_process_itself(path):
    # The supervisor's runner, reaped by the one reaper, is the product's only one.
    assert not _imports(path) & {"subprocess", "psutil", "multiprocessing"}
    assert "os.wait" not in path.read_text() and "os.fork" not in path.read_text()


def test_signal_names_are_spelled_once():
    assert signal_name(15) == "SIGTERM"
    assert signal_name(77) == "signal 77"
    assert ExitStatus(signal=9).describe() == "killed by SIGKILL"
    assert ExitStatus(signal=77).describe() == "killed by signal 77"
