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
