"""`make test-pythons`: the tests again on every other CPython >= 3.11 this machine has.

`make test` runs on the one Python `.venv` was made with; the README promises 3.11, 3.12
and 3.13. This finds the others: pyenv's (`$PYENV_ROOT/versions/*/bin/python3`, else
`~/.pyenv`) and `python3.N` on PATH, keeps one interpreter per minor version (the newest
patch), leaves out the venv's own version (`make test` covers it) and anything older than
3.11, then for each: a venv of its own at `.venv-3.N` (made by tools/make_venv.py, as
`make` makes .venv), and `pytest -q PATHS` in it (default: the unit
tests and the start-up smoke below). One line per version at the end; the exit status is 1
when any run failed, 0 when all passed or no other Python was found (it says so).

    .venv/bin/python tools/test_pythons.py [--python PATH]... [--tiers] [PYTEST ARGS...]

--tiers runs every tier there as `make test` does (`make test-pythons PYTEST_ARGS=--tiers`):
the unit and integration tiers on three pytest-xdist workers, then the later tiers each module
on one worker (both without the tests marked `serial`), then those, of every tier, alone;
PYTEST ARGS are added to each run.

Not part of `make test` (CI): a venv per version costs about 30 s of pip, and the unit
tests about 25 s on each; CI runs the release zipapp on each of these Pythons instead
(tests/e2e/test_dist.py). docs/testing.md says what each runs.
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OLDEST = (3, 11)
# The start-up smoke: `stoker run` of a job and `stoker executor` under the agent
# simulator, with the import budget of each (module sets, the same on every version).
DEFAULT_PATHS = ["tests/unit", "tests/e2e/test_startup_imports.py", "tests/e2e/test_startup_imports_early.py"]
# --tiers: every tier as `make test` runs it (the Makefile's `test`, TEST_WORKERS 3 and
# LATER_WORKERS 4): the unit and integration tiers on three workers, the later ones on four, each
# module on one worker, both but the tests marked `serial`, then those, of every tier, alone
LATER_TIERS = ["--ignore=tests/unit", "--ignore=tests/integration"]
TIER_RUNS = [["-n", "3", "-m", "not serial", "tests/unit", "tests/integration"],
             ["-n", "4", "--dist", "loadfile", "-m", "not serial", *LATER_TIERS],
             ["-m", "serial", "tests"]]


def pytest_runs(python: str, tiers: bool, pytest_args: list[str]) -> list[list[str]]:
    """The pytest commands to run with the venv's `python`: the tiers' three (`pytest_args`
    added to each), or one of `pytest_args` (default: the unit tests and the start-up smoke)."""
    if tiers:
        return [[python, "-m", "pytest", "-q", *run, *pytest_args] for run in TIER_RUNS]
    return [[python, "-m", "pytest", "-q", *(pytest_args or DEFAULT_PATHS)]]


def version_of(python: str) -> tuple[int, int, int] | None:
    """(major, minor, micro) of the interpreter at `python`, or None when it does not run."""
    try:
        done = subprocess.run([python, "-S", "-c", "import sys; print(*sys.version_info[:3])"],
                              capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = done.stdout.split()
    if done.returncode != 0 or len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    major, minor, micro = (int(p) for p in parts)
    return major, minor, micro


def candidates() -> list[str]:
    """pyenv's interpreters, then `python3.N` on PATH."""
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found = sorted(glob.glob(os.path.join(root, "versions", "*", "bin", "python3")))
    for minor in range(OLDEST[1], 20):
        path = shutil.which(f"python3.{minor}")
        if path is not None:
            found.append(path)
    return found


def others(pythons: list[str], skip: tuple[int, int]) -> dict[tuple[int, int], str]:
    """The newest interpreter of each minor version >= 3.11 but `skip`, by version."""
    best: dict[tuple[int, int], tuple[tuple[int, int, int], str]] = {}
    for python in pythons:
        version = version_of(python)
        if version is None or version[:2] < OLDEST or version[:2] == skip:
            continue
        minor = (version[0], version[1])
        if minor not in best or version > best[minor][0]:
            best[minor] = (version, python)
    return {minor: python for minor, (_, python) in sorted(best.items())}


def venv_for(minor: tuple[int, int], python: str) -> Path:
    """ROOT/.venv-3.N, made from `python` with the test extra by tools/make_venv.py, as `make`
    makes .venv: made again when setup.py is newer, or when it cannot be used (an interrupted
    making left one without pip, which was trusted from then on: every later run failed)."""
    venv = ROOT / f".venv-{minor[0]}.{minor[1]}"
    subprocess.run([python, str(ROOT / "tools/make_venv.py"), "--same-python", venv.name], check=True)
    return venv


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tools/test_pythons.py", description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", default=[], metavar="PATH",
                        help="test with this interpreter (instead of looking for them)")
    parser.add_argument("--tiers", action="store_true",
                        help="every tier, as `make test` runs them (three workers, the serial tests last)")
    args, pytest_args = parser.parse_known_args(argv)
    pythons = others(args.python or candidates(), (sys.version_info[0], sys.version_info[1]))
    if not pythons:
        print(f"test-pythons: no Python >= 3.11 other than {sys.version_info[0]}.{sys.version_info[1]} found; "
              "nothing to run")
        return 0
    results = []
    for minor, python in pythons.items():
        name = f"{minor[0]}.{minor[1]}"
        print(f"test-pythons: {name} ({python})", flush=True)
        started = time.monotonic()
        try:
            venv = venv_for(minor, python)
        except subprocess.CalledProcessError as exc:
            results.append((name, f"the venv could not be made: {exc}", 1))
            continue
        codes = [subprocess.run(run, cwd=ROOT).returncode
                 for run in pytest_runs(str(venv / "bin/python"), args.tiers, pytest_args)]
        code = next((c for c in codes if c), 0)  # each run goes on after a failed one, as `make test`'s
        exits = "/".join(map(str, codes))
        results.append((name, f"exit {exits} in {time.monotonic() - started:.0f} s", code))
    for name, what, _ in results:
        print(f"test-pythons: {name}: {what}")
    return 1 if any(code for _, _, code in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
