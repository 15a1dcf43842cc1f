"""The release artifact end to end: `make dist DIST=<tmp>` builds the wheel and
`stoker.pyz`, which is then run from a clean directory by a plain Python (the system
`python3`, never the venv's) with a clean environment: no PYTHONPATH, no venv on PATH, HOME
and SHIV_ROOT inside the test's temp directory. The build is the run's one
(`distapp.built_dist`: in pytest's temp directory, shared with test_dist_interrupted.py and
test_dist_unpack.py); everything else it creates (the unpacked bundle, task processes) lives
under one temp directory removed at the end.
"""
from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

from config.document import encode
from config.loader import load_job
from tests.support.agent_sim import AgentSimulator, make_task_info
from tests.support.aurora_tasks import EXAMPLE, TASK_ID, Order, module, scheduler_task
from tests.support.aurora_tasks import encode as thrift_encode
from tests.support.distapp import (
    CLEAN_PATH,
    UNKNOWN_UID,
    built_dist,
    built_version,
    executor_runs,
    found_pythons,
    plain_python,
    probe,
    run_app,
)
from tests.support.stoker_proc import REPO, kill_leftovers, task_pids
from tests.support.users import open_sandbox

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

SEED = REPO / "examples/hello_world.aurora"


@pytest.fixture(scope="module")
def work() -> Path:
    root = Path(tempfile.mkdtemp(prefix="stoker-test-dist-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_dist(tmp_path_factory)


@pytest.fixture(scope="module")
def app(work: Path, dist: Path) -> dict:
    """A clean directory holding only stoker.pyz and the seed example, a clean environment, and
    where the build is (`dist`)."""
    clean = work / "clean"
    clean.mkdir()
    shutil.copy2(dist / "stoker.pyz", clean / "stoker.pyz")
    shutil.copy2(SEED, clean / SEED.name)
    bin_dir = work / "bin"  # `python3` on PATH (for the shebang) is the plain interpreter
    bin_dir.mkdir()
    python = plain_python()
    (bin_dir / "python3").symlink_to(python)
    env = {"PATH": f"{bin_dir}:{CLEAN_PATH}", "HOME": str(work / "home"), "SHIV_ROOT": str(work / "shiv"),
           "LANG": "C.UTF-8", "STOKER_ROOT": str(work / "registry")}  # never the machine's registry
    return {"dir": clean, "python": python, "env": env, "work": work, "dist": dist}


def test_dist_builds_the_wheel_and_an_executable_pure_python_zipapp(dist):
    version = built_version(dist)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=7", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    assert re.fullmatch(rf"0\.1\.0\+g{commit}[0-9a-f]*(\.dirty)?", version), version  # every build was 0.1.0
    pyz = dist / "stoker.pyz"
    assert pyz.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    assert os.access(pyz, os.X_OK)
    with zipfile.ZipFile(pyz) as archive:
        names = archive.namelist()
        assert archive.read("__main__.py") == (REPO / "tools/zipapp_main.py").read_bytes()
    # Nothing compiled: the one zipapp runs on every platform and every Python >= 3.11.
    assert [n for n in names if n.endswith((".so", ".pyd"))] == []
    for package in ("executor", "healthcheck", "config", "pystachio", "attr", "kazoo", "waitress"):
        assert f"site-packages/{package}/__init__.py" in names, package
    # Every HTTP call Stoker makes is http.client's; AssignedTasks are read by Stoker's own
    # decoder (thriftpy2 only writes them, in the tests); /proc is read directly (psutil is
    # the tests' own).
    for package in ("requests", "urllib3", "thriftpy2", "ply", "ijson", "psutil"):
        assert f"site-packages/{package}/__init__.py" not in names, package
    # Aurora's IDL is package data, in the wheel and in the zipapp.
    assert "site-packages/config/aurora/aurora.thrift" in names
    with zipfile.ZipFile(dist / f"stoker-{version}-py3-none-any.whl") as wheel:
        assert "config/aurora/aurora.thrift" in wheel.namelist()


def test_the_wheel_holds_every_file_of_the_packages(dist):
    version = built_version(dist)
    with zipfile.ZipFile(dist / f"stoker-{version}-py3-none-any.whl") as wheel:
        shipped = {n for n in wheel.namelist() if not n.startswith(f"stoker-{version}.dist-info/")}
        entry_points = wheel.read(f"stoker-{version}.dist-info/entry_points.txt").decode()
    sources = {str(p.relative_to(REPO)) for package in ("executor", "healthcheck", "config")
               for p in (REPO / package).rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert sorted(sources - shipped) == [] and sorted(shipped - sources) == ["executor/_version.py"]
    assert "stoker = executor.cli.start:run" in entry_points


def test_every_entry_is_dated_the_commits_time_with_fixed_modes_and_names_no_build_directory(dist):
    """What made two builds of one commit differ (docs/testing.md §8; `make test-reproducible`
    builds twice): entries dated as built, modes from the umask, the dist directory's path
    in the bundled stoker's direct_url.json (and so in shiv's build id)."""
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or subprocess.run(
        ["git", "-C", str(REPO), "log", "-1", "--format=%ct"], capture_output=True, text=True).stdout)
    dated = time.gmtime(epoch)[:5] + (time.gmtime(epoch).tm_sec // 2 * 2,)  # a zip keeps even seconds
    for artifact in (dist / "stoker.pyz", *dist.glob("stoker-*.whl")):
        with zipfile.ZipFile(artifact) as archive:
            infos = archive.infolist()
            assert {i.date_time for i in infos} == {dated}, artifact.name
            # files copied in (the umask's modes before): written by shiv (0600) or wheel (RECORD, 0664) are fixed
            copied = [i for i in infos if i.filename not in ("environment.json", "__main__.py")
                      and not re.fullmatch(r"[^/]+\.dist-info/RECORD", i.filename)]
            assert {i.external_attr >> 16 & 0o777 for i in copied} <= {0o644, 0o755}, artifact.name
            assert [i.filename for i in infos if i.filename.endswith("/direct_url.json")] == []
            assert [i.filename for i in infos if str(dist).encode() in archive.read(i)] == []


def test_inspect_prints_the_seed_job_with_the_system_python(app):
    done = run_app(app, [app["python"], "stoker.pyz", "inspect", SEED.name])
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no warning of a bundled dependency (pystachio's escapes)
    assert done.stdout.startswith("job devcluster/www-data/prod/hello\n"), done.stdout
    assert "echo hello world" in done.stdout
    # Unpacked into SHIV_ROOT, and nowhere else.
    assert list((app["work"] / "shiv").glob("stoker.pyz_*/site-packages/pystachio/__init__.py"))
    assert not (app["work"] / "home/.shiv").exists()


def test_under_a_umask_of_0_it_unpacks_into_levels_only_the_user_may_write(app):
    """Was: ~/.shiv and each level below 0777, and the next start refused it (exit 2, then the
    password database's home: the same). The task still has the user's umask."""
    home = app["work"] / "umask0-home"
    env = {**{k: v for k, v in app["env"].items() if k != "SHIV_ROOT"}, "HOME": str(home), "SHIV_INTERPRETER": "1"}
    for run in range(2):  # the second as the first: not refused
        done = run_app(app, ["sh", "-c", 'umask 0 && exec "$@"', "sh", app["python"], "-S", "stoker.pyz", "-c",
                             "import os, executor; print(oct(os.umask(0)))"], env=env)
        assert (done.returncode, done.stdout) == (0, "0o0\n"), done.stderr
        [unpacked] = [p for p in (home / ".shiv").iterdir() if p.is_dir()]
        levels = (home / ".shiv", unpacked, unpacked / "site-packages")
        assert {oct(p.stat().st_mode & 0o777) for p in levels} == {"0o755"}, run


@pytest.mark.skipif(os.geteuid() != 0, reason="a uid the password database does not know needs root")
def test_no_home_at_all_is_one_error_line(app):
    """A container's arbitrary uid, no HOME: was shiv's traceback (`Could not determine home`)."""
    assert UNKNOWN_UID not in {entry.pw_uid for entry in pwd.getpwall()}
    env = {k: v for k, v in app["env"].items() if k not in ("SHIV_ROOT", "HOME")}
    with open_sandbox() as shared:  # (the work directory is root's 0700)
        (shared / "stoker.pyz").write_bytes((app["dir"] / "stoker.pyz").read_bytes())
        for readable in (shared, shared / "stoker.pyz"):
            readable.chmod(0o755)
        done = run_app({**app, "dir": shared}, ["setpriv", f"--reuid={UNKNOWN_UID}", f"--regid={UNKNOWN_UID}",
                                                "--clear-groups", app["python"], "stoker.pyz", "--version"], env=env)
    assert done.returncode == 2 and done.stderr == (
        f"stoker: error: stoker.pyz has no home to unpack into (HOME is not set, uid {UNKNOWN_UID} has no home in the "
        "password database); set SHIV_ROOT to a directory of this user's\n"), done.stderr


def test_inspect_json_prints_the_task_document(app):
    done = run_app(app, [app["python"], "stoker.pyz", "inspect", "--json", SEED.name])
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document == json.loads(encode(load_job(SEED)))
    assert document["job"]["name"] == "hello" and document["instance"] == 0
    assert "assigned_ports" not in document


AURORA_DECODE = """
import json, sys
from config.aurora.taskdata import decode_task_data
task = decode_task_data(bytes.fromhex(sys.argv[-1]))
print(json.dumps({"task_id": task.task_id, "host": task.slave_host, "instance": task.instance_id,
                  "ports": task.assigned_ports, "job": str(task.job), "container": task.container.kind.value,
                  "decoder": sys.modules["config.aurora.wire"].__file__, "version": list(sys.version_info[:2])}))
"""


def test_the_zipapp_decodes_an_aurora_task_with_the_system_python(app):
    m = module(Order.ASCENDING)
    for data, expected in [
        (EXAMPLE, {"task_id": "T1", "host": "agent1", "instance": 0, "ports": {"health": 31001, "http": 31002},
                   "job": "www-data/prod/hello", "container": "mesos"}),
        (thrift_encode(scheduler_task(m, "docker")), {
            "task_id": TASK_ID, "host": "agent1.example.com", "instance": 3, "ports": {"http": 31000, "health": 31001},
            "job": "www-data/prod/hello", "container": "docker"}),
    ]:
        done = run_app(app, [app["python"], "-S", "stoker.pyz", "-c", AURORA_DECODE, data.hex()],
                       env={**app["env"], "SHIV_INTERPRETER": "1"})
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert {key: report[key] for key in expected} == expected
        # Stoker's decoder, from the bundle.
        assert str(app["work"] / "shiv") in report["decoder"], report["decoder"]


def test_executor_without_mesos_variables_exits_2_with_the_reason(app):
    done = run_app(app, ["./stoker.pyz", "executor"])  # through the shebang, like a Mesos agent
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "MESOS_AGENT_ENDPOINT is not set" in done.stderr
    assert "Traceback" not in done.stderr


def test_stoker_run_finishes_a_batch_job_from_the_zipapp(app):
    (app["dir"] / "once.aurora").write_text(textwrap.dedent("""
        jobs = [Job(cluster='local', role='me', environment='test', name='once',
                    task=Task(processes=[Process(name='a', cmdline='echo done')],
                              resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
    """))
    sandbox = app["work"] / "run-sandbox"
    done = run_app(app, [app["python"], "stoker.pyz", "run", "once.aurora", "--sandbox", str(sandbox)])
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert (sandbox / ".logs/a/0/stdout").read_text() == "done\n"


ROOT_CACHE = Path("/var/cache/stoker/shiv")  # tools/zipapp_main.py's ROOT_CACHE


def test_without_shiv_root_the_bundle_unpacks_into_the_mesos_sandbox_or_as_root_outside_it(app):
    """Not root: into $MESOS_SANDBOX/.shiv. Root: a root executor gives the sandbox to the
    task's role, so the code it imports later must not live there: it unpacks into the
    root-owned ROOT_CACHE instead (and this test removes what it unpacked there)."""
    sandbox = app["work"] / "mesos-sandbox"
    sandbox.mkdir()
    env = {k: v for k, v in app["env"].items() if k != "SHIV_ROOT"}
    before = set(ROOT_CACHE.iterdir()) if ROOT_CACHE.is_dir() else set()
    try:
        report = probe(app, app["python"], {**env, "MESOS_SANDBOX": str(sandbox)})
    finally:
        if os.geteuid() == 0 and ROOT_CACHE.is_dir():
            for made in set(ROOT_CACHE.iterdir()) - before:
                shutil.rmtree(made, ignore_errors=True) if made.is_dir() else made.unlink()
    if os.geteuid() == 0:
        unpacked = str(ROOT_CACHE) + "/"
        assert not (sandbox / ".shiv").exists()
        st = ROOT_CACHE.lstat()
        assert st.st_uid == 0 and not st.st_mode & 0o022
    else:
        unpacked = str(sandbox / ".shiv") + "/"
    assert all(f.startswith(unpacked) for f in report["files"]), report["files"]
    assert report["shiv_root"] is None, "SHIV_ROOT must not leak into the task's environment"
    assert not (app["work"] / "home/.shiv").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="a home of another user's needs root")
def test_root_with_another_users_home_unpacks_into_its_own(app):
    """`sudo` that keeps the caller's HOME: shiv used whatever site-packages it found in that
    ~/.shiv, which the caller may change (reproduced: root ran the executor/__init__.py nobody
    put there). Now the password database's home (as the plan cache's `~`), and nothing is
    made in theirs."""
    home = app["work"] / "nobody-home"
    home.mkdir()
    os.chown(home, 65534, 65534)
    env = {k: v for k, v in app["env"].items() if k != "SHIV_ROOT"}
    own = Path(pwd.getpwuid(0).pw_dir) / ".shiv"
    before = set(own.iterdir()) if own.is_dir() else None
    try:
        report = probe(app, app["python"], {**env, "HOME": str(home)})
    finally:  # what it unpacked there goes (all of ~/.shiv, when it made it)
        for made in {own} if before is None else set(own.iterdir()) - before:
            shutil.rmtree(made, ignore_errors=True) if made.is_dir() else made.unlink(missing_ok=True)
    assert all(f.startswith(f"{own}/") for f in report["files"]), report["files"]
    assert list(home.iterdir()) == []


@pytest.mark.parametrize("module", ["_bootstrap", "executor.cli.main"])
def test_ctrl_c_while_the_zipapp_loads_exits_130_without_a_traceback(app, tmp_path, module):
    """Was: Python's traceback of KeyboardInterrupt (argv[0] is `stoker.pyz`: `stoker`'s own
    quiet hook, executor/__init__.py, was not set). Here a sitecustomize raises it as
    `module` (shiv's, then Stoker's) is imported."""
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\nclass Interrupt:\n    def find_spec(self, name, path=None, target=None):\n"
        f"        if name == {module!r}:\n            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Interrupt())\n")
    done = run_app(app, ["./stoker.pyz", "--version"], env={**app["env"], "PYTHONPATH": str(tmp_path)})
    assert (done.returncode, done.stdout, done.stderr) == (130, "", "")


def test_every_python_found_from_3_11_runs_it_and_older_ones_are_refused(app):
    found = found_pythons(app)
    for version, python in found.items():
        if version >= (3, 11):
            report = probe(app, python, app["env"])
            assert report["version"] == list(version)
            done = run_app(app, [python, "stoker.pyz", "inspect", SEED.name])
            # 3.12+ would print pystachio's SyntaxWarnings here without config/__init__.py's filter
            assert done.returncode == 0 and done.stderr == "", (python, done.stderr)
        else:
            done = run_app(app, [python, "stoker.pyz", "inspect", SEED.name])
            assert done.returncode == 2, (python, done.stdout, done.stderr)
            assert "stoker.pyz needs Python 3.11 or newer" in done.stderr
    print(f"zipapp checked with {sorted(found)}")


def test_a_directory_it_cannot_unpack_into_is_one_error_line_naming_it(app):
    """A service user's HOME that is not a directory it can write (nobody's /nonexistent; a
    file here, which fails for root too), or a SHIV_ROOT under one: exit 2 and one line, not
    shiv's traceback, and nothing unpacked anywhere else."""
    blocker = app["work"] / "not-a-dir"
    blocker.write_text("")
    env = {k: v for k, v in app["env"].items() if k != "SHIV_ROOT"}
    for case_env, where in [({**env, "HOME": str(blocker)}, blocker / ".shiv"),
                            ({**env, "SHIV_ROOT": str(blocker / "shiv")}, blocker / "shiv")]:
        done = run_app(app, ["./stoker.pyz", "--version"], env=case_env)
        assert done.returncode == 2, (done.stdout, done.stderr)
        assert done.stderr.startswith(f"stoker: error: stoker.pyz cannot unpack itself into {where}: "), done.stderr
        assert "set SHIV_ROOT to a directory this user can write" in done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1
    assert not (app["work"] / "home/.shiv").exists()


def test_a_fresh_unpack_imports_the_bundled_bytecode_without_compiling(app):
    """As an executor unpacking into a new sandbox under PYTHONDONTWRITEBYTECODE: every
    module of the bundle the executor imports comes from the `.pyc` the build put in (the
    build's Python and the plain one share a cache tag here), none is compiled from source."""
    tag = sys.implementation.cache_tag  # the build ran with this test's interpreter
    plain_tag = run_app(app, [app["python"], "-S", "-c", "import sys; print(sys.implementation.cache_tag)"])
    if plain_tag.stdout.strip() != tag:
        pytest.skip(f"{app['python']} is {plain_tag.stdout.strip()}, the bundle's bytecode is {tag}")
    root = app["work"] / "shiv-fresh"
    env = {**app["env"], "SHIV_ROOT": str(root), "PYTHONDONTWRITEBYTECODE": "1", "SHIV_INTERPRETER": "1"}
    done = run_app(app, [app["python"], "-v", "stoker.pyz", "-c",
                         "import executor.cli.main, executor.mesos.executor, executor.mesos.transport"], env=env)
    assert done.returncode == 0, done.stderr
    loaded = re.findall(rf"^# code object from '?({re.escape(str(root))}/\S+?)'?$", done.stderr, flags=re.MULTILINE)
    assert len(loaded) > 100, done.stderr[-2000:]  # Stoker's own, pystachio, attrs
    assert [p for p in loaded if not p.endswith(f".{tag}.pyc")] == []


def test_an_agent_runs_a_task_with_the_zipapp_fetched_into_the_sandbox(app, tmp_path):
    """As a Mesos agent does: the fetcher puts stoker.pyz in the sandbox, and the command
    `./stoker.pyz executor` runs there through a shell, with the agent's environment and the
    plain python3 on PATH; the task runs, finishes and is reported, and the executor exits."""
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    shutil.copy2(app["dir"] / "stoker.pyz", sandbox / "stoker.pyz")
    job = tmp_path / "once.aurora"
    job.write_text(textwrap.dedent("""
        jobs = [Job(cluster='local', role='me', environment='test', name='once',
                    task=Task(processes=[Process(name='a', cmdline='echo done; echo $HOME')],
                              resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
    """))
    overrides = {**app["env"], "PYTHONPATH": None, "VIRTUAL_ENV": None}
    with AgentSimulator(sandbox=sandbox) as agent:
        try:
            agent.launch_executor(["/bin/sh", "-c", "./stoker.pyz executor"], cwd=sandbox, env_overrides=overrides)
            agent.wait_subscribed(timeout_secs=20)
            agent.launch(make_task_info("task-1", encode(load_job(job))))
            agent.wait_for_state("task-1", "TASK_FINISHED", 20)
            assert agent.states("task-1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
            assert agent.wait_exit(10) == 0
        finally:
            kill_leftovers(task_pids(sandbox))
        log = agent.executor_log()
    assert "Traceback" not in log, log[-3000:]
    assert (sandbox / ".logs/a/0/stdout").read_text() == f"done\n{sandbox}\n"
    version = built_version(app["dist"])  # the build it runs, in its first line
    assert len(re.findall(rf"executor_start .* version={re.escape(version)}\n", log)) == 1, log[:2000]
    shown = run_app(app, ["./stoker.pyz", "--version"])
    assert (shown.returncode, shown.stdout) == (0, f"stoker {version}\n")


ONCE = """
    jobs = [Job(cluster='local', role='me', environment='test', name='once',
                task=Task(processes=[Process(name='a', cmdline='echo done')],
                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
"""
PYTHON_WARNING = re.compile(r"\b\w*Warning: ")  # Python's own format: FILE:LINE: CATEGORY: message


def test_every_python_from_3_11_runs_a_task_with_stoker_run_and_as_executor_with_warnings_shown(app, tmp_path):
    """The README's promise, one zipapp on CPython 3.11, 3.12 and 3.13, checked on each
    version found (one interpreter per version, the plain one for its own): `stoker run` of
    a batch job and `stoker executor` under the agent simulator each finish the task, with
    Python's warnings shown (`-W default`), so that a warning only a newer Python gives
    (3.12's DeprecationWarning for a fork in a process with threads, a SyntaxWarning of a
    bundled module, an unclosed file's ResourceWarning) fails here instead of reaching a
    user's terminal or the agent's stderr. `make test-pythons` runs the unit tests on each."""
    by_version = {version: python for version, python in found_pythons(app).items() if version >= (3, 11)}
    (tmp_path / "once.aurora").write_text(textwrap.dedent(ONCE))
    task_info = make_task_info("task-1", encode(load_job(tmp_path / "once.aurora")))
    for version, python in by_version.items():
        sandbox = tmp_path / f"run-{version[0]}.{version[1]}"
        done = run_app(app, [python, "-W", "default", "stoker.pyz", "run", str(tmp_path / "once.aurora"),
                             "--sandbox", str(sandbox)])
        assert done.returncode == 0, (python, done.stdout, done.stderr)
        assert [line for line in done.stderr.splitlines() if not line.startswith("stoker run: ")] == [], python
        assert (sandbox / ".logs/a/0/stdout").read_text() == "done\n"
        log = executor_runs(app, [python, "-W", "default", str(app["dir"] / "stoker.pyz"), "executor"],
                             tmp_path / f"executor-{version[0]}.{version[1]}", task_info)
        assert "Traceback" not in log and not PYTHON_WARNING.search(log), (python, log[-3000:])
    print(f"stoker run and stoker executor checked with {sorted(by_version)}")


def test_nothing_is_imported_from_a_pythonpath_entry_relative_to_the_working_directory(app, tmp_path):
    # an agent's `PYTHONPATH=:/opt/lib` (an empty entry: the working directory, the Mesos
    # sandbox): shiv's bootstrap imported the job's fetched zipfile.py, shutil.py, ... (as root)
    # before Stoker's first line took the entry off
    for name in ("fnmatch", "hashlib", "ipaddress", "shutil", "zipfile"):
        (tmp_path / f"{name}.py").write_text(f"import sys\nsys.stderr.write('planted {name} imported\\n')\n")
    env = {**app["env"], "PYTHONPATH": os.pathsep + "/nonexistent/lib"}
    done = subprocess.run([app["python"], str(app["dir"] / "stoker.pyz"), "--version"], cwd=tmp_path, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert done.stdout.startswith("stoker ")
