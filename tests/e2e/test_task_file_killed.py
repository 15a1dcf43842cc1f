"""A supervisor killed (kill -9) as it writes `.stoker/task.json` (one process's part at a
time, to `.task.json.RANDOM.tmp`, renamed over it: `executor/task/definition.py`) leaves
that temporary. `stoker status` reads `task.json` alone, and the next supervisor of the
sandbox (which holds its lock: no one else writes there) removes it, and those of the other
files of `.stoker` written so (`executor/host/sandbox.remove_stale_temps`). Was: each kept
for ever, one more at every such kill.

The moment is held by a test-only `sitecustomize` (tests/support/importhook.py): the real
`stoker run` sends itself a real SIGKILL once the definition's first part is written."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from config.registry import RegistrySettings
from executor.observe.reader import Reader
from tests.support.importhook import patched_at_load
from tests.support.stoker_proc import REPO, StokerProcess, kill_leftovers, live, task_pids

CONFIG = """
first = Process(name='first', cmdline='echo one')
second = Process(name='second', cmdline='echo two')
jobs = [Job(cluster='local', role='me', environment='test', name='twice',
            task=SequentialTask(processes=[first, second], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
"""

KILLED_AS_IT_WRITES = patched_at_load("executor.task.definition", """
    def _patch(module):
        real = module.definition_chunks

        def chunks(job):
            for i, chunk in enumerate(real(job)):
                if i == 2:  # the first process's written
                    os.kill(os.getpid(), 9)
                yield chunk

        module.definition_chunks = chunks
    """)


def run(tmp_path, sandbox, env=None, *extra: str) -> tuple[int, StokerProcess]:
    config = tmp_path / "job.aurora"
    config.write_text(CONFIG)
    proc = StokerProcess(["run", str(config), "--sandbox", str(sandbox), "--root", str(tmp_path / "root"), *extra],
                         tmp_path, env=env)
    try:
        return proc.wait(60), proc
    finally:
        proc.close()


def killed_as_it_writes(tmp_path: Path, sandbox: Path) -> None:
    """`stoker run` of CONFIG in `sandbox`, SIGKILLed as it writes its first task.json."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILLED_AS_IT_WRITES)
    status, proc = run(tmp_path, sandbox, {"PYTHONPATH": f"{hook}{os.pathsep}{REPO}"})
    assert status == -signal.SIGKILL, (status, proc.stderr())


def test_a_temporary_a_killed_supervisor_left_is_ignored_by_status_and_removed_by_the_next_run(tmp_path):
    sandbox = tmp_path / "sb"
    try:
        killed_as_it_writes(tmp_path, sandbox)
        left = [name for name in os.listdir(sandbox / ".stoker") if name.endswith(".tmp")]
        assert len(left) == 1 and left[0].startswith(".task.json."), left
        assert not (sandbox / ".stoker" / "task.json").exists()
        (sandbox / ".stoker" / ".held.json.0123abcd.tmp").write_text("{")  # another writer's, killed
        (sandbox / ".stoker" / "notes.tmp").write_text("not a temporary of Stoker's")
        shown = subprocess.run([sys.executable, "-m", "executor", "status", str(sandbox)], cwd=tmp_path,
                               capture_output=True, text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(REPO)))
        assert "Traceback" not in shown.stderr and "state=LOST" in shown.stdout, shown
        status, proc = run(tmp_path, sandbox, None, "--log-level", "INFO")
        assert status == 0, (status, proc.stdout(), proc.stderr())
        assert sorted(name for name in os.listdir(sandbox / ".stoker") if name.endswith(".tmp")) == ["notes.tmp"]
        assert '"name": "second"' in (sandbox / ".stoker" / "task.json").read_text()
        assert f"stale_temporaries_removed task=twice.0 names=\".held.json.0123abcd.tmp {left[0]}\"" in proc.stderr()
        assert not live(task_pids(sandbox))
    finally:
        kill_leftovers(task_pids(sandbox))


def test_the_observer_says_the_supervisor_was_killed_as_it_wrote_the_definition(tmp_path):
    """Was: the task's page said `no .../task.json: the task was started by a Stoker that did
    not keep it`: untrue, this one writes it first thing, and was killed as it did."""
    sandbox = tmp_path / "sb"
    try:
        killed_as_it_writes(tmp_path, sandbox)
        (left,) = [name for name in os.listdir(sandbox / ".stoker") if name.endswith(".tmp")]
        reader = Reader(RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=60.0))
        (task,) = reader.tasks()
        detail = reader.task(task.row["task_id"])
        assert detail.definition is None and detail.row["state"] == "LOST", detail.row
        assert detail.definition_problem == (
            f"no {sandbox}/.stoker/task.json: its supervisor was killed as it wrote it (it left {left}, which the "
            "next supervisor of this sandbox removes)")
        os.unlink(sandbox / ".stoker" / left)  # as if killed before it made the temporary
        assert reader.task(task.row["task_id"]).definition_problem == (
            f"no {sandbox}/.stoker/task.json: its supervisor died before it wrote it (nor did it record "
            "the attempt in its checkpoint)")
    finally:
        kill_leftovers(task_pids(sandbox))
