"""tools/build_dist.py's staging step on a checkout as a developer has it: what it copies
into the scratch directory the wheel is built in (the build itself: tests/e2e/test_dist.py)."""
from __future__ import annotations

import importlib.util
import os
import socket

import pytest

from tests.support.stoker_proc import REPO


@pytest.fixture
def build_dist():
    spec = importlib.util.spec_from_file_location("build_dist_under_test", REPO / "tools/build_dist.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_staging_copies_the_build_inputs_only_and_a_live_runs_socket_or_a_pipe_is_no_error(
        build_dist, tmp_path, monkeypatch):
    """A `make run` still running has its control socket in .run/; a pipe may sit anywhere.
    Copying the whole checkout failed on them (shutil.Error: a named pipe) and copied every
    sandbox's logs for nothing."""
    checkout = tmp_path / "checkout"
    files = ["setup.py", "pyproject.toml", "executor/__init__.py", "executor/cli/main.py",
             "healthcheck/__init__.py", "config/__init__.py", "config/aurora/aurora.thrift"]
    for name in [*files, "README.md", ".run/hello/.logs/hello/0/stdout", "executor/__pycache__/x.cpython-311.pyc"]:
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        (checkout / name).write_text(name)
    os.mkfifo(checkout / ".run/hello/pipe")
    os.mkfifo(checkout / "config/stray-pipe")
    (checkout / ".run/hello/.stoker").mkdir()
    (tmp_path / "scratch").mkdir()  # build() stages into a fresh temporary directory
    with socket.socket(socket.AF_UNIX) as control:
        control.bind(str(checkout / ".run/hello/.stoker/control.sock"))
        monkeypatch.setattr(build_dist, "REPO", checkout)
        src = build_dist.stage_sources(tmp_path / "scratch")
    staged = sorted(str(p.relative_to(src)) for p in src.rglob("*") if not p.is_dir())
    assert staged == sorted(files)
    assert all((src / name).read_text() == name for name in files)
