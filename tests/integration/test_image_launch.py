"""A filesystem-image task's launcher and sandbox against real parts: the containerizer's
command lines (executor/mesos/containerizer.py) run by the stand-in for `mesos-containerizer
launch` (tests/support/mesos_containerizer.py) in a tiny root filesystem
(tests/support/rootfs.py), and the image's sandbox preparation (executor/mesos/imagefs.py)
refusing what would lead out of the image."""
from __future__ import annotations

import grp
import os
import pwd
import subprocess
import threading
import time
from pathlib import Path

import pytest

from config.executorsettings import ExecutorSettings
from executor.mesos import imagetask
from executor.mesos.containerizer import ContainerizerLaunch
from executor.mesos.driver import ExecutorDriver
from executor.mesos.executor import StokerExecutor
from executor.mesos.imagefs import ImageError, ImageSandbox
from executor.mesos.imagetask import ImageLaunchError, ImageSettings, launch_info_supported, start_image_task
from executor.procs.exitby import ExitBy
from executor.procs.reaper import Reaper
from executor.task.wiring import RunAs
from tests.support import pidnames
from tests.support.rootfs import (
    ROOTFS_ID,
    containerizer_script,
    copy_rootfs,
    session_rootfs,
)
from tests.support.users import as_nobody, open_sandbox
from tests.support.waiting import wait_for

NOBODY = RunAs(name="nobody", uid=65534, gid=65534)


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory):
    return session_rootfs(tmp_path_factory)


def test_thermos_question_tells_the_two_forms_apart(tmp_path):
    assert launch_info_supported(str(containerizer_script(tmp_path / "modern"))) is True
    assert launch_info_supported(str(containerizer_script(tmp_path / "legacy", legacy=True))) is False
    unstartable = tmp_path / "no-interpreter"
    unstartable.write_text("#!/nonexistent/sh\n")
    unstartable.chmod(0o755)
    with pytest.raises(ImageError) as refused:
        launch_info_supported(str(unstartable))
    assert str(refused.value) == (f"cannot ask {unstartable} which flags it takes ({unstartable} launch): [Errno 2] "
                                  f"No such file or directory: '{unstartable}'")


def test_the_containerizer_is_never_asked_while_a_supervisor_holds_the_reaper(tmp_path):
    """`subprocess.run` waits for its own child, which the reaper's rule forbids once a
    supervisor holds it (its thread would reap the child as the task's orphan): the executor
    asks before its task's supervisor starts (the image task e2e tests run that order), and
    the question is refused, nothing run, should it ever come after. A real reaper, held."""
    asked = tmp_path / "asked"
    real = containerizer_script(tmp_path / "modern")
    tracing = tmp_path / "tracing"
    tracing.write_text(f'#!/bin/sh\ntouch {asked}\nexec {real} "$@"\n')
    tracing.chmod(0o755)
    reaper = Reaper.acquire()
    try:
        with pytest.raises(ImageError, match="a task's supervisor already runs in this executor"):
            launch_info_supported(str(tracing))
    finally:
        reaper.release()
        reaper.join_unused(10)
    assert not asked.exists()  # nothing was run
    assert launch_info_supported(str(tracing)) is True and asked.exists()  # once no supervisor holds it


def asking(path: Path, body: str) -> Path:
    """An executable script at PATH: `#!/bin/sh` and BODY, a containerizer asked `launch`."""
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def test_a_containerizer_that_leaves_a_daemon_holding_stderr_is_answered_at_its_exit(tmp_path, monkeypatch):
    # (was: the executor read stderr to its EOF, which the daemon held off, and failed the task
    # after TOOL_SECS with the answer long given)
    monkeypatch.setattr(imagetask, "TOOL_SECS", 30.0)
    daemon = tmp_path / "daemon.pid"
    path = asking(tmp_path / "mc", f"echo 'Flag --launch_info is not specified' >&2\nsleep 120 &\necho $! > {daemon}\n"
                                   "exit 1")
    try:
        assert launch_info_supported(str(path)) is True
    finally:
        pidnames.kill(pidnames.pid_in(daemon))  # the script's child: ours to end


def test_without_pidfds_a_containerizer_that_left_a_daemon_is_answered_at_the_time_limit(tmp_path, monkeypatch):
    # A kernel before 5.3 or a seccomp profile denies pidfd_open: the wait for stderr's EOF,
    # which the daemon holds off, ends at TOOL_SECS, and the containerizer, gone by then, has
    # answered. (was: "no answer within 5 seconds", the task failed with the answer given)
    monkeypatch.setattr(imagetask, "TOOL_SECS", 2.5)  # (the script exits long before, even on a loaded machine)
    monkeypatch.setattr(imagetask, "_pidfd", lambda pid: -1)
    daemon = tmp_path / "daemon.pid"
    path = asking(tmp_path / "mc", f"echo 'Flag --launch_info is not specified' >&2\nsleep 120 &\n"
                                   f"echo $! > {daemon}.new && mv {daemon}.new {daemon}\nexit 1")
    try:
        assert launch_info_supported(str(path)) is True
    finally:
        for alive in pidnames.pid_file(daemon):
            pidnames.kill(alive)  # the script's child: ours to end


def test_a_containerizer_that_writes_without_end_is_refused_at_the_limit(tmp_path):
    # (was: all of it read into memory, 1.3 GB within 3 s from `yes >&2`, the answer then looked for)
    path = asking(tmp_path / "mc", f"head -c {imagetask.ANSWER_BYTES + 1} /dev/zero >&2\necho launch_info >&2")
    with pytest.raises(ImageError) as caught:
        launch_info_supported(str(path))
    assert str(caught.value) == (f"cannot ask {path} which flags it takes ({path} launch): it wrote more than "
                                 f"{imagetask.ANSWER_BYTES >> 10} KiB on stderr")


def test_a_containerizer_that_never_answers_is_given_up_and_ended(tmp_path, monkeypatch):
    monkeypatch.setattr(imagetask, "TOOL_SECS", 2.0)
    pid = tmp_path / "pid"
    path = asking(tmp_path / "mc", f"echo $$ > {pid}.new && mv {pid}.new {pid}\nexec sleep 120")
    with pytest.raises(ImageError) as caught:
        launch_info_supported(str(path))
    assert str(caught.value) == f"cannot ask {path} which flags it takes ({path} launch): no answer within 2 seconds"
    if pid.exists():  # (the shell got as far as writing it: nearly always; whole, by the rename)
        assert not Path(f"/proc/{pid.read_text().strip()}").exists()  # killed and reaped


def test_a_shutdown_ends_the_ask_and_the_containerizer(tmp_path, monkeypatch):
    # SHUTDOWN (the executor's exit time set) while the containerizer has not answered: the
    # agent destroys the container once its grace is over. (was: the ask went on to TOOL_SECS,
    # then the image was prepared and the task started, all past the grace)
    monkeypatch.setattr(imagetask, "TOOL_SECS", 30.0)
    pid = tmp_path / "pid"
    path = asking(tmp_path / "mc", f"echo $$ > {pid}.new && mv {pid}.new {pid}\nexec sleep 120")
    exit_by = ExitBy()
    shutdown = threading.Thread(target=lambda: (wait_for(pid.exists, timeout_secs=20),
                                                exit_by.set(time.monotonic() + 3.0)))
    shutdown.start()
    try:
        with pytest.raises(ImageError) as caught:
            launch_info_supported(str(path), exit_by)
    finally:
        shutdown.join()
    assert str(caught.value) == f"cannot ask {path} which flags it takes ({path} launch): the executor is shutting down"
    assert not Path(f"/proc/{pid.read_text().strip()}").exists()  # killed and reaped


@pytest.mark.parametrize("cause", [None, "SIGTERM, treated as SHUTDOWN"])
def test_the_ask_ended_by_a_shutdown_says_its_cause_as_the_task_s_kill_does(tmp_path, monkeypatch, cause):
    # The executor's own shutdown sets the exit time; the ask's error names what the kill
    # reason of an ordinary task names: the agent's SHUTDOWN, or the signal. (was: "the
    # executor is shutting down (SHUTDOWN)" for a SIGTERM too)
    monkeypatch.setattr(imagetask, "TOOL_SECS", 30.0)
    settings = ExecutorSettings.from_env({"MESOS_AGENT_ENDPOINT": "127.0.0.1:5051", "MESOS_FRAMEWORK_ID": "f",
                                          "MESOS_EXECUTOR_ID": "e"})
    executor = StokerExecutor(settings, {}, on_done=lambda: None)
    driver = ExecutorDriver(executor, settings)
    pid = tmp_path / "pid"
    path = asking(tmp_path / "mc", f"echo $$ > {pid}.new && mv {pid}.new {pid}\nexec sleep 120")
    shutdown = threading.Thread(target=lambda: (wait_for(pid.exists, timeout_secs=20),
                                                executor.shutdown(driver, cause=cause)))
    shutdown.start()
    try:
        with pytest.raises(ImageError) as caught:
            launch_info_supported(str(path), executor._exit)
    finally:
        shutdown.join()
    said = f"executor shutting down ({cause or 'SHUTDOWN'})"
    assert str(caught.value) == f"cannot ask {path} which flags it takes ({path} launch): {said}"


@pytest.mark.parametrize("legacy", [False, True], ids=["launch_info", "legacy"])
def test_each_form_runs_bash_inside_the_image_as_the_user_in_the_working_directory_as_the_same_pid(
        rootfs, tmp_path, legacy):
    wrap = ContainerizerLaunch(path=str(containerizer_script(tmp_path / "mc", legacy=legacy)), rootfs=str(rootfs),
                               working_directory="/mnt/mesos/sandbox", sandbox=str(tmp_path), launch_info=not legacy)
    child = subprocess.Popen(wrap.argv('cat /etc/os-release; echo "$PWD $(id -u) $$"', NOBODY), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert f"ID={ROOTFS_ID}" in out
    assert out.splitlines()[-1] == f"/mnt/mesos/sandbox 65534 {child.pid}"  # exec'd: the pid is bash's


def test_a_non_utf8_command_line_reaches_bash_inside_the_image_as_its_bytes(rootfs, tmp_path):
    wrap = ContainerizerLaunch(path=str(containerizer_script(tmp_path / "mc")), rootfs=str(rootfs),
                               working_directory="/mnt/mesos/sandbox", sandbox=str(tmp_path))
    done = subprocess.run(wrap.argv(os.fsdecode(b"echo -n \xff\xe9-\xc3\xa9"), NOBODY), capture_output=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stderr  # a \udcff escape: Mesos' JSON parser (and the stand-in) refuse it
    assert done.stdout == b"\xff\xe9-\xc3\xa9"


def test_the_stand_in_refuses_a_flag_it_does_not_know(tmp_path):
    done = subprocess.run([str(containerizer_script(tmp_path / "mc")), "launch", "--rootfs=/"], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 1 and "Failed to load unknown flag 'rootfs'" in done.stderr


def test_a_symlinked_etc_file_is_replaced_never_written_through(tmp_path):
    taskfs = tmp_path / "taskfs"
    (taskfs / "etc").mkdir(parents=True)
    victim = tmp_path / "host-file"
    victim.write_text("untouched\n")
    (taskfs / "etc/hosts").symlink_to(victim)
    source = tmp_path / "hosts"
    source.write_text("127.0.0.1 localhost\n")
    image = ImageSandbox(taskfs, tmp_path, "/mnt/mesos/sandbox", [])
    image._root = os.open(taskfs, os.O_PATH | os.O_CLOEXEC)  # what the seal holds: the files go in through it
    try:
        image._copy(source)
    finally:
        os.close(image._root)
    assert victim.read_text() == "untouched\n"
    assert not os.path.islink(taskfs / "etc/hosts")
    assert Path(taskfs / "etc/hosts").read_text() == "127.0.0.1 localhost\n"


def test_a_non_root_executor_is_refused_naming_why(tmp_path):
    with open_sandbox() as sandbox:
        sandbox.chmod(0o755)  # the executor's user reaches the containerizer
        containerizer = containerizer_script(sandbox / "mesos-containerizer")
        (sandbox / "taskfs").mkdir()
        settings = ImageSettings(str(containerizer), "/mnt/mesos/sandbox", create_user=True)

        def attempt() -> str:
            try:
                start_image_task(settings, sandbox=sandbox, mesos_directory=None, run_as=NOBODY, volumes=[])
            except ImageLaunchError as exc:
                return str(exc)
            return "started"

        said = as_nobody(attempt) if os.geteuid() == 0 else attempt()
    assert said.startswith("Cannot launch task using a filesystem image: the executor runs as nobody, not root: ")
    assert "need root" in said


def test_a_user_the_image_has_with_other_ids_fails_as_in_thermos(rootfs, tmp_path):
    taskfs = copy_rootfs(rootfs, tmp_path / "taskfs")
    user = pwd.getpwnam("nobody")
    group = grp.getgrgid(user.pw_gid).gr_name
    with (taskfs / "etc/passwd").open("a") as passwd:
        passwd.write(f"nobody:x:{user.pw_uid - 1}:{user.pw_gid}::/:/bin/sh\n")
    image = ImageSandbox(taskfs, tmp_path, "/mnt/mesos/sandbox", [])
    with pytest.raises(ImageError) as caught:
        image.prepare("nobody")
    assert str(caught.value).startswith(f"User group result uid={user.pw_uid - 1}(nobody) ")
    assert str(caught.value).endswith(
        f"does not start with expected prefix uid={user.pw_uid}(nobody) gid={user.pw_gid}({group}) groups=")
    assert image.mounted == []
    assert f"{group}:x:{user.pw_gid}:" in (taskfs / "etc/group").read_text()  # the group was created first


@pytest.mark.skipif(os.geteuid() != 0, reason="a non-root executor is refused before the sandbox is looked at")
def test_a_sandbox_whose_dot_dot_follows_a_symbolic_link_is_refused_naming_both_directories(tmp_path):
    """`..` after a symbolic link leads elsewhere for the kernel than by name: the sandbox
    mounted into the image (by name) would not be the one the supervisor writes to."""
    (tmp_path / "elsewhere/deep").mkdir(parents=True)
    (tmp_path / "elsewhere/sandbox").mkdir()
    (tmp_path / "sandbox").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere/deep")
    given = tmp_path / "link/../sandbox"
    settings = ImageSettings(str(containerizer_script(tmp_path / "mc")), "/mnt/mesos/sandbox", create_user=True)
    with pytest.raises(ImageLaunchError) as caught:
        start_image_task(settings, sandbox=given, mesos_directory=None, run_as=NOBODY, volumes=[])
    assert str(caught.value) == (
        f"Cannot launch task using a filesystem image: the sandbox {given} is {tmp_path}/elsewhere/sandbox, but "
        f"read with its '..' resolved by name it is {tmp_path}/sandbox: a symbolic link before a '..' in it; "
        "give the sandbox (MESOS_SANDBOX, MESOS_DIRECTORY) without '..'")
