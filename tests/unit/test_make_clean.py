"""`make clean` removes the checkout's own names and nothing else, whatever the environment
holds and whatever the paths given to make (`make run RUNS=DIR`, `make dist DIST=DIR`, `make
test VENV=DIR`), and `make dist` builds into such a DIST, a space in it too. Read from make's
own dry run (`make -n`): nothing is removed or built here. Was: `DIST
?= dist` took a `DIST` from the environment (a packaging host's `DIST=/srv/dist`), which
`make clean` removed, and `rm -rf $(RUNS)` unquoted removed `/home/me/stoker` and `runs` for
`RUNS="/home/me/stoker runs"`."""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def dry_run(target: str, *args: str, env: dict[str, str] | None = None) -> list[str]:
    """The lines of `make -n TARGET ARGS` here (the test skipped where there is no make)."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("no make here")
    done = subprocess.run([make, "-n", target, *args], cwd=REPO, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.splitlines()


def removed(*args: str, env: dict[str, str] | None = None) -> list[str]:
    [line] = [line for line in dry_run("clean", *args, env=env) if line.startswith("rm -rf ")]
    return shlex.split(line)[2:]


def test_a_dist_in_the_environment_is_not_removed():
    words = removed(env={"DIST": "/srv/dist"})
    assert "/srv/dist" not in words and "dist" in words


@pytest.mark.parametrize("variable", ["RUNS", "DIST", "VENV"])
def test_a_path_with_a_space_given_to_make_is_removed_as_one(variable):
    words = removed(f"{variable}=/home/me/stoker {variable.lower()}")
    assert f"/home/me/stoker {variable.lower()}" in words and "/home/me/stoker" not in words


def test_a_dist_with_a_space_given_to_make_dist_is_built_into_as_one():
    """`make dist DIST="/home/me/stoker dist"`, which `make clean DIST=...` removes as one:
    build_dist.py was given `--dist-dir /home/me/stoker dist` and refused the stray word."""
    [line] = [line for line in dry_run("dist", "DIST=/home/me/stoker dist") if "tools/build_dist.py" in line]
    assert shlex.split(line)[-2:] == ["--dist-dir", "/home/me/stoker dist"]


def test_a_python_with_a_space_in_its_path_given_to_make_is_run_as_one():
    """`make test PY="/opt/my pythons/python3.12"`: the recipe ran `/opt/my` with the rest
    as its arguments (PY was used unquoted, as DIST was)."""
    [line] = [line for line in dry_run(".venv/.installed", "PY=/x y/python3") if "tools/make_venv.py" in line]
    assert shlex.split(line)[:2] == ["/x y/python3", "tools/make_venv.py"]
