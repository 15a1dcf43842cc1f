"""Helpers of tests/e2e/test_dist.py (the release artifact end to end): the plain Python that
runs `stoker.pyz` (the system `python3`, never the venv's), the other interpreters found, and
running the zipapp or the executor from it in a clean directory and environment.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
from contextlib import suppress
from pathlib import Path

import pytest

from tests.support.agent_sim import AgentSimulator
from tests.support.stoker_proc import REPO, kill_leftovers, task_pids

CLEAN_PATH = "/usr/local/bin:/usr/bin:/bin"
UNKNOWN_UID = 54321  # no entry in the password database
# Interpreters tried besides the system python3, each only when it runs: these names on PATH
# (pyenv's shims name every version, but run only the selected ones) and pyenv's own
# (PYENV_ROOT, else ~/.pyenv: CI's image keeps 3.12 and 3.13 there, beside the system 3.11).
OTHER_PYTHONS = [f"python3.{minor}" for minor in range(8, 15)]
PYENV_VERSIONS = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"


def version_of(python: str, env: dict[str, str] | None = None) -> tuple[str, tuple[int, int]] | None:
    """(real executable, (major, minor)) of the interpreter PYTHON, or None if it does not run."""
    try:
        done = subprocess.run([python, "-S", "-c", "import sys; print(sys.executable, *sys.version_info[:2])"],
                              capture_output=True, text=True, timeout=20, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = done.stdout.split()
    if done.returncode != 0 or len(parts) != 3 or not parts[0]:
        return None
    return parts[0], (int(parts[1]), int(parts[2]))


def plain_python() -> str:
    """The system python3 when it is 3.11+, else the interpreter under this venv (not the venv)."""
    found = shutil.which("python3", path=CLEAN_PATH)
    probed = found and version_of(found, env={"PATH": CLEAN_PATH})
    if probed and probed[1] >= (3, 11):
        return probed[0]
    base = getattr(sys, "_base_executable", "") or os.path.realpath(sys.executable)
    assert Path(base).resolve().parent != Path(sys.prefix, "bin").resolve(), f"{base} is the venv's python"
    return base


def run_app(app: dict, argv: list[str], env: dict[str, str] | None = None, timeout_secs: float = 30,
            ) -> subprocess.CompletedProcess:
    """Run ARGV in the clean directory, in its own session that is always killed afterwards."""
    proc = subprocess.Popen(argv, cwd=app["dir"], env=env or app["env"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_secs)
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


PROBE = ("import json, os, sys, attrs, executor, kazoo, pystachio, waitress;"
         "print(json.dumps({'files': [m.__file__ for m in (attrs, executor, kazoo, pystachio,"
         " waitress)], 'shiv_root': os.environ.get('SHIV_ROOT'), 'version': list(sys.version_info[:2])}))")


def probe(app: dict, python: str, env: dict[str, str]) -> dict:
    """Import every dependency inside the zipapp (shiv's SHIV_INTERPRETER mode) and report where from."""
    done = run_app(app, [python, "-S", "stoker.pyz", "-c", PROBE], env={**env, "SHIV_INTERPRETER": "1"})
    assert done.returncode == 0, f"{python}: exit {done.returncode}\n{done.stderr}"
    return json.loads(done.stdout)


def built_version(dist: Path) -> str:
    """The version `make dist` stamped, from its wheel's name: 0.1.0+g<commit>[.dirty]."""
    [wheel] = dist.glob("stoker-*-py3-none-any.whl")
    return wheel.name[len("stoker-"):-len("-py3-none-any.whl")]


def found_pythons(app: dict) -> dict[tuple[int, int], str]:
    """One Python of each version from 3.8 found (version → real executable): the plain
    one for its own, else the first on PATH, else pyenv's."""
    found = {version_of(app["python"])[1]: app["python"]}
    names = [n for n in OTHER_PYTHONS if shutil.which(n)] + sorted(str(p) for p in PYENV_VERSIONS.glob("3.*/bin/python3"))
    for name in names:
        if (probed := version_of(name)) and probed[1] >= (3, 8):
            found.setdefault(probed[1], probed[0])
    return dict(sorted(found.items()))


def executor_runs(app: dict, argv: list[str], sandbox: Path, task_info: dict) -> str:
    """The executor ARGV, launched in SANDBOX by the agent simulator, runs TASK_INFO to
    TASK_FINISHED and exits 0; its log (stderr)."""
    sandbox.mkdir()
    overrides = {**app["env"], "PYTHONPATH": None, "VIRTUAL_ENV": None}
    with AgentSimulator(sandbox=sandbox) as agent:
        try:
            agent.launch_executor(argv, cwd=sandbox, env_overrides=overrides)
            agent.wait_subscribed(timeout_secs=20)
            agent.launch(task_info)
            agent.wait_for_state("task-1", "TASK_FINISHED", 20)
            assert agent.states("task-1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"], argv
            assert agent.wait_exit(10) == 0, argv
        finally:
            kill_leftovers(task_pids(sandbox))
        return agent.executor_log()


def built_dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make dist`'s output, built once per test run under a lock and shared by every module
    and pytest-xdist worker that asks (in the run's temp directory, the one its workers' are
    made in). Was: each of the three modules that run the zipapp built it again (17 s of
    setup on a quiet machine, 36 s under load), two at once on two workers, both installing
    the `dist` extra into the one venv. The artifacts are only read."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    out, built = shared / "dist", shared / "dist.built"
    with open(shared / "dist.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the first builds; the others wait, then read it
        if not built.exists():
            make = shutil.which("make")
            if make is None:
                pytest.skip("make is not installed")
            shutil.rmtree(out, ignore_errors=True)  # what a build that failed left
            done = subprocess.run([make, "-s", "dist", f"DIST={out}"], cwd=REPO, capture_output=True, text=True,
                                  timeout=110, stdin=subprocess.DEVNULL)
            assert done.returncode == 0, f"make dist failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
            built.touch()
    return out
