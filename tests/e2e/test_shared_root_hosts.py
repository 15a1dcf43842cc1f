"""A real `stoker run` of "another host" in a registry root this host shares: the run in a UTS
and a PID namespace of its own (another host name, and pids that mean nothing here, as a
container's, or another machine's), its entry in the same root. This host's `stoker ps` lists
none of its tasks and says there is one of another host's; `status` says where it runs; `kill`
refuses it, and it runs on. A run in a UTS namespace alone (its pid this host's: the host
renamed while it runs, `hostnamectl set-hostname`) is this host's task: listed and killed."""
from __future__ import annotations

import os
import shutil

import psutil
import pytest

from config.registry import RegistrySettings
from executor.cli.main import main
from executor.host.registry import Registry
from tests.support.stoker_proc import StokerProcess, kill_leftovers, task_pids

pytestmark = pytest.mark.timeout(120)

CONFIG = """\
jobs = [Service(cluster='local', role='me', environment='test', name='elsewhere',
                task=Task(processes=[Process(name='p', cmdline='exec sleep 600')],
                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
"""
OTHER_NAME = "stoker-test-other-host"


def test_a_run_of_another_host_name_in_a_shared_root_is_that_host_s_task(tmp_path, capsys):
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("hostname"):
        pytest.skip("needs root, unshare and hostname (a UTS namespace of the test's own)")
    root, sandbox = tmp_path / "root", tmp_path / "sandbox"
    config = tmp_path / "elsewhere.aurora"
    config.write_text(CONFIG)
    work = tmp_path / "work"
    work.mkdir()
    # its own pids (`--mount-proc`: its /proc/self is its own); killed should the test's end not stop it
    launcher = ("unshare", "-u", "-p", "--mount-proc", "--kill-child",
                "sh", "-c", f'hostname {OTHER_NAME} && exec "$@"', "sh")
    run = StokerProcess(["run", str(config), "--sandbox", str(sandbox), "--root", str(root)], work,
                        env={"STOKER_PLAN_CACHE": "off"}, launcher=launcher)
    try:
        run.wait_output("STARTING → RUNNING", 60)
        (listed,) = Registry(RegistrySettings(registry_root=str(root))).read()
        assert listed.entry.host_name == OTHER_NAME and listed.entry.supervisor_pid != run.proc.pid
        task_id = listed.entry.task_id
        assert main(["ps", "--root", str(root)]) == 0
        out, err = capsys.readouterr()
        assert task_id not in out and f"no live tasks in the registry {root}" in out, out
        assert f"1 task of other hosts in the registry {root} is not listed" in err
        assert f"{OTHER_NAME} (1)" in err, err
        assert main(["status", task_id, "--root", str(root)]) == 0
        assert f"runs on host '{OTHER_NAME}', not this one" in capsys.readouterr().out
        assert main(["kill", task_id, "--root", str(root)]) == 2
        assert f"runs on host '{OTHER_NAME}', not this one" in capsys.readouterr().err
        assert run.proc.poll() is None  # not killed from here
    finally:
        for pid in psutil.Process(run.proc.pid).children():  # the supervisor, as this host numbers it
            pid.terminate()
        run.wait()
        run.close()
        kill_leftovers(task_pids(sandbox))


def test_a_run_whose_host_was_renamed_since_it_started_is_this_host_s_task(tmp_path, capsys):
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("hostname"):
        pytest.skip("needs root, unshare and hostname (a UTS namespace of the test's own)")
    root, sandbox = tmp_path / "root", tmp_path / "sandbox"
    config = tmp_path / "elsewhere.aurora"
    config.write_text(CONFIG)
    work = tmp_path / "work"
    work.mkdir()
    # the supervisor read the host's old name; this test's `stoker` reads the new one
    launcher = ("unshare", "-u", "sh", "-c", f'hostname {OTHER_NAME} && exec "$@"', "sh")
    run = StokerProcess(["run", str(config), "--sandbox", str(sandbox), "--root", str(root)], work,
                        env={"STOKER_PLAN_CACHE": "off"}, launcher=launcher)
    try:
        run.wait_output("STARTING → RUNNING", 60)
        (listed,) = Registry(RegistrySettings(registry_root=str(root))).read()
        assert listed.entry.host_name == OTHER_NAME and listed.entry.supervisor_pid == run.proc.pid
        task_id = listed.entry.task_id
        assert main(["ps", "--root", str(root)]) == 0
        out, err = capsys.readouterr()
        assert task_id in out and "RUNNING" in out and "other hosts" not in err, (out, err)
        assert main(["kill", task_id, "--root", str(root)]) == 0, capsys.readouterr()
        assert run.proc.wait(timeout=60) is not None  # killed from here: its pid is this host's
    finally:
        run.sigterm_and_close()
        kill_leftovers(task_pids(sandbox))
