"""`stoker inspect CONFIG` as a shell or a CI step runs it: its status says whether the job is
valid, also when the config's code ends the process running it (`executor/cli/apart.py`;
docs/contract.md §1, §9)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.configs import REPO
from tests.support.importhook import patched_at_load


def inspect(path, hook: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MESOS_", "STOKER_"))}
    env["PYTHONPATH"] = str(REPO) if hook is None else f"{hook}{os.pathsep}{REPO}"
    return subprocess.run([sys.executable, "-m", "executor", "inspect", path.name], cwd=path.parent,
                          env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("code, ended", [
    ("import os\nos._exit(0)\n", "exit status 0"),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n", "killed by signal 15"),
])
def test_a_config_that_ends_its_process_is_an_error_not_a_valid_job(tmp_path, code, ended):
    path = tmp_path / "job.aurora"
    path.write_text(code)
    result = inspect(path)
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr == (f"stoker: error: 'job.aurora': the process running the config ended ({ended}) "
                             "before the job was loaded: does its code call os._exit() or kill its own "
                             "process?\n")


def test_a_valid_job_and_a_bad_one_print_from_the_child_as_before(tmp_path):
    ok = tmp_path / "hello.aurora"
    ok.write_text((REPO / "examples/hello_world.aurora").read_text())
    result = inspect(ok)
    assert result.returncode == 0 and result.stdout.startswith("job devcluster/www-data/prod/hello\n")
    assert result.stderr == ""
    bad = tmp_path / "bad.aurora"
    bad.write_text("p = Process(name='a', cmdlin='true')\n")
    result = inspect(bad)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "stoker: error: bad.aurora:1: Process has no field 'cmdlin'; did you mean 'cmdline'?\n"


# A Ctrl-C that reaches the child as it is forked (before it knows it is the child)
CTRL_C_AS_IT_FORKS = patched_at_load("executor.cli.apart", """
    def _patch(module):
        real = os.fork

        def fork():
            pid = real()
            if pid == 0:
                os.kill(os.getpid(), 2)
            return pid

        module.os = type(sys)("os")
        module.os.__dict__.update(os.__dict__, fork=fork)
    """)


def test_a_ctrl_c_that_reaches_the_child_as_it_is_forked_exits_130(tmp_path):
    """Was: raised in the child before it knew it was one, it went on as `stoker inspect`
    and ended without its answer: exit 2, the config blamed for ending its process."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(CTRL_C_AS_IT_FORKS)
    ok = tmp_path / "hello.aurora"
    ok.write_text((REPO / "examples/hello_world.aurora").read_text())
    result = inspect(ok, hook)
    assert (result.returncode, result.stdout, result.stderr) == (130, "", "")


def test_with_a_thread_not_made_by_threading_it_inspects_in_this_process(tmp_path):
    """`_thread.start_new_thread`'s thread is not among `threading.active_count()`'s. Was:
    forked beside it (a lock it held stays held in the child)."""
    job = tmp_path / "hello.aurora"
    job.write_text((REPO / "examples/hello_world.aurora").read_text() + "\nimport os\nprint('config', os.getpid())\n")
    script = ("import _thread, os, sys, threading\nfrom executor.cli.main import main\n"
              "running, stop = threading.Event(), threading.Event()\n"
              "_thread.start_new_thread(lambda: running.set() or stop.wait(), ())\nassert running.wait(30)\n"
              "status = main(['inspect', sys.argv[1]])\nprint('stoker', os.getpid(), status, flush=True)\nstop.set()\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MESOS_", "STOKER_"))}
    result = subprocess.run([sys.executable, "-c", script, job.name], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60, env=dict(env, PYTHONPATH=str(REPO)))
    lines = result.stdout.splitlines()
    assert lines[0].startswith("config ") and lines[-1] == f"stoker {lines[0].split()[1]} 0", result


# The bound `stoker run`'s planning child has (60 s), shortened
SHORT_BOUND = patched_at_load("executor.cli.apart", """
    def _patch(module):
        module.LOAD_TIMEOUT_SECS = 3.0
    """)


def test_a_config_that_never_finishes_is_stopped_with_the_line_it_was_running(tmp_path):
    """README, "Writing a job": code still running after 60 s is stopped and the error names
    its line. Was: so under `stoker run`, but `stoker inspect` of `while True: pass` ran for ever."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SHORT_BOUND)
    spin = tmp_path / "spin.aurora"
    spin.write_text("x = 1\nwhile True: x += 1\n")
    result = inspect(spin, hook)
    assert (result.returncode, result.stdout) == (2, ""), result
    assert result.stderr == ("stoker: error: spin.aurora:2: the config's code was still running after 3 s "
                             "(an endless loop?), so it was stopped\n")
