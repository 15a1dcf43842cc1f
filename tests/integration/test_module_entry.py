"""`python -m executor` and `python -m executor.codecache` run from a project's directory
that has a `config.py` or a `config/` package of its own: `-m` puts the working directory
first on sys.path, and Stoker's top-level package is also named `config`."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

import executor

pytestmark = pytest.mark.timeout(60)


# an empty PYTHONPATH entry (`PYTHONPATH=:$PYTHONPATH`) puts the working directory on sys.path
# a second time, where `-m`'s own entry was the only one taken off
@pytest.mark.parametrize("empty_entry", [False, True])
def test_a_projects_config_in_the_working_directory_does_not_stand_in_for_stokers(tmp_path, empty_entry):
    project = tmp_path / "project"  # a config/ package is found the same way
    project.mkdir()
    (project / "config.py").write_text("DEBUG = True\n")
    env = {**os.environ, "STOKER_CODE_CACHE": str(tmp_path / "cache"), "PYTHONPYCACHEPREFIX": str(tmp_path / "pyc")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if empty_entry:
        env["PYTHONPATH"] = os.pathsep + env.get("PYTHONPATH", "")
    version = subprocess.run([sys.executable, "-m", "executor", "--version"], cwd=project, env=env,
                             capture_output=True, text=True, timeout=30)
    assert (version.returncode, version.stdout, version.stderr) == (0, f"stoker {executor.__version__}\n", "")
    warm = subprocess.run([sys.executable, "-m", "executor.codecache", "cli"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=60)
    assert (warm.returncode, warm.stderr) == (0, "")
    assert list((tmp_path / "cache").glob("attrs-cli.*.bin"))
