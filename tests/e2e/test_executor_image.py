"""`stoker executor` running an Aurora task whose container is a Mesos filesystem image
(`Mesos(image = DockerImage(...))`), as Thermos does (docs/aurora.md §13): the agent simulator
launches the executor in a mount namespace of its own (as the agent's filesystem/linux
isolator does) with the image's root filesystem at `taskfs` in the sandbox (a tiny one,
`tests/support/rootfs.py`), and `--mesos-containerizer-path` names a real stand-in for
`mesos-containerizer launch` (`tests/support/mesos_containerizer.py`)."""
from __future__ import annotations

import getpass
import os
import pwd
import signal
import sys
from pathlib import Path

import pytest

from tests.e2e.test_executor_aurora import TID, aurora_data
from tests.support import pidnames
from tests.support.agent_sim import AgentSimulator, make_task_info
from tests.support.proc_scan import kill_carrying, read_bytes, task_marker_of, task_pids_by_marker
from tests.support.rootfs import (
    ROOTFS_ID,
    containerizer_script,
    copy_rootfs,
    session_rootfs,
)
from tests.support.stoker_proc import live, task_pids
from tests.support.users import open_agent_sim, throwaway_user
from tests.support.waiting import wait_for

EXECUTOR = [sys.executable, "-m", "executor", "executor"]
PRIVATE_MOUNTS = ["unshare", "--mount", "--propagation", "private", "--"]
ME = getpass.getuser()

IMAGE_JOB = """
    proof = Process(name='proof', cmdline='''
      cat /etc/os-release
      echo "pwd=$PWD home=$HOME sandbox=$MESOS_SANDBOX user=$(id -un) profile=$FROM_PROFILE"
      cat %(volume)s/proof
      touch inside-$(id -un)
      setsid sleep 601 <&- >&- 2>&- &
      exec sleep 600
    ''')
    jobs = [Service(cluster='devcluster', role='%(role)s', environment='test', name='img',
                    container=Mesos(image=DockerImage(name='library/debian', tag='bookworm')),
                    task=Task(processes=[proof], resources=Resources(cpu=0.1, ram=8*MB, disk=64*MB),
                              finalization_wait=2),
                    health_check_config=HealthCheckConfig(
                      health_checker=HealthCheckerConfig(shell=ShellHealthChecker(shell_command=
                        '[[ "$(cat /etc/os-release)" == *%(rootfs_id)s* ]] && test -f inside-$(id -un)')),
                      initial_interval_secs=2.0, interval_secs=0.1))]
"""


@pytest.fixture(scope="session")
def image_template(tmp_path_factory):
    return session_rootfs(tmp_path_factory)


def launch_image_task(sim: AgentSimulator, data: bytes, flags: list[str], volumes: list[dict] = (),
                      private_mounts: bool = True) -> None:
    sim.launch_executor([*(PRIVATE_MOUNTS if private_mounts else []), *EXECUTOR, *flags], cwd=sim.sandbox)
    sim.wait_subscribed(timeout_secs=10)
    info = make_task_info(TID, data)
    if volumes:
        info["executor"]["container"] = {"type": "MESOS", "volumes": list(volumes)}
    sim.launch(info)


def ran_inside_the_image(sandbox: Path, user: pwd.struct_passwd) -> int:
    """The proof process's own words, its files and its /proc entry say it runs inside the
    image as the role, in the sandbox's mount point; its pid."""
    role = user.pw_name
    out = (sandbox / ".logs/proof/0/stdout").read_text()
    assert f"ID={ROOTFS_ID}" in out
    mount = "/mnt/mesos/sandbox"
    assert f"pwd={mount} home={mount} sandbox={mount} user={role} profile=sourced\nfrom the volume\n" in out
    assert os.stat(sandbox / f"inside-{role}").st_uid == user.pw_uid  # written through the mount point
    assert f"\n{role}:x:{user.pw_uid}:{user.pw_gid}:" in (sandbox / "taskfs/etc/passwd").read_text()
    assert (sandbox / "taskfs/etc/hosts").read_bytes() == Path("/etc/hosts").read_bytes()
    [pid] = task_pids(sandbox)
    assert Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x00600\x00"  # the containerizer exec'd
    assert f"ID={ROOTFS_ID}" in Path(f"/proc/{pid}/root/etc/os-release").read_text()
    assert os.stat(f"/proc/{pid}").st_uid == user.pw_uid
    return pid


def test_an_image_task_runs_inside_its_image_as_its_role_is_checked_there_and_killed(image_template, tmp_path):
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "proof").write_text("from the volume\n")
    containerizer = containerizer_script(tmp_path / "mesos-containerizer")
    with throwaway_user() as (user, _group), open_agent_sim() as sim:
        role, sandbox = user.pw_name, sim.sandbox
        copy_rootfs(image_template, sandbox / "taskfs")
        (sandbox / ".thermos_profile").write_text("export FROM_PROFILE=sourced\n")  # BASH_ENV, seen inside
        body = IMAGE_JOB % dict(role=role, volume=volume, rootfs_id=ROOTFS_ID)
        volumes = [{"container_path": str(volume), "host_path": str(volume), "mode": "RO"},
                   {"container_path": "taskfs", "mode": "RO", "image": {"type": "DOCKER"}}]
        launch_image_task(sim, aurora_data(tmp_path, body, role=role, name="img", container_kind="docker-image"),
                          ["--mesos-containerizer-path", str(containerizer)], volumes)
        running = sim.wait_for_state(TID, "TASK_RUNNING", 15)
        assert running.healthy is True, running.message  # the shell check ran inside the image, as the role
        pid = ran_inside_the_image(sandbox, user)
        marker = task_marker_of(pid)
        assert marker is not None  # the containerizer passed the markers on
        try:
            daemon = wait_for(lambda: {p for p in task_pids_by_marker(marker)  # the setsid'd sleep, in the image too
                                       if read_bytes(f"/proc/{p}/cmdline") == b"sleep\x00601\x00"})
            sim.kill(TID, grace_secs=1.0)
            killed = sim.wait_for_state(TID, "TASK_KILLED", 15)
            assert "KILL" in killed.message
            assert not live({pid} | daemon)  # no orphan left
            assert wait_for(lambda: not task_pids_by_marker(marker))  # nor a shell check once it is over
        finally:
            kill_carrying(f"STOKER_TASK_MARKER={marker}")
        assert sim.wait_exit(10) == 0
        log = sim.executor_log()
        assert f"image_task task=img.0 rootfs={sandbox / 'taskfs'}" in log
        assert "launch_info=True" in log  # asked before the task's supervisor held the reaper (refused after)
        # the image's own nosuid,nodev bind, the volume, the sandbox
        assert "the task is over: detached the 3 mounts made in its filesystem image" in log
        assert not any((sandbox / "taskfs/mnt/mesos/sandbox").iterdir())  # the host's mount table never had it
        assert str(sandbox) not in Path("/proc/self/mountinfo").read_text()
        assert sim.refused_calls() == []


def test_an_image_task_without_a_containerizer_fails_with_thermos_words(agent, tmp_path):
    # (the other refusals' words: tests/unit/test_containerizer.py)
    path = tmp_path / "mesos-containerizer"
    body = IMAGE_JOB % dict(role=ME, volume=tmp_path, rootfs_id=ROOTFS_ID)
    launch_image_task(agent, aurora_data(tmp_path, body, role=ME, name="img", container_kind="docker-image"),
                      ["--mesos-containerizer-path", str(path)], private_mounts=False)
    failed = agent.wait_for_state(TID, "TASK_FAILED", 15)
    assert failed.message == f"Cannot launch task using a filesystem image: mesos_containerizer_path  {path} does not exist."
    assert failed.reason is None
    assert agent.states(TID) == ["TASK_FAILED"]
    assert agent.wait_exit(15) == 0
    assert not (agent.sandbox / ".logs").exists()  # no process started


# serial: the host's whole mount table is compared before and after, and the fault tests'
# tmpfs and loop mounts, made beside it on another worker, changed it (docs/testing.md §13)
@pytest.mark.serial
def test_an_image_task_whose_executor_crashes_leaves_no_process_nor_host_mount(image_template, tmp_path):
    # (SHUTDOWN and a failed launch end as KILL does: the mounts detached in _run_task's finally)
    containerizer = containerizer_script(tmp_path / "mesos-containerizer")
    host_mounts = Path("/proc/self/mountinfo").read_text()
    with throwaway_user() as (user, _group), open_agent_sim() as sim:
        copy_rootfs(image_template, sim.sandbox / "taskfs")
        body = IMAGE_JOB % dict(role=user.pw_name, volume=tmp_path, rootfs_id=ROOTFS_ID)
        (tmp_path / "proof").write_text("from the volume\n")
        volumes = [{"container_path": str(tmp_path), "host_path": str(tmp_path), "mode": "RO"}]
        launch_image_task(sim, aurora_data(tmp_path, body, role=user.pw_name, name="img",
                                           container_kind="docker-image"),
                          ["--mesos-containerizer-path", str(containerizer)], volumes)
        sim.wait_for_state(TID, "TASK_RUNNING", 15)
        [pid] = task_pids(sim.sandbox)
        marker = task_marker_of(pid)
        try:
            os.kill(sim._proc.pid, signal.SIGKILL)  # the executor alone: its watchdog is left
            sim.wait_exit(10)
            assert wait_for(lambda: not task_pids_by_marker(marker))  # the setsid'd daemon too
        finally:
            kill_carrying(f"STOKER_TASK_MARKER={marker}")
    assert Path("/proc/self/mountinfo").read_text() == host_mounts  # only the executor's namespace had them


def test_a_shutdown_while_the_containerizer_is_asked_fails_the_task_at_once(image_template, agent, tmp_path):
    # (was: the ask went on until the containerizer ended, up to 60 s, far past the agent's
    # grace; then the image was prepared and the task started, only to be killed)
    copy_rootfs(image_template, agent.sandbox / "taskfs")
    pid = tmp_path / "containerizer.pid"
    path = tmp_path / "mesos-containerizer"
    path.write_text(f"#!/bin/sh\necho $$ > {pid}.new && mv {pid}.new {pid}\nexec sleep 20\n")
    path.chmod(0o755)
    body = IMAGE_JOB % dict(role=ME, volume=tmp_path, rootfs_id=ROOTFS_ID)
    launch_image_task(agent, aurora_data(tmp_path, body, role=ME, name="img", container_kind="docker-image"),
                      ["--mesos-containerizer-path", str(path), "--no-create-user"])
    try:
        wait_for(pid.exists, timeout_secs=15)
        agent.shutdown(enforce_grace=False)
        failed = agent.wait_for_state(TID, "TASK_FAILED", 40)
        assert failed.message == (f"Failed to initialize sandbox: cannot ask {path} which flags it takes ({path} "
                                  "launch): executor shutting down (SHUTDOWN)")
        assert agent.wait_exit(15) == 0
        assert not live(pidnames.pid_file(pid))  # the containerizer was ended and reaped
    finally:
        for alive in pidnames.pid_file(pid):
            pidnames.kill(alive)  # the executor's child: the test's to end
    assert not (agent.sandbox / ".logs").exists()  # no process started
