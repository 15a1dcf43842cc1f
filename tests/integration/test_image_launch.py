"""A filesystem-image task's launcher and sandbox against real parts: the containerizer's
command lines (executor/mesos/containerizer.py) run by the stand-in for `mesos-containerizer
launch` (tests/support/mesos_containerizer.py) in a tiny root filesystem
(tests/support/rootfs.py), and the image's sandbox preparation (executor/mesos/imagefs.py)
refusing what would lead out of the image."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from executor.mesos.containerizer import ContainerizerLaunch
from executor.mesos.imagefs import ImageError, ImageSandbox, launch_info_supported
from executor.task.wiring import RunAs
from tests.support.rootfs import ROOTFS_ID, build_rootfs, can_unshare_mounts, containerizer_script

NOBODY = RunAs(name="nobody", uid=65534, gid=65534)


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory):
    why = can_unshare_mounts()
    if why is not None:
        pytest.skip(why)
    return build_rootfs(tmp_path_factory.mktemp("image") / "rootfs")


def test_thermos_question_tells_the_two_forms_apart(tmp_path):
    assert launch_info_supported(str(containerizer_script(tmp_path / "modern"))) is True
    assert launch_info_supported(str(containerizer_script(tmp_path / "legacy", legacy=True))) is False


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


def test_the_stand_in_refuses_a_flag_it_does_not_know(tmp_path):
    done = subprocess.run([str(containerizer_script(tmp_path / "mc")), "launch", "--rootfs=/"], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 1 and "Failed to load unknown flag 'rootfs'" in done.stderr


def test_a_mount_point_behind_a_symlink_out_of_the_image_is_refused_before_any_mount(rootfs, tmp_path):
    taskfs = tmp_path / "taskfs"
    taskfs.mkdir()
    outside = tmp_path / "host-etc"
    outside.mkdir()
    (taskfs / "mnt").symlink_to(outside)  # an image whose /mnt leads to the host
    image = ImageSandbox(taskfs, tmp_path, "/mnt/mesos/sandbox", [])
    with pytest.raises(ImageError, match="a symlink is on the way"):
        image.prepare(None)
    assert image.mounted == [] and list(outside.iterdir()) == []


def test_a_symlinked_etc_file_is_replaced_never_written_through(tmp_path):
    taskfs = tmp_path / "taskfs"
    (taskfs / "etc").mkdir(parents=True)
    victim = tmp_path / "host-file"
    victim.write_text("untouched\n")
    (taskfs / "etc/hosts").symlink_to(victim)
    source = tmp_path / "hosts"
    source.write_text("127.0.0.1 localhost\n")
    ImageSandbox(taskfs, tmp_path, "/mnt/mesos/sandbox", [])._copy(source)
    assert victim.read_text() == "untouched\n"
    assert not os.path.islink(taskfs / "etc/hosts")
    assert Path(taskfs / "etc/hosts").read_text() == "127.0.0.1 localhost\n"
