"""`python -m executor` and `python -m executor.codecache` run from a project's directory
that has a `config.py` or a `config/` package of its own: `-m` puts the working directory
first on sys.path, and Stoker's top-level package is also named `config`."""
from __future__ import annotations

import json
import os
import site
import subprocess
import sys

import pytest

import executor
from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(60)


# an empty PYTHONPATH entry (`PYTHONPATH=:$PYTHONPATH`) puts the working directory on sys.path
# a second time, where `-m`'s own entry was the only one taken off
@pytest.mark.parametrize("empty_entry", [False, True])
def test_a_projects_config_in_the_working_directory_does_not_stand_in_for_stokers(tmp_path, seeded_pyc, empty_entry):
    project = tmp_path / "project"  # a config/ package is found the same way
    project.mkdir()
    (project / "config.py").write_text("DEBUG = True\n")
    env = {**os.environ, "STOKER_CODE_CACHE": str(tmp_path / "cache"), "PYTHONPYCACHEPREFIX": str(seeded_pyc)}
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


def _search_path(cwd: str, pythonpath: str) -> list[str]:
    """sys.path of a Python started in `cwd` with `pythonpath`, once Stoker's package has
    taken PYTHONPATH's relative directories off it (what `stoker` does as it loads)."""
    env = {**os.environ, "PYTHONPATH": pythonpath}
    code = "import json, sys, executor; executor.forget_relative_pythonpath(); print(json.dumps(sys.path))"
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    return json.loads(done.stdout)


def test_a_directory_given_absolutely_stays_searched_when_a_relative_entry_names_it_too(tmp_path):
    # `PYTHONPATH=lib:/srv/app/lib`, run from /srv/app: the absolute entry, the operator's
    # choice, was taken off with the relative one (both the same directory)
    (tmp_path / "lib").mkdir()
    absolute = str(tmp_path / "lib")
    path = _search_path(str(tmp_path), os.pathsep.join(["lib", absolute, str(REPO)]))
    assert absolute in path


@pytest.mark.parametrize("own", [os.path.dirname(os.__file__), os.path.join(os.path.dirname(os.__file__), "lib-dynload"),
                                 site.getsitepackages()[0]])
def test_pythons_own_directories_stay_searched_from_a_working_directory_among_them(own):
    # run from the standard library's directory (or site-packages) with an empty entry:
    # Python searches that directory once, at the entry's place; taken off, `__future__`
    # (or attrs) could not be imported any more (a traceback as Stoker loaded)
    path = _search_path(own, os.pathsep + str(REPO))
    assert own in path


def test_a_pythonpath_python_ignored_under_e_takes_nothing_off(tmp_path):
    # `python -E`: PYTHONPATH put nothing on sys.path, so nothing is taken off for it; read
    # anyway, its `.` took off the directory of the script being run, which Python put there
    env = {**os.environ, "PYTHONPATH": os.curdir}
    code = ("import json, os, sys; sys.path[:0] = [os.getcwd(), sys.argv[1]]; import executor; "
            "executor.forget_relative_pythonpath(); print(json.dumps(sys.path))")
    done = subprocess.run([sys.executable, "-E", "-c", code, str(REPO)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=30)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert str(tmp_path) in json.loads(done.stdout)


@pytest.mark.parametrize("module", [["executor", "--version"], ["executor.codecache", "cli"]])
def test_a_deleted_working_directory_is_no_traceback(tmp_path, module):
    # `-m` puts no working directory on sys.path when there is none: os.getcwd() raised
    # FileNotFoundError as Stoker looked for it (a traceback, exit 1)
    gone = tmp_path / "gone"
    gone.mkdir()
    env = {**os.environ, "STOKER_CODE_CACHE": str(tmp_path / "cache")}
    script = 'cd "$1" && rmdir "$1" && shift && exec "$@"'
    done = subprocess.run(["sh", "-c", script, "sh", str(gone), sys.executable, "-m", *module], env=env,
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
