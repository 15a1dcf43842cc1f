"""Installing Stoker as an operator or a developer does, outside the repository: the wheel
`make dist` builds and `pip install .` of a clean copy of the tree, each into a fresh venv
of a plain python3 (never the test venv's), then every command from the installed copy, in
a directory of its own, with HOME, the plan cache and the host registry inside it.

The zipapp, with every Python pyenv keeps here (3.11 and later run it, older ones are refused).
Also the installation an agent gets: root installs, another user (nobody) runs, and the
package's directory is not that user's to write (the installer warmed the code cache with
`python -m executor.codecache`). Stoker then writes nothing beside its code and prints
nothing about it. And `pip install .` again after a module was deleted from the tree.

Slow (a build, four venvs and their pip installs: about two minutes): full mode only
(STOKER_FAULTS_FULL=1, `make faults`); tests/unit/test_packaging.py and
tests/e2e/test_dist.py check the same wheel cheaply in every run.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from executor.observe.assets import ASSETS
from tests.support.fault_sizes import FULL
from tests.support.ports import free_ports
from tests.support.stoker_proc import REPO

# serial: its `make dist` installs the dist extra into the checkout's venv when setup.py is
# newer, as test_dist's does: two pip installs into one venv at once (docs/testing.md §13)
pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.timeout(600), pytest.mark.serial,
              pytest.mark.skipif(not FULL, reason="builds and installs into fresh venvs: STOKER_FAULTS_FULL=1 only")]

PLAIN_PATH = "/usr/local/bin:/usr/bin:/bin"
ONCE = """
    jobs = [Job(cluster='local', role='me', environment='test', name='once',
                task=Task(processes=[Process(name='a', cmdline='echo done')],
                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
"""


def plain_python() -> str:
    """The system python3 (3.11 or newer, readable by every user), else skip."""
    found = shutil.which("python3", path=PLAIN_PATH)
    if found is None:
        pytest.skip("no python3 on " + PLAIN_PATH)
    done = subprocess.run([found, "-c", "import sys; print(sys.version_info >= (3, 11))"],
                          capture_output=True, text=True, timeout=30)
    if done.stdout.strip() != "True":
        pytest.skip(f"{found} is older than 3.11")
    return found


@pytest.fixture(scope="module")
def work() -> Path:
    # Under /tmp and open to every user: nobody reads the venv and writes its sandbox there.
    root = Path(tempfile.mkdtemp(prefix="stoker-test-install-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout_secs: float = 300,
        ) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_secs,
                          stdin=subprocess.DEVNULL)


def venv_with(work: Path, name: str, what: str) -> Path:
    """A fresh venv of the plain python3 at WORK/NAME with WHAT pip-installed; its bin/."""
    venv = work / name
    env = {"PATH": PLAIN_PATH, "HOME": str(work / "home"), "LANG": "C.UTF-8",
           **{k: v for k, v in os.environ.items() if k.startswith("PIP_")}}
    done = run([plain_python(), "-m", "venv", str(venv)], work, env)
    assert done.returncode == 0, done.stderr
    done = run([str(venv / "bin/python"), "-m", "pip", "install", "-q", what], work, env)
    assert done.returncode == 0, done.stderr[-3000:]
    return venv / "bin"


@pytest.fixture(scope="module")
def wheel(work: Path) -> Path:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    done = run([make, "-s", "dist", f"DIST={work / 'dist'}"], REPO, dict(os.environ))
    assert done.returncode == 0, done.stdout + done.stderr
    [built] = (work / "dist").glob("stoker-*-py3-none-any.whl")
    return built


@pytest.fixture(scope="module", params=["wheel", "source tree"])
def installed(request, work: Path, wheel: Path) -> dict:
    if request.param == "wheel":
        name, what = "venv-wheel", str(wheel)
    else:  # `pip install .` of the tree as git has it (no venv, no build output, no caches)
        tree = work / "tree"
        tree.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", "HEAD"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
        name, what = "venv-tree", str(tree)
    bin_dir = venv_with(work, name, what)
    home = work / f"home-{name}"  # the run keeps its plans here, not in this user's own ~/.cache
    home.mkdir()
    place = work / f"place-{name}"
    place.mkdir()
    (place / "once.aurora").write_text(textwrap.dedent(ONCE))
    shutil.copy2(REPO / "examples/hello_world.aurora", place)
    env = {"PATH": f"{bin_dir}:{PLAIN_PATH}", "HOME": str(home), "LANG": "C.UTF-8",
           "STOKER_ROOT": str(work / f"registry-{name}")}
    return {"bin": bin_dir, "place": place, "env": env, "home": home}


def stoker(installed: dict, *args: str, timeout_secs: float = 60) -> subprocess.CompletedProcess:
    return run([str(installed["bin"] / "stoker"), *args], installed["place"], installed["env"], timeout_secs)


def test_every_command_runs_from_the_installed_copy(installed):
    version = stoker(installed, "--version")
    assert version.returncode == 0 and version.stdout.startswith("stoker "), version.stderr
    as_module = run([str(installed["bin"] / "python"), "-m", "executor", "--version"], installed["place"],
                    installed["env"])
    assert as_module.stdout == version.stdout
    inspect = stoker(installed, "inspect", "hello_world.aurora")
    assert inspect.returncode == 0 and inspect.stdout.startswith("job devcluster/www-data/prod/hello\n")
    helped = stoker(installed, "executor", "--help")
    assert helped.returncode == 0 and "--announcer-ensemble" in helped.stdout
    outside = stoker(installed, "executor")
    assert outside.returncode == 2 and "MESOS_AGENT_ENDPOINT is not set" in outside.stderr
    for attempt in range(3):  # the first plans; the next ones start early from the kept plan
        sandbox = installed["place"] / f"sandbox-{attempt}"
        done = stoker(installed, "run", "once.aurora", "--sandbox", str(sandbox))
        assert done.returncode == 0, (done.stdout, done.stderr)
        assert (sandbox / ".logs/a/0/stdout").read_text() == "done\n"
        assert "Traceback" not in done.stderr
    assert list((installed["home"] / ".cache/stoker/plans").glob("plan-*.bin"))


def test_the_observer_serves_its_pages_and_static_files(installed):
    [port] = free_ports(1)
    proc = subprocess.Popen([str(installed["bin"] / "stoker"), "observe", "--port", str(port)],
                            cwd=installed["place"], env=installed["env"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "the observer did not start"
                time.sleep(0.05)
        assert 'href="/static/observe.css"' in page
        for asset in ASSETS:  # served from the installed package's own copy
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/static/{asset}", timeout=5) as reply:
                assert reply.status == 200 and len(reply.read()) > 100, asset
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_the_zipapp_runs_on_every_python_pyenv_has_from_3_11_and_older_ones_are_refused(work, wheel):
    """Every interpreter pyenv keeps (tests/e2e/test_dist.py, in every run, tries one of each
    version, pyenv's included)."""
    versions = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    pythons = sorted(versions.glob("*/bin/python3"))
    if not pythons:
        pytest.skip(f"no Python in {versions}")
    place = work / "pyenv"
    place.mkdir()
    shutil.copy2(REPO / "examples/hello_world.aurora", place)
    ran, refused = [], []
    for python in pythons:
        env = {"PATH": PLAIN_PATH, "HOME": str(place / "home"), "SHIV_ROOT": str(place / f"shiv-{python.parts[-3]}"),
               "LANG": "C.UTF-8"}
        done = run([str(python), str(wheel.parent / "stoker.pyz"), "inspect", "hello_world.aurora"], place, env, 120)
        if done.returncode == 2 and "stoker.pyz needs Python 3.11 or newer" in done.stderr:
            refused.append(python.parts[-3])
        else:  # nothing on stderr: pystachio's SyntaxWarnings stay filtered on 3.12+
            assert (done.returncode, done.stderr) == (0, ""), (python, done.stderr)
            assert done.stdout.startswith("job devcluster/www-data/prod/hello\n")
            ran.append(python.parts[-3])
    print(f"ran on {ran}, refused on {refused}")
    assert all(tuple(map(int, v.split(".")[:2])) >= (3, 11) for v in ran)
    assert all(tuple(map(int, v.split(".")[:2])) < (3, 11) for v in refused)


def test_a_read_only_installation_run_by_another_user_writes_nothing_beside_its_code(work, wheel):
    if os.geteuid() != 0:
        pytest.skip("needs root to install as one user and run as another")
    bin_dir = venv_with(work, "venv-readonly", str(wheel))
    python = str(bin_dir / "python")
    stdlib = Path(run([python, "-c", "import os; print(os.path.dirname(os.__file__))"], work,
                      {"PATH": PLAIN_PATH}).stdout.strip())
    stdlib_files = set(stdlib.rglob("*.opt-nodoc4.pyc"))
    warm = run([python, "-m", "executor.codecache"], work, {"PATH": PLAIN_PATH, "LANG": "C.UTF-8"})
    assert warm.returncode == 0, warm.stderr  # the installer's step (README "Settings")
    site = Path(run([python, "-c", "import executor, os; print(os.path.dirname(os.path.dirname(executor.__file__)))"],
                    work, {"PATH": PLAIN_PATH}).stdout.strip())
    # the standard library's code without docstrings (executor/nodocs.py) is the
    # installation's, under its code cache, not in the system python's directories (dpkg's)
    assert set(stdlib.rglob("*.opt-nodoc4.pyc")) == stdlib_files
    assert list((site / "executor" / "__pycache__" / "nodoc" / str(stdlib).lstrip("/")).glob("*.opt-nodoc4.pyc"))

    def tree() -> dict[str, int]:
        return {str(p): p.stat().st_mtime_ns for p in site.rglob("*")}

    before = tree()
    place = work / "as-nobody"
    place.mkdir()
    (place / "once.aurora").write_text(textwrap.dedent(ONCE))
    shutil.chown(place, "nobody")
    # a plan cache of its own: with no home, `stoker run` says (on stderr) that it keeps no plan
    env = {"PATH": PLAIN_PATH, "HOME": "/nonexistent", "LANG": "C.UTF-8", "STOKER_ROOT": str(place / "registry"),
           "STOKER_PLAN_CACHE": str(place / "plans")}
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    for attempt in range(2):
        done = run([*as_nobody, str(bin_dir / "stoker"), "run", "once.aurora", "--sandbox", f"sb{attempt}"],
                   place, env, 60)
        assert done.returncode == 0, (done.stdout, done.stderr)
        assert done.stderr == "" and "Traceback" not in done.stdout
        assert (place / f"sb{attempt}/.logs/a/0/stdout").read_text() == "done\n"
    assert tree() == before


def test_pip_install_of_the_tree_again_drops_a_module_deleted_meanwhile(work):
    """setuptools keeps build/lib between builds: without setup.py's FreshBuildPy, a module
    deleted from the tree after one `pip install .` came back with the next."""
    tree = work / "tree-edited"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "HEAD"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    shutil.copy2(REPO / "setup.py", tree / "setup.py")  # the one under test, committed or not
    (tree / "executor/gone_soon.py").write_text("GONE = True\n")
    bin_dir = venv_with(work, "venv-edited", str(tree))
    site = Path(run([str(bin_dir / "python"), "-c", "import executor, os; print(os.path.dirname(executor.__file__))"],
                    work, {"PATH": PLAIN_PATH}).stdout.strip())
    assert (site / "gone_soon.py").is_file()
    (tree / "executor/gone_soon.py").unlink()
    env = {"PATH": PLAIN_PATH, "HOME": str(work / "home"), **{k: v for k, v in os.environ.items() if k.startswith("PIP_")}}
    done = run([str(bin_dir / "python"), "-m", "pip", "install", "-q", str(tree)], work, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (site / "gone_soon.py").exists()
    assert (site / "cli/start.py").is_file()
