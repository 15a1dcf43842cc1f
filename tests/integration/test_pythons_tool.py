"""tools/test_pythons.py (`make test-pythons`): which interpreters it tests with, found by
asking each one its version (here, shell scripts answering as an interpreter would)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.tools import load_tool


@pytest.fixture
def tool():
    return load_tool("test_pythons.py", "test_pythons_under_test")


def test_one_interpreter_per_version_from_3_11_the_newest_patch_but_the_venv_s_own(tool, tmp_path):
    def fake(name: str, answer: str) -> str:
        path = tmp_path / name
        path.write_text(f"#!/bin/sh\necho {answer}\n")
        path.chmod(0o755)
        return str(path)

    pythons = [fake("a", "3 12 0"), fake("b", "3 12 1"), fake("c", "3 13 0"), fake("d", "3 10 13"),
               fake("e", "3 11 7"), fake("f", "not a version"), str(tmp_path / "missing"), fake("g", "3 14 0")]
    assert tool.others(pythons, (3, 11)) == {(3, 12): pythons[1], (3, 13): pythons[2], (3, 14): pythons[7]}
    assert tool.others(pythons[3:5], (3, 11)) == {}


def test_tiers_are_run_as_make_test_runs_them_and_the_default_is_the_unit_tests_and_the_smoke(tool):
    """--tiers: the three runs of the Makefile's `test` (so a version's results compare with
    that run's), the arguments given added to each; without it, one run."""
    later = ["--ignore=tests/unit", "--ignore=tests/integration"]
    assert tool.pytest_runs("py", True, ["-x"]) == [
        ["py", "-m", "pytest", "-q", "-n", "3", "-m", "not serial", "tests/unit", "tests/integration", "-x"],
        ["py", "-m", "pytest", "-q", "-n", "4", "--dist", "loadfile", "-m", "not serial", *later, "-x"],
        ["py", "-m", "pytest", "-q", "-m", "serial", "tests", "-x"]]
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    assert "TEST_WORKERS ?= 3\nLATER_WORKERS ?= 4\nLATER_TIERS  := --ignore=tests/unit --ignore=tests/integration\n" in makefile
    for run in ("-n $(TEST_WORKERS) -m 'not serial' tests/unit tests/integration;",
                "-n $(LATER_WORKERS) --dist loadfile -m 'not serial' $(LATER_TIERS) ||",
                "-m serial tests ||"):
        assert f"$(BIN)/python -m pytest -q {run}" in makefile
    assert tool.pytest_runs("py", False, []) == [
        ["py", "-m", "pytest", "-q", "tests/unit", "tests/e2e/test_startup_imports.py",
         "tests/e2e/test_startup_imports_early.py"]]
    assert tool.pytest_runs("py", False, ["tests"]) == [["py", "-m", "pytest", "-q", "tests"]]
