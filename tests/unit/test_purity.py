"""STYLE.md: the decision modules are pure — they never import I/O, threads or clocks."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE = [
    "executor/planner.py",
    "executor/checkpoint_replay.py",
    "executor/status.py",
    "executor/service.py",
    "executor/mesos_protocol.py",
    "healthcheck/policy.py",
    "config/spec.py",
]
FORBIDDEN = {"requests", "psutil", "subprocess", "socket", "threading", "os", "time", "logging", "select", "signal"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_io(module):
    path = ROOT / module
    assert path.exists(), f"{module} is missing"
    bad = imported_modules(path) & FORBIDDEN
    assert not bad, f"{module} imports {sorted(bad)}; pure modules must not"


def test_healthcheck_never_imports_executor():
    for path in (ROOT / "healthcheck").glob("*.py"):
        assert "executor" not in imported_modules(path), f"{path.name} imports executor/"


def test_config_imports_neither_executor_nor_healthcheck():
    for path in (ROOT / "config").glob("*.py"):
        assert not imported_modules(path) & {"executor", "healthcheck"}, path.name
