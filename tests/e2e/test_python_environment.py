"""`stoker` started with Python's own settings in its environment or on the interpreter's
command line (PYTHON* variables, `-O`, `-i`...), as a shell, a systemd unit or a Mesos agent
may start it: what it honours, what it leaves out, what its task's processes get
(docs/contract.md §8, "Python's own settings")."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.agents import sandboxed_agent
from tests.support.executor_e2e import HELLO, TOKEN, document, launch
from tests.support.shellwords import in_aurora, python_sh
from tests.support.stoker_proc import REPO, StokerProcess, kill_leftovers, task_pids

pytestmark = pytest.mark.timeout(120)

CHECKED = """
    instances = 0
    assert instances > 0, 'this job needs at least one instance'
    jobs = [Job(cluster='local', role='me', environment='test', name='checked',
                task=Task(processes=[Process(name='say', cmdline='echo ran')],
                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
"""


def run_to_end(tmp_path: Path, config: Path, env: dict[str, str], name: str = "sandbox") -> StokerProcess:
    """`stoker run CONFIG` in a sandbox of its own, to its end (its leftovers killed)."""
    sandbox = tmp_path / name
    proc = StokerProcess(["run", str(config), "--sandbox", str(sandbox)], tmp_path, env=env)
    try:
        proc.wait()
    finally:
        proc.close()
        kill_leftovers(task_pids(sandbox))
    return proc


@pytest.mark.parametrize("optimize", ["1", "2"])
def test_a_configs_assert_is_checked_under_python_optimize_and_its_plan_is_not_kept(tmp_path, optimize):
    # -O stripped the config's own asserts: the job ran, and its plan, kept, served the next
    # run without -O (the assert never ran again while the file was unchanged)
    config = tmp_path / "job.aurora"
    config.write_text(textwrap.dedent(CHECKED))
    plans = tmp_path / "plans"
    for attempt, level in enumerate((optimize, "")):
        proc = run_to_end(tmp_path, config, {"STOKER_PLAN_CACHE": str(plans), "PYTHONOPTIMIZE": level},
                          f"sandbox{attempt}")
        assert proc.proc.returncode == 2, proc.stdout() + proc.stderr()
        assert proc.stderr() == f"stoker: error: {config}:3: AssertionError: this job needs at least one instance\n"
        assert not (tmp_path / f"sandbox{attempt}").exists()
    assert not list(plans.glob("*.bin"))


# '\d' in a plain string: an invalid escape, which Python 3.11 warns of as a DeprecationWarning
# as it compiles the file (3.12: a SyntaxWarning, shown by default), and keeps as written
ESCAPED = r"""
    jobs = [Job(cluster='local', role='me', environment='test', name='escaped',
                task=Task(processes=[Process(name='say', cmdline='echo "a\d"')],
                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
"""


@pytest.mark.parametrize("warnings", ["error", "default"])
def test_a_config_means_the_same_under_any_python_warnings_filter(tmp_path, warnings):
    # PYTHONWARNINGS=error made the config a syntax error (exit 2) where a plan kept by an
    # earlier run served it; `default` printed the warning twice (the config's compile, and
    # the plan cache's look at its syntax), and a kept plan never
    config = tmp_path / "job.aurora"
    config.write_text(textwrap.dedent(ESCAPED))
    plans = tmp_path / "plans"
    proc = run_to_end(tmp_path, config, {"PYTHONWARNINGS": warnings, "STOKER_PLAN_CACHE": str(plans)})
    assert proc.proc.returncode == 0, proc.stdout() + proc.stderr()
    assert "escape" not in proc.stderr()
    assert (tmp_path / "sandbox/.logs/say/0/stdout").read_text() == "a\\d\n"
    assert len(list(plans.glob("*.bin"))) == 1


WARNS = """
    import warnings
    warnings.warn('the old include is going away')
""" + ESCAPED


@pytest.mark.parametrize("warnings", ["", "error"])
def test_a_configs_own_warning_is_shown_and_never_fails_it(tmp_path, warnings):
    # the config's own `warnings.warn` (a shared include saying it is going away) was never
    # shown once every warning was ignored while it ran; Aurora's client shows it
    config = tmp_path / "job.aurora"
    config.write_text(textwrap.dedent(WARNS))
    proc = run_to_end(tmp_path, config, {"PYTHONWARNINGS": warnings, "STOKER_PLAN_CACHE": "off"})
    assert proc.proc.returncode == 0, proc.stdout() + proc.stderr()
    assert f"{config}:3: UserWarning: the old include is going away" in proc.stderr()
    assert "escape" not in proc.stderr()


SAY = """
    jobs = [Job(cluster='local', role='me', environment='test', name='said',
                task=Task(processes=[Process(name='say', cmdline='echo said')],
                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
"""
# What a working directory may hold that Stoker would import in place of its own, or of the
# standard library's (a job's fetched files in a Mesos sandbox, a project's own `config/`)
PLANTED = "import sys\nsys.stderr.write('planted module imported\\n')\nraise SystemExit(7)\n"


@pytest.mark.parametrize("relative", ["", ".", "lib/.."])
def test_a_pythonpath_entry_relative_to_the_working_directory_is_not_searched(tmp_path, relative):
    # `export PYTHONPATH=$PYTHONPATH:/opt/lib` with PYTHONPATH unset gives an empty entry: the
    # working directory, where a project's config.py stood in for Stoker's `config` package
    (tmp_path / "lib").mkdir()
    (tmp_path / "config.py").write_text(PLANTED)
    config = tmp_path / "job.aurora"
    config.write_text(textwrap.dedent(SAY))
    proc = run_to_end(tmp_path, config, {"PYTHONPATH": f"{relative}{os.pathsep}{REPO}"})
    assert proc.proc.returncode == 0, proc.stdout() + proc.stderr()
    assert "planted" not in proc.stderr()
    assert (tmp_path / "sandbox/.logs/say/0/stdout").read_text() == "said\n"


def test_an_entry_point_of_another_name_forgets_relative_pythonpath_entries_too(tmp_path):
    # stoker.pyz (shiv's bootstrap calls the entry point; its argv[0] is not `stoker`), as
    # any script that runs `executor.cli.start.run`
    (tmp_path / "config.py").write_text(PLANTED)
    script = tmp_path / "bin" / "stoker.pyz-like"
    script.parent.mkdir()
    script.write_text("from executor.cli.start import run\nrun()\n")
    config = tmp_path / "job.aurora"
    config.write_text(textwrap.dedent(SAY))
    env = {**os.environ, "PYTHONPATH": f"{os.pathsep}{REPO}"}
    done = subprocess.run([sys.executable, str(script), "run", str(config), "--sandbox", str(tmp_path / "sandbox")],
                          cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    kill_leftovers(task_pids(tmp_path / "sandbox"))
    assert done.returncode == 0 and "planted" not in done.stderr, done.stdout + done.stderr
    assert (tmp_path / "sandbox/.logs/say/0/stdout").read_text() == "said\n"


def test_the_executor_imports_nothing_from_its_sandbox_through_an_empty_pythonpath_entry(tmp_path):
    # the agent's PYTHONPATH with an empty entry, and a file the job fetched into the sandbox,
    # the executor's working directory: the executor (root, here) imported it as it loaded
    with sandboxed_agent(tmp_path, auth_token=TOKEN) as agent:
        (agent.sandbox / "config.py").write_text(PLANTED)
        launch(agent, document(tmp_path, HELLO), env_overrides={"PYTHONPATH": f"{os.pathsep}{REPO}"})
        agent.wait_for_state("task-1", "TASK_RUNNING", 10)
        agent.kill("task-1", grace_secs=1.0)
        agent.wait_for_state("task-1", "TASK_KILLED", 10)
        assert agent.wait_exit(10) == 0
        assert "planted" not in agent.executor_log()


HOOK = REPO / "tests/support/signal_at_import"


def test_a_ctrl_c_as_stoker_loads_exits_130_under_python_inspect_mode(tmp_path):
    # PYTHONINSPECT (or -i) takes a SystemExit as an error: its traceback, exit status 1, and
    # on a terminal a `>>>` prompt that waited where the command had ended
    env = {"PYTHONPATH": f"{HOOK}{os.pathsep}{REPO}", "STOKER_TEST_SIGNAL_AT": f"executor.cli.main:{int(signal.SIGINT)}",
           "PYTHONINSPECT": "1"}
    proc = StokerProcess(["ps", "--root", str(tmp_path / "root")], tmp_path, env=env)
    try:
        status = proc.wait()
    finally:
        proc.close()
    assert proc.stderr() == f"signal-at-import: {int(signal.SIGINT)} at executor.cli.main\n"
    assert status == 130


@pytest.mark.parametrize(("args", "status"), [(["cli"], 0), (["no-such-profile"], 2)])
def test_the_warm_step_exits_with_its_status_under_python_inspect_mode(tmp_path, args, status):
    env = {**os.environ, "STOKER_CODE_CACHE": str(tmp_path / "cache"), "PYTHONINSPECT": "1"}
    done = subprocess.run([sys.executable, "-P", "-m", "executor.codecache", *args], cwd=tmp_path, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr and done.returncode == status, (done.returncode, done.stderr)


FLAGS = """
    probe = ('{python} -c "import sys; print(sys.flags.optimize, sys.flags.dev_mode, sys.warnoptions, '
             'sys.flags.inspect, sys.flags.safe_path)"; env | grep ^PYTHON | sort')
    jobs = [Job(cluster='local', role='me', environment='test', name='flags',
                task=Task(processes=[Process(name='py', cmdline=probe)],
                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
"""


def test_stokers_interpreter_options_reach_neither_it_nor_the_tasks_python(tmp_path):
    # -O, -X dev (ResourceWarnings shown), -W error (any warning an exception), -i, -P: Stoker
    # runs as ever, silent, and the task's `python` starts as the environment says, not as
    # Stoker's interpreter was started (Stoker sets no PYTHON* variable of its own)
    config = tmp_path / "job.aurora"
    config.write_text(textwrap.dedent(FLAGS.format(python=in_aurora(python_sh()))))
    sandbox = tmp_path / "sandbox"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run([sys.executable, "-O", "-X", "dev", "-W", "error", "-i", "-P", "-m", "executor", "run",
                           str(config), "--sandbox", str(sandbox)], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    kill_leftovers(task_pids(sandbox))
    assert (done.returncode, done.stderr) == (0, ""), done.stdout + done.stderr
    assert (sandbox / ".logs/py/0/stdout").read_text() == f"0 False [] 0 False\nPYTHONPATH={REPO}\n"


SAID = """
    jobs = [Job(cluster='local', role='me', environment='test', name='said',
                task=Task(processes=[Process(name='say', cmdline='echo ran')],
                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
"""


def test_a_host_whose_audit_hook_refuses_ctypes_runs_the_job_without_a_traceback(tmp_path):
    """A sitecustomize may refuse `ctypes.dlopen` (a hardened host): the early start's C calls
    (the subreaper flag, one heap, the stop room) are then not made, as where the C library
    lacks them; the hook's exception ended `stoker run` with Stoker's internal error (70)."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(textwrap.dedent("""
        import sys
        def refuse(event, args):
            if event.startswith("ctypes.dlopen"):
                raise RuntimeError("ctypes is not allowed on this host")
        sys.addaudithook(refuse)
    """))
    config = tmp_path / "job.aurora"
    config.write_text(textwrap.dedent(SAID))
    proc = run_to_end(tmp_path, config, {"PYTHONPATH": f"{hooks}:{REPO}"})
    assert proc.proc.returncode == 0, proc.stdout() + proc.stderr()
    assert "Traceback" not in proc.stdout() + proc.stderr()
    assert "ran" in (tmp_path / "sandbox" / ".logs" / "say" / "0" / "stdout").read_text()
