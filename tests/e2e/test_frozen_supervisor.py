"""A supervisor frozen by its cgroup (`systemctl freeze`, `docker pause`, a host pausing the
task as a VM pause would: the Stoker process is in its task's cgroup) answers `stoker kill`
only once thawed, as a stopped one answers only once continued; the command says so at once
(was: it waited without a word: the kernel shows a frozen process sleeping, not stopped),
and `stoker status` warns that nothing is supervised (was: "running", and nothing more).

The real CLI as child processes, the task's real cgroup v2 frozen and thawed by the test."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from config.registry import RegistrySettings
from executor.observe.reader import Reader
from tests.support import cgroups as test_cgroups
from tests.support.configs import write_config
from tests.support.stoker_proc import REPO, checkpoint_records, live, stoker_runs, task_pids
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)


def task_id_of(sandbox: Path) -> str:
    """The task id its checkpoint's header names."""
    return next(r["task_id"] for r in checkpoint_records(sandbox) if r["kind"] == "header")


def task_page(detail) -> str:
    from executor.observe.pages import task_page as page

    return page(detail, time.time())


def _freeze(directory: str, frozen: bool) -> None:
    Path(directory, "cgroup.freeze").write_text("1" if frozen else "0")


def _thaw_if_there(directory: str) -> None:
    """Thawed, unless the task has ended and removed its cgroup meanwhile (ENOENT, or ENODEV:
    removed between the look and the write)."""
    try:
        _freeze(directory, False)
    except (FileNotFoundError, OSError) as exc:
        if exc.errno not in (errno.ENOENT, errno.ENODEV):
            raise


def test_stoker_kill_says_at_once_that_the_supervisor_is_frozen(tmp_path):
    if (why := test_cgroups.unavailable()) is not None:
        pytest.skip(f"no task cgroup here: {why}")
    cfg = write_config(tmp_path, """
        p = Process(name='idle', cmdline='sleep 1000')
        jobs = [Job(cluster='local', role='me', environment='test', name='idle',
                    task=Task(processes=[p], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
    """)
    with stoker_runs(tmp_path) as stoker:
        run = stoker(str(cfg), "--kill-grace", "0.5")
        run.wait_output("task             STARTING → RUNNING")
        pids = wait_for(lambda: task_pids(run.sandbox))
        (cgroup,) = test_cgroups.stoker_cgroups_of(run.pid)
        if not Path(cgroup, "cgroup.freeze").exists():
            pytest.skip(f"the task's cgroup {cgroup} is not a cgroup v2 one")
        said = tmp_path / "kill.stderr"
        _freeze(cgroup, True)
        try:
            wait_for(lambda: "frozen 1" in Path(cgroup, "cgroup.events").read_text().splitlines(),
                     5, message="the task's cgroup is frozen")
            with open(said, "w") as err:
                kill = subprocess.Popen([sys.executable, "-m", "executor", "kill", str(run.sandbox)],
                                        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                                        stdout=subprocess.DEVNULL, stderr=err)
            try:
                wait_for(lambda: "is frozen" in said.read_text(), 10, message="stoker kill said it is frozen")
                assert kill.poll() is None  # it waits for the answer
                detail = Reader(RegistrySettings(registry_root=os.environ["STOKER_ROOT"])).task(
                    task_id_of(run.sandbox))
                status = subprocess.run([sys.executable, "-m", "executor", "status", str(run.sandbox)],
                                        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                                        capture_output=True, text=True, timeout=30)
                as_json = subprocess.run([sys.executable, "-m", "executor", "status", "--json", str(run.sandbox)],
                                         cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                                         capture_output=True, text=True, timeout=30)
            finally:
                _freeze(cgroup, False)
                assert kill.wait(20) == 0, said.read_text()
        finally:
            _thaw_if_there(cgroup)  # whatever failed
        assert run.wait(20) == 0, run.stderr()
        assert f"the supervisor (pid {run.pid}) is frozen (its cgroup {cgroup}): it answers once thawed" \
            in said.read_text()
        assert not live(pids)
    assert detail.supervisor_frozen == cgroup
    # `--json` and the observer's API said nothing of it (`supervisor_stopped` false alone)
    doc = json.loads(as_json.stdout)
    for said_as in (doc, detail.status):
        assert (said_as["supervisor_frozen"], said_as["supervisor_frozen_cgroup"]) == (True, cgroup), said_as
        assert said_as["supervisor_stopped"] is False
    assert f"frozen: its cgroup {cgroup} is frozen; nothing is supervised until it is thawed" in task_page(detail)
    assert status.stderr == (f"stoker: warning: the supervisor (pid {run.pid}) is frozen (its cgroup {cgroup}): "
                             "nothing is supervised, restarted or health-checked until it is thawed\n")
