"""A real `stoker run` of "another host" in a registry root this host shares: the run in a UTS
and a PID namespace of its own (another host name, and pids that mean nothing here, as a
container's, or another machine's), its entry in the same root. This host's `stoker ps` lists
none of its tasks and says there is one of another host's; `status` says where it runs; `kill`
refuses it, and it runs on. A run in a UTS namespace alone (its pid this host's: the host
renamed while it runs, `hostnamectl set-hostname`) is this host's task: listed and killed."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from config.registry import RegistrySettings
from executor.cli.main import main
from executor.host.registry import Registry
from tests.support.stoker_proc import REPO, StokerProcess, kill_leftovers, task_pids

pytestmark = pytest.mark.timeout(120)

CONFIG = """\
jobs = [Service(cluster='local', role='me', environment='test', name='elsewhere',
                task=Task(processes=[Process(name='p', cmdline='exec sleep 600')],
                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
"""
OTHER_NAME = "stoker-test-other-host"


def _run(tmp_path: Path, launcher: tuple[str, ...]) -> tuple[StokerProcess, Path, Path, Path]:
    """`stoker run` of CONFIG through `launcher` (the other host's namespaces), in a registry
    root of the test's own: the run (started, not waited for), the root, its sandbox and its
    working directory."""
    root, sandbox = tmp_path / "root", tmp_path / "sandbox"
    config = tmp_path / "elsewhere.aurora"
    config.write_text(CONFIG)
    work = tmp_path / "work"
    work.mkdir()
    run = StokerProcess(["run", str(config), "--sandbox", str(sandbox), "--root", str(root)], work,
                        env={"STOKER_PLAN_CACHE": "off"}, launcher=launcher)
    return run, root, sandbox, work


def test_a_run_of_another_host_name_in_a_shared_root_is_that_host_s_task(tmp_path, capsys):
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("hostname"):
        pytest.skip("needs root, unshare and hostname (a UTS namespace of the test's own)")
    # its own pids (`--mount-proc`: its /proc/self is its own); killed should the test's end not stop it
    launcher = ("unshare", "-u", "-p", "--mount-proc", "--kill-child",
                "sh", "-c", f'hostname {OTHER_NAME} && exec "$@"', "sh")
    run, root, sandbox, _ = _run(tmp_path, launcher)
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
        with contextlib.suppress(psutil.NoSuchProcess):
            for supervisor in psutil.Process(run.proc.pid).children():  # pid 1 there, as this host numbers it
                supervisor.terminate()
        run.wait(60)  # once its pid 1 is gone, the kernel kills what is left in the namespace
        run.close()  # (the checkpoint's pids are that namespace's: never killed from here)


def test_a_run_whose_host_was_renamed_since_it_started_is_this_host_s_task(tmp_path, capsys):
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("hostname"):
        pytest.skip("needs root, unshare and hostname (a UTS namespace of the test's own)")
    # the supervisor read the host's old name; this test's `stoker` reads the new one
    launcher = ("unshare", "-u", "sh", "-c", f'hostname {OTHER_NAME} && exec "$@"', "sh")
    run, root, sandbox, _ = _run(tmp_path, launcher)
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


def test_a_task_of_a_host_renamed_while_it_ran_is_this_host_s_once_it_ended(tmp_path):
    """The host (a UTS namespace of the test's own) renamed while the run's task runs
    (`hostnamectl set-hostname`): its `stoker kill`, `ps --all` and `status` there, under the
    new name, kill it and show it ended, this host's. Its entry kept the name the run read
    at its start when it ended: the ended task was another host's, never pruned here."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nsenter"):
        pytest.skip("needs root, unshare and nsenter (a UTS namespace of the test's own)")
    host = subprocess.Popen(["unshare", "-u", "sh", "-c", "hostname stoker-test-old-name && echo ready && exec sleep 600"],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)  # the host's names
    assert host.stdout is not None and host.stdout.readline() == "ready\n"
    on_host = ("nsenter", f"--uts=/proc/{host.pid}/ns/uts")
    run, root, sandbox, work = _run(tmp_path, on_host)

    def renamed_host_s(*command: str) -> subprocess.CompletedProcess[str]:
        """`command` run on the renamed host (in its UTS namespace)."""
        return subprocess.run([*on_host, *command], capture_output=True, text=True, timeout=60, cwd=work,
                              env={**os.environ, "PYTHONPATH": str(REPO)})

    try:
        run.wait_output("STARTING → RUNNING", 60)
        assert renamed_host_s("hostname", "stoker-test-new-name").returncode == 0
        (listed,) = Registry(RegistrySettings(registry_root=str(root))).read()
        task_id = listed.entry.task_id
        stoker = (sys.executable, "-m", "executor")
        killed = renamed_host_s(*stoker, "kill", task_id, "--root", str(root))
        assert killed.returncode == 0, killed.stdout + killed.stderr
        run.wait(60)
        listed_there = renamed_host_s(*stoker, "ps", "--all", "--root", str(root))
        assert task_id in listed_there.stdout and "other hosts" not in listed_there.stderr, listed_there
        status = renamed_host_s(*stoker, "status", task_id, "--root", str(root))
        assert "not this one" not in status.stdout and "KILLED" in status.stdout, status
    finally:
        run.sigterm_and_close()
        kill_leftovers(task_pids(sandbox))
        host.kill()
        host.wait()
        host.stdout.close()
