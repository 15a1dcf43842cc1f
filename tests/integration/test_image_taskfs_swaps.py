"""A filesystem-image task's `taskfs` against its owner (executor/mesos/imagefs.py,
imagetask.py): the sandbox is the task owner's, so `taskfs` may be a symlink, or be renamed
and replaced by a symlink or a directory of the owner's before, during or after the seal,
from the executor's mount namespace or another. Nothing it names is followed, mounted or
written, the image is refused saying why, and nothing is left mounted. What mounts runs in
a child in a mount namespace of its own (`in_private_mounts`, tests/support/imagemounts.py);
the image's other hostile parts are test_image_hostile.py's and test_image_seal.py's."""
from __future__ import annotations

import os

import pytest

from executor.mesos.imagefs import ImageError, ImageSandbox
from tests.support import imagemounts
from tests.support.imagemounts import in_private_mounts
from tests.support.rootfs import copy_rootfs

rootfs, no_mount_left = imagemounts.rootfs, imagemounts.no_mount_left  # the shared fixtures, this module's too


def test_a_taskfs_that_is_a_symlink_in_the_sandbox_is_refused_and_what_it_names_is_untouched(rootfs, tmp_path):
    # A fetched archive can leave a `taskfs` symlink in the sandbox, the task owner's directory.
    # (was: the path's realpath taken as the image: the task's user was written into the
    # /etc/passwd it named, the host's /etc files copied there, the sandbox mounted into it)
    decoy = copy_rootfs(rootfs, tmp_path / "decoy")
    before = {name: (decoy / "etc" / name).read_bytes() for name in sorted(os.listdir(decoy / "etc"))}
    tree = sorted(str(path.relative_to(decoy)) for path in decoy.rglob("*"))  # (the template's: others use it)
    result = in_private_mounts(tmp_path, r"""
        from executor.mesos.imagetask import ImageLaunchError, ImageSettings, start_image_task
        from executor.task.wiring import RunAs
        from tests.support.rootfs import containerizer_script
        sandbox.mkdir()
        (sandbox / "taskfs").symlink_to(decoy)
        settings = ImageSettings(str(containerizer_script(tmp / "mc")), "/mnt/mesos/sandbox", create_user=True)
        try:
            start_image_task(settings, sandbox=sandbox, mesos_directory=None, run_as=RunAs(name="nobody",
                             uid=65534, gid=65534), volumes=[])
        except ImageLaunchError as exc:
            result = {"error": str(exc), "mounted": mounted()}
    """)
    assert result == {"error": f"Failed to initialize sandbox: the task's filesystem image is not at {tmp_path}/"
                               f"sandbox/taskfs: a symlink is there, to '{tmp_path}/decoy' (the agent mounts the image "
                               "there; a symlink in the sandbox is never followed)", "mounted": []}
    assert {name: (decoy / "etc" / name).read_bytes() for name in sorted(os.listdir(decoy / "etc"))} == before
    assert sorted(str(path.relative_to(decoy)) for path in decoy.rglob("*")) == tree  # no mount point made


SWAPPED = {
    None: "cannot look at the task filesystem {taskfs}",  # the seal is the first to open it
    "nobody": "Failed to create user in sandbox for task image: {taskfs}/etc",  # the user's files are
}


@pytest.mark.parametrize("user, failed", SWAPPED.items(), ids=["no-user", "user"])
def test_a_taskfs_swapped_for_a_symlink_after_the_check_is_never_followed(rootfs, tmp_path, user, failed):
    # The sandbox is the task owner's: `taskfs` can be renamed and a symlink put in its place
    # between the check and the mounts (here, deterministically, as the check of /bin/bash
    # returns). (was: `_seal` bind-mounted `taskfs` onto itself by its name, through the
    # symlink: what it named was mounted over, nosuid and nodev, and the mount was left behind,
    # its detach refusing the symlink; the user's files refused it as "Not a directory")
    copy_rootfs(rootfs, tmp_path / "taskfs")
    (tmp_path / "decoy").mkdir()
    result = in_private_mounts(tmp_path, rf"""
        from executor.mesos import imagefs
        checked = imagefs._runs_in
        def swapped(root, path):
            ran = checked(root, path)
            os.rename(taskfs, tmp / "moved")
            taskfs.symlink_to(decoy)
            return ran
        imagefs._runs_in = swapped
        sandbox.mkdir()
        image = ImageSandbox(taskfs, sandbox, "/mnt/mesos/sandbox", [])
        try:
            image.prepare({user!r})
        except ImageError as exc:
            result = {{"error": str(exc), "mounted": mounted(), "decoy": os.listdir(decoy)}}
        result["left"] = image.release()
    """)
    assert result == {"error": failed.format(taskfs=tmp_path / "taskfs") + ": a symlink is on the way (a path "
                               "inside the image is never followed through one)", "mounted": [], "decoy": [],
                      "left": []}


def test_a_taskfs_symlink_s_target_is_quoted_in_the_refusal(tmp_path):
    # What the link names is the task owner's bytes: shown as repr shows them, so the message
    # stays one line, and no surrogate escape (`\udcff`, which Mesos' JSON parser refuses as
    # a lone surrogate) reaches the TASK_FAILED update. (was: put in as it was)
    (tmp_path / "sandbox").mkdir()
    os.symlink(b"/etc\n\xff", os.fsencode(tmp_path / "sandbox/taskfs"))
    with pytest.raises(ImageError) as caught:
        ImageSandbox(tmp_path / "sandbox/taskfs", tmp_path / "sandbox", "/mnt/mesos/sandbox", []).prepare(None)
    assert str(caught.value) == (f"the task's filesystem image is not at {tmp_path}/sandbox/taskfs: a symlink is "
                                 "there, to '/etc\\n\\xff' (the agent mounts the image there; a symlink in the "
                                 "sandbox is never followed)")


def test_release_detaches_the_sealed_image_even_where_taskfs_was_renamed_from_another_namespace(rootfs, tmp_path):
    # The sandbox is the task owner's: from a mount namespace where `taskfs` is no mount point
    # (the host's, another container's), its processes can rename it and put a symlink in its
    # place; the executor's mount of the image moves with the directory. (was: detached by
    # its name, which the symlink then held, so it was refused and the image stayed mounted)
    copy_rootfs(rootfs, tmp_path / "taskfs")
    (tmp_path / "decoy").mkdir()
    result = in_private_mounts(tmp_path, r"""
        sandbox.mkdir()
        image = ImageSandbox(taskfs, sandbox, "/mnt/mesos/sandbox", [])
        image.prepare(None)
        subprocess.run(["nsenter", f"--mount=/proc/{os.getppid()}/ns/mnt", "--", "sh", "-c",
                        f"mv {taskfs} {tmp}/moved && ln -s {decoy} {taskfs}"], check=True, timeout=20)
        result = {"problems": image.release(), "mounted": mounted()}
    """)
    assert result == {"problems": [], "mounted": []}


def test_a_taskfs_swapped_for_a_directory_after_the_seal_gets_no_mount_nor_file_and_is_refused(rootfs, tmp_path):
    # From a mount namespace where `taskfs` is no mount point, the task owner's processes can
    # rename it once it is sealed and make a directory of their own in its place. (was: the
    # volumes and the sandbox were mounted, and the host's /etc files written, into that
    # directory, found again by name, and the image prepared, though the containerizer,
    # given the path, would enter the owner's unsealed directory with its /etc/passwd)
    copy_rootfs(rootfs, tmp_path / "taskfs")
    result = in_private_mounts(tmp_path, r"""
        sandbox.mkdir()
        sealed = ImageSandbox._seal
        def swapped(self):
            sealed(self)
            subprocess.run(["nsenter", f"--mount=/proc/{os.getppid()}/ns/mnt", "--", "sh", "-c",
                            f"mv {taskfs} {tmp}/moved && mkdir -p {taskfs}/etc {taskfs}/mnt"], check=True, timeout=20)
        ImageSandbox._seal = swapped
        image = ImageSandbox(taskfs, sandbox, "/mnt/mesos/sandbox", [])
        try:
            image.prepare(None)
        except ImageError as exc:
            result = {"error": str(exc)}
        result["owner's"] = sorted(str(p.relative_to(taskfs)) for p in taskfs.rglob("*"))
        result["left"] = image.release()
        result["mounted"] = mounted()
    """)
    assert result == {"error": f"the task filesystem {tmp_path}/taskfs was replaced while it was prepared (the "
                               "containerizer, given its path, would enter another directory)",
                      "owner's": ["etc", "mnt"], "left": [], "mounted": []}


def test_a_taskfs_swapped_as_the_seal_is_made_is_refused_and_nothing_is_left_mounted(rootfs, tmp_path):
    # The task owner renames `taskfs` between its opening and the bind onto itself: the mount
    # goes where the descriptor leads, the renamed image. (was: refused, but the mount was
    # then found again by name, which led to the owner's directory: it stayed on the image,
    # in the executor's mount namespace, its release refused as "Invalid argument")
    copy_rootfs(rootfs, tmp_path / "taskfs")
    result = in_private_mounts(tmp_path, r"""
        sandbox.mkdir()
        opened = ImageSandbox._open_taskfs
        def swapped(self):  # the first time: as the seal opens it
            got = opened(self)
            if not (tmp / "moved").exists():
                os.rename(taskfs, tmp / "moved")
                (taskfs / "etc").mkdir(parents=True)
            return got
        ImageSandbox._open_taskfs = swapped
        image = ImageSandbox(taskfs, sandbox, "/mnt/mesos/sandbox", [])
        try:
            image.prepare(None)
        except ImageError as exc:
            result = {"error": str(exc)}
        result["left"] = image.release()
        result["mounted"] = mounted()
        result["owner's"] = sorted(str(p.relative_to(taskfs)) for p in taskfs.rglob("*"))
    """)
    assert result == {"error": f"the task filesystem {tmp_path}/taskfs was replaced while it was prepared (the "
                               "containerizer, given its path, would enter another directory)",
                      "left": [], "mounted": [], "owner's": ["etc"]}

