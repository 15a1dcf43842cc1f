"""`start_image_task` (`executor/mesos/imagetask.py`) to its end, as root in a mount
namespace of its own (`tests/support/imagemounts.in_private_mounts`): the image found at
`taskfs` under $MESOS_DIRECTORY (else the sandbox), the containerizer's form asked once, the
task's user created in the image unless it is root or `--no-create-user` says not, the
sandbox mounted at the mount point, every mount detached by `release`; a failure half way
leaves nothing mounted and says what failed."""
from __future__ import annotations

import os

import pytest

from tests.support import imagemounts
from tests.support.imagemounts import in_private_mounts
from tests.support.rootfs import can_unshare_mounts, containerizer_script, copy_rootfs

rootfs, no_mount_left = imagemounts.rootfs, imagemounts.no_mount_left  # the shared fixtures, this module's too

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(bool(can_unshare_mounts()), reason=str(can_unshare_mounts()))]

START = """
    from executor.mesos.imagetask import ImageLaunchError, ImageSettings, start_image_task
    from executor.task.wiring import RunAs
    settings = ImageSettings({containerizer!r}, "/mnt/mesos/sandbox", create_user={create_user!r})
    who = RunAs(name={user!r}, uid={uid!r}, gid={uid!r})
    directory = {mesos_directory!r}
    try:
        task = start_image_task(settings, sandbox=sandbox, mesos_directory=directory, run_as=who, volumes=[])
    except ImageLaunchError as exc:
        result = {{"error": str(exc), "mounted": mounted()}}
    else:
        w = task.wrap
        result = {{"wrap": [w.path, w.rootfs, w.working_directory, w.sandbox, w.launch_info],
                  "mounted": list(task.sandbox.mounted),
                  "user": any(line.startswith("nobody:") for line in open(Path(w.rootfs) / "etc/passwd"))}}
        result["released"] = list(task.release())
        result["left"] = mounted()
"""


def _start(tmp_path, *, legacy: bool = False, create_user: bool = True, user: str = "nobody", uid: int = 65534,
           mesos_directory: str | None = None) -> dict:
    containerizer = str(containerizer_script(tmp_path / "mesos-containerizer", legacy=legacy))
    return in_private_mounts(tmp_path, START.format(containerizer=containerizer, create_user=create_user, user=user,
                                                    uid=uid, mesos_directory=mesos_directory))


def _without_nobody(template, taskfs) -> None:
    copy_rootfs(template, taskfs)
    passwd = taskfs / "etc/passwd"
    passwd.write_text("".join(line + "\n" for line in passwd.read_text().splitlines()
                              if not line.startswith("nobody:")))


def test_the_image_under_the_sandbox_is_prepared_for_the_task_s_user_and_released(rootfs, tmp_path):
    (tmp_path / "sandbox").mkdir()
    _without_nobody(rootfs, tmp_path / "sandbox/taskfs")
    result = _start(tmp_path)
    taskfs, sandbox = str(tmp_path / "sandbox/taskfs"), str(tmp_path / "sandbox")
    assert result["wrap"] == [str(tmp_path / "mesos-containerizer"), taskfs, "/mnt/mesos/sandbox", sandbox, True]
    assert result["user"] is True and f"{taskfs}/mnt/mesos/sandbox" in result["mounted"], result
    assert result["released"] == [len(result["mounted"]), []] and result["left"] == [], result


def test_the_image_under_mesos_directory_a_legacy_containerizer_and_no_user_made(rootfs, tmp_path):
    (tmp_path / "sandbox").mkdir()
    _without_nobody(rootfs, tmp_path / "agent-dir/taskfs")
    for create_user, user, uid in ((False, "nobody", 65534), (True, "root", 0)):
        result = _start(tmp_path, legacy=True, create_user=create_user, user=user, uid=uid,
                        mesos_directory=str(tmp_path / "agent-dir"))
        assert result["wrap"][1:] == [str(tmp_path / "agent-dir/taskfs"), "/mnt/mesos/sandbox",
                                      str(tmp_path / "sandbox"), False], result
        assert result["user"] is False and result["left"] == [], result  # nobody not made


def test_an_image_that_is_not_there_fails_the_task_with_nothing_mounted(tmp_path):
    (tmp_path / "sandbox").mkdir()
    result = _start(tmp_path)
    assert result == {"error": f"Failed to initialize sandbox: the task's filesystem image is not at "
                               f"{tmp_path}/sandbox/taskfs: the agent mounts it there (a volume with the image at "
                               "container path 'taskfs', as Aurora's scheduler asks)", "mounted": []}
    assert not os.path.exists(tmp_path / "sandbox/taskfs")
