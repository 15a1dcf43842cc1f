"""`stoker executor` as an agent with `--switch_user` starts it: as the framework's user, in
a sandbox that user owns, with the agent's environment (HOME=/root among it). Needs root
(to be the agent) and a Python that user may run."""
from __future__ import annotations

import contextlib
import os
import shutil
import stat
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.document import encode
from config.loader import load_job
from config.registry import RegistrySettings
from executor.cli.main import main
from executor.host import replacefile
from executor.host.registry import Registry, RegistryUnreadable
from tests.support.agent_sim import AgentSimulator, make_task_info
from tests.support.aurora_tasks import assigned_task, client_json
from tests.support.stoker_proc import kill_leftovers, task_pids
from tests.support.users import STRANGER, as_user, needs_root, open_sandbox, stoker_as

pytestmark = [needs_root, pytest.mark.timeout(60)]

JOB = """
    who = Process(name='who', cmdline='id -u; exec sleep 30')
    jobs = [Job(cluster='c', role='www-data', environment='e', name='who',
                task=Task(processes=[who], resources=Resources(cpu=0.1, ram=8*MB, disk=8*MB)))]
"""


def test_an_executor_run_as_the_framework_s_user_registers_where_that_user_looks(tmp_path):
    """Its registry entry went to the inherited HOME's /root/.local/state/stoker, which
    that user may not make: a WARNING `cannot register task ?`, and no `stoker ps` of
    anyone's listed the task. Now it is in that user's own registry (this uid has no home:
    /tmp/stoker-UID), which the same user's reading finds, and every file Stoker wrote is
    that user's, none open to others; root still stops the task by its sandbox."""
    config = tmp_path / "who.aurora"
    config.write_text(textwrap.dedent(JOB))
    data = encode(load_job(str(config)))
    with executor_sandbox(STRANGER) as (stoker, sandbox, sim, registry):  # a uid with no home: no password entry
        sim.launch_executor([*stoker, "executor"], env_overrides={"HOME": "/root", "STOKER_ROOT": None},
                            cwd=sandbox)
        sim.wait_subscribed(timeout_secs=15)
        sim.launch(make_task_info("task-1", data))
        sim.wait_for_state("task-1", "TASK_RUNNING", 15)
        listed = as_user(STRANGER, STRANGER, lambda: _listed({"HOME": "/root"}))  # as the agent left it
        written = _modes(sandbox, Path(registry))
        log = sim.executor_log()
        assert main(["kill", str(sandbox), "--grace", "1"]) == 0
        sim.wait_for_state("task-1", "TASK_KILLED", 15)
        assert sim.wait_exit(15) == 0
        out = (sandbox / ".logs/who/0/stdout").read_text()

    assert "cannot register" not in log, log
    assert listed == f"{registry}: task-1"
    assert out == f"{STRANGER}\n"
    assert {uid for uid, _mode in written.values()} == {STRANGER}  # every file the user's
    assert not [name for name, (_uid, mode) in written.items() if mode & (stat.S_IWGRP | stat.S_IWOTH)]
    assert written[".stoker"][1] == 0o700 and written["registry"][1] == 0o700


@contextlib.contextmanager
def executor_sandbox(uid: int) -> Iterator[tuple[list[str], Path, AgentSimulator, str]]:
    """How `uid` runs this checkout's stoker, a sandbox of its own (0750) in a top directory
    others may enter, an agent simulator there, and `uid`'s registry (/tmp/stoker-UID); the
    simulator closed, the task's processes killed and the registry removed after. Skipped
    where no Python `uid` may run this checkout with is found."""
    stoker = stoker_as(uid, uid)
    if stoker is None:
        pytest.skip("no Python an unprivileged user may run this checkout with")
    registry = f"/tmp/stoker-{uid}"
    with open_sandbox() as top:
        os.chmod(top, 0o755)
        sandbox = top / "sandbox"
        sandbox.mkdir(mode=0o750)
        os.chown(sandbox, uid, uid)
        sim = AgentSimulator(sandbox=sandbox)
        try:
            yield stoker, sandbox, sim, registry
        finally:
            try:
                sim.close()
                kill_leftovers(task_pids(sandbox))
            finally:
                shutil.rmtree(registry, ignore_errors=True)


def _listed(environ) -> str:
    """The registry the user's `stoker ps` reads, and the task ids it lists."""
    reg = Registry(RegistrySettings.from_env(environ))
    try:
        return f"{reg.root}: {' '.join(item.entry.task_id for item in reg.read())}"
    except RegistryUnreadable as exc:
        return str(exc)


def _modes(sandbox: Path, registry: Path) -> dict[str, tuple[int, int]]:
    """Owner and mode of what Stoker wrote: the sandbox's `.stoker`, `.logs` and their files,
    the registry and its entries."""
    found = {"registry": registry}
    found.update({f"registry/{p.name}": p for p in registry.iterdir()})
    for top in (".stoker", ".logs"):
        found[top] = sandbox / top
        found.update({str(p.relative_to(sandbox)): p for p in (sandbox / top).rglob("*")})
    modes = {}
    for name, path in found.items():
        try:
            st = path.lstat()
        except FileNotFoundError:
            # The running task's atomic writes (`.usage.json.XXXXXXXX.tmp`, renamed into place):
            # listed, then renamed before its lstat (seen on a busy host); the file it became is
            # checked, here or in the caller's next look. Anything else that vanished fails.
            if name.endswith(replacefile.TEMP_SUFFIX):
                continue
            raise
        modes[name] = (st.st_uid, stat.S_IMODE(st.st_mode))
    return modes


ONCE = """
    who = Process(name='who', cmdline='id -u')
    jobs = [Job(cluster='c', role='{role}', environment='e', name='who',
                task=Task(processes=[who], resources=Resources(cpu=0.1, ram=8*MB, disk=8*MB)))]
"""
NOBODY = 65534


@pytest.mark.parametrize(("role", "flags", "state", "said"), [
    ("www-data", [], "TASK_FINISHED",
     "the executor is not root, so it runs the task as itself, not as the role 'www-data'"),
    ("nobody", [], "TASK_FINISHED", "the executor already runs as the job's role"),
    ("www-data", ["--execute-as-user=nobody"], "TASK_FINISHED", "--execute-as-user names the executor's own user"),
    ("nobody", ["--execute-as-user=www-data"], "TASK_FAILED",
     "--execute-as-user=www-data: the executor runs as nobody, not root, so it cannot run the task as www-data"),
], ids=["not-root", "the-role", "execute-as-itself", "execute-as-another"])
def test_a_non_root_executor_says_why_it_runs_the_task_as_itself(tmp_path, role, flags, state, said):
    """`stoker executor` as nobody, an Aurora task: it runs as nobody, its `run_as` line saying
    why not as the role's user; asked to run it as another user, the task fails, saying why."""
    config = tmp_path / "who.aurora"
    config.write_text(textwrap.dedent(ONCE.format(role=role)))
    with executor_sandbox(NOBODY) as (stoker, sandbox, sim, _):
        sim.launch_executor([*stoker, "executor", *flags], env_overrides={"HOME": "/nonexistent",
                                                                          "STOKER_ROOT": None}, cwd=sandbox)
        sim.wait_subscribed(timeout_secs=15)
        sim.launch(make_task_info("task-1", assigned_task(client_json(config), role=role, name="who")))
        ended = sim.wait_for_state("task-1", state, 15)
        assert sim.wait_exit(15) == 0
        log = sim.executor_log()
        out = sandbox / ".logs/who/0/stdout"
        ran = out.read_text() if out.exists() else None
    if state == "TASK_FAILED":
        assert said in ended.message, ended.message
        assert ran is None
    else:
        assert [line for line in log.splitlines() if "run_as" in line and said in line], log
        assert ran == f"{NOBODY}\n"
