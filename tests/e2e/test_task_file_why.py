"""What the observer says of an attempt without its `.stoker/task.json`, of a real `stoker
run` SIGKILLed at the point (`executor/task/definition.py`, `Asked`): a later attempt of
the same run, and a run after another in the same sandbox, killed before each wrote its
own (the sandbox's task.json is then an earlier one's).

The moment is held by a test-only `sitecustomize` (tests/support/importhook.py): the real
`stoker run` sends itself a real SIGKILL as it is about to write its Nth definition."""
from __future__ import annotations

import json
import os
import signal
import textwrap
from pathlib import Path

from config.registry import RegistrySettings
from executor.observe.reader import Reader
from tests.support.importhook import patched_at_load
from tests.support.stoker_proc import REPO, StokerProcess, kill_leftovers, task_pids

KILLED_BEFORE_ITS_DEFINITION = patched_at_load("executor.task.definition", """
    def _patch(module):
        real, calls = module.write_definition, []

        def write_definition(*args, **kwargs):
            calls.append(1)
            if len(calls) == int(os.environ["STOKER_TEST_KILL_AT"]):
                os.kill(os.getpid(), 9)
            return real(*args, **kwargs)

        module.write_definition = write_definition
    """)


# Every descriptor the supervisor may have taken as it is about to write its definition (as
# a process limit that many runs' pipes reached would leave it): then it goes on as it does.
OUT_OF_DESCRIPTORS = patched_at_load("executor.task.definition", """
    def _patch(module):
        real, held = module.write_definition, []

        def write_definition(*args, **kwargs):
            try:
                while True:
                    held.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:  # EMFILE
                return real(*args, **kwargs)

        module.write_definition = write_definition
    """)


def run(tmp_path: Path, job: str, kill_at: int = 0, *extra: str, hook_text: str = KILLED_BEFORE_ITS_DEFINITION) -> int:
    """`stoker run` of `job` (its `jobs = [...]` line) in tmp_path/sb, SIGKILLed as it is
    about to write its `kill_at`th definition (0: never), or with `hook_text` as its
    sitecustomize; its exit status."""
    hook, config = tmp_path / "hook", tmp_path / "job.aurora"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(hook_text)
    config.write_text(textwrap.dedent(job))
    proc = StokerProcess(["run", str(config), "--sandbox", str(tmp_path / "sb"), "--root", str(tmp_path / "root"),
                          *extra], tmp_path,
                         env={"PYTHONPATH": f"{hook}{os.pathsep}{REPO}", "STOKER_TEST_KILL_AT": str(kill_at)})
    try:
        return proc.wait(60)
    finally:
        proc.close()


def reader(tmp_path: Path) -> Reader:
    return Reader(RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=60.0))


def written(sandbox: Path) -> str:
    """The task id of the sandbox's task.json."""
    return json.loads((sandbox / ".stoker" / "task.json").read_text())["task_id"]


FAILING = """
    jobs = [Service(cluster='local', role='me', environment='test', name='svc',
                    task=Task(processes=[Process(name='p', cmdline='exit 3')],
                              resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
"""


def test_a_later_attempt_killed_before_its_definition_is_said_not_to_have_recorded_itself(tmp_path):
    """Attempt 2 of a service killed as it was about to write its definition, attempt 1's
    there. Was: `(nor did it record anything in its checkpoint)`: it recorded attempt 1."""
    sandbox = tmp_path / "sb"
    try:
        assert run(tmp_path, FAILING, 2, "--restart-backoff", "0.1") == -signal.SIGKILL
        (task,) = reader(tmp_path).tasks()
        first = written(sandbox)
        assert task.row["task_id"] != first
        assert reader(tmp_path).task(task.row["task_id"]).definition_problem == (
            f"the sandbox's task.json is of task {first!r}, an earlier attempt; this attempt's: its supervisor "
            "died before it wrote it (nor did it record the attempt in its checkpoint)")
    finally:
        kill_leftovers(task_pids(sandbox))


ONCE = """
    jobs = [Job(cluster='local', role='me', environment='test', name='once',
                task=Task(processes=[Process(name='p', cmdline='echo once')],
                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
"""


def test_a_run_killed_before_its_definition_is_told_the_sandbox_s_is_an_earlier_run_s(tmp_path):
    """A second `stoker run` in the sandbox, killed as it was about to write its definition:
    the sandbox's is the first run's. Was: `..., a later attempt`. Once a third run wrote its
    own, the first run's page says that one is a later attempt's."""
    sandbox = tmp_path / "sb"
    try:
        assert run(tmp_path, ONCE) == 0
        first = written(sandbox)
        assert run(tmp_path, ONCE, 1) == -signal.SIGKILL
        (second,) = [t.row["task_id"] for t in reader(tmp_path).tasks() if t.row["task_id"] != first]
        assert reader(tmp_path).task(second).definition_problem == (
            f"the sandbox's task.json is of task {first!r}, an earlier run's in this sandbox; this attempt's: its "
            "supervisor died before it wrote it (nor did it record the attempt in its checkpoint)")
        assert reader(tmp_path).task(first).definition["task_id"] == first
        assert run(tmp_path, ONCE) == 0
        third = written(sandbox)
        assert reader(tmp_path).task(first).definition_problem == \
            f"the sandbox's task.json is of task {third!r}, a later attempt"
    finally:
        kill_leftovers(task_pids(sandbox))


def test_a_definition_in_a_stoker_directory_put_in_the_supervisor_s_place_is_not_shown(tmp_path):
    """The task owns its sandbox (a root executor gives it to the role), so it may rename
    the supervisor's `.stoker` and put one of its own there, with a `task.json` of the task's
    id saying what it likes, or a temporary. Was: the observer showed that as the task's
    definition, read at the sandbox's path, where its status reads only the `.stoker` its
    registry entry pins."""
    sandbox = tmp_path / "sb"
    try:
        assert run(tmp_path, ONCE) == 0
        first = written(sandbox)
        planted = {**json.loads((sandbox / ".stoker" / "task.json").read_text()), "note": "planted"}
        os.rename(sandbox / ".stoker", sandbox / ".stoker.moved")
        (sandbox / ".stoker").mkdir()
        (sandbox / ".stoker" / "task.json").write_text(json.dumps(planted))
        detail = reader(tmp_path).task(first)
        assert detail.definition is None, detail.definition
        assert detail.definition_problem == (
            f"cannot open {sandbox}/.stoker/task.json: {sandbox}/.stoker is not the directory its supervisor made "
            "(the task may have put another in its place); nothing in it is trusted")
        (sandbox / ".stoker" / "task.json").unlink()
        (sandbox / ".stoker" / ".task.json.0123abcd.tmp").write_text("{")  # nor is its temporary read
        assert "is writing it" not in reader(tmp_path).task(first).definition_problem
        os.rename(sandbox / ".stoker", sandbox / ".stoker.planted")
        os.rename(sandbox / ".stoker.moved", sandbox / ".stoker")  # put back: shown again
        assert reader(tmp_path).task(first).definition["task_id"] == first
    finally:
        kill_leftovers(task_pids(sandbox))


def test_a_run_that_could_not_write_its_definition_and_let_go_is_not_said_to_have_died(tmp_path):
    """Out of descriptors as it was about to write its definition: it could not, nor its
    checkpoint, and it let go of the sandbox once its task ended (its status: `let go of
    the sandbox before it recorded anything`). Was: `its supervisor died before it wrote
    it`. The task itself runs, without a checkpoint: its run's log files were made as the
    supervisor waited for the task's cgroup, before the descriptors ran out (exit 0; it
    failed, exit 1, while a spawn made them)."""
    sandbox = tmp_path / "sb"
    try:
        assert run(tmp_path, ONCE, hook_text=OUT_OF_DESCRIPTORS) == 0
        (task,) = reader(tmp_path).tasks()
        assert "let go of the sandbox before it recorded anything" in task.row["problem"], task.row
        assert reader(tmp_path).task(task.row["task_id"]).definition_problem == (
            f"no {sandbox}/.stoker/task.json: its supervisor let go of the sandbox before it recorded the attempt: "
            "it could not write it (`task_definition_unwritten` in its log), or stopped before it did")
    finally:
        kill_leftovers(task_pids(sandbox))
