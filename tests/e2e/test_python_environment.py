"""`stoker` started with Python's own settings in its environment or on the interpreter's
command line (PYTHON* variables, `-O`, `-i`...), as a shell, a systemd unit or a Mesos agent
may start it: what it honours, what it leaves out, what its task's processes get
(docs/contract.md §8, "Python's own settings")."""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

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
