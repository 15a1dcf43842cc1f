"""`stoker inspect CONFIG` as a shell or a CI step runs it: its status says whether the job is
valid, also when the config's code ends the process running it (`executor/cli/apart.py`;
docs/contract.md §1, §9)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.configs import REPO


def inspect(path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MESOS_", "STOKER_"))}
    env["PYTHONPATH"] = str(REPO)
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
    assert result.stderr == (f"stoker: error: job.aurora: the process running the config ended ({ended}) "
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
