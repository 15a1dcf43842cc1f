"""A run's log directory made in the test (`run_dir`, `tmp_path/0`) and a descriptor of it
(`rdir`, closed after the test), as the log readers take it: import both into a test module."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    path = tmp_path / "0"
    path.mkdir()
    return path


@pytest.fixture
def rdir(run_dir: Path) -> Iterator[int]:
    fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)
