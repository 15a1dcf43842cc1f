"""tools/test_pythons.py (`make test-pythons`): which interpreters it tests with, found by
asking each one its version (here, shell scripts answering as an interpreter would)."""
from __future__ import annotations

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
